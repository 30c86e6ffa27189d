"""The exception tree.

Every error affectgraph raises on purpose derives from :class:`AffectGraphError` and names the bad
value and what would fix it::

    AffectGraphError
     ├── MediaError          a clip that cannot be read (missing, corrupt, no streams, empty)
     ├── ModelUnavailable    a model that is not on this machine (and how to get it)
     ├── ConfigError         an unknown option, preset, label or name (with the valid ones)
     └── InputError          other user input that cannot be used (a bad transcript file, ...)

Input that is valid but cannot be analysed (no face, silence, a segment too short) is *not* an
error: specialists return evidence that carries a ``reason`` instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class AffectGraphError(Exception):
    """Base class of every error affectgraph raises on purpose."""


class MediaError(AffectGraphError):
    """A media file cannot be read: names the file and the problem."""

    def __init__(self, path: str | Path, problem: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class ModelUnavailable(AffectGraphError):
    """A model's files are not on this machine; the message says how to get them."""


class ConfigError(AffectGraphError, ValueError):
    """An unknown or invalid option, name or value."""


class InputError(AffectGraphError, ValueError):
    """User input other than media (a transcript file, a manifest row) that cannot be used."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """A :class:`ConfigError` for an unknown ``name``, with a "did you mean" and the valid names."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return ConfigError(f"unknown {kind} {name!r}{hint} Valid: {', '.join(valid)}")
