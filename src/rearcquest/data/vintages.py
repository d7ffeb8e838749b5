"""Reading the past: the reports as of a release, and what a release revised.

The release log (:mod:`rearcquest.records.releases`) names, for every release of a mirror, the S3 version
of each file; a versioned bucket still holds those versions. :func:`list_releases` reads the log,
:func:`analyze_at` runs the reports on the current data or on the files of one release, and
:func:`revisions` compares two releases of a data file observation by observation, keyed on
series, year and period, with exact decimals.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rearcquest._process import scratch_dir
from rearcquest.config import (
    DEFAULT_FILE,
    DEFAULT_FROM_RELEASE,
    DEFAULT_SURVEYS,
    DEFAULT_TO_RELEASE,
    Settings,
)
from rearcquest.data import analytics
from rearcquest.data.analytics import ANALYZE_SOURCES, check_release_bytes, collect, scan_bls
from rearcquest.data.sqlguard import check_query
from rearcquest.data.tables import (
    build_local_tables,
    named_query,
    partition_to_read,
    run_sql,
    split_location,
    titled,
)
from rearcquest.errors import (
    QUOTE_LIMIT,
    ConfigError,
    DataError,
    StorageError,
    clipped,
)
from rearcquest.layout import (
    AS_OF_TABLES,
    META_SHA256,
    PART_NAME,
    default_tables_prefix,
    normalise_prefix,
    path_inside,
    population_key,
    state_key,
)
from rearcquest.layout import tables_prefix as resolve_tables_prefix
from rearcquest.records.releases import load_releases, resolve_release
from rearcquest.records.state import MAX_STATE_BYTES, SyncState

if TYPE_CHECKING:
    import polars as pl

    from rearcquest.aws.storage import ObjectInfo, ObjectStore, S3Access
    from rearcquest.data.analytics import Analysis, ReportInputs
    from rearcquest.data.tables import TablesOptions
    from rearcquest.records.releases import Release

# The largest sync state read to find a multipart object's sha256.


def _store(bucket: str | None, s3: S3Access, settings: Settings | None) -> ObjectStore:

    name = bucket or (settings or Settings()).bls_bucket
    if not name:
        raise ConfigError("no bucket: pass --bucket or set RQ_BLS_BUCKET (the mirror's bucket)")
    return s3.store(name)


def _prefix(prefix: str | None, settings: Settings | None) -> str:
    if prefix is not None:
        return normalise_prefix(prefix)
    return (settings or Settings()).resolved_bls_prefix


def list_releases(
    *,
    s3: S3Access,
    bucket: str | None = None,
    prefix: str | None = None,
    settings: Settings | None = None,
) -> list[Release]:
    """The releases logged for a mirror, newest first.

    Args:
        s3: the run's S3 access.
        bucket: the mirror's bucket; default ``RQ_BLS_BUCKET``.
        prefix: the mirror prefix (``pr/``); default ``RQ_BLS_PREFIX`` or ``pr/``.
        settings: where the defaults come from.

    Raises:
        ConfigError: no bucket.
        DataError: the log is not a release log.
        StorageError: S3 failed.
    """

    store = _store(bucket, s3, settings)
    return list(reversed(load_releases(store, _prefix(prefix, settings)).releases))


def _release(store: ObjectStore, prefix: str, spec: str) -> Release:

    return resolve_release(load_releases(store, prefix).releases, spec)


def _version_of(store: ObjectStore, prefix: str, release: Release, name: str) -> str | None:
    """The S3 version id holding ``name`` as it was in ``release`` (``None``: the current object).

    Raises:
        ConfigError: the release has no such file.
        DataError: the release's bytes were not kept (the bucket was not versioned then).
    """
    entry = release.files.get(name)
    if entry is None:
        raise ConfigError(
            f"release {release.release} has no file {name!r}; it has {', '.join(sorted(release.files))}"
        )
    if entry.version_id is not None:
        return entry.version_id
    head = store.head(prefix + name)
    if head is not None and _current_sha256(store, prefix, name, head) == entry.sha256:
        return None  # versioning was off, but the current bytes are still the release's
    raise DataError(
        f"{store.url(prefix + name)} as of release {release.release} was not kept: the bucket "
        "was not versioned when it was synced. Enable versioning (rq sync-bls --vintages says "
        "how) to keep the releases from now on"
    )


def _current_sha256(store: ObjectStore, prefix: str, name: str, head: ObjectInfo) -> str | None:
    """The sha256 of the object ``head`` describes: its ``rq-sha256`` metadata, or the state's.

    An object uploaded in parts has no ``rq-sha256`` (its metadata is fixed before the body is
    in); the mirror's state records the sha256 with the ETag it was written with, which tells
    whether the object is still that one.
    """

    if sha := head.metadata.get(META_SHA256):
        return sha
    found = store.fetch(state_key(prefix), max_bytes=MAX_STATE_BYTES)
    if found is None:
        return None
    try:
        entry = SyncState.from_json(found[0]).files.get(name)
    except ValueError:
        return None
    return entry.sha256 if entry is not None and entry.etag == head.etag else None


# -- revisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revisions:
    """What one release changed in a data file, against another.

    Attributes:
        from_release: the older release stamp.
        to_release: the newer one.
        file: the file compared.
        revised: ``series_id``, ``year``, ``period``, ``old``, ``new``, ``change`` (exact
            decimals as text, with the digits the files print), by series, year and period.
        added: observations only in the newer release (``value``).
        removed: observations only in the older one.
        summary: per series: ``revised``, ``added``, ``removed``, ``largest_change`` (the
            signed change of the largest magnitude).
    """

    from_release: str
    to_release: str
    file: str
    revised: pl.DataFrame
    added: pl.DataFrame
    removed: pl.DataFrame
    summary: pl.DataFrame


def _printed(value: pl.Expr, decimals: pl.Expr) -> pl.Expr:
    """A decimal of scale 3 as the text the file prints (``-7.000`` with 1 decimal: ``-7.0``)."""
    import polars as pl

    text = value.cast(pl.String)
    # The decimal's text always has three decimals; cut the ones the file does not print.
    return (
        pl.when(decimals == 0)
        .then(text.str.slice(0, text.str.len_chars() - 4))
        .otherwise(text.str.slice(0, text.str.len_chars() - 3 + decimals.cast(pl.Int64)))
    )


# The key of an observation: a BLS data file has one row per key.
_KEY: tuple[str, ...] = ("series_id", "year", "period")
# How many duplicated keys the error names.
_SHOWN_DUPLICATES = 5

_Collector = Callable[["pl.LazyFrame"], "pl.DataFrame"]


def _streamed(frame: pl.LazyFrame) -> pl.DataFrame:
    return frame.collect(engine="streaming")


def _key_hash() -> pl.Expr:
    import polars as pl

    return pl.struct(list(_KEY)).hash()


def duplicated_keys(rows: pl.LazyFrame, *, run: _Collector = _streamed) -> pl.DataFrame:
    """The keys (``series_id``, ``year``, ``period``) that ``rows`` holds more than once.

    One pass keeps a 64-bit hash per row (8 bytes, where the keys themselves take ~40); only
    rows whose hash repeats are read again and counted by their real keys, so a hash that two
    different keys share is never taken for a duplicate.

    Args:
        rows: the observations (as :func:`rearcquest.data.analytics.scan_bls` gives them).
        run: how a query is collected (to name the file in a read error).

    Returns:
        ``series_id``, ``year``, ``period`` and ``rows`` (how many times), sorted by key; empty
        when every key is unique.
    """
    import polars as pl

    hashes = run(rows.select(_key_hash().alias("hash")))["hash"]
    clashing = hashes.filter(hashes.is_duplicated()).unique()
    counted = (
        rows.filter(_key_hash().is_in(clashing.implode()))
        .group_by(list(_KEY))
        .agg(pl.len().alias("rows"))
        .filter(pl.col("rows") > 1)
        .sort(list(_KEY))
    )
    if clashing.is_empty():
        return pl.DataFrame(schema=counted.collect_schema())
    return run(counted)


def _refuse_duplicates(rows: pl.LazyFrame, source: str, run: _Collector) -> None:
    """Raise DataError when ``rows`` hold a key twice: such a file cannot be compared (the join
    would pair every copy with every copy, N x M rows)."""
    found = duplicated_keys(rows, run=run)
    if not found.height:
        return
    shown = ", ".join(
        f"{clipped(s, QUOTE_LIMIT)} {y} {clipped(p, QUOTE_LIMIT)} ({n} rows)"
        for s, y, p, n in found.head(_SHOWN_DUPLICATES).rows()
    )
    more = (
        f" and {found.height - _SHOWN_DUPLICATES} more" if found.height > _SHOWN_DUPLICATES else ""
    )
    raise DataError(
        f"{source}: {found.height} observation key(s) appear more than once (series_id year "
        f"period): {shown}{more}; a BLS data file has one row per series, year and period, so "
        "this file is malformed and its revisions cannot be computed"
    )


def _diff(
    old: pl.LazyFrame, new: pl.LazyFrame, *, series: str | None, run: _Collector
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`diff_observations` on rows whose keys are known to be unique."""
    import polars as pl

    key = list(_KEY)
    if series:
        # Python's \Z is not in the Rust regex syntax Polars speaks; $ (no multi-line) is the same.
        pattern = "^" + fnmatch.translate(series).removesuffix("\\Z") + "$"
        old = old.filter(pl.col("series_id").str.contains(pattern))
        new = new.filter(pl.col("series_id").str.contains(pattern))
    cols = [*key, "value", "decimals"]
    # Only the observations that differ are collected: the join streams, and memory holds one
    # release's keys and values, not the joined pair.
    joined = run(
        old.select(cols)
        .join(new.select(cols), on=key, how="full", coalesce=True, suffix="_new")
        .filter(
            pl.col("value").is_null()
            | pl.col("value_new").is_null()
            | (pl.col("value") != pl.col("value_new"))
        )
    )
    revised = (
        joined.filter(pl.col("value").is_not_null() & pl.col("value_new").is_not_null())
        .with_columns(
            # Exact, and wider than the values (DECIMAL(38,3)): the change of two DECIMAL(18,3)
            # values of opposite signs needs one more digit than either.
            (pl.col("value_new") - pl.col("value")).alias("delta"),
            pl.max_horizontal("decimals", "decimals_new").alias("d"),
        )
        .select(
            *key,
            _printed(pl.col("value"), pl.col("decimals")).alias("old"),
            _printed(pl.col("value_new"), pl.col("decimals_new")).alias("new"),
            _printed(pl.col("delta"), pl.col("d")).alias("change"),
            pl.col("delta").abs().alias("_size"),
        )
        .sort(key)
    )
    added = (
        joined.filter(pl.col("value").is_null())
        .select(*key, _printed(pl.col("value_new"), pl.col("decimals_new")).alias("value"))
        .sort(key)
    )
    removed = (
        joined.filter(pl.col("value_new").is_null())
        .select(*key, _printed(pl.col("value"), pl.col("decimals")).alias("value"))
        .sort(key)
    )
    counts = [
        revised.group_by("series_id").agg(
            pl.len().alias("revised"),
            # The signed change of the largest magnitude, as printed (first of equals by key).
            pl.col("change")
            .sort_by("_size", descending=True, maintain_order=True)
            .first()
            .alias("largest_change"),
        ),
        added.group_by("series_id").agg(pl.len().alias("added")),
        removed.group_by("series_id").agg(pl.len().alias("removed")),
    ]
    summary = counts[0]
    for frame in counts[1:]:
        summary = summary.join(frame, on="series_id", how="full", coalesce=True)
    summary = summary.select(
        "series_id",
        *(pl.col(c).fill_null(0).cast(pl.Int64) for c in ("revised", "added", "removed")),
        pl.col("largest_change").cast(pl.String),
    ).sort("series_id")
    return revised, added, removed, summary


def diff_observations(
    old: pl.DataFrame | pl.LazyFrame,
    new: pl.DataFrame | pl.LazyFrame,
    *,
    series: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Compare two releases' rows (as :func:`rearcquest.data.analytics.scan_bls` gives them).

    Observations are keyed on ``series_id``, ``year``, ``period``. A value is revised when the
    exact decimals differ (``1.0`` and ``1.00`` are the same value).

    Args:
        old: the older rows.
        new: the newer rows.
        series: only series matching this glob (``PRS30*``).

    Returns:
        ``revised``, ``added``, ``removed`` and the per-series ``summary``, sorted by key. Values
        are strings with the digits the files print; ``change`` too (with the larger of the two
        values' decimals), exact however wide.

    Raises:
        DataError: a key appears twice in the older or the newer rows.
    """
    for rows, which in ((old, "the older rows"), (new, "the newer rows")):
        _refuse_duplicates(rows.lazy(), which, _streamed)
    return _diff(old.lazy(), new.lazy(), series=series, run=_streamed)


def diff_files(
    old: Path,
    new: Path,
    *,
    series: str | None = None,
    sources: tuple[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`diff_observations` of two local BLS data files, in memory bounded by one
    release's keys and values (neither file is held whole, nor the joined pair).

    Each file is read twice, streaming: once to check every row and that no key repeats (a
    third time only when two rows share a key hash), then for the comparison.

    Args:
        old: the older file.
        new: the newer file.
        series: only series matching this glob.
        sources: how errors name the two files; default their paths.

    Raises:
        ConfigError: a file does not exist.
        DataError: a malformed row (the message names the file and the line), or a key that
            appears more than once (it names the file and the first such keys).
    """

    named = sources or (str(old), str(new))
    for path, source in zip((old, new), named, strict=True):

        def run(frame: pl.LazyFrame, path: Path = path, source: str = source) -> pl.DataFrame:
            return collect(frame, bls=path, source=source)[0]

        _refuse_duplicates(scan_bls(path, source=source), source, run)
    # Both files are checked: the comparison reads them without checking again.
    return _diff(
        scan_bls(old, source=named[0], validate=False),
        scan_bls(new, source=named[1], validate=False),
        series=series,
        run=lambda frame: collect(frame)[0],
    )


def _download(
    store: ObjectStore,
    key: str,
    version_id: str | None,
    target: Path,
    on_chunk: Callable[[bytes], object] | None = None,
) -> Path:
    with target.open("wb") as fh:
        store.download_to(key, fh, version_id=version_id, on_chunk=on_chunk)
    return target


def _download_release_file(
    store: ObjectStore, prefix: str, release: Release, name: str, folder: Path
) -> Path:
    """Download ``name`` as it was in ``release`` into ``folder``, proven to be those bytes.

    The name comes from the release log: it is written only inside ``folder``, and the bytes
    must hash to the sha256 the log recorded.

    Raises:
        ConfigError: the release has no such file.
        DataError: the name is not a file name, the bytes were not kept, or they are not the
            release's (the message names the object, the version and the release).
        StorageError: S3 failed.
    """
    key = prefix + name
    version_id = _version_of(store, prefix, release, name)
    target = path_inside(folder, name)
    hashed = hashlib.sha256()
    _download(store, key, version_id, target, hashed.update)
    check_release_bytes(
        hashed.hexdigest(),
        release.files[name].sha256,
        source=store.url(key),
        version_id=version_id,
        release=release.release,
    )
    return target


def revisions(
    *,
    s3: S3Access,
    from_release: str = DEFAULT_FROM_RELEASE,
    to_release: str = DEFAULT_TO_RELEASE,
    file: str = DEFAULT_FILE,
    series: str | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    settings: Settings | None = None,
) -> Revisions:
    """Compare a data file in two releases of a mirror, observation by observation.

    Args:
        s3: the run's S3 access.
        from_release: the older release: a date, a stamp, ``previous`` or ``latest``.
        to_release: the newer release.
        file: the data file (``pr.data.0.Current``).
        series: only series matching this glob.
        bucket: the mirror's bucket; default ``RQ_BLS_BUCKET``.
        prefix: the mirror prefix; default ``RQ_BLS_PREFIX`` or ``pr/``.
        settings: where the defaults come from.

    Raises:
        ConfigError: no bucket, an unknown release, or a release without the file.
        DataError: a release's bytes were not kept, or a file is malformed: a malformed row
            (a value wider than DECIMAL(18,3) among them), or a key that appears twice.
        StorageError: S3 failed.
    """

    store = _store(bucket, s3, settings)
    prefix = _prefix(prefix, settings)
    logged = load_releases(store, prefix).releases
    older, newer = resolve_release(logged, from_release), resolve_release(logged, to_release)
    key = prefix + file
    with scratch_dir("revisions") as tmp:
        paths = []
        for which, rel in (("old", older), ("new", newer)):
            target = Path(tmp) / which
            target.mkdir()
            paths.append(_download_release_file(store, prefix, rel, file, target))
        sources = (
            f"{store.url(key)} as of {older.release}",
            f"{store.url(key)} as of {newer.release}",
        )
        diff = diff_files(paths[0], paths[1], series=series, sources=sources)
    return Revisions(older.release, newer.release, file, *diff)


def revisions_doc(result: Revisions) -> dict[str, Any]:
    """The JSON document of ``rq revisions``: values as exact decimals (:class:`Decimal`)."""

    def rows(frame: pl.DataFrame, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for row in frame.iter_rows(named=True):
            out.append(
                {
                    k: Decimal(row[k]) if k in ("old", "new", "change", "value") else row[k]
                    for k in fields
                }
            )
        return out

    key = ("series_id", "year", "period")
    return {
        "from": result.from_release,
        "to": result.to_release,
        "file": result.file,
        "revised": rows(result.revised, (*key, "old", "new", "change")),
        "added": rows(result.added, (*key, "value")),
        "removed": rows(result.removed, (*key, "value")),
        "summary": [
            {
                "series_id": r["series_id"],
                "revised": r["revised"],
                "added": r["added"],
                "removed": r["removed"],
                "largest_change": Decimal(r["largest_change"]) if r["largest_change"] else None,
            }
            for r in result.summary.iter_rows(named=True)
        ],
    }


# -- tables and SQL as of a release ----------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseTables:
    """The tables of one release, built into a local directory.

    Attributes:
        release: the release stamp.
        directory: the tables (``<survey>/observations/...``, ``<survey>/series/series.parquet`` and,
            when the bucket has one, the current ``population/population.parquet``).
        files: the directory's files, relative to it.
        population: whether the current population table was copied in.
        warnings: the series decoding's warnings.
    """

    release: str
    directory: Path
    files: tuple[str, ...]
    population: bool
    warnings: tuple[str, ...] = ()


def release_slug(stamp: str) -> str:
    """A release stamp as one plain name (a key part): ``2025-06-05 12:30`` -> ``2025-06-05T1230``.

    Anything but letters, digits and ``-`` becomes ``_``, so a stamp read from the log never
    names another folder.
    """
    return re.sub(r"[^0-9A-Za-z-]", "_", stamp.replace(" ", "T").replace(":", "")) or "_"


def build_release_tables(
    as_of: str,
    directory: str | Path,
    *,
    s3: S3Access,
    bucket: str | None = None,
    prefix: str | None = None,
    tables_prefix: str = "tables/",
    settings: Settings | None = None,
) -> ReleaseTables:
    """Build the tables ``rq tables`` builds, from the files of a past release.

    Every file of the release is read at its S3 version; the population table is not part of
    the BLS releases: the current one (``<tables_prefix>population/population.parquet``) is
    copied when the bucket has it.

    Raises:
        ConfigError: no bucket, no such release, or the mirror prefix names no survey.
        DataError: a release's bytes were not kept, or a file is malformed.
        StorageError: S3 failed.
    """

    store = _store(bucket, s3, settings)
    prefix = _prefix(prefix, settings)
    survey = prefix.strip("/").rsplit("/", 1)[-1]
    if not survey or survey == "all" or "," in survey:
        raise ConfigError(
            f"--as-of builds the tables of one mirrored survey; pass --survey pr, not {prefix!r}"
        )
    release = _release(store, prefix, as_of)
    target = Path(directory)
    with scratch_dir("release") as tmp:
        sources = {}
        for name in sorted(release.files):
            _download_release_file(store, prefix, release, name, Path(tmp))
            sources[name] = f"{store.url(prefix + name)} as of {release.release}"
        warnings = build_local_tables(Path(tmp), survey, target, sources=sources)
    population = store.head(population_key(tables_prefix)) is not None
    if population:
        path = path_inside(target, "population/population.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(store, population_key(tables_prefix), None, path)
    files = tuple(sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()))
    return ReleaseTables(release.release, target, files, population, tuple(warnings))


def analyze_at(
    inputs: ReportInputs,
    *,
    s3: S3Access,
    settings: Settings | None = None,
) -> Analysis:
    """The reports of ``rq analyze``: where the BLS rows come from is resolved here, once.

    The BLS file is ``inputs.bls``, default the mirrored ``<root_prefix>pr/pr.data.0.Current``.
    With ``inputs.as_of`` it is read at the S3 version the release log names for the latest
    release on or before that date (:func:`rearcquest.records.releases.resolve_release`); the population
    is not versioned by releases: the current one is read, and ``population_source`` says so.
    Else ``inputs.source`` decides: ``auto`` reads the observations table when it is current
    (:func:`rearcquest.data.tables.partition_to_read`), else the text file, for the same reports
    (a non-number, null in the table, is left out; the text file rejects it). The reports are
    then titled (:func:`rearcquest.data.tables.titled`).

    Args:
        inputs: the reports, their inputs and where the BLS rows are read.
        s3: the run's S3 access (its client is made only when S3 is read).
        settings: the default buckets and mirror prefix (the entry points read ``RQ_*``).

    Returns:
        The reports; with ``as_of``, ``release`` names the release and ``bls_source`` the
        version read.

    Raises:
        ConfigError: an unknown source; ``tables`` for a local file or without a current
            table; ``as_of`` with ``tables``, for the population report alone, for a file not
            in S3, or matching no release; and as :func:`rearcquest.data.analytics.analyze`.
        DataError: the release's bytes were not kept; and as ``analyze``.
    """
    import polars as pl

    if inputs.source not in ANALYZE_SOURCES:
        raise ConfigError(
            f"unknown source {inputs.source!r}; choose from {', '.join(ANALYZE_SOURCES)}"
        )
    if inputs.as_of is not None and inputs.source == "tables":
        raise ConfigError("--as-of reads the text file of a release; drop --from tables")
    settings = settings or Settings()
    root = normalise_prefix(inputs.root_prefix)
    if inputs.bls is None and root and settings.bls_bucket:
        # The mirror under the root prefix, current or as of a release.
        bls = f"s3://{settings.bls_bucket}/{root}{DEFAULT_SURVEYS[0]}/{DEFAULT_FILE}"
        inputs = replace(inputs, bls=bls)
    location = str(inputs.bls) if inputs.bls is not None else None
    location = location or analytics.default_locations(settings)[0]
    if inputs.as_of is not None:
        return _analyze_release(inputs, location, settings, s3)

    def run(rows: pl.LazyFrame | None = None) -> Analysis:
        return analytics.analyze(inputs, s3=s3, settings=settings, bls_rows=rows)

    split = split_location(location) if location and inputs.need_bls else None
    if location is None or split is None:
        if inputs.source == "tables" and inputs.need_bls:
            raise ConfigError(
                f"--from tables reads the tables beside an S3 mirror; {location} is not in S3"
            )
        analysis = run()
        return titled(analysis, location) if location and inputs.need_bls else analysis
    bucket, data_key = split[0], split[1].rstrip("/")
    store = s3.store(bucket)
    tables_prefix = resolve_tables_prefix(inputs.tables_prefix, root)
    part = partition_to_read(
        store, data_key, tables_prefix=tables_prefix, source=inputs.source, shown=location
    )
    if part is None:
        return titled(run(), data_key, store=store)
    with scratch_dir("analyze") as tmp:
        path = Path(tmp) / PART_NAME
        with path.open("wb") as fh:
            store.download_to(part, fh)
        rows = (
            pl.scan_parquet(path)
            .filter(pl.col("value").is_not_null())
            .select("series_id", pl.col("year").cast(pl.Int32), "period", "value", "decimals")
        )
        inputs = replace(inputs, bls=store.url(part))
        analysis = run(rows)
    return titled(analysis, data_key, store=store, tables_prefix=tables_prefix)


def _analyze_release(
    inputs: ReportInputs,
    location: str | None,
    settings: Settings,
    s3: S3Access,
) -> Analysis:
    """:func:`analyze_at` for ``inputs.as_of``: the BLS file ``location`` of that release."""

    if not inputs.need_bls:
        raise ConfigError(
            "--as-of reads the BLS file of a past release; the population report alone does "
            "not read it (population is not versioned by releases)"
        )
    if not location or not location.startswith("s3://"):
        raise ConfigError(
            "--as-of reads a mirrored file in S3: pass --bls s3://BUCKET/pr/pr.data.0.Current "
            "or set RQ_BLS_BUCKET"
        )
    bucket, _, key = location[len("s3://") :].partition("/")
    prefix, _, name = key.rpartition("/")
    prefix = prefix + "/" if prefix else ""
    store = s3.store(bucket)
    release = _release(store, prefix, str(inputs.as_of))
    version_id = _version_of(store, prefix, release, name)
    analysis = analytics.analyze(
        replace(inputs, bls=location),
        s3=s3,
        settings=settings,
        bls_version_id=version_id,
        bls_sha256=release.files[name].sha256,
        release=release.release,
    )
    shown = f"{location} as of release {release.release}"
    if version_id is not None:
        shown += f" (version {version_id})"
    pop = analysis.population_source
    return replace(
        analysis,
        bls_source=shown,
        population_source=f"{pop} (current: population is not kept by release)" if pop else None,
    )


def query(
    sql: str | None,
    *,
    s3: S3Access,
    named: str | None = None,
    as_of: str | None = None,
    location: str | None = None,
    root_prefix: str = "",
    settings: Settings | None = None,
) -> tuple[str | None, pl.DataFrame]:
    """The answer of ``rq sql``: a query, or a named report query, over the current tables or a
    release's (built in a temporary directory, see :func:`build_release_tables`).

    Args:
        sql: the query; or None with ``named``.
        s3: the run's S3 access (local tables make no client).
        named: one of :data:`rearcquest.data.tables.QUERY_NAMES` instead.
        as_of: query the tables of this release (built in a temporary directory).
        location: the current tables (a directory or an ``s3://`` prefix), not with ``as_of``.
        root_prefix: where the survey mirrors are; the current tables default to
            ``s3://<bls_bucket>/<root_prefix>tables/``, and ``as_of`` reads the release of
            ``<root_prefix>pr/`` (with the population table of ``<root_prefix>tables/``).
        settings: where the default bucket and mirror prefix are.

    Returns:
        The release queried (None for the current tables) and the answer.

    Raises:
        QueryRefusedError: the query is not one read-only query (checked before a release is
            downloaded).
        ConfigError: neither or both of ``sql`` and ``named``; ``as_of`` with ``location``; or
            as :func:`build_release_tables` and :func:`rearcquest.data.tables.run_sql`.
        DataError, StorageError: as :func:`build_release_tables`.
    """

    if (sql is None) == (named is None):
        raise ConfigError("give either a QUERY or --named NAME")
    text = sql if sql is not None else named_query(str(named))
    if as_of is None:
        return None, run_sql(
            text, s3=s3, location=location, settings=settings, root_prefix=root_prefix
        )
    if location is not None:
        raise ConfigError("--as-of builds the release's tables itself; drop --tables")
    check_query(text)  # before the release is downloaded; run_sql checks its tables too
    root = normalise_prefix(root_prefix)
    with scratch_dir("sql-as-of") as tmp:
        built = build_release_tables(
            as_of,
            tmp,
            s3=s3,
            # The mirror and the tables under the root prefix, as rq sql reads them without it.
            prefix=root + DEFAULT_SURVEYS[0] if root else None,
            tables_prefix=default_tables_prefix(root),
            settings=settings,
        )
        return built.release, run_sql(text, s3=s3, location=tmp)


def tables_as_of(
    as_of: str,
    options: TablesOptions,
    *,
    s3: S3Access,
    bucket: str | None = None,
    settings: Settings | None = None,
) -> tuple[ReleaseTables, list[str]]:
    """Build the tables of a past release into ``<tables_prefix>as-of/<release>/`` in the bucket
    (``rq sql --tables s3://BUCKET/tables/as-of/2025-06-05T1230/`` reads them). That folder is
    the release's alone and is emptied before the tables are written.

    Args:
        as_of: a date or release stamp (see :func:`build_release_tables`).
        options: the survey (one), under ``options.root_prefix``, and ``options.tables_prefix``
            (default ``<root_prefix>tables/``).
        s3: the run's S3 access.
        bucket: the mirror's bucket, where the tables go too; default ``settings.bls_bucket``.
        settings: where the default bucket is.

    Returns:
        The release's tables (their temporary directory is gone) and the keys written.

    Raises:
        ConfigError, DataError, StorageError: as :func:`build_release_tables`.
    """

    tables_prefix = resolve_tables_prefix(options.tables_prefix, options.root_prefix)
    prefix = normalise_prefix(normalise_prefix(options.root_prefix) + options.survey.strip())
    store = _store(bucket, s3, settings)
    with scratch_dir("tables-as-of") as tmp:
        built = build_release_tables(
            as_of, tmp, s3=s3, bucket=store.bucket, prefix=prefix, tables_prefix=tables_prefix
        )
        base = f"{normalise_prefix(tables_prefix)}{AS_OF_TABLES}/{release_slug(built.release)}/"
        # The release's own folder, emptied first: what an earlier, interrupted build of the
        # same release left (a partition this build does not write) is never read with it.
        stale = [info.key for info in store.list_objects(base)]
        if failed := store.delete_many(stale):
            key, why = sorted(failed.items())[0]
            raise StorageError(
                f"could not clear {store.url(base)} before writing release {built.release}: "
                f"{store.url(key)}: {why}"
            )
        written = []
        for relative in built.files:
            # A release's tables are a few MB: one PUT each.
            store.put_bytes(
                base + relative,
                path_inside(Path(tmp), relative).read_bytes(),
                content_type="application/vnd.apache.parquet",
            )
            written.append(store.url(base + relative))
    return built, written
