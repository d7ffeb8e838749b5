"""The scheduled job: sync the BLS mirror, then fetch the population, whatever the sync did.

With tables (``rq sync-bls --tables``, ``RQ_TABLES``) a sync that changed something is followed,
under the same lease, by a build of the survey's Parquet tables (:func:`tables_after_sync`), and
the population fetch by the population table.

One function serves ``rq run`` (cron, systemd) and the scheduled Lambda, so the two cannot drift.
Every step runs whatever the steps before it did: a failed sync does not prevent the fetch, and
the reports are computed from what is stored. The result says what failed and
:meth:`PipelineResult.raise_for_errors` turns that into one error at the end, for schedulers and
Lambda retries to see: the exit code is 0 exactly when ``ok`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_BLS_URL,
    DEFAULT_INDEX_KEY,
    DEFAULT_ROOT_URL,
    DEFAULT_TRANSFERS,
    Settings,
    default_prefix,
    normalise_prefix,
)
from rearcquest.errors import ConfigError, DataError, OptionError, RqError, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from rearcquest.catalog import Catalog
    from rearcquest.fanout import FanoutSettings, WorkMessage
    from rearcquest.sources._http import RetryPolicy
    from rearcquest.storage import ObjectStore
    from rearcquest.surveys import MultiSyncResult, SurveyOutcome
    from rearcquest.sync import Progress, SyncResult
    from rearcquest.tables import TablesOptions, TablesResult

log = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    """One step of the job: its JSON summary, or its error and exit code."""

    summary: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0


@dataclass
class PipelineResult:
    """The outcome of :func:`run_pipeline`."""

    sync: StepOutcome = field(default_factory=StepOutcome)
    population: StepOutcome = field(default_factory=StepOutcome)
    reports: StepOutcome | None = None
    tables: StepOutcome | None = None
    analysis: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when every step that ran succeeded."""
        return all(step.error is None for _, step in self.steps())

    def steps(self) -> list[tuple[str, StepOutcome]]:
        """The steps that ran, by name."""
        steps = [("sync-bls", self.sync), ("fetch-population", self.population)]
        if self.tables is not None:
            steps.append(("tables", self.tables))
        if self.reports is not None:
            steps.append(("analyze", self.reports))
        return steps

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of both steps."""
        doc: dict[str, Any] = {
            "ok": self.ok,
            "sync": {"summary": self.sync.summary, "error": self.sync.error},
            "population": {"summary": self.population.summary, "error": self.population.error},
        }
        if self.tables is not None:
            doc["tables"] = {"summary": self.tables.summary, "error": self.tables.error}
        if self.reports is not None:
            doc["reports"] = {"summary": self.reports.summary, "error": self.reports.error}
        return doc

    def raise_for_errors(self) -> None:
        """Raise one :class:`RqError` naming every failed step, with the highest exit code.

        Raises exactly when :attr:`ok` is false, so an exit code and ``"ok"`` always agree.

        Raises:
            RqError: a step failed.
        """
        failed = [(name, step) for name, step in self.steps() if step.error]
        if failed:
            error = RqError("; ".join(f"{name} failed: {step.error}" for name, step in failed))
            error.exit_code = max(step.exit_code for _, step in failed)
            raise error


@contextmanager
def _recording(step: StepOutcome, name: str) -> Iterator[None]:
    """Record an error raised in the block as the step's failure, instead of raising it.

    An ``OSError`` (a full temporary disk, say) is a failure of that step like an
    :class:`RqError` (exit code 1), and so is any other exception (a bug: logged with its
    traceback): the next step still runs.
    """
    try:
        yield
    except RqError as exc:
        step.error, step.exit_code = str(exc), exc.exit_code
        log.error("%s failed: %s", name, exc)
    except OSError as exc:
        step.error, step.exit_code = f"local I/O error: {exc}", 1
        log.error("%s failed: %s", name, step.error)
    except Exception as exc:  # a bug in one step must not stop the scheduled job's others
        step.error, step.exit_code = _unexpected(exc), 1
        log.error("%s failed: %s", name, step.error, exc_info=exc)


def _unexpected(exc: BaseException) -> str:
    """How an error rq did not expect is reported."""
    return f"unexpected error ({type(exc).__name__}: {exc}); please report it"


def sync_with_index(
    store: ObjectStore,
    *,
    index_key: str,
    on_synced: Callable[[SyncResult], None] | None = None,
    **options: Any,
) -> SyncResult:
    """:func:`~rearcquest.sync.sync_bls`, keeping a static ``index.html`` of the mirror current.

    The page at ``index_key`` is rewritten, under the sync's lease, when the sync changed something
    or the page is missing; it is never deleted as a stale file (see ``rq serve-index``).

    Args:
        store: the bucket to mirror into.
        index_key: where the page goes (inside the mirror prefix or not).
        on_synced: also called under the lease, after the page (the tables are built there).
        options: the other keyword arguments of :func:`~rearcquest.sync.sync_bls`.

    Returns:
        The sync's result, with ``index_written`` set when the page was written.
    """
    from rearcquest.index import write_static_index
    from rearcquest.sync import sync_bls

    def write_page(result: SyncResult) -> None:
        if result.added or result.updated or result.deleted or store.head(index_key) is None:
            result.index_written = write_static_index(store, result.prefix, index_key).key
        if on_synced is not None:
            on_synced(result)

    return sync_bls(store, index_key=index_key, on_synced=write_page, **options)


def survey_of(prefix: str) -> tuple[str, str]:
    """The root prefix and the survey of a mirror prefix: ``mirrors/pr/`` -> ``("mirrors/", "pr")``.

    Raises:
        ConfigError: the mirror is at the bucket root, where no survey folder names it.
    """
    prefix = normalise_prefix(prefix)
    if not prefix:
        raise ConfigError(
            "tables are built from a survey folder (<root prefix><survey>/, e.g. pr/); "
            "this mirror is at the bucket root: give it a --prefix such as pr/"
        )
    root, _, survey = prefix.rstrip("/").rpartition("/")
    return (root + "/" if root else ""), survey


def tables_after_sync(
    store: ObjectStore,
    result: SyncResult,
    *,
    tables_prefix: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    catalog: Catalog | None = None,
) -> TablesResult | None:
    """Build the Parquet tables of the survey a sync mirrored, if the sync changed something.

    Also when nothing changed but the tables need it (never built, the last build failed or
    was killed; one read of the manifest tells). A dry run or a tripped delete guard changed
    nothing and builds nothing. What happened is recorded in ``result.tables`` and, on a
    failure, ``result.tables_error`` (so :meth:`SyncResult.raise_for_errors` raises it); it is
    never raised here, so the sync's own outcome stands.

    Args:
        store: the bucket of the mirror (the tables go there too).
        result: the sync's result; its prefix is ``<root prefix><survey>/``.
        tables_prefix: where the tables go; default ``<root prefix>tables/``.
        on_progress: called with a message before each table is built.
        catalog: also create the survey's Glue tables there when they are missing, once its
            tables are built or found current; Glue's refusal is ``result.tables_error``.

    Returns:
        What the build did, or ``None`` when it did not run or failed as a whole.
    """
    from rearcquest.tables import build_tables, default_tables_prefix, tables_need_build

    if result.dry_run or result.delete_guard:
        return None
    root, survey = survey_of(result.prefix)
    where = normalise_prefix(tables_prefix) if tables_prefix else default_tables_prefix(root)
    summary: dict[str, Any] = {"bucket": store.bucket, "tables_prefix": where, "skipped": None}
    changed = [*result.added, *result.updated, *result.deleted]
    try:
        reason = (
            f"the sync changed {len(changed)} file(s)"
            if changed
            else tables_need_build(store, survey, tables_prefix=where)
        )
        if reason is None:
            summary["skipped"] = "the sync changed nothing and the tables are current"
            result.tables = summary
            if catalog is not None:
                _register_glue_tables(
                    catalog, result, summary, bucket=store.bucket, tables_prefix=where
                )
            return None
        log.info("building the tables of %s: %s", survey, reason, extra={"survey": survey})
        built = build_tables(
            store, surveys=[survey], root_prefix=root, tables_prefix=where, on_progress=on_progress
        )
    except Exception as exc:  # recorded, never raised: the sync's own outcome stands
        error = str(exc) if isinstance(exc, (RqError, OSError)) else _unexpected(exc)
        result.tables, result.tables_error = summary, error
        log.error(
            "the tables of %s were not built: %s",
            survey,
            error,
            exc_info=None if isinstance(exc, RqError) else exc,
            extra={"survey": survey},
        )
        return None
    result.tables = {**built.to_dict(), "skipped": None, "reason": reason}
    try:
        built.raise_for_errors()
    except RqError as exc:
        result.tables_error = str(exc)
        log.error("the tables of %s were not all built: %s", survey, exc, extra={"survey": survey})
        return built
    if catalog is not None:
        _register_glue_tables(
            catalog, result, result.tables, bucket=store.bucket, tables_prefix=where
        )
    return built


@dataclass
class TablesRun:
    """What ``rq tables`` did: the tables, and with a Glue database what it registered.

    Attributes:
        result: the build.
        glue: :func:`register_glue_tables`'s answer (``{"database", "error"}`` when Glue
            refused), or None without a database.
    """

    result: TablesResult
    glue: dict[str, Any] | None = None

    @property
    def glue_error(self) -> str | None:
        """Why the tables could not be registered in Glue, or None."""
        return self.glue.get("error") if self.glue else None

    def to_dict(self) -> dict[str, Any]:
        """The build's document, with ``"glue"`` when a database was given."""
        doc = self.result.to_dict()
        if self.glue is not None:
            doc["glue"] = self.glue
        return doc

    def raise_for_errors(self) -> None:
        """Raise for a failed table first, then for a failed registration.

        Raises:
            RqError: as :meth:`TablesResult.raise_for_errors`.
            StorageError: the tables were built but Glue refused them.
        """
        self.result.raise_for_errors()
        if self.glue_error is not None:
            raise StorageError(
                f"the tables were built but not registered in Glue: {self.glue_error}"
            )


def build_tables_registered(
    store: ObjectStore,
    options: TablesOptions,
    *,
    settings: Settings | None = None,
    on_progress: Callable[[str], None] | None = None,
    glue_client: Any = None,
) -> TablesRun:
    """``rq tables``: build the tables, then create their Glue tables where missing.

    Args:
        store: the bucket of the mirror.
        options: what to build; with ``options.glue_database``, also register every survey
            table built or found current, and the population table, in that Glue database
            (what the stack declares, for Athena).
        settings: where the population answer is by default (see
            :func:`rearcquest.tables.population_source`).
        on_progress: called with a message before each table is built.
        glue_client: a Glue client to use instead of the default one.

    Raises:
        StorageError: the Glue database does not exist (checked before anything is built).
        RqError: as :func:`~rearcquest.tables.build_tables`.
    """
    from rearcquest.tables import LEASE_HELD, POPULATION_TABLE, build_tables, population_source

    catalog = _catalog(options.glue_database, glue_client)
    if catalog is not None:
        catalog.check_database()
    population_store, population_object = population_source(
        store, options.population, settings=settings
    )
    built = build_tables(
        store,
        surveys=options.surveys,
        root_prefix=options.root_prefix,
        tables_prefix=options.tables_prefix,
        population_store=population_store,
        population_object=population_object,
        force=options.force,
        on_progress=on_progress,
        lock=options.lock,
    )
    run = TablesRun(built)
    if catalog is None:
        return run
    present = {
        b.survey
        for b in run.result.builds
        if b.status in ("built", "unchanged") and b.table != LEASE_HELD
    }
    try:
        run.glue = register_glue_tables(
            catalog,
            store.bucket,
            surveys=sorted(present - {POPULATION_TABLE}),
            population=POPULATION_TABLE in present,
            tables_prefix=run.result.tables_prefix,
        )
    except RqError as exc:
        run.glue = {"database": catalog.database, "error": str(exc)}
    return run


def _register_glue_tables(
    catalog: Catalog,
    result: SyncResult,
    summary: dict[str, Any],
    *,
    bucket: str,
    tables_prefix: str,
) -> None:
    """Create the two Glue tables of the survey ``result`` synced, if missing.

    The outcome goes to ``summary["glue"]`` (see :func:`register_glue_tables`). A refusal by Glue
    is ``result.tables_error``, so the run (or the work message) fails and is tried again.
    """
    survey = survey_of(result.prefix)[1]
    try:
        summary["glue"] = register_glue_tables(
            catalog, bucket, surveys=[survey], tables_prefix=tables_prefix
        )
    except RqError as exc:
        summary["glue"] = {"database": catalog.database, "error": str(exc)}
        result.tables_error = f"the tables were built but not registered in Glue: {exc}"
        log.error("%s: %s", survey, result.tables_error, extra={"survey": survey})


def register_glue_tables(
    catalog: Catalog,
    bucket: str,
    *,
    surveys: Iterable[str],
    population: bool = False,
    tables_prefix: str,
) -> dict[str, Any]:
    """Create the Glue tables of these surveys (and the population table) when they are missing.

    The definitions are the stack's (:mod:`rearcquest.athena`); a table that exists is left as
    it is.

    Args:
        catalog: the Glue database.
        bucket: the bucket the tables are in.
        surveys: surveys whose two tables exist under ``tables_prefix``.
        population: the population table exists too.
        tables_prefix: where the tables are.

    Returns:
        ``{"database", "created": [table, ...], "skipped": {survey: why}}``; a survey is skipped
        when its name cannot name an Athena table (logged as a warning).

    Raises:
        StorageError: Glue refused (a missing database, permissions).
    """
    from rearcquest.athena import (
        population_glue_table,
        survey_glue_tables,
        table_input,
    )

    wanted = [population_glue_table(bucket, tables_prefix=tables_prefix)] if population else []
    skipped: dict[str, str] = {}
    for survey in surveys:
        try:
            wanted += survey_glue_tables(bucket, survey, tables_prefix=tables_prefix)
        except ConfigError as exc:
            skipped[survey] = str(exc)
            log.warning("no Glue tables for %s: %s", survey, exc, extra={"survey": survey})
    created = catalog.ensure_tables([table_input(t) for t in wanted])
    if created:
        log.info(
            "registered the Glue tables %s",
            ", ".join(f"{catalog.database}.{name}" for name in created),
        )
    return {"database": catalog.database, "created": created, "skipped": skipped}


def sync_mirror(
    store: ObjectStore,
    *,
    index_key: str | None = None,
    tables: bool = False,
    tables_prefix: str | None = None,
    **options: Any,
) -> SyncResult:
    """:func:`~rearcquest.sync.sync_bls` of one directory, then its index page and tables.

    Args:
        store: the bucket to mirror into.
        index_key: keep a static ``index.html`` there (see :func:`sync_with_index`).
        tables: build the survey's tables after a sync that changed something (see
            :func:`tables_after_sync`), under the sync's lease.
        tables_prefix: where they go; default ``<root prefix>tables/``.
        options: the other keyword arguments of :func:`~rearcquest.sync.sync_bls`.

    Returns:
        The sync's result, with the index page and the tables recorded.

    Raises:
        ConfigError: ``tables`` with a mirror at the bucket root (before anything is synced).
    """
    from rearcquest.sync import sync_bls

    if tables:
        prefix = options.get("prefix")
        survey_of(default_prefix(options["source_url"]) if prefix is None else prefix)

    def after(result: SyncResult) -> None:
        tables_after_sync(store, result, tables_prefix=tables_prefix, on_progress=log.info)

    hook = after if tables else None
    if index_key is not None:
        return sync_with_index(store, index_key=index_key, on_synced=hook, **options)
    return sync_bls(store, on_synced=hook, **options)


def sync_surveys_with_tables(
    store: ObjectStore,
    *,
    tables: bool = False,
    tables_prefix: str | None = None,
    catalog: Catalog | None = None,
    **options: Any,
) -> MultiSyncResult:
    """:func:`~rearcquest.surveys.sync_surveys`, then each survey's tables if its sync changed
    something.

    Each survey's tables are built under its lease right after its sync; a survey found
    unchanged before its lease was taken is checked afterwards (one read of its manifest). A
    survey whose tables fail is failed alone (exit code 1 at least), with the reason.

    Args:
        store: the bucket.
        tables: build the tables.
        tables_prefix: where they go; default ``<root prefix>tables/``.
        catalog: also create each survey's Glue tables there when missing (see
            :func:`tables_after_sync`).
        options: the keyword arguments of :func:`~rearcquest.surveys.sync_surveys`.

    Returns:
        Every survey's outcome, tables included.
    """
    from rearcquest.surveys import sync_surveys

    if not tables:
        return sync_surveys(store, tables_prefix=tables_prefix, **options)

    def after(result: SyncResult) -> None:
        tables_after_sync(store, result, tables_prefix=tables_prefix, catalog=catalog)

    many = sync_surveys(store, on_synced=after, tables_prefix=tables_prefix, **options)
    for outcome in many.surveys.values():
        result = outcome.result
        # Synced under its lease: its tables were built there and a failure is already the
        # survey's error (SyncResult.raise_for_errors). Found unchanged before any lease: now.
        if result is None or result.tables is not None or outcome.error:
            continue
        try:
            after(result)
        except Exception as exc:  # one survey's failure never stops the others' tables
            result.tables_error = result.tables_error or _unexpected(exc)
            log.error(
                "survey %s failed: %s",
                outcome.survey,
                result.tables_error,
                exc_info=exc,
                extra={"survey": outcome.survey},
            )
        if result.tables_error:
            outcome.error = f"the files were synced but not their tables: {result.tables_error}"
            outcome.exit_code = max(outcome.exit_code, 1)
    return many


@dataclass(frozen=True)
class SyncRequest:
    """What ``rq sync-bls`` was asked: one BLS directory, or several surveys of a root.

    Build it with :meth:`from_options`, which refuses options that cannot go together; then run
    :meth:`sync_one` or, when :attr:`many`, :meth:`sync_many`.

    Attributes:
        options: what a single directory and every survey share (the keyword arguments of
            :func:`~rearcquest.sync.sync_bls` and :func:`~rearcquest.surveys.sync_surveys`).
        surveys: the surveys to mirror (``["all"]`` for every one); None for one directory.
        root_url: the root listing the surveys.
        root_prefix: where the survey mirrors go.
        parallel: surveys synced at once.
        source_url: the one directory (a single survey resolves to its own).
        prefix: its key prefix; None for the directory name.
        state_key: its state object; None for the default.
        index_key: keep a static index page here; None for no page.
        connections: the S3 connection pool the run needs; None for botocore's default.
        tables: build each synced survey's tables after a sync that changed something.
        tables_prefix: where they go; None for ``<root prefix>tables/``.
    """

    options: Mapping[str, Any]
    surveys: Sequence[str] | None = None
    root_url: str = DEFAULT_ROOT_URL
    root_prefix: str = ""
    parallel: int = 1
    source_url: str = DEFAULT_BLS_URL
    prefix: str | None = None
    state_key: str | None = None
    index_key: str | None = None
    connections: int | None = None
    tables: bool = False
    tables_prefix: str | None = None

    @classmethod
    def from_options(
        cls,
        *,
        survey: Sequence[str] | None = None,
        root_url: str = DEFAULT_ROOT_URL,
        root_prefix: str = "",
        parallel: int | None = None,
        source_url: str | None = None,
        prefix: str | None = None,
        state_key: str | None = None,
        write_index: bool = False,
        index_key: str = DEFAULT_INDEX_KEY,
        transfers: int = DEFAULT_TRANSFERS,
        retries: int | None = None,
        no_delete: bool = False,
        no_lock: bool = False,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        tables: bool = False,
        tables_prefix: str | None = None,
        **options: Any,
    ) -> SyncRequest:
        """The request for these options, as ``rq sync-bls`` names them.

        Args:
            survey: ``--survey`` values (see :func:`~rearcquest.surveys.parse_surveys`); one
                survey is synced as its single directory.
            root_url: the root listing the surveys.
            root_prefix: where the survey mirrors go.
            parallel: surveys synced at once.
            source_url: one directory to mirror, not with ``survey``.
            prefix: its key prefix, not with ``survey``.
            state_key: its state object, not with ``survey``.
            write_index: keep a static page of the mirror at ``index_key``, not with ``survey``.
            index_key: where the page goes.
            transfers: files moved at once.
            retries: attempts per request.
            no_delete: keep objects whose file left the listing.
            no_lock: take no lease.
            include: only file names matching one of these globs.
            exclude: never file names matching one of these globs.
            tables: build the tables of each survey whose sync changed something.
            tables_prefix: where they go; default ``<root prefix>tables/``.
            options: the other keyword arguments :func:`~rearcquest.sync.sync_bls` and
                :func:`~rearcquest.surveys.sync_surveys` share (contact, dry_run, max_delete,
                wait, vintages, ...).

        Raises:
            OptionError: ``survey`` with an option of the single directory.
            ConfigError: a bad survey name or root prefix.
        """
        from rearcquest.sources._http import RetryPolicy
        from rearcquest.surveys import (
            ALL,
            DEFAULT_PARALLEL,
            parse_surveys,
            survey_prefix,
            survey_url,
        )

        parallel = DEFAULT_PARALLEL if parallel is None else parallel
        shared = {
            **options,
            "transfers": transfers,
            "delete": not no_delete,
            "lock": not no_lock,
            "include": include or (),
            "exclude": exclude or (),
        }
        if retries is not None:
            shared["retry"] = RetryPolicy(attempts=retries)
        names = parse_surveys(survey) if survey else None
        if names is None:
            return cls(
                shared,
                source_url=source_url or DEFAULT_BLS_URL,
                prefix=prefix,
                state_key=state_key,
                index_key=index_key if write_index else None,
                tables=tables,
                tables_prefix=tables_prefix,
            )
        given = (
            ("--source-url/RQ_BLS_URL", source_url is not None),
            ("--prefix/RQ_BLS_PREFIX", prefix is not None),
            ("--state-key", state_key is not None),
            ("--write-index", write_index),
        )
        clash = [flag for flag, on in given if on]
        if clash:
            raise OptionError(
                f"--survey cannot be combined with {', '.join(clash)}: each survey has its "
                "own directory, prefix and state",
                options="--survey",
            )
        # Surveys in parallel upload at once: botocore's default pool (10) would open and drop
        # a connection for each request beyond it.
        pool = 2 * transfers * parallel
        if names != [ALL] and len(names) == 1:
            # One survey keeps the single directory's document.
            url = survey_url(root_url, names[0])
            one = survey_prefix(root_prefix, names[0], tables_prefix=tables_prefix)
            return cls(
                shared,
                source_url=url,
                prefix=one,
                connections=pool,
                tables=tables,
                tables_prefix=tables_prefix,
            )
        return cls(
            shared,
            surveys=names,
            root_url=root_url,
            root_prefix=root_prefix,
            parallel=parallel,
            connections=pool,
            tables=tables,
            tables_prefix=tables_prefix,
        )

    @property
    def many(self) -> bool:
        """Whether this syncs several surveys (:meth:`sync_many`), not one directory."""
        return self.surveys is not None

    @property
    def survey_count(self) -> int | None:
        """How many surveys :meth:`sync_many` syncs; None for all (not known before listing)."""
        from rearcquest.surveys import ALL

        return None if self.surveys is None or list(self.surveys) == [ALL] else len(self.surveys)

    def sync_one(
        self, store: ObjectStore, *, on_progress: Callable[[Progress], None] | None = None
    ) -> SyncResult:
        """Sync the one directory (and its index page and tables when asked).

        Raises:
            RqError: as :func:`~rearcquest.sync.sync_bls` and :func:`sync_mirror`.
        """
        return sync_mirror(
            store,
            index_key=self.index_key,
            tables=self.tables,
            tables_prefix=self.tables_prefix,
            **self.options,
            source_url=self.source_url,
            prefix=self.prefix,
            state_key=self.state_key,
            on_progress=on_progress,
        )

    def sync_many(
        self,
        store: ObjectStore,
        *,
        on_progress: Callable[[str, Progress], None] | None = None,
        on_survey: Callable[[SurveyOutcome], None] | None = None,
    ) -> MultiSyncResult:
        """Sync every survey asked, each on its own (see :func:`sync_surveys_with_tables`).

        Raises:
            RqError: as :func:`~rearcquest.surveys.sync_surveys`.
        """
        return sync_surveys_with_tables(
            store,
            tables=self.tables,
            tables_prefix=self.tables_prefix,
            surveys=list(self.surveys or ()),
            root_url=self.root_url,
            root_prefix=self.root_prefix,
            parallel=self.parallel,
            on_progress=on_progress,
            on_survey=on_survey,
            **self.options,
        )


def _fetch_step(
    step: StepOutcome, settings: Settings, client: S3Client, retry: RetryPolicy | None
) -> None:
    """The fetch-population step of the scheduled job, recorded in ``step``."""
    from rearcquest.population import fetch_population
    from rearcquest.storage import ObjectStore

    with _recording(step, "fetch-population"):
        fetched = fetch_population(
            ObjectStore(client, settings.population_bucket or ""),
            key=settings.population_key,
            url=settings.population_url,
            contact=settings.contact,
            user_agent=settings.user_agent,
            retry=retry,
        )
        step.summary = fetched.to_dict()


def run_pipeline(
    settings: Settings,
    *,
    s3_client: S3Client | None = None,
    retry: RetryPolicy | None = None,
    reports: bool = False,
    surveys: Sequence[str] | None = None,
    root_url: str = DEFAULT_ROOT_URL,
    root_prefix: str = "",
) -> PipelineResult:
    """Run sync-bls, then fetch-population, with ``settings``; then, optionally, the reports.

    With ``settings.tables`` the sync builds the survey's tables when it changed something
    (under its lease) and a ``tables`` step builds the population table after the fetch; a
    table that fails fails the ``tables`` step (the sync's files stay synced).

    Args:
        settings: buckets, URLs and contact (see :meth:`Settings.from_env`).
        s3_client: a boto3 S3 client to reuse (Lambda keeps one per container).
        retry: the retry policy for both sources.
        reports: also compute the three reports from what is stored, even when a step before
            failed (the mirror and the population object of the last good run).
        surveys: sync these surveys of ``root_url`` (``["all"]`` for every one) into
            ``<root_prefix><survey>/``, as ``rq sync-bls --survey``, instead of the one
            directory ``settings.bls_url``; one survey keeps the single-directory summary, more
            give the multi-survey one.
        root_url: the ``time.series/`` root of ``surveys``.
        root_prefix: the prefix the surveys' mirrors are under.

    Returns:
        Both steps' outcomes; failures are recorded, not raised.

    Raises:
        ConfigError: a bucket is not configured, ``surveys`` is given with
            ``settings.bls_prefix`` (each survey has its own prefix), or tables are asked of a
            mirror at the bucket root; nothing was attempted.
    """
    from rearcquest.storage import ObjectStore, make_s3_client
    from rearcquest.surveys import ALL, survey_prefix, survey_url
    from rearcquest.sync import sync_bls

    if not settings.bls_bucket or not settings.population_bucket:
        raise ConfigError(
            "set RQ_BLS_BUCKET and RQ_POPULATION_BUCKET (or --bls-bucket/--population-bucket)"
        )
    if surveys is not None and settings.bls_prefix is not None:
        raise ConfigError(
            "RQ_BLS_PREFIX cannot be combined with --survey: each survey is mirrored to "
            "<root prefix><survey>/ (use --root-prefix)"
        )
    client = s3_client or make_s3_client()
    store = ObjectStore(client, settings.bls_bucket)
    common: dict[str, Any] = {
        "contact": settings.contact,
        "user_agent": settings.user_agent,
        "max_rps": settings.max_rps,
        "retry": retry,
        "vintages": settings.vintages,
    }
    one = surveys is None or (list(surveys) != [ALL] and len(surveys) == 1)
    source_url, prefix = settings.bls_url, settings.resolved_bls_prefix
    if surveys is not None and one:  # one survey keeps the single-directory summary
        source_url = survey_url(root_url, surveys[0])
        prefix = survey_prefix(
            root_prefix,
            surveys[0],
            tables_prefix=settings.tables_prefix,
            population_key=settings.population_key,
        )
    # Where the tables go by default: beside the mirrors (<root>tables/). A mirror at the
    # bucket root has no survey folder to build tables of: refused before anything is done.
    root = survey_of(prefix)[0] if settings.tables and one else root_prefix
    catalog = _catalog(settings.glue_database, None) if settings.tables else None
    result = PipelineResult()
    synced: SyncResult | None = None

    def after(done: SyncResult) -> None:
        tables_after_sync(store, done, tables_prefix=settings.tables_prefix, catalog=catalog)

    with _recording(result.sync, "sync-bls"):
        if not one:
            # Each survey's tables are built under its lease, right after its sync; a survey
            # whose tables fail fails alone, in this step.
            many = sync_surveys_with_tables(
                store,
                tables=settings.tables,
                tables_prefix=settings.tables_prefix,
                catalog=catalog,
                population_key=settings.population_key,
                surveys=list(surveys or ()),
                root_url=root_url,
                root_prefix=root_prefix,
                **common,
            )
            result.sync.summary = many.to_dict()
            many.raise_for_errors()
        else:
            synced = sync_bls(
                store,
                source_url=source_url,
                prefix=prefix,
                on_synced=after if settings.tables else None,
                **common,
            )
            result.sync.summary = synced.to_dict()
            if settings.tables:
                # The tables' failure is the tables step's, not the sync's: its files are synced.
                error, synced.tables_error = synced.tables_error, None
                synced.raise_for_errors()
                synced.tables_error = error
            else:
                synced.raise_for_errors()
    _fetch_step(result.population, settings, client, retry)
    if settings.tables:
        result.tables = _tables_step(store, synced, settings, root=root, catalog=catalog)
    if reports:
        result.reports = StepOutcome()
        with _recording(result.reports, "analyze"):
            from rearcquest.analytics import ReportInputs, analyze, to_json_doc

            # With surveys the pr mirror the reports read is <root prefix>pr/.
            read = settings
            if surveys is not None:
                read = replace(settings, bls_prefix=survey_prefix(root_prefix, "pr"))
            result.analysis = analyze(ReportInputs(), settings=read, s3_client=client)
            result.reports.summary = to_json_doc(result.analysis)
    return result


def _tables_step(
    store: ObjectStore,
    synced: SyncResult | None,
    settings: Settings,
    *,
    root: str,
    catalog: Catalog | None = None,
) -> StepOutcome:
    """The ``tables`` step of the scheduled job: what the sync's build did, then the population
    table, in one outcome that fails when either failed.

    Args:
        store: the bucket of the mirror and the tables.
        synced: the sync's result (``None``: the sync failed before it had one).
        settings: the population's bucket and key, the tables prefix.
        root: the root prefix of the mirror (the tables default to ``<root>tables/``).
        catalog: also create the population's Glue table there when missing.
    """
    from rearcquest.storage import ObjectStore
    from rearcquest.tables import build_population_table, default_tables_prefix

    step = StepOutcome()
    where = settings.tables_prefix or default_tables_prefix(root)
    errors = [synced.tables_error] if synced is not None and synced.tables_error else []
    summary: dict[str, Any] = {
        "survey": synced.tables if synced is not None else None,
        "population": None,
    }
    with _recording(step, "tables"):
        try:
            population = build_population_table(
                store,
                population_store=ObjectStore(store.client, settings.population_bucket or ""),
                population_object=settings.population_key,
                tables_prefix=where,
            )
        finally:
            step.summary = summary
        summary["population"] = population.to_dict()
        errors += [f"{b.source}: {b.error}" for b in population.failed]
        if catalog is not None and population.builds and not population.failed:
            try:
                summary["glue"] = register_glue_tables(
                    catalog, store.bucket, surveys=(), population=True, tables_prefix=where
                )
            except RqError as exc:
                errors.append(f"the population table was built but not registered in Glue: {exc}")
    if errors:
        # The survey's failed build and a population build that raised are both reported.
        step.error = "; ".join([*errors, *([step.error] if step.error else [])])
        step.exit_code = max(step.exit_code, DataError.exit_code)
        log.error("tables failed: %s", step.error)
    return step


def run_fanout_pipeline(
    settings: Settings,
    fanout: FanoutSettings,
    *,
    sqs_client: Any,
    s3_client: S3Client | None = None,
    retry: RetryPolicy | None = None,
) -> PipelineResult:
    """The scheduled run of the AWS fan-out: queue the surveys' work, then fetch the population.

    The sync step plans (the root listing and one listing per survey) and sends one message
    per survey, and one per big file, to ``fanout.queue_url``; the worker function does the
    syncing (:func:`run_work_batch`). The population fetch stays here, and with
    ``settings.tables`` the population table (the workers build the surveys' tables). Each
    step runs whatever the other did; failures are recorded, not raised.

    Args:
        settings: contact, rate, population bucket and URL.
        fanout: the queue, surveys, root and big-file threshold.
        sqs_client: the SQS client (:func:`rearcquest.queues.make_sqs_client`).
        s3_client: a boto3 S3 client to reuse.
        retry: the retry policy for both sources.

    Returns:
        The outcomes; the sync step's summary is the work plan.

    Raises:
        ConfigError: no queue or no population bucket is configured; nothing was attempted.
    """
    from rearcquest.fanout import enqueue_work, plan_work
    from rearcquest.queues import Queue
    from rearcquest.storage import make_s3_client
    from rearcquest.surveys import make_http

    if not fanout.queue_url:
        raise ConfigError("set RQ_WORK_QUEUE_URL: the work queue the surveys are planned onto")
    if not settings.population_bucket:
        raise ConfigError("set RQ_POPULATION_BUCKET (or --population-bucket)")
    client = s3_client or make_s3_client()
    result = PipelineResult()
    with _recording(result.sync, "plan-surveys"):
        with make_http(
            fanout.root_url,
            contact=settings.contact,
            user_agent=settings.user_agent,
            max_rps=settings.max_rps,
            retry=retry,
            connections=2,
        ) as http:
            plan = plan_work(
                http,
                surveys=fanout.surveys,
                root_url=fanout.root_url,
                root_prefix=fanout.root_prefix,
                big_file_bytes=fanout.big_file_bytes,
                tables_prefix=settings.tables_prefix,
                population_key=settings.population_key,
            )
        summary = plan.to_dict()
        summary["queued"] = enqueue_work(Queue(sqs_client, fanout.queue_url), plan.messages)
        result.sync.summary = summary
        log.info("work queued", extra={"plan": summary})
    _fetch_step(result.population, settings, client, retry)
    if settings.tables:
        # The workers build each survey's tables; the population table is built here.
        from rearcquest.storage import ObjectStore

        result.tables = _tables_step(
            ObjectStore(client, settings.bls_bucket or settings.population_bucket),
            None,
            settings,
            root=fanout.root_prefix,
        )
    return result


def _catalog(database: str | None, glue_client: Any) -> Catalog | None:
    """The Glue database the tables are registered in (``RQ_GLUE_DATABASE``), or None."""
    if not database:
        return None
    from rearcquest.catalog import Catalog, make_glue_client

    return Catalog(glue_client or make_glue_client(), database)


def run_work_batch(
    event: Any,
    settings: Settings,
    *,
    root_url: str | None = None,
    root_prefix: str = "",
    s3_client: S3Client | None = None,
    glue_client: Any = None,
    retry: RetryPolicy | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """The worker of the AWS fan-out: sync what each work message of an SQS batch names.

    One HTTP client serves the batch; its rate (``settings.max_rps``) is this worker's share of
    the politeness budget, the queue's maximum concurrency times it being the whole. With
    ``settings.tables`` each message's sync that changed something builds the survey's tables
    under the survey's lease (:func:`tables_after_sync`, to ``RQ_TABLES_PREFIX`` or
    ``<root prefix>tables/``); a table that fails fails the message, and its retry builds them
    again even though its sync then changes nothing. With ``settings.glue_database`` the
    survey's Glue tables are then created there if missing (the stack cannot declare the
    tables of surveys it learns only from the root listing).

    Args:
        event: the SQS batch event.
        settings: the bucket, contact and the worker's rate (``max_rps``).
        root_url: the root the surveys are under (``RQ_BLS_ROOT_URL``; it picks the default
            rate: 1/s for bls.gov). A message naming another root fails alone, unfetched.
        root_prefix: the prefix the survey mirrors are under (``RQ_BLS_ROOT_PREFIX``). A
            message naming another prefix fails alone, unwritten.
        s3_client: a boto3 S3 client to reuse.
        glue_client: a Glue client to reuse (with ``settings.glue_database``).
        retry: the retry policy for the source.
        wait: seconds to wait for a survey's lease before failing its message.

    Returns:
        The partial batch response (``batchItemFailures``): failed messages are retried.

    Raises:
        ConfigError: ``RQ_BLS_BUCKET`` is not set.
    """
    from rearcquest.fanout import process_work_batch, run_work
    from rearcquest.storage import ObjectStore, make_s3_client
    from rearcquest.surveys import make_http

    if not settings.bls_bucket:
        raise ConfigError("set RQ_BLS_BUCKET: the bucket the surveys are mirrored into")
    store = ObjectStore(s3_client or make_s3_client(), settings.bls_bucket)
    catalog = _catalog(settings.glue_database, glue_client)
    from rearcquest.config import DEFAULT_ROOT_URL

    root_url = root_url or DEFAULT_ROOT_URL
    with make_http(
        root_url,
        contact=settings.contact,
        user_agent=settings.user_agent,
        max_rps=settings.max_rps,
        retry=retry,
        connections=4,
    ) as http:

        def run(message: WorkMessage) -> SyncResult:
            def after(result: SyncResult) -> None:
                tables_after_sync(
                    store, result, tables_prefix=settings.tables_prefix, catalog=catalog
                )

            return run_work(
                message,
                store=store,
                http=http,
                root_url=root_url,
                root_prefix=root_prefix,
                wait=wait,
                vintages=settings.vintages,
                on_synced=after if settings.tables else None,
                tables_prefix=settings.tables_prefix,
                population_key=settings.population_key,
            )

        return process_work_batch(event, run=run)
