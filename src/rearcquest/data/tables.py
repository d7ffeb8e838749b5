"""Query-ready Parquet tables of the mirrored BLS surveys and the population answer.

:func:`build_tables` reads the mirror in a bucket and writes, under a tables prefix (default
``tables/``)::

    <P><survey>/observations/file=<data file>/part-0.parquet   every row of that data file
    <P><survey>/series/series.parquet                           the series, codes decoded
    <P><survey>/_manifest.json                                  what each table was built from
    <P>population/population.parquet                            the stored DataUSA answer
    <P>population/_manifest.json

A table is rebuilt only when the sha256 of its input changed (the ``rq-sha256`` metadata that
``rq sync-bls`` writes on every mirrored object) or the table's own ``rq-sha256`` metadata no
longer records it (the manifest alone is not trusted); each Parquet object goes up in one PUT (or one
completed multipart upload), so a reader sees the old table or the new one, never half of one,
and the manifest is switched only after it. :func:`run_sql` runs Polars SQL over the tables,
local or in S3. The schemas and examples are in ``docs/tables.md``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from rearcquest.aws.storage import ObjectStore
from rearcquest.config import DEFAULT_SURVEYS, Settings
from rearcquest.data.analytics import (
    MAX_POPULATION_BYTES,
    bls_header,
    collect_piece,
    population_from_bytes,
    scan_bls,
    scan_bls_piece,
    sink_parquet,
)
from rearcquest.data.sqlguard import check_query
from rearcquest.errors import (
    QUOTE_LIMIT,
    ConcurrentSyncError,
    ConfigError,
    DataError,
    LockUnsupportedError,
    RqError,
    StorageError,
    clipped,
    quoted,
)
from rearcquest.layout import (
    META_SHA256,
    PART_NAME,
    POPULATION_TABLE,
    SERIES_NAME,
    SERIES_TABLE,
    TABLES_PREFIX,
    default_tables_prefix,
    is_reserved,
    lock_key,
    manifest_key,
    name_problem,
    normalise_prefix,
    observations_key,
    path_inside,
    plain_name,
    population_key,
    series_key,
    shown_name,
)
from rearcquest.layout import tables_prefix as resolve_tables_prefix
from rearcquest.records.lease import Lease

if TYPE_CHECKING:
    import polars as pl

    from rearcquest.aws.storage import ObjectInfo, ObjectStore, ObjectWriter, S3Access
    from rearcquest.config import Settings
    from rearcquest.data.analytics import Analysis, AnalyzeSource

log = logging.getLogger(__name__)

# Every line of a BLS mapping file is a few hundred bytes; the header is the first of them.
_HEADER_BYTES = 8192
_MAX_MAPPING_BYTES = 64 * 1024 * 1024
_MAX_SERIES_BYTES = 512 * 1024 * 1024
# 2: ``decimals`` in the observations and ``value_text`` only where ``value`` is null; a
# manifest of another format is rebuilt whole, and its partitions are not current meanwhile.
_MANIFEST_FORMAT = 2
TITLE_SEPARATOR: Final = "; "
_TITLE_CLASH = (
    "a column is named title, the name of the column rq adds (the decoded texts joined); "
    "BLS series files have none"
)

Status = Literal["built", "unchanged", "removed", "failed"]


# -- naming ----------------------------------------------------------------------------------------


def _is_data_file(survey: str, name: str) -> bool:
    return name.startswith(f"{survey}.data.")


# -- what a build did ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableBuild:
    """One table (or partition) that :func:`build_tables` looked at.

    Attributes:
        survey: the survey (``pr``), or ``population``.
        table: ``observations``, ``series`` or ``population``; :data:`LEASE_HELD` for a survey
            whose tables were not built at all: another run held it (``held``), or its build
            stopped on an error (``key`` is its lock).
        key: the Parquet object's key.
        status: ``built``, ``unchanged`` (its input's sha256 matched the manifest), ``removed``
            (its data file is gone from the mirror) or ``failed`` (nothing written).
        source: the input it is built from (``s3://`` URL of the data file).
        rows: rows written (or recorded by the last build when unchanged).
        sha256: the input's sha256.
        error: why it failed.
        held: the survey failed because another run held its lease (not in :meth:`to_dict`).
    """

    survey: str
    table: str
    key: str
    status: Status
    source: str = ""
    rows: int | None = None
    sha256: str | None = None
    error: str | None = None
    held: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The build as JSON-ready values."""
        return {
            "survey": self.survey,
            "table": self.table,
            "key": self.key,
            "status": self.status,
            "source": self.source,
            "rows": self.rows,
            "sha256": self.sha256,
            "error": self.error,
        }


@dataclass
class TablesResult:
    """What :func:`build_tables` built, kept and could not build.

    Attributes:
        bucket: the bucket the tables are in.
        tables_prefix: their prefix.
        builds: one entry per table or partition.
        warnings: codes left undecoded, a missing population answer.
    """

    bucket: str
    tables_prefix: str
    builds: list[TableBuild] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[TableBuild]:
        """The tables that could not be built."""
        return [b for b in self.builds if b.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        counts: dict[str, int] = {s: sum(b.status == s for b in self.builds) for s in _STATUSES}
        return {
            "bucket": self.bucket,
            "tables_prefix": self.tables_prefix,
            **counts,
            "tables": [b.to_dict() for b in self.builds],
            "warnings": list(self.warnings),
        }

    def raise_for_errors(self) -> None:
        """Raise once for every table that failed.

        Raises:
            DataError: one or more tables failed; the message lists each with its cause.
            ConcurrentSyncError: the only failures are surveys another run held (exit 5: try
                again later).
        """

        failed = self.failed
        if failed:
            lines = "; ".join(f"{b.source or b.key}: {b.error}" for b in failed)
            message = f"{len(failed)} table(s) not built: {lines}"
            if all(b.held for b in failed):
                raise ConcurrentSyncError(message)
            raise DataError(message)


_STATUSES: Final[tuple[Status, ...]] = ("built", "unchanged", "removed", "failed")
# The ``table`` of a survey whose tables were not built at all: another run held its lease, or
# its build stopped on an error (the survey could not be listed, say).
LEASE_HELD: Final = "*"


@dataclass(frozen=True)
class TableScope:
    """The tables of a survey one build owns, when the survey's work is split over messages (the
    fan-out): each table is built by exactly one of them.

    A file message owns its data file's partition alone (``only``); the survey message owns
    every other table (``leave``: the data files that have messages of their own). A table the
    build does not own is not built, and its manifest entry and recorded failure are kept as
    they are.

    Attributes:
        only: own this data file's partition and nothing else (no series table, no removal of
            partitions whose data file is gone).
        leave: data files whose partitions belong to other messages.
    """

    only: str | None = None
    leave: frozenset[str] = frozenset()

    def owns(self, name: str) -> bool:
        """Whether the table built from ``name`` (a data file, or the series file for the
        series table) is this build's to build."""
        if self.only is not None:
            return name == self.only
        return name not in self.leave


_WHOLE_SURVEY: Final = TableScope()


# -- reading BLS text ------------------------------------------------------------------------------


def read_tsv(data: bytes, *, source: str) -> pl.DataFrame:
    """Read a small BLS tab-separated file (a mapping file, the series file) as trimmed strings.

    Args:
        data: the file's bytes.
        source: how errors name the file.

    Returns:
        Every column as a string, names and cells stripped of BLS's padding; blank lines dropped.

    Raises:
        DataError: the file is not tab-separated UTF-8 text with a header.
    """
    with _tsv_errors(source):
        return _scan_tsv(data, source=source).collect()


@contextmanager
def _tsv_errors(source: str) -> Iterator[None]:
    """Turn a Polars failure to read a tab-separated file into a DataError naming it."""
    import polars as pl

    try:
        yield
    except pl.exceptions.PolarsError as exc:
        reason = clipped((str(exc).strip().splitlines() or [type(exc).__name__])[0], 200)
        raise DataError(f"{source}: cannot be read as a BLS tab-separated file: {reason}") from exc


def _scan_tsv(data: bytes, *, source: str) -> pl.LazyFrame:
    """:func:`read_tsv` as a query: run it inside :func:`_tsv_errors` (a malformed line is
    found as the query reads it).

    Raises:
        DataError: the header cannot be read, names a column twice, or lines end in a bare CR.
    """
    import polars as pl

    if b"\r" in _first_line(data).rstrip(b"\r"):
        raise DataError(
            f"{source}: its lines end in a bare carriage return (old Mac text); BLS files end "
            "them in LF or CRLF"
        )
    frame = pl.scan_csv(
        io.BytesIO(data),
        separator="\t",
        has_header=True,
        infer_schema=False,
        # BLS never quotes: a quote is data.
        quote_char=None,
    )
    with _tsv_errors(source):
        columns = frame.collect_schema().names()
    names = [name.strip() for name in columns]
    # A header ending in a tab makes an unnamed empty column: not data.
    kept = [(column, name) for column, name in zip(columns, names, strict=True) if name]
    twice = sorted({name for _, name in kept if names.count(name) > 1})
    if twice:
        shown = ", ".join(quoted(name) for name in twice[:5])
        raise DataError(f"{source} line 1: column {shown} appears twice (names are trimmed)")
    frame = frame.select(pl.col(column).str.strip_chars().alias(name) for column, name in kept)
    return frame.filter(~pl.all_horizontal(pl.col(n).fill_null("") == "" for _, n in kept))


def _first_line(data: bytes) -> bytes:
    """The first line of ``data``, without copying the rest (a series file is up to 512 MB)."""
    end = data.find(b"\n")
    return data if end < 0 else data[:end]


def _header(data: bytes) -> list[str]:
    first = _first_line(data).decode("utf-8", errors="replace")
    return [name.strip() for name in first.rstrip("\r").split("\t")]


def _mapping_column(header: Sequence[str]) -> str | None:
    """The code column a mapping file decodes (its first column), or ``None`` if it is not one."""
    if len(header) >= 2 and header[0].lower().endswith("_code") and header[1]:
        return header[0].lower()
    return None


def decode_series(
    series: pl.DataFrame, mappings: Mapping[str, pl.DataFrame]
) -> tuple[pl.DataFrame, list[str]]:
    """Decode every code column of a series table with the survey's mapping files.

    A mapping file's first column names the code it decodes (``sector_code``) and its second the
    text (``sector_name``). A series column ``X_code``, or ``X`` when a mapping's first column is
    ``X_code`` (``pr.seasonal`` has ``Seasonal_code`` for the series column ``seasonal``), gains
    the text column right after it, named by the mapping's second column in lower case. A
    ``title`` column joins the texts of each series.

    Args:
        series: the series file (see :func:`read_tsv`).
        mappings: mapping file name -> its frame (see :func:`read_tsv`); files that are not
            mappings (no ``*_code`` first column) are ignored.

    Returns:
        The decoded frame, and one warning per code column that no mapping file decodes (it
        stays a code). A text column whose name is taken (or is ``title``) is prefixed by its
        code column's name.

    Raises:
        DataError: the series has a ``title`` column of its own.
    """
    decoded, warnings = _decode(series.lazy(), mappings)
    return decoded.collect(), warnings


def _decode(
    series: pl.LazyFrame, mappings: Mapping[str, pl.DataFrame]
) -> tuple[pl.LazyFrame, list[str]]:
    """:func:`decode_series` as a query: streamed, the series are never all held at once, nor
    copied once per mapping (98 MB of series text once took 1.3 GB)."""
    import polars as pl

    columns = series.collect_schema().names()
    if "title" in columns:
        raise DataError(f"the series file: {_TITLE_CLASH}")
    by_code: dict[str, tuple[str, pl.DataFrame]] = {}
    for name, frame in sorted(mappings.items()):
        code = _mapping_column(frame.columns)
        if code is not None and code not in by_code:
            by_code[code] = (name, frame)
    present = set(columns)
    decoded: list[pl.Expr] = []
    texts: list[str] = []
    warnings: list[str] = []
    order: list[str] = []
    for column in columns:
        order.append(column)
        lowered = column.lower()
        code = lowered if lowered.endswith("_code") else f"{lowered}_code"
        found = by_code.get(code)
        if found is None:
            if lowered.endswith("_code"):
                warnings.append(
                    f"no mapping file decodes {clipped(column, QUOTE_LIMIT)}: it stays a code"
                )
            continue
        _, mapping = found
        key, text = mapping.columns[0], mapping.columns[1]
        text_name = _free_name(text.lower(), lowered.removesuffix("_code"), present)
        lookup = mapping.filter(pl.col(key).is_not_null()).unique(subset=key, keep="first")
        # A lookup per row, not a join: the rows keep their order and stream through, and a
        # decoded text shares the mapping's buffer instead of being copied per join.
        decoded.append(
            pl.col(column)
            .replace_strict(lookup[key], lookup[text], default=None, return_dtype=pl.String)
            .alias(text_name)
        )
        order.append(text_name)
        present.add(text_name)
        texts.append(text_name)
    title = (
        pl.concat_str([pl.col(t) for t in texts], separator=TITLE_SEPARATOR, ignore_nulls=True)
        if texts
        else pl.lit(None, dtype=pl.String)
    )
    return series.with_columns(decoded).select(*order, title.alias("title")), warnings


def _free_name(wanted: str, code: str, taken: set[str]) -> str:
    """A name for a decoded text column that no other column (nor ``title``) has.

    ``wanted`` if free, else prefixed by its code column (``area_name`` -> ``seasonal_area_name``),
    else numbered.
    """
    if wanted not in taken and wanted != "title":
        return wanted
    name = f"{code}_{wanted}"
    number = 2
    while name in taken or name == "title":
        name, number = f"{code}_{wanted}_{number}", number + 1
    return name


def observations_query(path: str | Path, *, source: str | None = None) -> pl.LazyFrame:
    """The observations table of one data file, as a lazy query over the text.

    Args:
        path: the local BLS data file.
        source: how errors name it.

    Returns:
        ``series_id``, ``year`` (Int16), ``period``, ``value`` (Decimal(18, 3), null where BLS
        prints a non-number such as ``-``), ``decimals`` (Int8: the digits BLS prints after the
        point, so ``1.50`` reads back as printed), ``value_text`` (the text BLS printed where
        ``value`` is null, else null) and ``footnote_codes``; every row is checked as it
        streams.

    Raises:
        ConfigError: the file does not exist.
        DataError: the header lacks a required column.
    """
    return _observations_of(scan_bls(path, source=source, non_numbers=True))


def _observations_of(rows: pl.LazyFrame) -> pl.LazyFrame:
    """The observations table of the rows of a data file (:func:`scan_bls` with
    ``non_numbers``)."""
    import polars as pl

    footnotes = (
        pl.col("footnote_codes")
        if "footnote_codes" in rows.collect_schema().names()
        else pl.lit(None, dtype=pl.String).alias("footnote_codes")
    )
    # The text only where there is no number: on every row it doubled the files (docs/tables.md).
    return rows.select(
        "series_id",
        pl.col("year").cast(pl.Int16),
        "period",
        "value",
        "decimals",
        pl.when(pl.col("value").is_null()).then(pl.col("value_text")).alias("value_text"),
        footnotes,
    )


# -- the build -------------------------------------------------------------------------------------


def _plain_or_warned(name: str, where: str, then: str) -> bool:
    """Whether ``name`` (read back from the bucket) is one plain file name; if not, log one
    warning naming ``where`` it was found and what rq does ``then``."""
    problem = name_problem(name)
    if problem is not None:
        log.warning("%s names %s, not a file name (%s): %s", where, shown_name(name), problem, then)
    return problem is None


def find_surveys(store: ObjectStore, *, root_prefix: str = "") -> list[str]:
    """The mirrored surveys under ``root_prefix``: every ``<survey>/`` holding ``<survey>.series``.

    Raises:
        StorageError: the listing failed.
    """
    root = normalise_prefix(root_prefix)
    found = set()
    for info in store.list_objects(root):
        rest = info.key[len(root) :]
        survey, _, name = rest.partition("/")
        # A key is data: a folder named ``..`` is no survey (it would become a path).
        if (
            survey
            and name == f"{survey}.series"
            and _plain_or_warned(survey, store.url(info.key), "no survey")
        ):
            found.add(survey)
    return sorted(found)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# A manifest is a few hundred bytes per data file; anything much larger is not one rq wrote.
_MAX_MANIFEST_BYTES = 8 * 1024 * 1024
# The most undecoded-code warnings a manifest keeps for its series table.
_MAX_WARNINGS = 100


def _is_int(value: object) -> bool:
    return type(value) is int


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _survey_manifest_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a survey's manifest, or ``None``."""
    files = doc.get("files", {})
    if not isinstance(files, dict):
        return '"files" is not an object'
    for name, entry in files.items():
        if not isinstance(entry, dict):
            return f'"files" entry {quoted(name)} is not an object'
        if not isinstance(entry.get("sha256"), str):
            return f'"files" entry {quoted(name)} has no sha256 string'
        if entry.get("rows") is not None and not _is_int(entry["rows"]):
            return f'"files" entry {quoted(name)} has rows that are not a whole number'
    series = doc.get("series", {})
    if not isinstance(series, dict):
        return '"series" is not an object'
    if not _str_map(series.get("inputs", {})):
        return '"series" inputs are not an object of sha256 strings'
    if series.get("rows") is not None and not _is_int(series["rows"]):
        return '"series" rows are not a whole number'
    warnings = series.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return '"series" warnings are not a list of strings'
    if not _str_map(doc.get("failed", {})):
        return '"failed" is not an object of messages'
    if not isinstance(doc.get("complete", True), bool):
        return '"complete" is not true or false'
    return None


def _population_manifest_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with the shape of the population table's manifest, or ``None``."""
    for name in ("sha256", "source"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            return f"{name} is not a string"
    if doc.get("rows") is not None and not _is_int(doc["rows"]):
        return "rows are not a whole number"
    return None


def _read_manifest(store: ObjectStore, key: str, *, population: bool = False) -> dict[str, Any]:
    """The manifest at ``key``; ``{}`` when there is none, or when it is not one rq wrote.

    A manifest that is too large, not JSON or JSON of another shape is logged once as a warning
    and read as no manifest: every table it describes is rebuilt, and the next build writes a
    good one. It never fails a build (nor needs deleting by hand).

    Raises:
        StorageError: the manifest cannot be read.
    """
    fetched = store.fetch(key, max_bytes=_MAX_MANIFEST_BYTES)
    if fetched is None:
        return {}
    body = fetched[0]
    problem: str | None
    doc: Any = None
    if len(body) > _MAX_MANIFEST_BYTES:
        problem = f"larger than {_MAX_MANIFEST_BYTES} bytes"
    else:
        try:
            doc = json.loads(body)
            problem = None
        except (ValueError, RecursionError) as exc:
            problem = f"not JSON ({clipped(str(exc), 120)})"
    if problem is None:
        if not isinstance(doc, dict):
            problem = f"a JSON {type(doc).__name__}, not an object"
        elif population:
            problem = _population_manifest_problem(doc)
        else:
            problem = _survey_manifest_problem(doc)
    if problem is not None:
        log.warning(
            "%s is not a manifest rq wrote (%s): its tables are rebuilt", store.url(key), problem
        )
        return {}
    return dict(doc)


def _manifest_files(store: ObjectStore, key: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``files``, without entries whose name is not a file name (logged)."""
    files = manifest.get("files", {})
    kept = {}
    for name, entry in files.items():
        if _plain_or_warned(name, store.url(key), "ignored"):
            kept[name] = entry
    return kept


def _write_manifest(store: ObjectStore, key: str, doc: Mapping[str, Any]) -> None:
    store.put_bytes(
        key,
        json.dumps(doc, indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )


def _sha256_of(store: ObjectStore, info: ObjectInfo) -> str:
    """The mirrored file's sha256 from its ``rq-sha256`` metadata (one HEAD: a listing's
    ``info`` carries no metadata)."""
    return _sha256_in(store.head(info.key) or info)


def _sha256_in(head: ObjectInfo) -> str:
    """The sha256 a HEAD of a mirrored file gives: its ``rq-sha256`` metadata, or its ETag for
    an object rq sync-bls did not write (the ETag still changes whenever the object does)."""
    return head.metadata.get(META_SHA256) or f"etag:{head.etag}"


def _built_from(store: ObjectStore, key: str, sha: str) -> bool:
    """Whether the table at ``key`` exists and its own metadata says it was built from ``sha``.

    The manifest alone is not trusted: a build killed between a table's upload and the manifest
    write, or anyone else who can write the bucket, may have put other bytes there.
    """
    head = store.head(key)
    return head is not None and head.metadata.get(META_SHA256) == sha


def _inputs_sha(inputs: Mapping[str, str]) -> str:
    """One sha256 for the series table's inputs (the series file and every mapping file)."""
    return hashlib.sha256(json.dumps(dict(inputs), sort_keys=True).encode()).hexdigest()


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    """A small table (the population's, a few kB) as Parquet, in memory."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


class _WriterFile(io.RawIOBase):
    """The file Polars writes a Parquet table into: each write goes to an
    :class:`~rearcquest.aws.storage.ObjectWriter` (parts of a multipart upload), nothing to
    disk."""

    def __init__(self, writer: ObjectWriter) -> None:
        super().__init__()
        self.writer = writer
        # Polars reports a failed write as its own error: the writer's is kept to be raised.
        self.failure: RqError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        body = bytes(data)
        try:
            self.writer.write(body)
        except RqError as exc:
            self.failure = exc
            raise
        return len(body)


def _upload_parquet(
    store: ObjectStore, key: str, frame: pl.LazyFrame, metadata: Mapping[str, str]
) -> None:
    """Stream a query into the Parquet object at ``key``, through the multipart writer.

    One PUT (or one completed multipart upload): readers see the old table or this one, and a
    failure leaves the object as it was and no upload behind.

    Raises:
        RqError: what the query raised (a malformed row), or the writer's StorageError.
        polars.exceptions.PolarsError: the query failed otherwise (the caller names the input).
    """
    import polars as pl

    writer = store.writer(key, content_type=_PARQUET_TYPE, metadata=metadata)
    target = _WriterFile(writer)
    try:
        frame.sink_parquet(cast("IO[bytes]", target), engine="streaming")
    except pl.exceptions.PolarsError as exc:
        writer.abort()
        if target.failure is not None:
            raise target.failure from exc
        raise
    except BaseException:
        writer.abort()
        raise
    writer.complete()


_PARQUET_TYPE: Final = "application/vnd.apache.parquet"
# A data file streams through in pieces of whole lines of about this many bytes, each parsed,
# checked and typed by itself: what a build holds is a few times this (and the parts of the
# Parquet going up), whatever the file's size. Nothing is written to disk.
_PIECE_BYTES = 8 * 1024 * 1024
_READ_BYTES = 1024 * 1024
# A piece is cut at a line end; a "line" longer than this is no BLS text (lines are ~50 bytes).
_MAX_LINE_BYTES = 64 * 1024 * 1024
# What of a data file's first line is its header (as ``rq analyze`` reads it).
_MAX_HEADER_LINE = 64 * 1024


def _pieces(chunks: Iterable[bytes], size: int, source: str) -> Iterator[bytes]:
    """The bytes of ``chunks`` regrouped into pieces of whole lines of about ``size`` bytes (the
    last may end without a line end).

    Raises:
        DataError: no line end in :data:`_MAX_LINE_BYTES`.
    """
    held = bytearray()
    for chunk in chunks:
        held += chunk
        if len(held) < size:
            continue
        end = held.rfind(b"\n") + 1
        if end:
            yield bytes(held[:end])
            del held[:end]
        elif len(held) > _MAX_LINE_BYTES:
            raise DataError(
                f"{source}: a line longer than {_MAX_LINE_BYTES // 2**20} MB: is this a BLS "
                "data file?"
            )
    if held:
        yield bytes(held)


def _observation_frames(
    chunks: Iterable[bytes], source: str, counted: list[int]
) -> tuple[dict[str, pl.DataType], Iterator[pl.DataFrame]]:
    """The observations of a data file streaming in as ``chunks``, a piece at a time.

    Returns:
        The table's schema (from the header, read at once) and its rows, one frame per piece,
        each checked as :func:`observations_query` checks them; ``counted`` gains each
        frame's row count.

    Raises:
        DataError: the header is missing or lacks a required column (at once); a malformed
            row (as the frames are taken, naming the line of the file).
    """
    pieces = _pieces(chunks, _PIECE_BYTES, source)
    first = next(pieces, b"")
    cut = first.find(b"\n") + 1 or len(first)
    header = first[:cut]
    names = bls_header(header[:_MAX_HEADER_LINE], source=source)
    schema = dict(
        _observations_of(
            scan_bls_piece(header, names, source=source, first_line=2, non_numbers=True)
        )
        .collect_schema()
        .items()
    )

    def parse(text: bytes, line: int) -> pl.DataFrame:
        query = scan_bls_piece(text, names, source=source, first_line=line, non_numbers=True)
        return collect_piece(_observations_of(query), text=text, first_line=line, source=source)

    def frames() -> Iterator[pl.DataFrame]:
        # One piece is parsed (Polars lets go of the GIL) while the next is read and the last
        # one written: a piece more in memory, the three overlapped. In order: the first
        # malformed row of the file is the one reported.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rq-piece") as pool:
            line, parsing = 2, None
            for number, piece in enumerate(itertools.chain([first], pieces)):
                text = piece if number == 0 else header + piece
                following = pool.submit(parse, text, line)
                line += piece.count(b"\n") - (1 if number == 0 else 0)
                if parsing is not None:
                    yield _taken(parsing, counted)
                parsing = following
            if parsing is not None:
                yield _taken(parsing, counted)

    return schema, frames()


def _taken(parsing: Future[pl.DataFrame], counted: list[int]) -> pl.DataFrame:
    frame = parsing.result()
    counted.append(frame.height)
    return frame


def _build_observations(store: ObjectStore, info: ObjectInfo, key: str, sha: str) -> int:
    """Write one data file's partition from a stream of the mirrored object; return its row
    count. Nothing is written on an error, nothing ever to disk.

    The object is read in one streaming GET and parsed a piece at a time
    (:func:`_observation_frames`); the Parquet goes up as it is written, through the multipart
    writer. Memory is bounded by the piece and the parts in flight, not by the file.

    Raises:
        DataError: the file is not a BLS data file, or a row of it is malformed.
        StorageError: the object cannot be read, or the partition cannot be written.
    """
    import polars as pl
    from polars.io.plugins import register_io_source

    source = store.url(info.key)
    counted: list[int] = []
    body = store.stream(info.key, chunk_size=_READ_BYTES)
    try:
        schema, frames = _observation_frames(body, source, counted)

        def scan(
            with_columns: list[str] | None, predicate: Any, n_rows: int | None, batch_size: Any
        ) -> Iterator[pl.DataFrame]:
            # The sink asks for every column and every row: nothing to push down.
            yield from frames

        try:
            _upload_parquet(store, key, register_io_source(scan, schema=schema), {META_SHA256: sha})
        except pl.exceptions.PolarsError as exc:  # the pieces' own are DataErrors already
            reason = clipped((str(exc).strip().splitlines() or [type(exc).__name__])[0], 200)
            raise DataError(f"{source}: the table cannot be written: {reason}") from exc
    finally:
        body.close()  # the GET's connection, when the build stopped before the end
    return sum(counted)


def _mirror_files(store: ObjectStore, prefix: str) -> dict[str, ObjectInfo]:
    """The files of a mirror folder, by name: its keys are data, so only plain names count (a
    key ``pr/..`` or one with a control character is no file of the mirror), never rq's own.

    Raises:
        StorageError: the listing failed.
    """
    return {
        info.key[len(prefix) :]: info
        for info in store.list_objects(prefix)
        if plain_name(info.key[len(prefix) :]) and not is_reserved(info.key)
    }


def _orphan_partitions(
    store: ObjectStore, tables_prefix: str, survey: str, data_files: set[str]
) -> list[tuple[str, str]]:
    """The observations partitions in the bucket whose data file is not in the mirror.

    From a listing of the survey's observations, not from the manifest: a partition written
    before a build was killed, forced or found a manifest it could not read is found too. A
    folder whose name is not a plain file name is no partition of rq's and is left alone.

    Returns:
        ``(data file, key)`` of each, sorted.

    Raises:
        StorageError: the listing failed.
    """
    folder = f"{normalise_prefix(tables_prefix)}{survey}/"
    found = []
    for info in store.list_objects(f"{folder}observations/"):
        relative = info.key[len(folder) :]
        if not _is_partition(relative):
            continue
        name = _partition_file(relative)
        # Not a partition rq wrote (a data file's name is a plain name): left as it is.
        if name not in data_files and _plain_or_warned(
            name, store.url(info.key), "no partition of rq's, left as it is"
        ):
            found.append((name, info.key))
    return sorted(found)


def _build_survey(
    store: ObjectStore,
    survey: str,
    *,
    root: str,
    tables_prefix: str,
    force: bool,
    result: TablesResult,
    on_progress: Callable[[str], None] | None,
    scope: TableScope = _WHOLE_SURVEY,
) -> None:
    prefix = f"{root}{survey}/"
    files = _mirror_files(store, prefix)
    if f"{survey}.series" not in files:
        raise ConfigError(
            f"{store.url(prefix)} holds no {survey}.series: is {survey!r} a mirrored survey? "
            "(rq sync-bls mirrors one; --survey all takes every one found)"
        )
    mkey = manifest_key(tables_prefix, survey)
    manifest = _read_manifest(store, mkey)
    if manifest and manifest.get("format") != _MANIFEST_FORMAT:
        log.info("%s is of another format: every table of %s is rebuilt", store.url(mkey), survey)
        force = True
    built_files: dict[str, Any] = _manifest_files(store, mkey, manifest) if not force else {}
    doc: dict[str, Any] = {
        "format": _MANIFEST_FORMAT,
        "survey": survey,
        "source_prefix": store.url(prefix),
        "files": built_files,
        "series": manifest.get("series", {}) if not force else {},
        # False from before the first table is written until the build ends without a failure:
        # a killed or failed build is found by tables_need_build even after a no-op sync.
        "complete": manifest.get("complete", True) if manifest else False,
        # The failures of tables another message owns stay theirs (and keep the survey's
        # tables incomplete) until that message builds them.
        "failed": {n: m for n, m in manifest.get("failed", {}).items() if not scope.owns(n)},
    }

    started = False

    def start() -> None:
        nonlocal started
        if not started:
            started, doc["complete"] = True, False
            _write_manifest(store, mkey, doc)

    data_files = {n for n in files if _is_data_file(survey, n)}
    for name in sorted(n for n in data_files if scope.owns(n)):
        info = files[name]
        key = observations_key(tables_prefix, survey, name)
        source = store.url(info.key)
        sha = _sha256_of(store, info)
        previous = built_files.get(name, {})
        if previous.get("sha256") == sha and _built_from(store, key, sha):
            result.builds.append(
                TableBuild(
                    survey, "observations", key, "unchanged", source, previous.get("rows"), sha
                )
            )
            continue
        if on_progress:
            on_progress(f"building {key} from {source}")
        start()
        try:
            rows = _build_observations(store, info, key, sha)
        except RqError as exc:
            doc["failed"][name] = clipped(str(exc))
            result.builds.append(
                TableBuild(survey, "observations", key, "failed", source, None, sha, str(exc))
            )
            continue
        built_files[name] = {"sha256": sha, "rows": rows, "key": key, "built_at": _now()}
        _write_manifest(store, mkey, doc)
        result.builds.append(TableBuild(survey, "observations", key, "built", source, rows, sha))
    for name in sorted(set(built_files) - data_files):
        # Forgotten whatever its entry says: the partitions to delete come from the listing.
        del built_files[name]
    if scope.only is not None:
        # A file message: the series table and the removals are the survey message's.
        if started:
            doc["complete"] = not doc["failed"]
            _write_manifest(store, mkey, doc)
        return
    orphans = _orphan_partitions(store, tables_prefix, survey, data_files)
    if orphans:
        # The manifest start() writes already lacks them: one batched delete, no other write.
        start()
        store.delete_many([key for _, key in orphans])
    for name, key in orphans:
        result.builds.append(
            TableBuild(survey, "observations", key, "removed", store.url(prefix + name))
        )
    _build_series(
        store,
        survey,
        files,
        prefix=prefix,
        tables_prefix=tables_prefix,
        doc=doc,
        result=result,
        on_progress=on_progress,
        start=start,
    )
    doc["complete"] = not doc["failed"]
    _write_manifest(store, mkey, doc)


def tables_need_build(
    store: ObjectStore, survey: str, *, tables_prefix: str, scope: TableScope | None = None
) -> str | None:
    """Why a survey's tables must be built even though its mirror did not change, if they must.

    One read of the survey's manifest: the tables were never built, are of another format,
    their last build failed or did not finish (killed), or the manifest is unreadable.

    Args:
        store: the bucket of the tables.
        survey: the survey (``pr``).
        tables_prefix: where its tables are.
        scope: the tables the build would own: a failed table another message owns is that
            message's to build again, no reason for this one.

    Returns:
        The reason, or ``None`` when the last build finished without a failure.

    Raises:
        StorageError: the manifest cannot be read.
    """
    manifest = _read_manifest(store, manifest_key(tables_prefix, survey))
    if not manifest:
        return "no tables yet"
    if manifest.get("format") != _MANIFEST_FORMAT:
        return "the tables are of another format"
    failed = sorted(n for n in manifest.get("failed", {}) if (scope or _WHOLE_SURVEY).owns(n))
    if failed:
        return "the last build failed: " + ", ".join(failed)
    # A build ends "complete" when nothing failed: with only other messages' failures recorded,
    # false is theirs, not a build that did not finish.
    if manifest.get("complete") is False and not manifest.get("failed"):
        return "the last build did not finish"
    return None


class _Folder(Protocol):
    """The files of one mirrored survey folder, local or in S3: what series decoding reads."""

    names: list[str]

    def url(self, name: str) -> str: ...

    def size(self, name: str) -> int: ...

    def head(self, name: str) -> bytes:
        """The first bytes of the file: enough for its header line."""
        ...

    def read(self, name: str, max_bytes: int) -> bytes: ...


class _S3Folder:
    def __init__(self, store: ObjectStore, prefix: str, files: Mapping[str, ObjectInfo]) -> None:
        self.store, self.prefix, self.files = store, prefix, files
        self.names = sorted(files)

    @classmethod
    def listing(cls, store: ObjectStore, prefix: str) -> _S3Folder:
        """The folder as listed now."""
        return cls(store, prefix, _mirror_files(store, prefix))

    def url(self, name: str) -> str:
        return self.store.url(self.prefix + name)

    def size(self, name: str) -> int:
        return self.files[name].size

    def head(self, name: str) -> bytes:
        with self.store.open(self.prefix + name, byte_range=(0, _HEADER_BYTES - 1)) as stream:
            return b"".join(stream.chunks())

    def read(self, name: str, max_bytes: int) -> bytes:
        return self.store.get_bytes(self.prefix + name, max_bytes=max_bytes)


class _LocalFolder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.names = sorted(p.name for p in directory.iterdir() if p.is_file())

    def url(self, name: str) -> str:
        return str(self.directory / name)

    def size(self, name: str) -> int:
        return (self.directory / name).stat().st_size

    def head(self, name: str) -> bytes:
        with (self.directory / name).open("rb") as fh:
            return fh.read(_HEADER_BYTES)

    def read(self, name: str, max_bytes: int) -> bytes:
        if self.size(name) > max_bytes:
            raise DataError(f"{self.url(name)} is larger than {max_bytes} bytes")
        return (self.directory / name).read_bytes()


def _mapping_files(survey: str, folder: _Folder) -> list[str]:
    """The survey's mapping files in the folder: those whose header starts with ``*_code``."""
    found = []
    for name in folder.names:
        if not name.startswith(f"{survey}.") or name == f"{survey}.series":
            continue
        if _is_data_file(survey, name) or not folder.size(name):
            continue
        if _mapping_column(_header(folder.head(name))) is not None:
            found.append(name)
    return found


def _decoded_series(
    survey: str, folder: _Folder, mapping_names: Sequence[str]
) -> tuple[pl.LazyFrame, list[str], str]:
    """The survey's decoded series file as a query; log and return a warning per undecoded code.

    Returns:
        The query (run it with :func:`_write_series` or inside :func:`_tsv_errors`), the
        warnings, and how errors name the series file.

    Raises:
        DataError: the series file has no series_id column, or a mapping file is malformed.
        StorageError: a file cannot be read.
    """
    name = f"{survey}.series"
    source = folder.url(name)
    series = _scan_tsv(folder.read(name, _MAX_SERIES_BYTES), source=source)
    columns = series.collect_schema().names()
    if "series_id" not in columns:
        raise DataError(f"{source} line 1: no series_id column")
    if "title" in columns:
        raise DataError(f"{source} line 1: {_TITLE_CLASH}")
    mappings = {
        n: read_tsv(folder.read(n, _MAX_MAPPING_BYTES), source=folder.url(n)) for n in mapping_names
    }
    decoded, warnings = _decode(series, mappings)
    warnings = [f"{source}: {w}" for w in warnings]
    for warning in warnings:
        log.warning("%s", warning)
    return decoded, warnings, source


def _write_series(decoded: pl.LazyFrame, path: Path, source: str) -> int:
    """Stream the decoded series into a Parquet file; return its row count.

    Raises:
        DataError: the series file is malformed (found as it streams).
    """
    import polars as pl

    with _tsv_errors(source):
        decoded.sink_parquet(path, engine="streaming")
    count: int = pl.scan_parquet(path).select(pl.len()).collect().item()
    return count


def _upload_series(
    store: ObjectStore,
    key: str,
    decoded: pl.LazyFrame,
    source: str,
    metadata: Mapping[str, str],
) -> int:
    """Stream the decoded series into the Parquet object at ``key`` (no temporary file); return
    its row count.

    Raises:
        DataError: the series file is malformed (found as it streams).
        StorageError: the table cannot be written.
    """
    import polars as pl

    with _tsv_errors(source):
        # Decoding adds columns, never rows: the count reads the series text alone.
        rows: int = decoded.select(pl.len()).collect(engine="streaming").item()
        _upload_parquet(store, key, decoded, metadata)
    return rows


def _build_series(
    store: ObjectStore,
    survey: str,
    files: Mapping[str, ObjectInfo],
    *,
    prefix: str,
    tables_prefix: str,
    doc: dict[str, Any],
    result: TablesResult,
    on_progress: Callable[[str], None] | None,
    start: Callable[[], None],
) -> None:
    key = series_key(tables_prefix, survey)
    series_name = f"{survey}.series"
    source = store.url(prefix + series_name)
    folder = _S3Folder(store, prefix, files)
    try:
        mapping_names = _mapping_files(survey, folder)
        inputs = {n: _sha256_of(store, files[n]) for n in [series_name, *mapping_names]}
        previous = doc.get("series", {})
        if previous.get("inputs") == inputs and _built_from(store, key, _inputs_sha(inputs)):
            result.builds.append(
                TableBuild(
                    survey,
                    "series",
                    key,
                    "unchanged",
                    source,
                    previous.get("rows"),
                    inputs[series_name],
                )
            )
            result.warnings.extend(previous.get("warnings", []))
            return
        if on_progress:
            on_progress(f"building {key} from {source}")
        start()
        decoded, warnings, _ = _decoded_series(survey, folder, mapping_names)
        rows = _upload_series(store, key, decoded, source, {META_SHA256: _inputs_sha(inputs)})
    except RqError as exc:
        doc["failed"][series_name] = clipped(str(exc))
        result.builds.append(
            TableBuild(survey, "series", key, "failed", source, None, None, str(exc))
        )
        return
    doc["series"] = {
        "inputs": inputs,
        "rows": rows,
        "key": key,
        "built_at": _now(),
        "warnings": [clipped(w) for w in warnings[:_MAX_WARNINGS]],
    }
    result.warnings.extend(warnings)
    result.builds.append(
        TableBuild(survey, "series", key, "built", source, rows, inputs[series_name])
    )


def build_local_tables(
    directory: Path, survey: str, target: Path, *, sources: Mapping[str, str] | None = None
) -> list[str]:
    """Write a survey's tables from a local folder of its files, laid out as :func:`scan_tables`
    reads them (``rearcquest.data.vintages`` builds the tables of a past release this way).

    Args:
        directory: the folder holding ``<survey>.series``, the mapping and the data files.
        survey: the survey (``pr``).
        target: the tables directory; ``<survey>/...`` is written below it.
        sources: how errors name each file (e.g. its ``s3://`` URL and release); default the path.

    Returns:
        The warnings of the series decoding (codes without a mapping).

    Raises:
        ConfigError: the folder holds no ``<survey>.series``.
        DataError: a file is malformed (the message names it and the line).
    """

    folder = _LocalFolder(directory)
    if f"{survey}.series" not in folder.names:
        raise ConfigError(f"{directory} holds no {survey}.series")
    named = dict(sources or {})
    for name in (n for n in folder.names if _is_data_file(survey, n)):
        path = directory / name
        source = named.get(name, str(path))
        part = path_inside(target, f"{survey}/observations/file={name}/{PART_NAME}")
        part.parent.mkdir(parents=True, exist_ok=True)
        sink_parquet(observations_query(path, source=source), part, bls=path, source=source)
    decoded, warnings, source = _decoded_series(survey, folder, _mapping_files(survey, folder))
    series = path_inside(target, f"{survey}/{SERIES_TABLE}/{SERIES_NAME}")
    series.parent.mkdir(parents=True, exist_ok=True)
    _write_series(decoded, series, source)
    return warnings


def population_table(body: bytes, *, source: str) -> pl.DataFrame:
    """The population table of a stored DataUSA answer (either API shape).

    Returns:
        ``year`` (Int16), ``population`` (Int64), ``source`` (where the answer is stored).

    Raises:
        DataError: it is not a national population answer.
    """
    import polars as pl

    frame = population_from_bytes(body, source=source)
    return frame.select(
        pl.col("year").cast(pl.Int16), pl.col("population"), pl.lit(source).alias("source")
    )


def _build_population(
    store: ObjectStore,
    population_store: ObjectStore,
    population_object: str,
    *,
    tables_prefix: str,
    force: bool,
    result: TablesResult,
) -> None:

    key = population_key(tables_prefix)
    source = population_store.url(population_object)
    if population_store.head(population_object) is None:
        result.warnings.append(
            f"{source} does not exist: no population table (rq fetch-population)"
        )
        return
    mkey = manifest_key(tables_prefix, POPULATION_TABLE)
    body = population_store.get_bytes(population_object, max_bytes=MAX_POPULATION_BYTES)
    sha = hashlib.sha256(body).hexdigest()
    previous = {} if force else _read_manifest(store, mkey, population=True)
    if (
        previous.get("sha256") == sha
        and previous.get("source") == source
        and _built_from(store, key, sha)
    ):
        result.builds.append(
            TableBuild(
                POPULATION_TABLE,
                POPULATION_TABLE,
                key,
                "unchanged",
                source,
                previous.get("rows"),
                sha,
            )
        )
        return
    try:
        frame = population_table(body, source=source)
    except RqError as exc:
        result.builds.append(
            TableBuild(
                POPULATION_TABLE, POPULATION_TABLE, key, "failed", source, None, sha, str(exc)
            )
        )
        return
    store.put_bytes(
        key,
        _parquet_bytes(frame),
        content_type="application/vnd.apache.parquet",
        metadata={META_SHA256: sha},
    )
    _write_manifest(
        store,
        mkey,
        {
            "format": _MANIFEST_FORMAT,
            "source": source,
            "sha256": sha,
            "rows": frame.height,
            "key": key,
            "built_at": _now(),
        },
    )
    result.builds.append(
        TableBuild(POPULATION_TABLE, POPULATION_TABLE, key, "built", source, frame.height, sha)
    )


def build_population_table(
    store: ObjectStore,
    *,
    population_store: ObjectStore,
    population_object: str,
    tables_prefix: str = TABLES_PREFIX,
    force: bool = False,
) -> TablesResult:
    """Build (or keep) the population table alone, after a population fetch.

    Args:
        store: the bucket of the tables.
        population_store: the bucket of the stored DataUSA answer.
        population_object: its key.
        tables_prefix: where the tables go.
        force: rebuild it even if the answer did not change.

    Returns:
        What was built (or kept, or failed); a missing answer is a warning.

    Raises:
        ConfigError: the tables prefix is empty, starts with ``/`` or holds ``..``.
        StorageError: a bucket cannot be read or written.
    """
    tables_prefix = resolve_tables_prefix(tables_prefix)
    result = TablesResult(store.bucket, tables_prefix)
    _build_population(
        store,
        population_store,
        population_object,
        tables_prefix=tables_prefix,
        force=force,
        result=result,
    )
    return result


def population_source(
    store: ObjectStore, url: str | None = None, *, settings: Settings | None = None
) -> tuple[ObjectStore, str]:
    """Where :func:`build_tables` reads the population answer from.

    Args:
        store: the bucket of the mirror.
        url: ``s3://bucket/key`` of the answer; default
            ``s3://<population_bucket>/<population_key>`` of ``settings``, else that key in
            ``store``.
        settings: where the defaults come from (the entry points read them from ``RQ_*``).

    Returns:
        The bucket (sharing ``store``'s client) and the key.

    Raises:
        ConfigError: ``url`` is not an ``s3://bucket/key`` URL.
    """

    settings = settings or Settings()
    if url is None and settings.population_bucket:
        url = f"s3://{settings.population_bucket}/{settings.population_key}"
    if url is None:
        return store, settings.population_key
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise ConfigError(f"--population {url!r} is not an s3://bucket/key URL")
    return ObjectStore(store.client, bucket), key


def _check_mirrored(store: ObjectStore, root: str, surveys: Iterable[str]) -> None:
    """Refuse, before anything is built, surveys whose mirror holds no ``<survey>.series``.

    Raises:
        ConfigError: one or more are not mirrored (all of them named).
        StorageError: the bucket cannot be read.
    """
    missing = [s for s in surveys if store.head(f"{root}{s}/{s}.series") is None]
    if missing:
        where = "; ".join(
            f"{store.url(f'{root}{s}/')} holds no {s}.series: is {s!r} a mirrored survey?"
            for s in missing
        )
        raise ConfigError(
            f"{where} (rq sync-bls mirrors one; --survey all takes every one found); nothing "
            "was built"
        )


def _survey_failed(
    result: TablesResult, survey: str, key: str, exc: Exception, *, source: str
) -> None:
    """Record that a survey's tables could not be built (or looked at) at all."""

    if isinstance(exc, RqError):
        error = str(exc)
        log.error("the tables of %s were not built: %s", survey, exc)
    elif isinstance(exc, OSError):
        error = f"local I/O error: {exc}"
        log.error("the tables of %s were not built: %s", survey, error)
    else:
        error = f"unexpected error ({type(exc).__name__}: {exc}); please report it"
        log.error("the tables of %s were not built: %s", survey, error, exc_info=exc)
    held = isinstance(exc, ConcurrentSyncError)
    result.builds.append(
        TableBuild(survey, LEASE_HELD, key, "failed", source, error=error, held=held)
    )


@dataclass(frozen=True)
class TablesOptions:
    """What ``rq tables`` builds: the options of the command.

    Attributes:
        survey: surveys, comma-separated (``pr,cu``), or ``all`` for every mirrored one.
        population: ``s3://bucket/key`` of the population answer (see
            :func:`population_source`).
        root_prefix: the prefix the survey folders are under (empty: the bucket root).
        tables_prefix: where the tables go; default ``<root_prefix>tables/``.
        force: rebuild every table whatever the manifest says.
        lock: build each survey's tables under the lease of its mirror (see
            :func:`build_tables`).
        glue_database: also create the Glue tables of every table built or current, where
            missing, in this database.
    """

    survey: str = ",".join(DEFAULT_SURVEYS)
    population: str | None = None
    root_prefix: str = ""
    tables_prefix: str | None = None
    force: bool = False
    lock: bool = False
    glue_database: str | None = None

    @property
    def surveys(self) -> list[str] | None:
        """The surveys named, or ``None`` for ``all`` (every mirrored one)."""
        if self.survey.strip() == "all":
            return None
        return [name for name in (s.strip() for s in self.survey.split(",")) if name]


def build_tables(
    store: ObjectStore,
    *,
    surveys: Iterable[str] | None = DEFAULT_SURVEYS,
    root_prefix: str = "",
    tables_prefix: str | None = None,
    population_store: ObjectStore | None = None,
    population_object: str | None = None,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
    lock: bool = False,
    scope: TableScope | None = None,
) -> TablesResult:
    """Build (or bring up to date) the Parquet tables of the mirrored surveys and the population.

    Each data file's partition is rebuilt only when the file's sha256 differs from the manifest;
    the series table when the series file or a mapping file changed; the population table when
    the stored answer changed. A failed table leaves its old version in place and is reported in
    the result; the others are still built.

    Args:
        store: the bucket holding the mirror; the tables are written to it too.
        surveys: the surveys (``pr``); ``None`` for every mirrored survey (see
            :func:`find_surveys`).
        root_prefix: the prefix the survey folders are under (empty: the bucket root).
        tables_prefix: where the tables go; default ``<root_prefix>tables/``.
        population_store: the bucket of the population answer; default ``store``.
        population_object: its key; ``None`` builds no population table.
        force: rebuild every table whatever the manifest says.
        on_progress: called with a message before each table is built.
        lock: build each survey's tables under the lease of its mirror (what ``rq sync-bls``
            takes), so a sync and a build never interleave; a survey whose lease another run
            holds fails alone. Off when the caller holds the lease already (a sync's build).
        scope: the tables of each survey this build owns (a fan-out message's share, see
            :class:`TableScope`); default every table.

    Returns:
        What was built, kept unchanged, removed and failed. A survey whose build stops on an
        error of any kind (the bucket, a bug) is one failed entry (``table`` :data:`LEASE_HELD`)
        and the other surveys are still built.

    Raises:
        ConfigError: a survey named is not mirrored or not a survey name (checked before
            anything is built), or there is none; a prefix starts with ``/`` or holds ``..``.
        LockUnsupportedError: ``lock`` on an endpoint that ignores conditional writes.
        StorageError: the bucket cannot be read before anything is built.
    """
    import contextlib

    root = normalise_prefix(root_prefix)
    tables_prefix = resolve_tables_prefix(tables_prefix, root)
    chosen = sorted(set(surveys)) if surveys is not None else find_surveys(store, root_prefix=root)
    if not chosen:
        raise ConfigError(f"no mirrored survey under {store.url(root)} (run rq sync-bls first)")
    for survey in chosen:
        if not survey or "/" in survey or survey == POPULATION_TABLE:
            raise ConfigError(f"{quoted(survey)} is not a survey name such as pr")
    if surveys is not None:
        # Every survey named is checked before anything is built: a typo is a usage error
        # (exit 2) with nothing written, never one found after the other surveys were built.
        _check_mirrored(store, root, chosen)
    result = TablesResult(store.bucket, tables_prefix)
    for survey in chosen:
        with contextlib.ExitStack() as held:
            key = lock_key(f"{root}{survey}/")
            try:
                if lock:
                    held.enter_context(Lease(store, key).acquire())
                _build_survey(
                    store,
                    survey,
                    root=root,
                    tables_prefix=tables_prefix,
                    force=force,
                    result=result,
                    on_progress=on_progress,
                    scope=scope or _WHOLE_SURVEY,
                )
            except LockUnsupportedError:
                raise  # the endpoint's, not the survey's: met at the first survey, before writing
            except Exception as exc:  # one survey's failure, of any kind, never stops the others
                _survey_failed(result, survey, key, exc, source=store.url(f"{root}{survey}/"))
    if population_object:
        try:
            _build_population(
                store,
                population_store or store,
                population_object,
                tables_prefix=tables_prefix,
                force=force,
                result=result,
            )
        except Exception as exc:  # nor does the population table's: the surveys' stand
            source = (population_store or store).url(population_object)
            key = population_key(tables_prefix)
            _survey_failed(result, POPULATION_TABLE, key, exc, source=source)
    return result


# -- querying --------------------------------------------------------------------------------------

# The quest's three reports as SQL over the tables (rearcquest/queries/<name>.sql): Polars SQL,
# DuckDB and Athena all run the same text.
QUERY_NAMES: Final = ("population", "best_year", "series_population")


def named_query(name: str) -> str:
    """The SQL text of one of the reports (see :data:`QUERY_NAMES`).

    Raises:
        ConfigError: no such query.
    """
    from importlib.resources import files

    if name not in QUERY_NAMES:
        raise ConfigError(f"no query {name!r}; choose from {', '.join(QUERY_NAMES)}")
    return files("rearcquest").joinpath("queries", f"{name}.sql").read_text(encoding="utf-8")


def split_location(location: str) -> tuple[str, str] | None:
    """``s3://bucket/prefix`` -> ``(bucket, prefix/)``; ``None`` for a local directory."""
    if not location.startswith("s3://"):
        return None
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"{location!r} is not an s3://bucket/prefix/ URL")
    return bucket, normalise_prefix(prefix)


def _is_partition(relative: str) -> bool:
    """Whether ``observations/file=<data file>/part-0.parquet`` is what ``relative`` is."""
    parts = relative.split("/")
    return (
        len(parts) == 3
        and parts[0] == "observations"
        and parts[1].startswith("file=")
        and (parts[2] == PART_NAME)
    )


def _s3_tables(store: ObjectStore, prefix: str) -> dict[str, pl.LazyFrame]:
    """The tables under an S3 prefix, read in place by Polars' object-store reader.

    One listing finds the tables (the layout :func:`build_tables` writes, nothing else: not the
    ``as-of/`` tables of past releases); each is a lazy scan of its objects' URLs (one per
    observations partition, see :func:`_observations`), with the endpoint, region and credentials
    of ``store`` (:meth:`ObjectStore.reader_options`), so a query reads only the row groups and
    columns it needs.

    Raises:
        StorageError: the listing failed.
    """
    import polars as pl

    reader = store.reader_options()
    options: dict[str, Any] = {
        "storage_options": reader.storage_options,
        "credential_provider": reader.credential_provider,
    }

    def scan(key: str) -> pl.LazyFrame:
        return pl.scan_parquet(store.url(key), glob=False, hive_partitioning=False, **options)

    series: dict[str, str] = {}
    parts: dict[str, list[tuple[str, str]]] = {}
    population: str | None = None
    for info in store.list_objects(prefix):
        relative = info.key[len(prefix) :]
        survey, _, rest = relative.partition("/")
        if relative == f"{POPULATION_TABLE}/population.parquet":
            population = info.key
        elif survey and rest == f"series/{SERIES_NAME}":
            series[survey] = info.key
        elif (
            survey
            and _is_partition(rest)
            # Keys are data: only plain names are rq's (and Polars' reader cannot address a key
            # with a control character).
            and _plain_or_warned(survey, store.url(info.key), "no table of rq's, not read")
            and _plain_or_warned(
                _partition_file(rest), store.url(info.key), "no table of rq's, not read"
            )
        ):
            parts.setdefault(survey, []).append((_partition_file(rest), info.key))
    found: dict[str, pl.LazyFrame] = {}
    if population is not None:
        found[POPULATION_TABLE] = scan(population)
    for survey, keys in sorted(parts.items()):
        found[f"{survey}_observations"] = _observations((n, scan(k)) for n, k in keys)
    for survey, key in sorted(series.items()):
        found[f"{survey}_series"] = scan(key)
    return found


def _partition_file(relative: str) -> str:
    """The data file of ``observations/file=<data file>/part-0.parquet``, as rq wrote it."""
    return relative.split("/")[1].removeprefix("file=")


def _observations(parts: Iterable[tuple[str, pl.LazyFrame]]) -> pl.LazyFrame:
    """One survey's observations: each partition scanned by itself, with ``file`` the name of
    its data file as a literal.

    Not one hive-partitioned scan of a glob: a data file named ``A[1]``, ``*``, ``a=b`` or
    ``%41`` would be read as a pattern, a partition value or an escape, and mislabel or miss
    rows.
    """
    import polars as pl

    return pl.concat(
        [
            frame.with_columns(pl.lit(name, dtype=pl.String).alias("file"))
            for name, frame in sorted(parts, key=lambda part: part[0])
        ],
        how="vertical",
    )


def scan_tables(directory: str | Path) -> dict[str, pl.LazyFrame]:
    """The tables in a local directory, by the names SQL sees them under.

    Args:
        directory: a local copy of a tables prefix.

    Returns:
        ``<survey>_observations`` (with the ``file`` partition column), ``<survey>_series`` and
        ``population``, for the tables present.
    """
    import polars as pl

    root = Path(directory)
    found: dict[str, pl.LazyFrame] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name == POPULATION_TABLE:
            if (folder / "population.parquet").is_file():
                found[POPULATION_TABLE] = pl.scan_parquet(folder / "population.parquet", glob=False)
            continue
        observations = folder / "observations"
        parts = [
            (
                part.name.removeprefix("file="),
                pl.scan_parquet(part / PART_NAME, glob=False, hive_partitioning=False),
            )
            for part in (observations.iterdir() if observations.is_dir() else [])
            if part.name.startswith("file=") and (part / PART_NAME).is_file()
        ]
        if parts:
            found[f"{folder.name}_observations"] = _observations(parts)
        if (folder / SERIES_TABLE / SERIES_NAME).is_file():
            found[f"{folder.name}_series"] = pl.scan_parquet(
                folder / SERIES_TABLE / SERIES_NAME, glob=False
            )
    return found


def _run(
    query: str, frames: Mapping[str, pl.LazyFrame], location: str, names: Iterable[str] = ()
) -> pl.DataFrame:
    import polars as pl

    if not frames and not names:
        raise ConfigError(f"no tables at {location} (build them with rq tables)")
    check_query(query, {*frames, *names})
    try:
        return pl.SQLContext(frames).execute(query, eager=True)
    except pl.exceptions.PolarsError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        known = ", ".join(sorted({*frames, *names}))
        raise ConfigError(f"the query failed: {reason} (tables: {known})") from exc


def run_sql(
    query: str,
    *,
    s3: S3Access,
    location: str | None = None,
    settings: Settings | None = None,
    root_prefix: str = "",
) -> pl.DataFrame:
    """Run a Polars SQL query over the tables of a local directory or an S3 prefix.

    Only one read-only query runs (``SELECT``, ``WITH``, set operations) over the registered
    tables: no table function (``read_csv(...)``), no file as a table, no ``COPY`` or other
    statement; see :func:`rearcquest.data.sqlguard.check_query`.

    The tables are registered as ``<survey>_observations`` (column ``file`` is the data file of
    the partition), ``<survey>_series`` and ``population``. From S3 the Parquet objects are read
    in place by Polars' object-store reader, with the endpoint, region and credentials of the
    store's client (nothing is copied to local disk; only the columns and row groups the query
    needs are fetched).

    Args:
        query: the SQL.
        location: a local directory or ``s3://bucket/prefix/`` (what ``rq tables`` writes);
            default ``s3://<bls_bucket>/<root_prefix>tables/``.
        s3: the S3 access of an ``s3://`` location (a local one makes no client).
        settings: where the default bucket comes from (the entry points read it from ``RQ_*``).
        root_prefix: the prefix the mirrors are under (``rq sync-bls --root-prefix``), whose
            tables are the default location.

    Returns:
        The answer.

    Raises:
        QueryRefusedError: the query is not one read-only query of the tables (a table function
            such as ``read_csv``, ``COPY``, another statement; see :mod:`rearcquest.data.sqlguard`).
        ConfigError: no location and no bucket, an ``s3://`` location whose prefix starts with
            ``/`` or holds ``..``, no tables at the location, or the query failed (unknown
            table, column, syntax).
        StorageError: the tables cannot be read from S3.
    """
    if location is None:
        from rearcquest.config import Settings

        bucket = (settings or Settings()).bls_bucket
        if not bucket:
            raise ConfigError("no tables: pass --tables DIR_OR_S3_URL or set RQ_BLS_BUCKET")
        location = f"s3://{bucket}/{default_tables_prefix(root_prefix)}"
    split = split_location(location)
    if split is None:
        return _run(query, scan_tables(location), location)
    bucket, prefix = split
    frames = _s3_tables(s3.store(bucket), prefix)
    try:
        return _run(query, frames, location)
    except OSError as exc:
        # Polars' object-store reader fails with OSError (FileNotFoundError for a 404).
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageError(
            f"cannot read the tables at {location}: {reason} (check the bucket, the endpoint "
            "and the credentials)"
        ) from exc


# -- rq analyze --from -----------------------------------------------------------------------------


def current_partition(store: ObjectStore, data_key: str, *, tables_prefix: str) -> str | None:
    """The key of the observations partition of a mirrored data file, if it is current.

    Current: the survey's manifest records the sha256 the data file has now, and so does the
    partition's own ``rq-sha256`` metadata (the sha256 of the data file it was built from).

    Args:
        store: the bucket of the mirror and the tables.
        data_key: the mirrored data file (``pr/pr.data.0.Current``).
        tables_prefix: where the tables are.

    Returns:
        The partition's key, or ``None`` (no table, or built from another version of the file).

    Raises:
        StorageError: the bucket cannot be read.
    """
    folder, _, name = data_key.rpartition("/")
    survey = folder.rpartition("/")[2]
    if not survey or not _is_data_file(survey, name):
        return None
    manifest = _read_manifest(store, manifest_key(tables_prefix, survey))
    if manifest.get("format") != _MANIFEST_FORMAT:
        return None
    entry = manifest.get("files", {}).get(name)
    info = store.head(data_key)
    if not entry or info is None:
        return None
    sha = _sha256_in(info)  # from the HEAD just made, not a second one
    if entry.get("sha256") != sha:
        return None
    key = observations_key(tables_prefix, survey, name)
    return key if _built_from(store, key, sha) else None


def _titled(analysis: Analysis, series: pl.DataFrame) -> Analysis:
    """The analysis with the titles of the series its reports hold."""
    import dataclasses

    ids: set[str] = set()
    for frame in (analysis.best_year, analysis.series_population):
        if frame is not None:
            ids.update(frame["series_id"].to_list())
    titles = {
        sid: title
        for sid, title in series.select("series_id", "title").rows()
        # A table rq did not write may hold other types: a title is text or it is left out.
        if sid in ids and isinstance(title, str)
    }
    return dataclasses.replace(analysis, titles=titles)


def partition_to_read(
    store: ObjectStore, data_key: str, *, tables_prefix: str, source: AnalyzeSource, shown: str
) -> str | None:
    """The observations partition ``rq analyze --from source`` reads for the mirrored data file
    ``data_key`` (``shown`` as the user named it), or ``None`` for the text file.

    ``files`` reads no table; ``auto`` reads it when it is current (see
    :func:`current_partition`), else the text file, which it must never do worse than;
    ``tables`` insists on it.

    Raises:
        ConfigError: ``tables`` and no current table.
        StorageError: ``tables`` and the bucket cannot be read.
    """
    if source == "files":
        return None
    prefix = normalise_prefix(tables_prefix)
    try:
        part = current_partition(store, data_key, tables_prefix=prefix)
    except RqError as exc:
        if source == "tables":
            raise
        log.warning("cannot check the tables (%s): reading the text file", exc)
        part = None
    if part is None:
        if source == "tables":
            raise ConfigError(
                f"no current table for {shown} under {store.url(prefix)}; build it with rq tables"
            )
        log.info("no current table for %s: reading the text file", shown)
    return part


def titled(
    analysis: Analysis,
    data: str,
    *,
    store: ObjectStore | None = None,
    tables_prefix: str | None = None,
) -> Analysis:
    """The analysis with the titles of its series, when they can be found.

    Args:
        analysis: the reports.
        data: the data file they were read from: a local path, or its key in ``store``.
        store: the bucket of an S3 data file.
        tables_prefix: read the titles from the survey's series table under this prefix of
            ``store`` (the rows came from its tables); default from the series and mapping
            files beside the data file.

    Returns:
        The analysis, titled; unchanged when the titles cannot be read (they are decoration:
        never worth failing the reports for).
    """
    import polars as pl

    folder, _, name = data.rpartition("/") if store is not None else ("", "", Path(data).name)
    survey = name.partition(".")[0]
    try:
        if store is not None and tables_prefix is not None:
            body = store.get_bytes(series_key(tables_prefix, survey), max_bytes=_MAX_SERIES_BYTES)
            return _titled(
                analysis, pl.read_parquet(io.BytesIO(body), columns=["series_id", "title"])
            )
        texts: _Folder = (
            _S3Folder.listing(store, folder + "/" if folder else "")
            if store is not None
            else _LocalFolder(Path(data).parent)
        )
        if f"{survey}.series" not in texts.names:
            return analysis
        decoded, _, source = _decoded_series(survey, texts, _mapping_files(survey, texts))
        with _tsv_errors(source):
            titles = decoded.select("series_id", "title").collect(engine="streaming")
        return _titled(analysis, titles)
    except Exception as exc:  # the titles are decoration: never worth failing the reports for
        log.warning("no series titles: %s", clipped(str(exc) or type(exc).__name__, 200))
        return analysis
