"""Per-item results of evaluation runs, cached in SQLite so an interrupted run resumes.

One database per run key (task, its version and source, modality, label set, predictor spec and
revision, affectgraph's version) under ``$AFFECTGRAPH_HOME/evals/``; one row per scored item,
keyed by what the prediction depends on (the fold, the item id, its label and its file's size
and time, or its text), committed after every batch. Running the same command again computes
only the items without a row; a changed model revision, task version or affectgraph release
starts a new database.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from affectgraph.evals.predictors import Prediction, PredictorInfo
from affectgraph.evals.splits import EvalItem
from affectgraph.models import cache_home


def default_folder() -> Path:
    return cache_home() / "evals"


FORMAT = 2
"""The version of what the cache stores; a new one starts new databases."""


def run_key(parts: dict[str, object]) -> str:
    """A stable hex key of a run's defining parts (JSON-serialisable values)."""
    text = json.dumps({**parts, "cache_format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def item_key(entry: EvalItem) -> str:
    item = entry.item
    if item.path is not None:
        stat = item.path.stat()
        source = f"{item.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{item.start}|{item.end}"
    else:
        source = f"text|{item.text}"
    raw = f"{entry.fold}|{item.id}|{item.label.value}|{source}|{item.transcript}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class ResultCache:
    """Predictions of one run key; open with :meth:`open`, close when done."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, folder: Path, name: str, key: str, *, fresh: bool = False) -> ResultCache:
        """The cache of run ``key`` (``fresh``: discard what it holds)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}-{key}.sqlite"
        if fresh:
            path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, json TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, json TEXT)")
        return cls(db, path)

    def found(self, keys: Sequence[str]) -> dict[str, Prediction]:
        """The cached predictions among ``keys``."""
        out: dict[str, Prediction] = {}
        for start in range(0, len(keys), 900):
            part = list(keys[start:start + 900])
            marks = ",".join("?" * len(part))
            for key, text in self.db.execute(
                    f"SELECT key, json FROM results WHERE key IN ({marks})", part):
                out[key] = Prediction.model_validate_json(text)
        return out

    def put(self, rows: Iterable[tuple[str, Prediction]]) -> None:
        """Store predictions by item key, in one transaction."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)",
                                [(k, p.model_dump_json()) for k, p in rows])

    def save_info(self, info: PredictorInfo) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('predictor', ?)",
                            (info.model_dump_json(),))

    def info(self) -> PredictorInfo | None:
        row = self.db.execute("SELECT json FROM meta WHERE name = 'predictor'").fetchone()
        return PredictorInfo.model_validate_json(row[0]) if row else None

    def close(self) -> None:
        self.db.close()
