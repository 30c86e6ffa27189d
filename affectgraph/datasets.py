"""Labelled items from any manifest CSV or from the bundled research data sets.

Every item has a canonical label, either a media ``path`` or a ``text``, and a ``speaker`` (or
other group: a face's person, a dialogue's speaker) so that splits can keep a group out of
training entirely. The manifest format, shared by exemplar building, training and evaluation::

    label,path[,speaker,transcript,start,end]        # media (path relative to the CSV's folder)
    label,text[,speaker]                             # text

Labels are canonical names or any alias :mod:`affectgraph.labels` knows. Bad manifests are
rejected up front with every offending row listed (:class:`~affectgraph.errors.InputError`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from affectgraph.errors import ConfigError, InputError, unknown_name
from affectgraph.labels import ALIASES, SCHEMES, Emotion

MAX_LISTED = 10


@dataclass(frozen=True)
class Item:
    """One labelled example: a media file (or a span of it) or a text."""

    id: str
    label: Emotion
    dataset: str
    path: Path | None = None
    text: str | None = None
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    transcript: str | None = None
    split: str | None = None

    @property
    def group(self) -> str:
        """What a speaker-independent split must keep together (the item itself if unknown)."""
        return f"{self.dataset}/{self.speaker}" if self.speaker else self.id


def default_data_root() -> Path:
    """``$AFFECTGRAPH_DATA``, else ``shared/data`` beside the source checkout."""
    if env := os.environ.get("AFFECTGRAPH_DATA"):
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# -- manifests -------------------------------------------------------------------------------

def read_manifest(
    csv_path: str | Path,
    *,
    modality: str | None = None,
    labels: Sequence[Emotion] | None = None,
    scheme: str | None = None,
    check_files: bool = True,
) -> list[Item]:
    """Read a labelled manifest, validating every row before returning any.

    ``modality`` ``"text"`` requires a ``text`` column, any other a ``path`` column. ``labels``
    restricts the label set: rows with other labels are dropped. Raises
    :class:`~affectgraph.errors.InputError` listing the offending rows (line numbers of the CSV)
    for missing files, unknown or empty labels, empty texts, duplicate ids and rows mixing
    ``path`` and ``text``.
    """
    file = Path(csv_path)
    if not file.is_file():
        raise InputError(f"{file}: no such manifest")
    with file.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k}, n)
                for n, row in enumerate(reader, start=2)]
    _check_columns(file, columns, modality)
    problems: list[str] = []
    items: list[Item] = []
    seen: dict[str, int] = {}
    for row, line in rows:
        item, problem = _row_item(file, row, line, scheme, check_files)
        if problem:
            problems.append(f"line {line}: {problem}")
            continue
        assert item is not None
        if item.id in seen:
            problems.append(
                f"line {line}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            continue
        seen[item.id] = line
        items.append(item)
    problems += _mixed_kinds(items, seen)
    if problems:
        raise InputError(_listing(file, problems))
    if not rows:
        raise InputError(f"{file}: the manifest has a header but no rows")
    return [i for i in items if labels is None or i.label in labels]


def _mixed_kinds(items: list[Item], lines: dict[str, int]) -> list[str]:
    """Problems for the rows of the minority kind when some rows give a path and others a text
    (a manifest holds one kind of item); ``lines`` maps item ids to CSV line numbers."""
    media = [i for i in items if i.path is not None]
    texts = [i for i in items if i.path is None]
    if not media or not texts:
        return []
    few, kind, other = (texts, "text", "path") if len(texts) <= len(media) else (
        media, "path", "text")
    return [f"line {lines[i.id]}: gives a {kind} where {len(items) - len(few)} other rows give "
            f"a {other}: a manifest holds one kind of item" for i in few]


def _check_columns(file: Path, columns: list[str], modality: str | None) -> None:
    if "label" not in columns:
        raise InputError(f"{file}: no 'label' column (columns: {', '.join(columns) or 'none'})")
    has_path, has_text = "path" in columns, "text" in columns
    if not has_path and not has_text:
        raise InputError(f"{file}: needs a 'path' or a 'text' column")
    if modality == "text" and not has_text:
        raise InputError(f"{file}: --modality text needs a 'text' column")
    if modality not in (None, "text") and not has_path:
        raise InputError(f"{file}: --modality {modality} needs a 'path' column")


def _row_item(file: Path, row: dict[str, str], line: int, scheme: str | None,
              check_files: bool) -> tuple[Item | None, str | None]:
    raw = row.get("label", "")
    if not raw:
        return None, "empty label"
    label = _label(raw, scheme)
    if not isinstance(label, Emotion):  # a problem message (Emotion is a str too)
        return None, label
    path, text = row.get("path", ""), row.get("text", "")
    if path and text:
        return None, "has both a path and a text: a manifest holds one kind of item"
    if not path and not text:
        return None, "has neither a path nor a text" if "path" in row else "empty text"
    media = (file.parent / path) if path else None
    if media is not None and check_files and not media.is_file():
        return None, f"missing file {path}"
    try:
        start = float(row["start"]) if row.get("start") else None
        end = float(row["end"]) if row.get("end") else None
    except ValueError:
        return None, f"start/end are not numbers: {row.get('start')!r}, {row.get('end')!r}"
    item_id = row.get("id") or (Path(path).with_suffix("").as_posix() if path else f"row{line}")
    return Item(id=item_id, label=label, dataset=file.stem, path=media, text=text or None,
                speaker=row.get("speaker") or None, start=start, end=end,
                transcript=row.get("transcript") or None), None


def _label(raw: str, scheme: str | None) -> Emotion | str:
    table = SCHEMES[scheme] if scheme else ALIASES
    key = raw.strip().lower()
    if key not in table:
        return f"unknown label {raw!r}"
    emotion = table[key]
    if emotion is None:
        return f"label {raw!r} is outside the canonical set (drop the row)"
    return emotion


def _listing(file: Path, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{file}: {len(problems)} bad row(s):\n  " + "\n  ".join(shown) + more


# -- the bundled research sets ---------------------------------------------------------------

def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _media_set(name: str, scheme: str, speaker: Callable[[dict[str, str], Path], str | None]
               ) -> Callable[[Path], list[Item]]:
    def load(root: Path) -> list[Item]:
        folder = root / name
        items = []
        for row in _csv_rows(folder / "labels.csv"):
            label = SCHEMES[scheme][row["emotion"].lower()]
            if label is None:  # an emotion outside the seven canonical ones
                continue
            rel = Path(row["path"])
            items.append(Item(id=f"{name}/{rel.stem}", label=label, dataset=name,
                              path=folder / rel, speaker=speaker(row, rel)))
        return items

    return load


def _tsv_goemotions(root: Path) -> list[Item]:
    folder = root / "text" / "goemotions" / "data" / "ekman"
    names = (folder / "labels.txt").read_text().split()
    items = []
    for split in ("train", "dev", "test"):
        with (folder / f"{split}.tsv").open(encoding="utf-8") as fh:
            for text, codes, comment_id in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                if "," in codes:  # several emotions: not a clean single-label example
                    continue
                label = SCHEMES["ekman"][names[int(codes)]]
                if label is not None:
                    items.append(Item(id=f"goemotions/{comment_id}", label=label,
                                      dataset="goemotions", text=text, split=split))
    return items


def _friends(name: str, files: dict[str, str], scheme: str, text_col: str, speaker_col: str,
             label_col: str = "Emotion") -> Callable[[Path], list[Item]]:
    def load(root: Path) -> list[Item]:
        folder = root / "text" / name
        items = []
        for split, file in files.items():
            for n, row in enumerate(_csv_rows(folder / file)):
                label = SCHEMES[scheme][row[label_col].lower()]
                if label is None:
                    continue
                speaker = row[speaker_col].strip("[]'\" ")
                items.append(Item(id=f"{name}/{split}/{n}", label=label, dataset=name,
                                  text=row[text_col], speaker=speaker, split=split))
        return items

    return load


def _isear(root: Path) -> list[Item]:
    """ISEAR situations with their respondent as speaker (shame and guilt left out)."""
    items = []
    for n, row in enumerate(_csv_rows(root / "text" / "isear" / "isear_text_emotion.csv")):
        label = SCHEMES["isear"][row["emotion"].lower()]
        if label is not None:
            items.append(Item(id=f"isear/{n}", label=label, dataset="isear", text=row["text"],
                              speaker=row["subject_id"]))
    return items


DATASETS: dict[str, Callable[[Path], list[Item]]] = {
    "ravdess_speech": _media_set("ravdess_speech", "ravdess", lambda r, p: f"actor{r['actor']}"),
    "ravdess_av": _media_set("ravdess_av", "ravdess", lambda r, p: f"actor{r['actor']}"),
    "tess": _media_set("tess", "tess", lambda r, p: r["speaker"]),
    "faces_fer2013": _media_set("faces_fer2013", "fer", lambda r, p: None),
    "faces_web": _media_set("faces_web", "faces_web", lambda r, p: p.stem.rsplit("_", 1)[0]),
    "goemotions": _tsv_goemotions,
    "meld": _friends("meld", {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv"}, "meld",
                     "Utterance", "Speaker"),
    "emorynlp": _friends("emorynlp", {"train": "emorynlp_train_final.csv",
                                      "dev": "emorynlp_dev_final.csv"}, "emorynlp",
                         "Utterance", "Speaker"),
    "isear": _isear,
}


def load_dataset(name: str, *, root: str | Path | None = None,
                 split: str | None = None) -> list[Item]:
    """The items of a bundled data set (``ravdess_speech``, ``meld``, ...), optionally one split."""
    if name not in DATASETS:
        raise unknown_name("data set", name, DATASETS)
    folder = Path(root) if root else default_data_root()
    if not folder.is_dir():
        raise ConfigError(f"data folder {folder} not found; set AFFECTGRAPH_DATA or pass --data")
    items = DATASETS[name](folder)
    return [i for i in items if split is None or i.split == split]


def speaker_folds(items: Iterable[Item], folds: int) -> list[list[Item]]:
    """Split items into ``folds`` groups with no speaker (group) in two folds, sizes balanced."""
    by_group: dict[str, list[Item]] = {}
    for item in items:
        by_group.setdefault(item.group, []).append(item)
    out: list[list[Item]] = [[] for _ in range(folds)]
    for group in sorted(by_group, key=lambda g: (-len(by_group[g]), g)):
        min(out, key=len).extend(by_group[group])
    return out
