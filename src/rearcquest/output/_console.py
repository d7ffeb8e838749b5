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


# In a pipe or a file a table is as wide as its cells: nothing is cut (rich would lay it out in
# 80 columns, cutting and wrapping cells).
_UNCUT = 1_000_000
# In a terminal a series title gives up its room down to this many characters before a column is
# left out; and the last column shown may be wrapped into as little room as this.
_TITLE_ROOM = 20
_WRAP_ROOM = 20


def _on_terminal(console: Console) -> bool:
    """Whether the console writes to a terminal (not a pipe or a file)."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty is not None and isatty())


def _fitting(widths: Sequence[int], columns: Sequence[str], room: int) -> int:
    """How many columns, from the left, fit in ``room`` characters (at least one).

    A series title counts as :data:`_TITLE_ROOM` wide, since it is cut to what the others leave;
    a column that does not fit whole still closes the table when :data:`_WRAP_ROOM` of it fits
    (rich wraps it, as the changed files of ``rq releases``).
    """
    used = 1
    for count, (width, name) in enumerate(zip(widths, columns, strict=True)):
        need = min(width, _TITLE_ROOM) if name == "title" else width
        if count > 0 and used + 3 + need > room:
            return count + 1 if used + 3 + min(need, _WRAP_ROOM) <= room else count
        used += 3 + need
    return len(columns)


def _print_table(console: Console, spec: TextTable, max_rows: int | None) -> None:
    """One table: in a terminal, the columns that fit (then which were left out); elsewhere every
    cell whole. At most ``max_rows`` rows, then how many were left out; then the notes, dimmed."""
    from rich.table import Table

    terminal = _on_terminal(console)
    if not terminal:
        console.width = _UNCUT
    shown = spec.rows if max_rows is None else spec.rows[:max_rows]
    rows = [[_plain(cell) for cell in row] for row in shown]
    widths = [
        max([len(visible(n)), *(len(row[i]) for row in rows)]) for i, n in enumerate(spec.columns)
    ]
    count = _fitting(widths, spec.columns, console.width) if terminal else len(spec.columns)
    widths = widths[:count]
    table = Table(title=_plain(spec.title) if spec.title else None, title_justify="left")
    for index, (name, numeric) in enumerate(zip(spec.columns[:count], spec.numeric, strict=False)):
        justify: Literal["left", "right"] = "right" if numeric else "left"
        if name == "title" and terminal:
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
        table.add_row(*cells[:count])
    console.print(table)
    notes = list(spec.notes)
    if len(rows) < len(spec.rows):
        more = len(spec.rows) - len(rows)
        notes.append(
            f"{more:,} more {'row' if more == 1 else 'rows'} not shown (--max-rows; --format csv "
            "writes every row)"
        )
    if count < len(spec.columns):
        left_out = spec.columns[count:]
        notes.append(
            f"{len(left_out)} {'column' if len(left_out) == 1 else 'columns'} not shown: "
            f"{', '.join(left_out)} (--format csv shows every column)"
        )
    for note in notes:
        console.print(f"  {visible(note)}", style="dim", markup=False)


def print_grids(grids: Sequence[TextTable], max_rows: int | None = None) -> None:
    """Print report tables with rich on stdout: one per grid, its notes dimmed beneath it.

    In a terminal a table shows the columns that fit and names the others; in a pipe or a file
    every cell is whole. ``max_rows``: at most this many rows per table, then how many were left.
    """
    console = _stdout_console()
    for spec in grids:
        _print_table(console, spec, max_rows)
        console.print()


def print_cells(
    columns: Sequence[str],
    numeric: Sequence[bool],
    rows: Sequence[list[str]],
    max_rows: int | None = None,
) -> None:
    """Print one untitled table with rich on stdout (numbers aligned right), as
    :func:`print_grids` does."""
    from rearcquest.output.render import TextTable

    spec = TextTable("", tuple(columns), [tuple(row) for row in rows], tuple(numeric))
    _print_table(_stdout_console(), spec, max_rows)
