"""What ``rq`` shows people on a terminal: rich progress displays on stderr, report tables on stdout.

Part of the entry-point layer beside :mod:`rearcquest.cli` (which alone imports typer): rich is
imported here, lazily, so that ``rq --help`` stays fast. The library never imports this module; it
takes the callbacks these displays yield.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from rearcquest._text import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from rearcquest.jobs.job import SurveyOutcome
    from rearcquest.mirror.sync import Progress as SyncProgress
    from rearcquest.output.render import TextTable

SurveyCallbacks = tuple[
    Callable[[str, "SyncProgress"], None] | None, Callable[["SurveyOutcome"], None] | None
]


def _shown(quiet: bool) -> bool:
    """Whether a progress display is wanted: not ``--quiet``, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def sync_progress(quiet: bool, description: str) -> Iterator[Callable[[SyncProgress], None] | None]:
    """A rich progress display of one sync on stderr when it is a terminal.

    Yields:
        The sync's progress callback, or None when nothing is shown.
    """
    if not _shown(quiet):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    counts = {"done": 0, "files": 0}

    def callback(event: SyncProgress) -> None:
        if event.kind == "start":
            counts["files"] = event.files
            bar.update(task, total=event.total_bytes or None)
        elif event.kind == "bytes":
            bar.advance(task, event.nbytes)
        else:
            counts["done"] += 1
        bar.update(task, description=f"{description} {counts['done']}/{counts['files']} files")

    with bar:
        yield callback


@contextmanager
def survey_progress(quiet: bool, surveys: int | None) -> Iterator[SurveyCallbacks]:
    """A rich display of surveys done and bytes moved, on stderr when it is a terminal.

    Args:
        quiet: ``--quiet``: show nothing.
        surveys: how many surveys will run, when known.

    Yields:
        ``(on_progress, on_survey)`` for :func:`rearcquest.jobs.job.run_surveys`; both None when
        nothing is shown.
    """
    if not _shown(quiet):
        yield None, None
        return
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("syncing surveys", total=None)
    lock = threading.Lock()
    counts = {"done": 0, "bytes": 0}

    def describe() -> str:
        of = f"/{surveys}" if surveys else ""
        return f"syncing surveys: {counts['done']}{of} done"

    def on_progress(survey: str, event: SyncProgress) -> None:
        with lock:
            if event.kind == "start":
                counts["bytes"] += event.total_bytes
                bar.update(task, total=counts["bytes"] or None)
            elif event.kind == "bytes":
                bar.advance(task, event.nbytes)

    def on_survey(outcome: SurveyOutcome) -> None:
        with lock:
            counts["done"] += 1
            bar.update(task, description=describe())

    bar.update(task, description=describe())
    with bar:
        yield on_progress, on_survey


def _stdout_console() -> Console:
    """rich's console on stdout, but a reader gone early (``| head``) raises BrokenPipeError, for
    the CLI to end quietly with exit 0, where rich itself would exit 1."""
    import errno
    import os

    from rich.console import Console

    class _StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _StdoutConsole(highlight=False)


def _plain(text: str) -> Text:
    """A cell, title or name for rich: its controls made visible (:func:`visible`), and as
    plain text, so that ``[red]`` or ``[/x]`` in data is shown as written (rich reads markup in
    a ``str``, and raises on an unmatched closing tag)."""
    from rich.text import Text

    return Text(visible(text))


def print_grids(grids: Sequence[TextTable]) -> None:
    """Print report tables with rich on stdout: one per grid, its notes dimmed beneath it."""
    from rich.table import Table

    console = _stdout_console()
    for spec in grids:
        table = Table(title=_plain(spec.title), title_justify="left")
        rows = [[_plain(cell) for cell in row] for row in spec.rows]
        widths = [max([len(n), *(len(row[i]) for row in rows)]) for i, n in enumerate(spec.columns)]
        for index, (name, numeric) in enumerate(zip(spec.columns, spec.numeric, strict=True)):
            justify: Literal["left", "right"] = "right" if numeric else "left"
            if name == "title":
                # A long series title is cut to the width the other columns leave, never
                # wrapped: each row stays one line.
                others = sum(w for i, w in enumerate(widths) if i != index)
                room = max(10, console.width - others - 3 * len(widths) - 1)
                table.add_column(
                    _plain(name), justify=justify, no_wrap=True, overflow="ellipsis", max_width=room
                )
            else:
                table.add_column(_plain(name), justify=justify)
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
        for note in spec.notes:
            console.print(f"  {visible(note)}", style="dim", markup=False)
        console.print()


def print_cells(columns: Sequence[str], numeric: Sequence[bool], rows: Sequence[list[str]]) -> None:
    """Print one untitled table with rich on stdout (numbers aligned right)."""
    from rich.table import Table

    table = Table()
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(_plain(name), justify="right" if right else "left")
    for row in rows:
        table.add_row(*(_plain(cell) for cell in row))
    _stdout_console().print(table)
