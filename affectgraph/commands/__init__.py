"""Sub-commands of the ``affectgraph`` command line, one typer app per module.

:func:`user_errors` is how every command reports a user error: one line naming the problem and
the fix on stderr, exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from affectgraph.errors import AffectGraphError

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


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']} (got {json.dumps(first.get('input'), default=str)})"
