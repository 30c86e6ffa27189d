"""Progress bars for long analyses: one bar per specialist, in seconds of media processed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from affectgraph.graphs.context import Progress as ProgressCallback
from affectgraph.graphs.context import no_progress


@contextlib.contextmanager
def progress_display(
    console: Console, duration: float, *, enabled: bool, specialists: Sequence[str]
) -> Iterator[ProgressCallback]:
    """A progress callback drawing a bar per specialist on ``console`` (or nothing)."""
    if not enabled or duration <= 0:
        yield no_progress
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(),
               TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TimeRemainingColumn())
    names = ["speech", *specialists] if {"voice", "transcript"} & set(specialists) else specialists
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {n: bars.add_task(n, total=duration) for n in names}

        def report(specialist: str, seconds: float) -> None:
            if specialist in tasks:
                bars.update(tasks[specialist], completed=min(seconds, duration))

        yield report
