"""Sub-commands of the ``affectgraph`` command line, one typer app per module.

:func:`user_errors` is how every command reports a user error: one line naming the problem and
the fix on stderr, exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from affectgraph.errors import AffectGraphError, InputError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Print a user error as one line naming the problem and the fix; exit with status 2."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AffectGraphError as exc:
            message = str(exc)
        except ValidationError as exc:
            message = f"invalid option: {_first_error(exc)}"
        print(f"error: {message}", file=sys.stderr)
        raise typer.Exit(2)

    return run  # type: ignore[return-value]


def output_file(path: Path | None, option: str) -> None:
    """Make ``path``'s folder (as ``mkdir -p``) before minutes of work are spent on what it will
    hold; ``None`` and ``-`` (stdout) need nothing. A path that is a folder, or a folder that
    cannot be made, is an :class:`~affectgraph.errors.InputError` naming the option."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name inside it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot make its folder {path.parent} "
                         f"({exc.strerror or exc}); choose another path") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']} (got {json.dumps(first.get('input'), default=str)})"
