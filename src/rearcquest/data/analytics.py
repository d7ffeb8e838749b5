"""The reports: BLS productivity series and US population, with Polars.

Loaders turn the stored files into typed frames; each report is a function from frames to a frame.
Everything stays lazy until :func:`collect`, so a BLS file of any size streams through in bounded
memory::

    bls = scan_bls("pr.data.0.Current")
    population = read_population("population.json")
    best, rows = collect(best_year(bls), series_population(bls, population))

:func:`analyze` computes what a :class:`ReportInputs` asks for: it finds the inputs (local paths or
``s3://`` URLs, read through :class:`~rearcquest.aws.storage.ObjectStore`), runs the chosen reports and
returns them as an :class:`Analysis` (``rq analyze`` runs it through
:func:`rearcquest.data.vintages.analyze_at`, which first resolves where the BLS rows come from). The
definitions (ddof, quarters and annual rows, ties, the join) are in ``docs/analyze.md``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from rearcquest._process import scratch_dir
from rearcquest.config import (
    BLS_FILE,
    DEFAULT_FROM_YEAR,
    DEFAULT_PERIOD,
    DEFAULT_SERIES,
    DEFAULT_TO_YEAR,
    Settings,
)
from rearcquest.errors import QUOTE_LIMIT, ConfigError, DataError, clipped, quoted
from rearcquest.layout import path_inside
from rearcquest.sources.datausa import parse_population

if TYPE_CHECKING:
    import polars as pl

    from rearcquest.aws.storage import S3Access
    from rearcquest.sources.datausa import PopulationData

log = logging.getLogger(__name__)

ReportName = Literal["population", "best-year", "series-population"]
REPORTS: Final[tuple[ReportName, ...]] = ("population", "best-year", "series-population")

QUARTERS: Final = ("Q01", "Q02", "Q03", "Q04")
ANNUAL: Final = "Q05"
# BLS publishes at most three decimals (pr: 0.1 and 0.001); values are exact decimals of this
# scale, so sums never pick up binary-float noise such as 28.500000000000004.
VALUE_SCALE = 3
# The reports show people the mean population with 1 decimal and its standard deviation with 2
# (table, Markdown); the data formats (JSON, CSV, Parquet) carry them unrounded.
MEAN_DECIMALS: Final = 1
STD_DECIMALS: Final = 2
REQUIRED_COLUMNS: Final = ("series_id", "year", "period", "value")
OPTIONAL_COLUMNS: Final = ("footnote_codes",)
# The national population answer is a few kB; refuse anything far larger before reading it.
MAX_POPULATION_BYTES = 1024 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_VALUE_PATTERN = rf"^-?[0-9]+(\.[0-9]{{1,{VALUE_SCALE}}})?$"
# Decimal(18, 3) holds 15 digits before the point: a longer value is an error, not a null.
_TOO_LONG_PATTERN = r"^-?[0-9]{16,}"
# What BLS prints where it has no number: "-", or a code in parentheses such as "(NA)" or "(D)".
_NON_NUMBER_PATTERN = r"^(-|\([A-Za-z]{1,4}\))$"
_LINE = "__line"
_BAD = "__bad"


def value_dtype() -> pl.Decimal:
    """The type of BLS values: an exact decimal with :data:`VALUE_SCALE` decimals."""
    import polars as pl

    return pl.Decimal(18, VALUE_SCALE)


def decimals_of(text: pl.Expr) -> pl.Expr:
    """How many digits follow the decimal point in a value's text: ``-7.0`` 1, ``2`` 0."""
    import polars as pl

    point = text.str.find(".", literal=True)
    return (text.str.len_bytes() - point - 1).fill_null(0).cast(pl.Int8)


# -- loading -------------------------------------------------------------------------------------


def _read_header(path: Path, source: str) -> list[str]:
    """Return the stripped column names of a BLS file, checking the required ones are there."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(_MAX_HEADER_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: no such file") from exc
    except OSError as exc:
        raise DataError(f"{source}: cannot be read: {exc.strerror or exc}") from exc
    return bls_header(first, source=source)


def bls_header(first: bytes, *, source: str) -> list[str]:
    """The stripped column names of a BLS data file's first line, checked.

    Args:
        first: the file's first line (at most its first 64 KiB), with or without its line end.
        source: how errors name the file.

    Returns:
        The names, in order.

    Raises:
        DataError: no header, lines ending in a bare CR, not UTF-8, a required column missing or
            a column named twice (line 1).
    """
    if b"\r" in first.rstrip(b"\r\n"):
        raise DataError(
            f"{source} line 1: its lines end in a bare carriage return (old Mac text); BLS files "
            "end them in LF or CRLF"
        )
    if not first.strip():
        expected = " ".join(REQUIRED_COLUMNS)
        raise DataError(f"{source} line 1: no header; expected the columns {expected}")
    try:
        names = [name.strip() for name in first.decode("utf-8").rstrip("\r\n").split("\t")]
    except UnicodeDecodeError as exc:
        raise DataError(f"{source} line 1: the header is not UTF-8 text") from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        found = ", ".join(quoted(n) for n in names[:20]) + (
            f" and {len(names) - 20} more" if len(names) > 20 else ""
        )
        raise DataError(
            f"{source} line 1: missing column {', '.join(missing)} (the header has {found}); "
            "is this a tab-separated BLS time-series data file?"
        )
    duplicated = sorted({n for n in names if n and names.count(n) > 1})
    if duplicated:
        raise DataError(
            f"{source} line 1: column {', '.join(clipped(n, QUOTE_LIMIT) for n in duplicated[:5])} appears twice"
        )
    return names


def _empty(name: str) -> pl.Expr:
    import polars as pl

    return pl.col(name).fill_null("") == ""


def _problems(non_numbers: bool = False) -> list[tuple[str, pl.Expr]]:
    """What can be wrong with a row (stripped cells): a message template and when it applies.

    Args:
        non_numbers: what BLS prints where it has no number (``-``, ``(NA)``) is allowed.
    """
    import polars as pl

    number = pl.col("value").str.contains(_VALUE_PATTERN)
    if non_numbers:
        number = number | pl.col("value").str.contains(_NON_NUMBER_PATTERN)
    year = pl.col("year").cast(pl.Int32, strict=False)
    return [
        ("no series_id", _empty("series_id")),
        ("no year", _empty("year")),
        ("year {year} is not a four-digit year", ~year.is_between(1000, 9999).fill_null(False)),
        ("no period", _empty("period")),
        ("no value", _empty("value")),
        (
            f"value {{value}} is not a decimal number with at most {VALUE_SCALE} decimals",
            ~number.fill_null(False),
        ),
        (
            "value {value} does not fit DECIMAL(18,3) (at most 15 digits before the point)",
            pl.col("value").str.contains(_TOO_LONG_PATTERN).fill_null(False),
        ),
    ]


def _describe(row: dict[str, Any], flags: dict[str, bool]) -> str:
    for template, _ in _problems():  # the templates do not depend on non_numbers
        if flags[template]:
            # A cell is quoted by its start: one huge cell must not make a huge message.
            return template.format(**{name: quoted(value) for name, value in row.items()})
    return "malformed row"  # pragma: no cover - a flagged row matches one of the problems


def _flagged(
    frame: pl.DataFrame | pl.LazyFrame, names: list[str], non_numbers: bool = False
) -> Any:
    """Keep the malformed rows (blank lines are not), with one flag column per problem."""
    import polars as pl

    problems = _problems(non_numbers)
    blank = pl.all_horizontal(_empty(n) for n in names)
    return frame.with_columns(expr.alias(template) for template, expr in problems).filter(
        pl.any_horizontal(pl.col(t) for t, _ in problems) & ~blank
    )


class MalformedRowError(DataError):
    """A BLS row is malformed; :func:`collect` adds its line number to the message.

    ``path`` is the file, or a piece of it in memory (its header line, then whole lines, the
    first of them line ``first_line`` of the file).
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | bytes,
        source: str,
        names: list[str],
        non_numbers: bool = False,
        first_line: int = 2,
    ) -> None:
        super().__init__(message)
        self.path, self.source, self.names = path, source, names
        self.non_numbers = non_numbers
        self.first_line = first_line


def _checker(
    path: Path | bytes, source: str, names: list[str], non_numbers: bool, first_line: int
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The per-batch check: pass the batch through, or raise on its first malformed row.

    Polars computes the flag beforehand, in parallel; this only looks at the flag column, so the
    Python part of a batch costs next to nothing. Blank lines are flagged too, and dropped here.
    """
    import polars as pl

    def check(batch: pl.DataFrame) -> pl.DataFrame:
        if not batch[_BAD].any():
            return batch
        bad = _flagged(batch, names, non_numbers)
        if bad.height:
            row = bad.row(0, named=True)
            raise MalformedRowError(
                f"{source}: malformed row: {_describe(row, row)}",
                path=path,
                source=source,
                names=names,
                non_numbers=non_numbers,
                first_line=first_line,
            )
        return batch.filter(~pl.col(_BAD))

    return check


def _raw(path: Path | bytes, names: list[str]) -> pl.LazyFrame:
    """The file's (or the piece's) cells as stripped strings, named by the stripped header."""
    import io

    import polars as pl

    return pl.scan_csv(
        io.BytesIO(path) if isinstance(path, bytes) else path,
        # A data file's name is a name, never a pattern (``pr.data.1.A[1]``).
        glob=False,
        separator="\t",
        has_header=True,
        infer_schema=False,
        # BLS never quotes: a quote is data, not the start of a quoted field.
        quote_char=None,
        with_column_names=lambda cols: [c.strip() for c in cols],
    ).select(pl.col(n).str.strip_chars() for n in names)


def scan_bls(
    path: str | Path,
    *,
    source: str | None = None,
    validate: bool = True,
    non_numbers: bool = False,
) -> pl.LazyFrame:
    """Lazily read a BLS time-series data file (``pr.data.0.Current`` and its siblings).

    The file is tab-separated with a header; names and cells are padded with spaces, lines end in
    CRLF or LF. Cells are trimmed and typed: ``series_id`` and ``period`` strings, ``year``
    ``Int32``, ``value`` an exact ``Decimal(18, 3)``, ``decimals`` (``Int8``) the number of
    decimals the file prints for that value (``-7.0`` has 1, ``138.710`` has 3: what
    :func:`analyze` keeps so that reports print values as the source does), and
    ``footnote_codes`` (string or null) when the file has it; other columns are dropped. Blank
    lines are skipped. Every row is checked as it streams by: a malformed one stops the query
    with :class:`MalformedRowError`, which :func:`collect` turns into a :class:`DataError` naming
    the file and the line.

    Args:
        path: the local file.
        source: how errors name the file (e.g. its ``s3://`` URL); default the path.
        validate: stop on a malformed row. ``False`` leaves malformed rows out instead: for a
            second report on a file that a validated query of the same :func:`collect` checks.
        non_numbers: accept what BLS prints where it has no number (``-``, ``(NA)``, ``(D)``):
            its ``value`` is null, and a ``value_text`` column (after ``value``) keeps every
            value's text as the file prints it. By default such a row is malformed.

    Returns:
        A LazyFrame; collect it with :func:`collect`.

    Raises:
        ConfigError: the file does not exist.
        DataError: the header lacks a required column (line 1).
    """
    path = Path(path)
    source = source or str(path)
    return _scan(path, _read_header(path, source), source, validate, non_numbers, 2)


def scan_bls_piece(
    text: bytes, names: list[str], *, source: str, first_line: int, non_numbers: bool = False
) -> pl.LazyFrame:
    """:func:`scan_bls` of a piece of a data file held in memory: a file streams through in
    pieces, none of it written to disk (see ``rq tables``).

    Args:
        text: the file's header line, then whole lines of it.
        names: the header's names (:func:`bls_header`).
        source: how errors name the file.
        first_line: the line number, in the file, of the first line after the header in
            ``text``; errors name lines of the file.
        non_numbers: as :func:`scan_bls`.

    Returns:
        A LazyFrame; collect it with :func:`collect_piece`.
    """
    return _scan(text, names, source, True, non_numbers, first_line)


def collect_piece(
    frame: pl.LazyFrame, *, text: bytes, first_line: int, source: str
) -> pl.DataFrame:
    """Collect a query over :func:`scan_bls_piece`; errors are :func:`collect`'s, naming the
    line of the file.

    Raises:
        DataError: the piece holds a malformed row (the message names the file and the line)
            or cannot be read as tab-separated text.
    """
    with _translated(text, source, first_line):
        return frame.collect(engine="streaming")


def _scan(
    path: Path | bytes,
    names: list[str],
    source: str,
    validate: bool,
    non_numbers: bool,
    first_line: int,
) -> pl.LazyFrame:
    """:func:`scan_bls` of a file or a piece of one, whose header has ``names``."""
    import polars as pl

    optional = [n for n in OPTIONAL_COLUMNS if n in names]
    typed = [
        "series_id",
        pl.col("year").cast(pl.Int32, strict=False),
        "period",
        pl.col("value").cast(value_dtype(), strict=False),
        *([pl.col("value").alias("value_text")] if non_numbers else []),
        decimals_of(pl.col("value")).alias("decimals"),
        *(pl.when(~_empty(n)).then(pl.col(n)).alias(n) for n in optional),
    ]
    # Both variants start with the same plan, so when they are collected together (see
    # collect) Polars reads and flags the file once and feeds both.
    flagged = _raw(path, names).with_columns(
        pl.any_horizontal(expr for _, expr in _problems(non_numbers)).alias(_BAD)
    )
    if not validate:
        return flagged.filter(~pl.col(_BAD)).select(typed)
    return flagged.map_batches(
        _checker(path, source, names, non_numbers, first_line),
        streamable=True,
        # The check must see every row: no filter may move below it, no column be dropped.
        predicate_pushdown=False,
        projection_pushdown=False,
    ).select(typed)


def _locate(error: MalformedRowError) -> DataError:
    """Find the line of the first malformed row: a second pass, only after a failure."""

    raw = _raw(error.path, error.names).with_row_index(_LINE, offset=error.first_line)
    found = _flagged(raw, error.names, error.non_numbers).head(1).collect(engine="streaming")
    if not found.height:  # pragma: no cover - the file changed under us
        return DataError(str(error))
    row = found.row(0, named=True)
    return DataError(f"{error.source} line {row[_LINE]}: {_describe(row, row)}")


def _find_bad_line(path: Path | bytes, first_line: int = 2) -> tuple[int, str] | None:
    """Find the first line that cannot be split into the header's fields: the slow path.

    Polars reports a line with too many fields, or bytes that are not UTF-8, without saying
    where; this reads the file (or the piece, whose first line after the header is line
    ``first_line``) line by line, and only after such a failure.
    """
    import io

    with io.BytesIO(path) if isinstance(path, bytes) else path.open("rb") as fh:
        width = fh.readline(_MAX_HEADER_BYTES).count(b"\t") + 1
        for number, raw in enumerate(fh, start=first_line):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                return number, "not UTF-8 text"
            fields = line.rstrip("\r\n").count("\t") + 1
            if fields > width:
                return number, f"{fields} fields, the header has {width}"
    return None


def collect(
    *frames: pl.LazyFrame, bls: str | Path | None = None, source: str | None = None
) -> list[pl.DataFrame]:
    """Collect lazy reports together, with the streaming engine.

    Frames built on :func:`scan_bls` of the same file share one pass over it: the file is read,
    trimmed and checked once and streamed into every report, so memory stays bounded by the
    reports rather than by the file. (A frame that stops early, such as ``head``, makes Polars
    buffer the stream for the others: collect it on its own.)

    Args:
        frames: the reports to compute.
        bls: the local BLS file the frames read: when Polars cannot even split a line into fields
            (too many fields, not UTF-8) the file is searched for it, so the error names the line.
        source: how errors name that file; default its path.

    Returns:
        The collected frames, in order.

    Raises:
        DataError: a BLS file holds a malformed row (the message names the file and the line) or
            cannot be read as tab-separated text.
    """
    import polars as pl

    with _translated(bls, source):
        return pl.collect_all(frames, engine="streaming")


def sink_parquet(
    frame: pl.LazyFrame, target: str | Path, *, bls: str | Path, source: str | None = None
) -> None:
    """Stream a query over :func:`scan_bls` into a Parquet file, in bounded memory.

    Errors are those of :func:`collect`, with the same file and line; on an error the target may
    hold a partial file, which the caller discards.

    Args:
        frame: the query.
        target: the local Parquet file to write.
        bls: the local BLS file the query reads.
        source: how errors name that file; default its path.

    Raises:
        DataError: a malformed row (the message names the file and the line).
    """
    with _translated(bls, source):
        frame.sink_parquet(target, engine="streaming")


@contextmanager
def _translated(
    bls: str | Path | bytes | None, source: str | None, first_line: int = 2
) -> Iterator[None]:
    """Turn the failures of a query over a BLS file (or a piece of one, see
    :func:`scan_bls_piece`) into a :class:`DataError` naming the line."""
    import polars as pl

    name = source or (str(bls) if isinstance(bls, (str, Path)) else "the BLS file")
    try:
        yield
    except MalformedRowError as exc:
        raise _locate(exc) from exc
    except pl.exceptions.PolarsError as exc:
        read = bls if isinstance(bls, bytes) or bls is None else Path(bls)
        found = _find_bad_line(read, first_line) if read is not None else None
        if found is not None:
            raise DataError(f"{name} line {found[0]}: {found[1]}") from exc
        text = str(exc).strip()
        reason = clipped(text.splitlines()[0] if text else type(exc).__name__, 200)
        raise DataError(f"{name}: cannot be read as a BLS data file: {reason}") from exc


def population_frame(data: PopulationData, *, source: str = "population") -> pl.DataFrame:
    """Turn a parsed population answer into ``year`` (Int32) and ``population`` (Int64).

    A population counts people: the tesseract API writes it as a float (``316128839.0``), the old
    API as an integer; both become the same integer, so every report prints it as one.

    Args:
        data: the output of :func:`rearcquest.sources.datausa.parse_population`.
        source: how an error names the answer.

    Returns:
        One row per year, ascending.

    Raises:
        DataError: a population is not a whole number.
    """
    import polars as pl

    rows = []
    for year, population in data.rows:
        if population != int(population):
            raise DataError(
                f"{source}: year {year}: population {population!r} is not a whole number"
            )
        rows.append((year, int(population)))
    return pl.DataFrame(rows, schema={"year": pl.Int32, "population": pl.Int64}, orient="row")


def population_from_bytes(body: bytes, *, source: str = "population") -> pl.DataFrame:
    """Parse a stored DataUSA population answer (either API shape) into a frame.

    Raises:
        DataError: it is not a national population answer; the message names ``source``.
    """

    return population_frame(parse_population(body, source=source), source=source)


def read_population(path: str | Path, *, source: str | None = None) -> pl.DataFrame:
    """Read a stored DataUSA population answer (either API shape) from a local file.

    Raises:
        ConfigError: the file does not exist.
        DataError: it is not a national population answer.
    """
    path = Path(path)
    source = source or str(path)
    try:
        body = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: no such file") from exc
    except OSError as exc:
        raise DataError(f"{source}: cannot be read: {exc.strerror or exc}") from exc
    return population_from_bytes(body, source=source)


# -- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationStats:
    """The population report: mean and sample standard deviation over a range of years.

    Attributes:
        from_year: first year asked for.
        to_year: last year asked for, inclusive.
        years: the years of the range that the data has, ascending.
        missing_years: the years of the range that the data lacks.
        mean: mean population over ``years``, unrounded (JSON, CSV and Parquet carry it; the
            table and Markdown show :attr:`rounded_mean`).
        std: sample standard deviation (ddof=1) over ``years``, unrounded; ``None`` for a
            single year.
    """

    from_year: int
    to_year: int
    years: tuple[int, ...]
    missing_years: tuple[int, ...]
    mean: float
    std: float | None

    @property
    def rounded_mean(self) -> Decimal:
        """The mean as the table and Markdown show it: :data:`MEAN_DECIMALS` decimals."""
        return _round(self.mean, MEAN_DECIMALS)

    @property
    def rounded_std(self) -> Decimal | None:
        """The standard deviation as the table and Markdown show it: :data:`STD_DECIMALS`
        decimals."""
        return None if self.std is None else _round(self.std, STD_DECIMALS)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values: mean and std unrounded, as computed."""
        return {
            "from_year": self.from_year,
            "to_year": self.to_year,
            "years": list(self.years),
            "mean": self.mean,
            "std": self.std,
        }


def _round(number: float, decimals: int) -> Decimal:
    # Decimal(float) is the float's exact value, so ties round half to even exactly as
    # f"{number:.{decimals}f}" does.
    return Decimal(number).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


def population_stats(
    population: pl.DataFrame, *, from_year: int = DEFAULT_FROM_YEAR, to_year: int = DEFAULT_TO_YEAR
) -> PopulationStats:
    """Mean and sample standard deviation (ddof=1) of the population, ``from_year..to_year``.

    Args:
        population: ``year``, ``population`` (see :func:`population_frame`).
        from_year: first year, inclusive.
        to_year: last year, inclusive.

    Returns:
        The statistics, with the years present and the years missing from the range.

    Raises:
        ConfigError: ``from_year`` is after ``to_year``.
        DataError: no year of the range is in the data.
    """
    import polars as pl

    if from_year > to_year:
        raise ConfigError(f"--from-year {from_year} is after --to-year {to_year}")
    window = population.filter(pl.col("year").is_between(from_year, to_year)).sort("year")
    years = tuple(int(year) for year in window["year"])
    if not years:
        known = population["year"].to_list()
        have = f"{min(known)}-{max(known)}" if known else "no year"
        raise DataError(
            f"the population data has no year from {from_year} to {to_year} (it has {have})"
        )
    missing = tuple(sorted(set(range(from_year, to_year + 1)) - set(years)))
    # A handful of integers: statistics sums them exactly and rounds once, so the unrounded
    # figures JSON carries are the closest floats to the true mean and deviation.
    people = [int(n) for n in window["population"].drop_nulls()]
    if not people:
        raise DataError(f"the population data has no figure from {from_year} to {to_year}")
    import statistics  # not at start-up: ~2 ms that rq --help does not need

    std = statistics.stdev(people) if len(people) > 1 else None
    return PopulationStats(from_year, to_year, years, missing, statistics.fmean(people), std)


def best_year(
    bls: pl.LazyFrame, *, include_annual: bool = False, decimals: bool = False
) -> pl.LazyFrame:
    """For every series, the year whose quarterly values have the largest sum, with that sum.

    Sums are exact decimals of the same type as the values (``Decimal(18, 3)``); a tie goes to
    the earliest year. A series with no quarterly row (only annual ``Q05`` rows) has no row here
    unless ``include_annual``.

    Args:
        bls: the BLS rows (see :func:`scan_bls`).
        include_annual: add the annual average (``Q05``) to the sums, as the seed's published
            report did.
        decimals: add a ``decimals`` column: the most decimals the file prints for the summed
            values, the digits the sum is printed with (``14.0 + 15.0`` is ``29.0``).

    Returns:
        ``series_id``, ``year``, ``value`` (the sum), [``decimals``], one row per series, sorted
        by ``series_id``.
    """
    import polars as pl

    periods = [*QUARTERS, ANNUAL] if include_annual else list(QUARTERS)
    kept = ["year", "value", *(["decimals"] if decimals else [])]
    return (
        bls.filter(pl.col("period").is_in(periods))
        # One group per series and year: keyed by a categorical (a 4-byte code) rather than the
        # string, the table holds a third less memory when there are millions of them.
        .group_by(pl.col("series_id").cast(pl.Categorical), "year")
        # Polars widens a decimal sum to 38 digits; the reports keep the values' type.
        .agg(
            pl.col("value").sum().cast(value_dtype()),
            *([pl.col("decimals").max()] if decimals else []),
        )
        .group_by("series_id")
        .agg(pl.col(kept).sort_by(["value", "year"], descending=[True, False]).first())
        .with_columns(pl.col("series_id").cast(pl.String))
        .sort("series_id")
    )


def series_population(
    bls: pl.LazyFrame,
    population: pl.DataFrame | pl.LazyFrame,
    *,
    series_id: str = DEFAULT_SERIES,
    period: str = DEFAULT_PERIOD,
    all_years: bool = False,
    decimals: bool = False,
) -> pl.LazyFrame:
    """Every row of one series and period, with the US population of the same year.

    Args:
        bls: the BLS rows (see :func:`scan_bls`).
        population: ``year``, ``population``.
        series_id: the series.
        period: its period (``Q01``..``Q05``).
        all_years: keep the years without population (population null) instead of leaving them
            out (an inner join).
        decimals: keep the ``decimals`` column of :func:`scan_bls` (how many decimals the file
            prints for the value), after ``value``.

    Returns:
        ``series_id``, ``year``, ``period``, ``value``, [``decimals``], ``population``, sorted by
        year.
    """
    import polars as pl

    kept = ["series_id", "year", "period", "value", *(["decimals"] if decimals else [])]
    rows = bls.filter((pl.col("series_id") == series_id) & (pl.col("period") == period)).select(
        kept
    )
    return rows.join(
        population.lazy().select(pl.col("year").cast(pl.Int32), pl.col("population")),
        on="year",
        how="left" if all_years else "inner",
    ).sort("year")


# -- the analyze command ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """The reports ``rq analyze`` computed, with what they were computed from.

    Attributes:
        reports: the reports asked for, in the order of :data:`REPORTS`.
        bls_source: where the BLS rows came from (path or ``s3://`` URL), if read.
        population_source: where the population came from, if read.
        population: the population report.
        population_by_year: the whole population table (``year``, ``population``), for charts.
        best_year: the best-year report.
        series_population: the series-population report.
        series_id: the series of the series-population report.
        period: its period.
        include_annual: whether best-year sums included ``Q05``.
        all_years: whether series-population kept years without population.
        value_decimals: for each series of the reports, how many decimals the file prints its
            values with; the reports print its values, and sums of them, with as many.
        titles: for each series of the reports, its decoded text (sector, measure, ...) when
            the series file was found (:func:`rearcquest.data.vintages.analyze_at`); the reports
            then carry a ``title`` column.
        release: the release stamp the BLS file was read as of (``rq analyze --as-of``).
    """

    reports: tuple[ReportName, ...]
    bls_source: str | None = None
    population_source: str | None = None
    population: PopulationStats | None = None
    population_by_year: pl.DataFrame | None = None
    best_year: pl.DataFrame | None = None
    series_population: pl.DataFrame | None = None
    series_id: str = DEFAULT_SERIES
    period: str = DEFAULT_PERIOD
    include_annual: bool = False
    all_years: bool = False
    value_decimals: Mapping[str, int] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)
    # The release the BLS file was read as of (rq analyze --as-of), None for the current file.
    release: str | None = None


# Where rq analyze reads the BLS rows: the tables when current, else the text (auto).
AnalyzeSource = Literal["auto", "tables", "files"]
ANALYZE_SOURCES: Final[tuple[AnalyzeSource, ...]] = ("auto", "tables", "files")


@dataclass(frozen=True)
class ReportInputs:
    """What a report run reads and computes: the options of ``rq analyze``.

    :func:`analyze` reads ``bls`` as given; ``source``, ``tables_prefix``, ``root_prefix`` and
    ``as_of`` say where :func:`rearcquest.data.vintages.analyze_at` finds the BLS rows first.

    Attributes:
        reports: any of :data:`REPORTS`.
        bls: the BLS ``pr.data.0.Current``, a path or ``s3://`` URL (needed by best-year and
            series-population); default the mirrored one (see :func:`default_locations`).
        population: the stored DataUSA answer (needed by population and series-population).
        from_year: first year of the population report.
        to_year: last year of the population report, inclusive.
        series_id: series of the series-population report.
        period: period of the series-population report.
        include_annual: add ``Q05`` (annual average) to the best-year sums.
        all_years: keep series-population years without population, with null.
        source: where the current BLS rows are read: ``auto`` (the observations table when it
            is current, else the text file), ``tables`` or ``files``.
        tables_prefix: where the tables are, in the bucket of the BLS file; default
            ``<root_prefix>tables/``.
        root_prefix: the prefix the survey mirrors are under (``rq sync-bls --root-prefix``):
            the default BLS file is then ``<root_prefix>pr/pr.data.0.Current``.
        as_of: read the BLS file as it was in this release (a date ``YYYY-MM-DD``, a release
            stamp, ``previous`` or ``latest``); None for the current file.
    """

    reports: Collection[str] = REPORTS
    bls: str | Path | None = None
    population: str | Path | None = None
    from_year: int = DEFAULT_FROM_YEAR
    to_year: int = DEFAULT_TO_YEAR
    series_id: str = DEFAULT_SERIES
    period: str = DEFAULT_PERIOD
    include_annual: bool = False
    all_years: bool = False
    source: AnalyzeSource = "auto"
    tables_prefix: str | None = None
    root_prefix: str = ""
    as_of: str | None = None

    @property
    def need_bls(self) -> bool:
        """Whether a chosen report reads the BLS rows."""
        return "best-year" in self.reports or "series-population" in self.reports


def default_locations(settings: Settings | None = None) -> tuple[str | None, str | None]:
    """The default inputs: where ``rq sync-bls`` and ``rq fetch-population`` store them.

    Args:
        settings: the buckets, prefix and key (the entry points read them from ``RQ_*``);
            default :class:`~rearcquest.config.Settings`' own, which name no bucket.

    Returns:
        ``s3://<bls_bucket>/<prefix>pr.data.0.Current`` and
        ``s3://<population_bucket>/<key>``, each ``None`` when its bucket is not set.
    """
    settings = settings or Settings()
    bls = population = None
    if settings.bls_bucket:
        bls = f"s3://{settings.bls_bucket}/{settings.resolved_bls_prefix}{BLS_FILE}"
    if settings.population_bucket:
        population = f"s3://{settings.population_bucket}/{settings.population_key}"
    return bls, population


def _split_s3(url: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> ``(bucket, key)``; ``None`` for a local path."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigError(f"{url!r} is not an s3://bucket/key URL of one object")
    return bucket, key


def _load_population(location: str, s3: S3Access) -> pl.DataFrame:
    split = _split_s3(location)
    if split is None:
        return read_population(location)
    bucket, key = split
    body = s3.store(bucket).get_bytes(key, max_bytes=MAX_POPULATION_BYTES)
    return population_from_bytes(body, source=location)


def _local_bls(
    location: str,
    s3: S3Access,
    workdir: Path,
    version_id: str | None = None,
    on_chunk: Callable[[bytes], object] | None = None,
) -> Path:
    """Return a local copy of the BLS file: the path itself, or the S3 object (at
    ``version_id``) downloaded, each chunk shown to ``on_chunk`` on its way."""
    split = _split_s3(location)
    if split is None:
        if version_id is not None:
            raise ConfigError(f"{location} is a local file; only an S3 object has versions")
        return Path(location)
    bucket, key = split
    target = path_inside(workdir, Path(key).name)
    with target.open("wb") as fh:
        size = s3.store(bucket).download_to(key, fh, version_id=version_id, on_chunk=on_chunk)
    log.info("downloaded %s (%d bytes)", location, size)
    return target


def check_release_bytes(
    got: str, sha256: str, *, source: str, version_id: str | None, release: str | None
) -> None:
    """Refuse a file read for a release whose bytes do not hash to the sha256 its log recorded.

    Args:
        got: the sha256 of the bytes read (hashed as they were downloaded: one pass).
        sha256: what the release log recorded.
        source: the object it was read from, for the message.
        version_id: the S3 version read (``None``: the current object).
        release: the release stamp.

    Raises:
        DataError: the bytes are not the release's; the message names the object, the
            version and the release.
    """
    if got != sha256:
        raise DataError(
            f"{source} (version {version_id or 'current'}) is not the file of release "
            f"{release}: its sha256 is {got}, the release log records {sha256}"
        )


def _bls_reports(
    path: Path,
    source: str,
    chosen: Collection[ReportName],
    *,
    population: pl.DataFrame | None,
    include_annual: bool,
    series_id: str,
    period: str,
) -> list[pl.LazyFrame]:
    """The lazy BLS reports of ``chosen``, each with the ``decimals`` of its values.

    Collected together they share one pass over the file: the first checks every row; the
    second, on an unvalidated scan of the same plan, need not check them again. Polars caches
    the file's rows below the check and streams them into both, in bounded memory (two reports
    on the checked rows themselves would make Polars buffer them).
    """
    rows = scan_bls(path, source=source)
    frames = []
    if "best-year" in chosen:
        frames.append(best_year(rows, include_annual=include_annual, decimals=True))
        rows = scan_bls(path, source=source, validate=False)
    if "series-population" in chosen:
        assert population is not None
        # Joined with every year first, to tell "no such series" from "no overlap".
        frames.append(
            series_population(
                rows,
                population,
                series_id=series_id,
                period=period,
                all_years=True,
                decimals=True,
            )
        )
    return frames


def _collect_file_reports(
    location: str,
    s3: S3Access,
    chosen: Collection[ReportName],
    *,
    population: pl.DataFrame | None,
    include_annual: bool,
    series_id: str,
    period: str,
    version_id: str | None = None,
    sha256: str | None = None,
    release: str | None = None,
) -> list[pl.DataFrame]:
    """The BLS reports of ``chosen``, read from the text file (downloaded first from S3)."""
    with scratch_dir("analyze") as tmp:
        hashed = hashlib.sha256()
        path = _local_bls(location, s3, Path(tmp), version_id, hashed.update)
        if sha256 is not None:
            if _split_s3(location) is None:  # a local file: read once more to hash it
                with path.open("rb") as fh:
                    hashed = hashlib.file_digest(fh, "sha256")
            check_release_bytes(
                hashed.hexdigest(), sha256, source=location, version_id=version_id, release=release
            )
        frames = _bls_reports(
            path,
            location,
            chosen,
            population=population,
            include_annual=include_annual,
            series_id=series_id,
            period=period,
        )
        return collect(*frames, bls=path, source=location)


def _check_reports(reports: Collection[str]) -> tuple[ReportName, ...]:
    unknown = sorted(set(reports) - set(REPORTS))
    if unknown:
        raise ConfigError(f"unknown report {', '.join(unknown)}; choose from {', '.join(REPORTS)}")
    chosen = tuple(name for name in REPORTS if name in reports)
    if not chosen:
        raise ConfigError(f"no report chosen; choose from {', '.join(REPORTS)}")
    return chosen


def analyze(
    inputs: ReportInputs = ReportInputs(),
    *,
    s3: S3Access,
    settings: Settings | None = None,
    bls_rows: pl.LazyFrame | None = None,
    bls_version_id: str | None = None,
    bls_sha256: str | None = None,
    release: str | None = None,
) -> Analysis:
    """Compute the chosen reports from a BLS data file and the population answer.

    Inputs are local paths or ``s3://bucket/key`` URLs; by default the objects ``rq sync-bls``
    and ``rq fetch-population`` store (see :func:`default_locations`). An S3 BLS file is
    downloaded to a temporary file (removed afterwards) and streamed from there. The BLS file
    is read as ``inputs.bls`` names it: its source, release and root prefix are resolved by
    :func:`rearcquest.data.vintages.analyze_at`.

    Args:
        inputs: the reports and their inputs.
        s3: the S3 access for ``s3://`` inputs (its client is made only when one is read).
        settings: where the default inputs are (see :func:`default_locations`).
        bls_rows: the BLS rows, already read (``series_id``, ``year``, ``period``, ``value``,
            ``decimals`` as :func:`scan_bls` gives them), instead of reading ``bls``, which then
            only names them (the Parquet table of ``rq analyze --from tables``).
        bls_version_id: read this S3 version of the BLS object (a release's).
        bls_sha256: the sha256 the BLS bytes must have (the release log's), checked before
            they are read.
        release: the release stamp that version belongs to, kept in the result.

    Returns:
        The reports.

    Raises:
        ConfigError: an unknown report, years in the wrong order, a missing local file, or no
            input given and no bucket configured.
        DataError: an input is malformed, the population lacks every year of the range, the
            series has no row for the period, or the BLS bytes are not ``bls_sha256``'s.
        StorageError: an S3 input cannot be read.
    """
    import polars as pl

    chosen = _check_reports(inputs.reports)
    from_year, to_year = inputs.from_year, inputs.to_year
    series_id, period, include_annual = inputs.series_id, inputs.period, inputs.include_annual
    if from_year > to_year:
        raise ConfigError(f"--from-year {from_year} is after --to-year {to_year}")
    need_bls = "best-year" in chosen or "series-population" in chosen
    need_population = "population" in chosen or "series-population" in chosen
    default_bls, default_population = default_locations(settings)
    bls, population = inputs.bls, inputs.population
    bls_location = str(bls) if bls is not None else default_bls
    population_location = str(population) if population is not None else default_population
    if need_bls and not bls_location:
        raise ConfigError(
            "no BLS file: pass --bls PATH_OR_S3_URL, or set RQ_BLS_BUCKET to read "
            f"s3://$RQ_BLS_BUCKET/pr/{BLS_FILE} (where rq sync-bls stores it)"
        )
    if need_population and not population_location:
        raise ConfigError(
            "no population file: pass --population PATH_OR_S3_URL, or set RQ_POPULATION_BUCKET "
            "to read what rq fetch-population stores"
        )
    result: dict[str, Any] = {}
    pop_frame = None
    if need_population:
        assert population_location is not None
        pop_frame = _load_population(population_location, s3)
        result["population_by_year"] = pop_frame
        if "population" in chosen:
            result["population"] = population_stats(pop_frame, from_year=from_year, to_year=to_year)
    if need_bls:
        assert bls_location is not None
        if bls_rows is not None:
            lazy_reports: list[pl.LazyFrame] = []
            if "best-year" in chosen:
                lazy_reports.append(
                    best_year(bls_rows, include_annual=include_annual, decimals=True)
                )
            if "series-population" in chosen:
                assert pop_frame is not None
                lazy_reports.append(
                    series_population(
                        bls_rows,
                        pop_frame,
                        series_id=series_id,
                        period=period,
                        all_years=True,
                        decimals=True,
                    )
                )
            collected = pl.collect_all(lazy_reports, engine="streaming")
        else:
            collected = _collect_file_reports(
                bls_location,
                s3,
                chosen,
                population=pop_frame,
                include_annual=include_annual,
                series_id=series_id,
                period=period,
                version_id=bls_version_id,
                sha256=bls_sha256,
                release=release,
            )
        # Each report's values keep their digits through Analysis.value_decimals, not a column.
        known: dict[str, int] = {}
        for frame in collected:
            for series, digits in frame.group_by("series_id").agg(pl.col("decimals").max()).rows():
                known[series] = max(digits, known.get(series, 0))
        result["value_decimals"] = known
        collected = [frame.drop("decimals") for frame in collected]
        if "best-year" in chosen:
            result["best_year"] = collected.pop(0)
        if "series-population" in chosen:
            joined = collected.pop(0)
            if joined.height == 0:
                raise DataError(
                    f"{bls_location}: series {series_id!r} has no {period} row; "
                    "check --series and --period"
                )
            result["series_population"] = (
                joined if inputs.all_years else joined.filter(joined["population"].is_not_null())
            )
    return Analysis(
        reports=chosen,
        bls_source=bls_location if need_bls else None,
        population_source=population_location if need_population else None,
        series_id=series_id,
        period=period,
        include_annual=include_annual,
        all_years=inputs.all_years,
        release=release,
        **result,
    )


# -- the reports as data (what every output format writes) ----------------------------------------

# JSON keys and file names of the reports.
JSON_KEYS: dict[str, str] = {
    "population": "population",
    "best-year": "best_year",
    "series-population": "series_population",
}


def bls_value(value: Decimal, decimals: int | None = None) -> Decimal:
    """A BLS value, or a sum of values, with the digits the source prints: the one number style.

    The values are ``Decimal(18, 3)`` (``-7.000``); BLS prints a series with a fixed number of
    decimals (``-7.0``, ``138.710``), given here by ``decimals``. Without it, the value's own
    digits without trailing zeros, but at least one decimal (``28.5``, ``2.0``).

    Args:
        value: the exact value.
        decimals: how many decimals the source prints for its series.

    Returns:
        The same value with that many decimals: ``format(result, "f")`` is the text every
        format shows.
    """
    if decimals is None:
        exponent = value.normalize().as_tuple().exponent
        decimals = max(1, -exponent) if isinstance(exponent, int) else VALUE_SCALE
    return value.quantize(Decimal(1).scaleb(-decimals))


def report_frame(analysis: Analysis, name: ReportName) -> pl.DataFrame:
    """The frame of one BLS report (``best-year`` or ``series-population``) of ``analysis``."""
    frame = analysis.best_year if name == "best-year" else analysis.series_population
    assert frame is not None, name
    return frame


def report_records(analysis: Analysis, name: ReportName) -> list[dict[str, Any]]:
    """The rows of one report with the numbers every format writes.

    BLS values are decimals with the source's digits (:func:`bls_value`), mean and std the
    unrounded floats, populations and years integers: the data formats (JSON, CSV, Parquet)
    write these. Table and Markdown (``rearcquest.output.render.tables``) round mean and std and add
    thousands separators to the population figures.
    """
    if name == "population":
        stats = analysis.population
        assert stats is not None
        return [
            {
                "from_year": stats.from_year,
                "to_year": stats.to_year,
                "years": list(stats.years),
                "missing_years": list(stats.missing_years),
                "mean": stats.mean,
                "std": stats.std,
            }
        ]
    known, titles = analysis.value_decimals, analysis.titles
    records = [
        {**row, "value": bls_value(row["value"], known.get(row["series_id"]))}
        for row in report_frame(analysis, name).iter_rows(named=True)
    ]
    if titles:
        # The decoded series text comes last, so every other key and column keeps its place.
        for record in records:
            record["title"] = titles.get(record["series_id"])
    return records


def report_doc(analysis: Analysis) -> dict[str, Any]:
    """The reports asked for, by their JSON keys, with :func:`report_records`' exact values."""
    doc: dict[str, Any] = {}
    for name in analysis.reports:
        records = report_records(analysis, name)
        # The population report is one object, with the same keys as its CSV row.
        doc[JSON_KEYS[name]] = records[0] if name == "population" else records
    if analysis.release is not None:
        # rq analyze --as-of: the output names the release it read.
        doc["release"] = analysis.release
    return doc


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    # A decimal of at most 15 significant digits converts to the float of the same value, so
    # programs read 28.5, never 28.500000000000004.
    return float(value) if isinstance(value, Decimal) else value


def to_json_doc(analysis: Analysis) -> dict[str, Any]:
    """The reports as one JSON-ready dict: only the keys of the reports asked for.

    ``{"population": {"from_year", "to_year", "years", "mean", "std"}, "best_year": [{"series_id",
    "year", "value"}], "series_population": [{"series_id", "year", "period", "value",
    "population"}]}``, the BLS rows ending with ``"title"`` when the analysis has the series
    titles. Values are floats of the numbers the other formats print (a float cannot keep
    ``138.710``'s last zero: ``rearcquest.output.render.to_json`` writes the digits themselves); mean
    and std are the unrounded floats; years and populations are integers.
    """
    result: dict[str, Any] = _json_ready(report_doc(analysis))
    return result
