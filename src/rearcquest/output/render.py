"""Render an :class:`~rearcquest.data.analytics.Analysis` for programs and people.

JSON, CSV, Markdown and plain text on one side; report files (CSV, Parquet) and PNG charts on the
other. Pure helpers: nothing here imports typer or rich or prints; ``cli.py`` turns
:func:`tables` into rich tables.

One number style in every format of a report (see ``docs/analyze.md``): a BLS value, or a sum of
them, has the digits the BLS file prints for its series (``-7.0``, ``138.710``; never ``-7`` nor
``28.500000000000004``); populations are integers. The population mean and standard deviation are
computed values: the data formats carry them unrounded (JSON and CSV as the float's shortest
digits, ``4257089.5415293295``; Parquet as ``Float64``), and only the views for people round
them (table and Markdown: the mean to one decimal, the standard deviation to two). JSON writes
the digits as numbers, CSV and Markdown as text (Markdown and the table add thousands
separators to population figures), Parquet as ``Decimal(18, 3)`` values and ``Int64``
populations.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rearcquest._sizes import human_size as human_size
from rearcquest._text import visible
from rearcquest.data.analytics import (
    report_doc,
    report_frame,
    report_records,
)
from rearcquest.errors import ConfigError, RqError

if TYPE_CHECKING:
    import polars as pl

    from rearcquest.data.analytics import Analysis, ReportName
    from rearcquest.data.tables import TablesResult
    from rearcquest.index import StaticIndex
    from rearcquest.jobs.job import MultiSyncResult, SurveyRun
    from rearcquest.jobs.pipeline import PipelineResult, TablesRun
    from rearcquest.mirror.population import FetchResult
    from rearcquest.mirror.surveys import SurveyInfo

TITLES: dict[str, str] = {
    "population": "US population",
    "best-year": "Best year of each series",
    "series-population": "Series with population",
}
CHARTS_HINT = "the PNG charts need matplotlib: pip install 'rearcquest[charts]'"


def json_text(value: Any) -> str:
    """``json.dumps(value, indent=2, default=str)``, except that a Decimal is written as its
    digits (a number, ``138.710``, not the float ``138.71`` or the string ``"138.710"``):
    simplejson's ``use_decimal``, which writes a Decimal as it is."""
    import simplejson

    text: str = simplejson.dumps(value, indent=2, use_decimal=True, default=str)
    return text


def to_json(analysis: Analysis) -> str:
    """The reports as indented JSON text (see :func:`rearcquest.data.analytics.to_json_doc`).

    Numbers are JSON numbers: ``-7.0`` and ``138.710`` as the BLS file has them, mean and std
    unrounded (``322069808.0``, ``4158441.040908095``).
    """
    return json_text(report_doc(analysis))


def report_frames(analysis: Analysis) -> dict[ReportName, pl.DataFrame]:
    """One typed frame per report, as the Parquet files of ``--output`` hold them.

    BLS values are ``Decimal(18, 3)`` and populations ``Int64`` in every report. The population
    report is one row: ``from_year``, ``to_year`` (Int32), ``years`` and ``missing_years``
    (lists), ``mean`` and ``std`` (``Float64``, unrounded).
    """
    import polars as pl

    frames: dict[ReportName, pl.DataFrame] = {}
    for name in analysis.reports:
        if name == "population":
            (record,) = report_records(analysis, name)
            frames[name] = pl.DataFrame(
                {k: [v] for k, v in record.items()},
                schema={
                    "from_year": pl.Int32,
                    "to_year": pl.Int32,
                    "years": pl.List(pl.Int32),
                    "missing_years": pl.List(pl.Int32),
                    "mean": pl.Float64,
                    "std": pl.Float64,
                },
            )
        else:
            frames[name] = report_frame(analysis, name)
    return frames


def _cell(value: Any) -> str | None:
    """A CSV cell: lists as space-separated years, decimals as their digits, null as empty."""
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def report_csv(analysis: Analysis, name: ReportName) -> str:
    """One report as CSV text with a header line."""
    import polars as pl

    records = report_records(analysis, name)
    columns = list(records[0]) if records else report_frame(analysis, name).columns
    return pl.DataFrame(
        {c: [_cell(r[c]) for r in records] for c in columns},
        schema=dict.fromkeys(columns, pl.String),
    ).write_csv()


def to_csv(analysis: Analysis) -> str:
    """The reports as CSV: one report is plain CSV; several are sections led by ``# name``."""
    if len(analysis.reports) == 1:
        return report_csv(analysis, analysis.reports[0])
    return "\n".join(f"# {name}\n{report_csv(analysis, name)}" for name in analysis.reports)


@dataclass(frozen=True)
class TextTable:
    """A table laid out for people (a report, the releases, the revisions): title, column names,
    cells as text, and notes.

    Attributes:
        title: a heading.
        columns: column names.
        rows: the cells, already formatted.
        numeric: for each column, whether it holds numbers (aligned right).
        notes: sentences to show under the table (missing years, what was summed).
        name: the report it shows (``rq analyze``); None for another table.
    """

    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    numeric: tuple[bool, ...]
    notes: tuple[str, ...] = ()
    name: ReportName | None = None


def _people(number: Decimal | int | None) -> str:
    """A population figure for people: the digits of every format, thousands separated."""
    return "" if number is None else f"{number:,}" if isinstance(number, int) else f"{number:,f}"


def _years_text(years: Sequence[int]) -> str:
    """2013, 2014, 2015, 2017 -> ``2013-2015, 2017``."""
    runs: list[list[int]] = []
    for year in years:
        if runs and year == runs[-1][-1] + 1:
            runs[-1].append(year)
        else:
            runs.append([year])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def tables(analysis: Analysis) -> list[TextTable]:
    """The reports laid out for people, in the order asked."""
    out: list[TextTable] = []
    titled = ("title",) if analysis.titles else ()
    for name in analysis.reports:
        if name == "population":
            stats = analysis.population
            assert stats is not None
            notes = [f"source: {analysis.population_source}"]
            if stats.missing_years:
                notes.insert(
                    0,
                    f"missing from {stats.from_year}-{stats.to_year}: "
                    f"{_years_text(stats.missing_years)} (not in the population data)",
                )
            out.append(
                TextTable(
                    f"{TITLES[name]}, {stats.from_year}-{stats.to_year}",
                    ("statistic", "value"),
                    [
                        ("years", f"{_years_text(stats.years)} ({len(stats.years)})"),
                        ("mean", _people(stats.rounded_mean)),
                        ("std (ddof=1)", _people(stats.rounded_std) or "n/a (one year)"),
                    ],
                    (False, True),
                    tuple(notes),
                    name=name,
                )
            )
        elif name == "best-year":
            frame = report_frame(analysis, name)
            summed = "Q01-Q05 (annual average included)" if analysis.include_annual else "Q01-Q04"
            out.append(
                TextTable(
                    TITLES[name],
                    ("series_id", "year", "value", *titled),
                    [
                        (
                            r["series_id"],
                            str(r["year"]),
                            format(r["value"], "f"),
                            *(r["title"] or "" for _ in titled),
                        )
                        for r in report_records(analysis, name)
                    ],
                    (False, True, True, *(False for _ in titled)),
                    (
                        f"value: the largest yearly sum of {summed}; ties go to the earliest year",
                        f"{frame.height} series; source: {analysis.bls_source}",
                    ),
                    name=name,
                )
            )
        else:
            frame = report_frame(analysis, name)
            join = (
                "every year, population empty where unknown"
                if analysis.all_years
                else ("years with population only")
            )
            out.append(
                TextTable(
                    f"{TITLES[name]}: {analysis.series_id} {analysis.period}",
                    ("series_id", "year", "period", "value", "population", *titled),
                    [
                        (
                            r["series_id"],
                            str(r["year"]),
                            r["period"],
                            format(r["value"], "f"),
                            _people(r["population"]),
                            *(r["title"] or "" for _ in titled),
                        )
                        for r in report_records(analysis, name)
                    ],
                    (False, True, False, True, True, *(False for _ in titled)),
                    (f"{frame.height} rows, {join}",),
                    name=name,
                )
            )
    return out


def _escape_md(cell: str) -> str:
    """A Markdown table cell: controls as visible escapes (:func:`visible`), ``|`` escaped."""
    return visible(cell).replace("|", "\\|")


def _markdown_table(
    columns: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[str]]
) -> list[str]:
    """The lines of a Markdown table: header, alignment row, one line per row."""
    lines = ["| " + " | ".join(_escape_md(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(_escape_md(c) for c in row) + " |" for row in rows]
    return lines


def markdown_section(
    title: str,
    columns: Sequence[str],
    numeric: Sequence[bool],
    rows: Sequence[Sequence[str]],
    notes: Sequence[str] = (),
) -> str:
    """One titled Markdown table with its notes beneath, every text made visible.

    Args:
        title: the heading (``## title``).
        columns: column names.
        numeric: for each column, whether it is aligned right.
        rows: the cells, as text.
        notes: sentences listed under the table.
    """
    lines = [f"## {visible(title)}", "", *_markdown_table(columns, numeric, rows)]
    if notes:
        lines.append("")
        lines += [f"- {visible(note)}" for note in notes]
    return "\n".join(lines)


def tables_markdown(tables: Sequence[TextTable]) -> str:
    """Tables as Markdown: a heading, a table and notes each."""
    parts = [markdown_section(t.title, t.columns, t.numeric, t.rows, t.notes) for t in tables]
    return "\n\n".join(parts) + "\n"


def to_markdown(analysis: Analysis) -> str:
    """The reports as Markdown: a heading, a table and notes per report."""
    return tables_markdown(tables(analysis))


def to_text(analysis: Analysis, *, max_rows: int | None = None) -> str:
    """The reports as plain aligned text (for logs and the demo).

    Args:
        analysis: the reports.
        max_rows: show at most this many rows per report, then how many were left out.
    """
    parts: list[str] = []
    for table in tables(analysis):
        shown = table.rows if max_rows is None else table.rows[:max_rows]
        rows = [tuple(visible(c) for c in row) for row in shown]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(table.columns)]

        def line(cells: Sequence[str], widths: list[int] = widths, table: TextTable = table) -> str:
            return "  ".join(
                c.rjust(w) if n else c.ljust(w)
                for c, w, n in zip(cells, widths, table.numeric, strict=True)
            ).rstrip()

        lines = [visible(table.title), line(table.columns), line(["-" * w for w in widths])]
        lines += [line(row) for row in rows]
        if len(rows) < len(table.rows):
            lines.append(f"... {len(table.rows) - len(rows)} more rows")
        lines += [visible(note) for note in table.notes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# -- files -----------------------------------------------------------------------------------------


def require_matplotlib() -> None:
    """Check that the charts can be drawn, before the work whose charts they are.

    Raises:
        ConfigError: matplotlib is not installed (:data:`CHARTS_HINT`).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(CHARTS_HINT) from exc


def write_outputs(analysis: Analysis, directory: str | Path) -> list[Path]:
    """Write each report as CSV and Parquet, and the PNG charts, into ``directory``.

    Files: ``<report>.csv`` and ``<report>.parquet`` per report; ``population.png`` (the
    population by year, the report's window shaded) with the population report and
    ``series-population.png`` (the series against population) with that report.

    Returns:
        The files written.

    Raises:
        ConfigError: matplotlib is not installed (checked before anything is written).
        RqError: the directory or a file cannot be written.
    """
    require_matplotlib()
    directory = Path(directory)
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in report_frames(analysis).items():
            csv_path, parquet_path = directory / f"{name}.csv", directory / f"{name}.parquet"
            csv_path.write_text(report_csv(analysis, name), encoding="utf-8")
            frame.write_parquet(parquet_path)
            written += [csv_path, parquet_path]
        written += write_charts(analysis, directory)
    except OSError as exc:
        where = exc.filename or directory
        raise RqError(f"cannot write {where}: {exc.strerror or exc}") from exc
    return written


def write_charts(analysis: Analysis, directory: str | Path) -> list[Path]:
    """Write ``population.png`` and ``series-population.png`` for the reports that have them.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    directory = Path(directory)
    written = []
    if "population" in analysis.reports:
        written.append(_write_png(directory / "population.png", population_chart(analysis)))
    if "series-population" in analysis.reports:
        written.append(
            _write_png(directory / "series-population.png", series_population_chart(analysis))
        )
    return written


def _write_png(path: Path, png: bytes) -> Path:
    path.write_bytes(png)
    return path


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def population_chart(analysis: Analysis) -> bytes:
    """A PNG: the population by year, the report's years shaded, its mean dashed.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    frame, stats = analysis.population_by_year, analysis.population
    assert frame is not None
    assert stats is not None
    # No pyplot: a bare Figure keeps no global state and needs no display.
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    years, people = frame["year"].to_list(), frame["population"].to_list()
    axes.plot(years, [p / 1e6 for p in people], marker="o", color="tab:blue", label="population")
    axes.axvspan(stats.from_year - 0.5, stats.to_year + 0.5, color="tab:orange", alpha=0.15)
    axes.axhline(
        stats.mean / 1e6,
        color="tab:orange",
        linestyle="--",
        label=f"mean {stats.from_year}-{stats.to_year}: {stats.mean / 1e6:,.1f} M",
    )
    axes.set_title("US population")
    axes.set_xlabel("year")
    axes.set_ylabel("population (millions)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return _png(figure)


def series_population_chart(analysis: Analysis) -> bytes:
    """A PNG: the series' values as bars, the population as a line on a second axis.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    frame = analysis.series_population
    assert frame is not None
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    years = frame["year"].to_list()
    values = [float(v) for v in frame["value"].to_list()]
    axes.bar(years, values, color="tab:blue", alpha=0.7, label=analysis.series_id)
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xlabel("year")
    axes.set_ylabel(f"{analysis.series_id} {analysis.period}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    right = axes.twinx()
    known = [(y, p / 1e6) for y, p in zip(years, frame["population"].to_list(), strict=True) if p]
    if known:
        right.plot(*zip(*known, strict=True), color="tab:orange", marker="o", label="population")
    right.set_ylabel("US population (millions)")
    axes.set_title(f"{analysis.series_id} {analysis.period} against US population")
    handles = axes.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="upper left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


# -- any query's answer (rq sql) -------------------------------------------------------------------


def frame_cells(frame: pl.DataFrame) -> tuple[list[str], list[bool], list[list[str]]]:
    """Any frame laid out for people: column names, which are numeric, cells as CSV writes them.

    Args:
        frame: e.g. the answer of :func:`rearcquest.data.tables.run_sql`.

    Returns:
        ``(columns, numeric, rows)``; a null is an empty cell.
    """
    import polars as pl

    numeric = [dtype.is_numeric() or isinstance(dtype, pl.Decimal) for dtype in frame.dtypes]
    rows = [[_cell(value) or "" for value in row] for row in frame.rows()]
    return list(frame.columns), numeric, rows


def frame_csv(frame: pl.DataFrame) -> str:
    """Any frame as CSV text with a header line; decimals as their digits, null empty."""
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)
    writer.writerows([_cell(value) for value in row] for row in frame.rows())
    return out.getvalue()


def frame_json(frame: pl.DataFrame) -> str:
    """Any frame as a JSON list of objects; decimals as JSON numbers with their digits."""
    return json_text([_plain(row) for row in frame.rows(named=True)]) + "\n"


def frame_markdown(frame: pl.DataFrame) -> str:
    """Any frame as a Markdown table."""
    return "\n".join(_markdown_table(*frame_cells(frame))) + "\n"


def _plain(value: Any) -> Any:
    """A value JSON can hold: dates and other objects as their text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | Decimal):
        return value
    return str(value)


# -- command summaries: the text the commands print on stdout (``--format text``) --


def sync_summary(run: SurveyRun) -> str:
    """The text summary of one sync: the plan on a dry run or a guarded delete, else the outcome.

    Args:
        run: what the survey's job (:func:`rearcquest.jobs.job.run_survey`) did (or planned).

    Returns:
        Lines of text, without a final newline.
    """
    result = run.sync
    where = f"s3://{result.bucket}/{result.prefix}"
    if result.dry_run or result.delete_guard:
        if result.dry_run:
            lines = [
                f"Would sync {result.source_url} -> {where} (dry run, nothing changed): "
                f"would add {len(result.added)}, update {len(result.updated)}, delete "
                f"{len(result.deleted)}, leave {len(result.unchanged)} unchanged"
            ]
        else:
            lines = [
                f"Plan for {result.source_url} -> {where} (stopped by the delete guard, "
                "nothing changed):"
            ]
        lines += [
            f"  {action.kind:<9} {action.name:<28} {action.reason}"
            for action in result.plan.actions
        ]
        if not result.plan.actions:
            lines.append("  (the source lists no selected file)")
        if result.delete_guard:
            lines.append(f"  delete guard: {result.delete_guard}")
        return "\n".join(lines)
    lines = [f"Synced {result.source_url} -> {where}"]
    for label, names in (
        ("added", result.added),
        ("updated", result.updated),
        ("deleted", result.deleted),
    ):
        if names:
            lines.append(f"  {label:<10}{len(names):>4}  {', '.join(names)}")
    restamped = (
        f"  ({len(result.restamped)} re-dated by the source with identical bytes: not uploaded)"
        if result.restamped
        else ""
    )
    lines.append(f"  {'unchanged':<10}{len(result.unchanged):>4}{restamped}")
    lines += [f"  {'failed':<10}      {error.name}: {error.message}" for error in result.errors]
    lines += [f"  {'skipped':<10}      {s.name}: {s.message}" for s in result.skipped]
    if result.deletes_skipped:
        lines.append(f"  deletes skipped: {result.deletes_skipped}")
    if run.index_written:
        lines.append(f"  index page written: s3://{result.bucket}/{run.index_written}")
    lines += _sync_tables_lines(run)
    lines.append(
        f"  downloaded {human_size(result.bytes_downloaded)}, "
        f"uploaded {human_size(result.bytes_uploaded)}, "
        f"{result.requests} request(s) to the source"
    )
    return "\n".join(lines)


def _sync_tables_lines(run: SurveyRun) -> list[str]:
    """What the tables build after a sync did, in one line (``rq sync-bls --tables``)."""
    doc = run.tables
    if doc is None:
        return []
    where = f"s3://{run.sync.bucket}/{doc.get('tables_prefix', '')}"
    if run.tables_error:
        return [f"  tables    {where}: FAILED: {run.tables_error}"]
    if doc.get("skipped"):
        return [f"  tables    {where}: not rebuilt ({doc['skipped']})"]
    counts = ", ".join(f"{doc.get(s, 0)} {s}" for s in ("built", "unchanged", "removed"))
    return [f"  tables    {where}: {counts}"]


def surveys_summary(result: MultiSyncResult) -> str:
    """The text summary of a sync of several surveys: one line each, then the totals.

    Args:
        result: what :func:`rearcquest.jobs.job.run_surveys` did.

    Returns:
        Lines of text, without a final newline.
    """
    synced = "Would sync" if result.dry_run else "Synced"
    lines = [
        f"{synced} {len(result.surveys)} survey(s) of {result.root_url} -> s3://{result.bucket}/"
        + (" (dry run, nothing changed)" if result.dry_run else "")
    ]
    for name, outcome in result.surveys.items():
        where = f"{outcome.prefix:<12}"
        if outcome.result is None:
            lines.append(f"  {name:<6} {where} FAILED (exit {outcome.exit_code}): {outcome.error}")
            continue
        r = outcome.result.sync
        status = f"FAILED (exit {outcome.exit_code}): {outcome.error}" if outcome.error else "ok"
        lines.append(
            f"  {name:<6} {where} +{len(r.added)} ~{len(r.updated)} -{len(r.deleted)} "
            f"={len(r.unchanged)}  {human_size(r.bytes_downloaded)} down, "
            f"{human_size(r.bytes_uploaded)} up  {status}"
        )
        lines += [f"  {name:<6}{line[1:]}" for line in _sync_tables_lines(outcome.result)]
    lines += [f"  {name:<6} skipped: {why}" for name, why in result.skipped.items()]
    t = result.totals()
    if result.dry_run:
        lines.append(
            f"  total: would add {t['added']}, update {t['updated']}, delete {t['deleted']}, "
            f"leave {t['unchanged']} unchanged; {t['errors']} error(s), "
            f"{result.requests} request(s) to the source"
        )
        return "\n".join(lines)
    lines.append(
        f"  total: {t['added']} added, {t['updated']} updated, {t['deleted']} deleted, "
        f"{t['unchanged']} unchanged, {t['errors']} error(s); downloaded "
        f"{human_size(t['bytes_downloaded'])}, uploaded {human_size(t['bytes_uploaded'])}, "
        f"{result.requests} request(s) to the source"
    )
    return "\n".join(lines)


def inventory_summary(infos: Sequence[SurveyInfo], *, with_bucket: bool) -> str:
    """The table of ``rq surveys``: files, size and latest date of each survey.

    Args:
        infos: the surveys, as :func:`rearcquest.mirror.surveys.survey_inventory` lists them.
        with_bucket: add the mirrored file count and the last sync of each survey.

    Returns:
        Lines of text, without a final newline; failed listings show as ``-``.
    """
    header = f"{'survey':<8}{'files':>7}{'size':>11}  {'latest':<17}"
    if with_bucket:
        header += f"  {'mirrored':>8}  synced"
    lines = [header]
    for i in infos:
        if i.error is not None:
            line = f"{i.name:<8}{'-':>7}{'-':>11}  {'listing failed':<17}"
        else:
            line = f"{i.name:<8}{i.files:>7}{human_size(i.bytes or 0):>11}  {i.latest or '-':<17}"
        if with_bucket:
            line += f"  {i.mirrored if i.mirrored is not None else 'no':>8}  {i.synced or '-'}"
        lines.append(line)
    lines += [f"{i.name}: never mirrored: {i.skipped}" for i in infos if i.skipped]
    return "\n".join(lines)


def population_summary(result: FetchResult) -> str:
    """The text summary of ``rq fetch-population``: what was written, from where, its hash.

    Args:
        result: what :func:`rearcquest.mirror.population.fetch_population` did.

    Returns:
        Lines of text, without a final newline.
    """
    first, last = result.years
    what = f"{len(result.data.rows)} years, {first}-{last} ({result.data.shape})"
    verb = "Wrote" if result.written else "Unchanged"
    return "\n".join(
        [
            f"{verb} s3://{result.bucket}/{result.key}: {what}; {result.reason}",
            f"  from {result.url}",
            f"  canonical sha256 {result.data.canonical_sha256}",
        ]
    )


def tables_summary(result: TablesResult) -> str:
    """The text summary of ``rq tables``: one line per table built, then the warnings.

    Args:
        result: what :func:`rearcquest.data.tables.build_tables` did.

    Returns:
        Lines of text, without a final newline.
    """
    lines = []
    for build in result.builds:
        rows = "" if build.rows is None else f" ({build.rows} rows)"
        why = f": {build.error}" if build.error else ""
        lines.append(f"{build.status:<9} s3://{result.bucket}/{build.key}{rows}{why}")
    lines += [f"warning: {warning}" for warning in result.warnings]
    return "\n".join(lines)


def tables_run_summary(run: TablesRun) -> str:
    """The text summary of ``rq tables``: :func:`tables_summary`, then what Glue got.

    Args:
        run: what :func:`rearcquest.jobs.pipeline.build_tables_registered` did.

    Returns:
        Lines of text, without a final newline.
    """
    lines = [tables_summary(run.result)] if run.result.builds or run.result.warnings else []
    if run.glue_error is not None:
        lines.append(f"Glue: not registered: {run.glue_error}")
    elif run.glue is not None:
        created = run.glue["created"]
        what = f"created {', '.join(created)}" if created else "every table was already there"
        lines.append(f"Glue database {run.glue['database']}: {what}")
        lines += [f"Glue: no tables for {s}: {why}" for s, why in run.glue["skipped"].items()]
    return "\n".join(lines)


def static_index_summary(written: StaticIndex) -> str:
    """The text summary of a static index page: where it is, what it lists, how to share it.

    Args:
        written: what :func:`rearcquest.index.write_static_index` wrote.

    Returns:
        Lines of text, without a final newline.
    """
    lines = [
        f"Wrote {written.url}: {written.objects} objects under "
        f"s3://{written.bucket}/{written.prefix} ({human_size(written.total_bytes)})"
    ]
    if written.share_url:
        lines.append(f"Share (valid until {written.expires}): {written.share_url}")
    return "\n".join(lines)


def pipeline_doc(result: PipelineResult) -> dict[str, Any]:
    """The JSON document of ``rq run``: :meth:`PipelineResult.to_dict`, its reports with the
    digits of ``rq analyze --format json`` (write it with :func:`json_text`)."""
    doc = result.to_dict()
    if result.reports is not None and result.analysis is not None:
        doc["reports"]["summary"] = report_doc(result.analysis)
    return doc


def pipeline_summary(result: PipelineResult) -> str:
    """The text summary of ``rq run``: each step ok or failed, then the reports if any.

    Args:
        result: what :func:`rearcquest.jobs.pipeline.run_pipeline` did.

    Returns:
        Lines of text, without a final newline.
    """
    lines = [
        f"{name}: {'failed: ' + step.error if step.error else 'ok'}"
        for name, step in result.steps()
    ]
    if result.analysis is not None:
        lines.append("\n" + to_text(result.analysis).rstrip())
    return "\n".join(lines)


def report_text(analysis: Analysis, fmt: str) -> str:
    """The reports in a text format of ``rq analyze``: ``json``, ``csv`` or ``markdown``."""
    if fmt == "json":
        return to_json(analysis) + "\n"
    return to_csv(analysis) if fmt == "csv" else to_markdown(analysis)


def frame_text(frame: pl.DataFrame, fmt: str) -> str:
    """Any frame in a text format of ``rq sql``: ``json``, ``csv`` or ``markdown``."""
    if fmt == "json":
        return frame_json(frame)
    return frame_csv(frame) if fmt == "csv" else frame_markdown(frame)


def inventory_errors(infos: Sequence[SurveyInfo]) -> str:
    """One line per survey whose listing failed (``name: error``), for stderr."""
    return "".join(f"{i.name}: {i.error}\n" for i in infos if i.error is not None)


def serving_banner(location: str, url: str, token: str | None, *, show_token: bool) -> str:
    """What ``rq serve-index`` says once it listens: where, and how to get in with a token.

    Args:
        location: what is served (``s3://bucket/prefix``).
        url: where it listens.
        token: the token every request needs, if any.
        show_token: print a link holding the token (one generated at this start is nowhere else).
    """
    needs = " (token required)" if token else ""
    lines = [f"Serving {location} at {url}{needs}; press Ctrl-C to stop"]
    if token and show_token:
        lines.append(f"Open {url}?token={token}")
    return "\n".join(lines)


def demo_step(title: str, payload: Any) -> str:
    """One step of ``rq demo``: its title, then its result for people (a summary, the reports,
    text, or JSON)."""
    head = f"\n== {title}"
    if payload is None:
        return head
    if hasattr(payload, "sync"):
        body = sync_summary(payload)
    elif hasattr(payload, "written"):
        body = population_summary(payload)
    elif hasattr(payload, "reports"):
        body = to_text(payload, max_rows=10).rstrip()
    elif isinstance(payload, str):
        body = payload
    else:
        body = json.dumps(payload, indent=2, default=str)
    return f"{head}\n{body}"
