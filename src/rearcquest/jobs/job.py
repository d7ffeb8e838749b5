"""One survey's job: its lease, then its sync, its index page, its tables and their Glue tables.

:func:`run_survey` is the unit every path runs: ``rq sync-bls`` (one directory), ``rq sync-bls
--survey`` (:func:`run_surveys`, several at once), the scheduled job and the fan-out worker (one
per work message). The sync (:func:`rearcquest.mirror.sync.syncing`) knows nothing of what follows it;
the job runs each step under the sync's lease and records it in a :class:`SurveyRun`. A step that
fails is recorded, never raised, so the sync's own outcome stands:
:meth:`SurveyRun.raise_for_errors` raises the first failure, in the order the steps ran.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rearcquest._process import wait_all
from rearcquest.config import (
    DEFAULT_PARALLEL,
    DEFAULT_POPULATION_KEY,
    DeleteLimit,
    SyncOptions,
    check_http_url,
)
from rearcquest.data.athena import population_glue_table, survey_glue_tables, table_input
from rearcquest.data.tables import TableScope, build_tables, tables_need_build
from rearcquest.errors import ConfigError, DataError, RqError, SurveyPendingError
from rearcquest.index import write_static_index
from rearcquest.layout import ALL, default_prefix, normalise_prefix
from rearcquest.layout import tables_prefix as resolve_tables_prefix
from rearcquest.mirror.surveys import (
    check_listed,
    in_survey,
    list_surveys,
    make_http,
    mirrorable_surveys,
    survey_prefix,
    survey_url,
)
from rearcquest.mirror.sync import syncing

if TYPE_CHECKING:
    from rearcquest.aws.catalog import Catalog
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.data.tables import TablesResult
    from rearcquest.mirror.sync import Progress, SyncResult
    from rearcquest.sources._http import HttpClient
    from rearcquest.sources.bls import RemoteFile

log = logging.getLogger(__name__)

_TOTAL_LISTS = ("added", "updated", "deleted", "unchanged", "errors")
_TOTAL_BYTES = ("bytes_downloaded", "bytes_uploaded")


@dataclass(frozen=True)
class AfterSync:
    """What a survey's job does after its sync, under its lease.

    Attributes:
        index: keep a static ``index.html`` of the mirror at the sync's ``index_key``.
        tables: build the survey's Parquet tables when the sync changed something (or they
            need it: never built, the last build failed or was killed).
        tables_prefix: where they go; None for ``<root prefix>tables/``.
        catalog: also create the survey's Glue tables there when they are missing.
        scope: the survey's tables this job owns (a fan-out message's share: see
            :class:`~rearcquest.data.tables.TableScope`); None for every one.
    """

    index: bool = False
    tables: bool = False
    tables_prefix: str | None = None
    catalog: Catalog | None = None
    scope: TableScope | None = None

    @property
    def anything(self) -> bool:
        """Whether there is a step after the sync (then the sync takes its lease at once)."""
        return self.index or self.tables


@dataclass
class SurveyRun:
    """What one survey's job did: the sync, then each step after it.

    Attributes:
        sync: the sync's result.
        index_written: the key of the index page, when it was (re)written.
        tables: what the tables build did (``None`` when tables were not asked).
        tables_error: why the tables (or their Glue tables) failed, or None.
        tables_pending: why a file's table waits for its survey's first sync, or None.
    """

    sync: SyncResult
    index_written: str | None = None
    tables: dict[str, Any] | None = None
    tables_error: str | None = None
    tables_pending: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sync's document (``rq sync-bls --format json``) with ``index_written`` and, with
        tables, ``tables`` and ``tables_error``."""
        doc: dict[str, Any] = {}
        for name, value in self.sync.to_dict().items():
            if name == "plan":
                doc["index_written"] = self.index_written
            doc[name] = value
        if self.tables is not None:
            doc["tables"] = self.tables
            doc["tables_error"] = self.tables_error
        return doc

    def raise_for_errors(self) -> None:
        """Raise for the sync's failure first, then for the tables'.

        Raises:
            DeleteGuardError, TransferError: as :meth:`SyncResult.raise_for_errors`.
            DataError: the files were synced but their tables were not built (exit code 1).
            SurveyPendingError: the file was synced, its table waits for the survey's first
                sync (try again later).
        """
        self.sync.raise_for_errors()
        if self.tables_error:
            raise DataError(f"the files were synced but not their tables: {self.tables_error}")
        if self.tables_pending:
            raise SurveyPendingError(self.tables_pending)


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


def run_survey(
    store: ObjectStore,
    options: SyncOptions,
    after: AfterSync | None = None,
    *,
    http: HttpClient | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    listing: Sequence[RemoteFile] | None = None,
) -> SurveyRun:
    """One survey's job: sync it, then, under the sync's lease, its page and its tables.

    Args:
        store: the bucket to mirror into.
        options: what to mirror and how.
        after: what follows the sync; None for the sync alone.
        http: an HTTP client to use (a run of several surveys shares one).
        on_progress: called with the sync's :class:`~rearcquest.mirror.sync.Progress` events.
        listing: the directory's files, already fetched.

    Returns:
        What the job did; a failed step is recorded (see :meth:`SurveyRun.raise_for_errors`).

    Raises:
        ConfigError: tables asked of a mirror at the bucket root (before anything is synced).
        RqError: the sync failed as a whole (see :func:`rearcquest.mirror.sync.sync_bls`).
    """

    after = after or AfterSync()
    if after.tables:
        survey_of(default_prefix(options.source_url) if options.prefix is None else options.prefix)
    with syncing(
        store,
        options,
        http=http,
        on_progress=on_progress,
        listing=listing,
        peek=not after.anything,
    ) as result:
        run = SurveyRun(result)
        # A run that handed over (its time ran out) left files to finish: what follows waits
        # for the run that finishes them.
        if result.dry_run or result.delete_guard or result.handed_over or not after.anything:
            return run
        if after.index and options.index_key is not None:
            _write_page(store, run, options.index_key)
        if after.tables:
            build_survey_tables(store, run, after)
    return run


def _write_page(store: ObjectStore, run: SurveyRun, index_key: str) -> None:
    """Rewrite the mirror's static page when the sync changed something or the page is missing.

    It is never deleted as a stale file (the sync keeps it; see ``rq serve-index``).
    """

    result = run.sync
    if result.added or result.updated or result.deleted or store.head(index_key) is None:
        run.index_written = write_static_index(store, result.prefix, index_key).key


def build_survey_tables(
    store: ObjectStore,
    run: SurveyRun,
    after: AfterSync,
    *,
    on_progress: Callable[[str], None] | None = log.info,
) -> TablesResult | None:
    """Build the Parquet tables of the survey ``run`` synced, if the sync changed something.

    Also when nothing changed but the tables need it (never built, the last build failed or
    was killed; one read of the manifest tells). What happened is recorded in ``run.tables``
    and, on a failure, ``run.tables_error``; it is never raised here.

    Args:
        store: the bucket of the mirror (the tables go there too).
        run: the job; its sync's prefix is ``<root prefix><survey>/``.
        after: the tables prefix and the Glue database.
        on_progress: called with a message before each table is built.

    Returns:
        What the build did, or ``None`` when it did not run or failed as a whole.
    """

    result = run.sync
    root, survey = survey_of(result.prefix)
    where = resolve_tables_prefix(after.tables_prefix, root)
    summary: dict[str, Any] = {"bucket": store.bucket, "tables_prefix": where, "skipped": None}
    changed = [*result.added, *result.updated, *result.deleted]
    only = after.scope.only if after.scope is not None else None
    try:
        if only is not None and store.head(f"{result.prefix}{survey}.series") is None:
            # A file message ahead of its survey's first sync: its table waits for the survey's
            # files (the message is tried again later), rather than failing for want of them.
            run.tables_pending = (
                f"the table of {only} waits for the first sync of survey {survey} "
                f"({survey}.series is not mirrored yet); {only} itself was synced"
            )
            run.tables = {**summary, "skipped": run.tables_pending}
            log.info("%s", run.tables_pending, extra={"survey": survey})  # the worker warns
            return None
        if changed:
            reason: str | None = f"the sync changed {len(changed)} file(s)"
        elif only is not None:
            # Its own partition only: one manifest read and two HEADs when it is current.
            reason = f"the table of {only}, if it is not current"
        else:
            reason = tables_need_build(store, survey, tables_prefix=where, scope=after.scope)
        if reason is None:
            summary["skipped"] = "the sync changed nothing and the tables are current"
            run.tables = summary
            _register_survey(after.catalog, run, summary, bucket=store.bucket, tables_prefix=where)
            return None
        log.info("building the tables of %s: %s", survey, reason, extra={"survey": survey})
        built = build_tables(
            store,
            surveys=[survey],
            root_prefix=root,
            tables_prefix=where,
            on_progress=on_progress,
            scope=after.scope,
        )
    except Exception as exc:  # recorded, never raised: the sync's own outcome stands
        error = str(exc) if isinstance(exc, (RqError, OSError)) else unexpected(exc)
        run.tables, run.tables_error = summary, error
        log.error(
            "the tables of %s were not built: %s",
            survey,
            error,
            exc_info=None if isinstance(exc, RqError) else exc,
            extra={"survey": survey},
        )
        return None
    run.tables = {**built.to_dict(), "skipped": None, "reason": reason}
    try:
        built.raise_for_errors()
    except RqError as exc:
        run.tables_error = str(exc)
        log.error("the tables of %s were not all built: %s", survey, exc, extra={"survey": survey})
        return built
    _register_survey(after.catalog, run, run.tables, bucket=store.bucket, tables_prefix=where)
    return built


def _register_survey(
    catalog: Catalog | None,
    run: SurveyRun,
    summary: dict[str, Any],
    *,
    bucket: str,
    tables_prefix: str,
) -> None:
    """Create the two Glue tables of the survey ``run`` synced, if missing.

    The outcome goes to ``summary["glue"]`` (see :func:`register_glue_tables`). A refusal by Glue
    is ``run.tables_error``, so the run (or the work message) fails and is tried again.
    """
    if catalog is None:
        return
    survey = survey_of(run.sync.prefix)[1]
    try:
        summary["glue"] = register_glue_tables(
            catalog, bucket, surveys=[survey], tables_prefix=tables_prefix
        )
    except RqError as exc:
        summary["glue"] = {"database": catalog.database, "error": str(exc)}
        run.tables_error = f"the tables were built but not registered in Glue: {exc}"
        log.error("%s: %s", survey, run.tables_error, extra={"survey": survey})


def register_glue_tables(
    catalog: Catalog,
    bucket: str,
    *,
    surveys: Iterable[str],
    population: bool = False,
    tables_prefix: str,
) -> dict[str, Any]:
    """Create the Glue tables of these surveys (and the population table) when they are missing.

    The definitions are the stack's (:mod:`rearcquest.data.athena`); a table that exists is left as
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


def unexpected(exc: BaseException) -> str:
    """How an error rq did not expect is reported."""
    return f"unexpected error ({type(exc).__name__}: {exc}); please report it"


# -- several surveys at once ----------------------------------------------------------------------


@dataclass
class SurveyOutcome:
    """One survey of a multi-survey run: its job's record and, if it failed, why."""

    survey: str
    prefix: str
    result: SurveyRun | None = None
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The survey's summary: today's ``sync-bls`` document, or its error and exit code."""
        doc: dict[str, Any] = (
            self.result.to_dict()
            if self.result is not None
            else {"prefix": self.prefix, "source_url": None}
        )
        doc["error"] = self.error
        doc["exit_code"] = self.exit_code
        return doc


@dataclass
class MultiSyncResult:
    """What :func:`run_surveys` did, survey by survey, and the totals."""

    root_url: str
    bucket: str
    # A dry run: the counts are what a real run would do.
    dry_run: bool = False
    surveys: dict[str, SurveyOutcome] = field(default_factory=dict)
    requests: int = 0
    # Surveys the root lists that rq will not mirror, and why (see surveys.survey_prefix).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The worst (highest) survey exit code; 0 when every survey succeeded."""
        return max((o.exit_code for o in self.surveys.values()), default=0)

    def totals(self) -> dict[str, int]:
        """Counts of the list fields and the byte sums over every survey.

        ``errors`` counts failed files plus surveys that failed as a whole (no result).
        """
        totals = dict.fromkeys(_TOTAL_LISTS + _TOTAL_BYTES, 0)
        for outcome in self.surveys.values():
            if outcome.result is None:
                totals["errors"] += 1 if outcome.error else 0
                continue
            doc = outcome.result.sync.to_dict()
            for name in _TOTAL_LISTS:
                totals[name] += len(doc[name])
            for name in _TOTAL_BYTES:
                totals[name] += int(doc[name])
        return totals

    def to_dict(self) -> dict[str, Any]:
        """``{"surveys": {survey: summary}, "totals": {...}, ...}`` for ``--format json``."""
        return {
            "root_url": self.root_url,
            "bucket": self.bucket,
            "dry_run": self.dry_run,
            "surveys": {name: o.to_dict() for name, o in self.surveys.items()},
            "totals": self.totals(),
            "skipped": self.skipped,
            "requests": self.requests,
            "exit_code": self.exit_code,
        }

    def raise_for_errors(self) -> None:
        """Raise one error naming every failed survey, with the worst exit code.

        Raises:
            RqError: a survey failed (its listing, its guard, its lease, its files or tables).
        """
        failed = [o for o in self.surveys.values() if o.error]
        if failed:
            error = RqError(
                f"{len(failed)} of {len(self.surveys)} survey(s) failed: "
                + "; ".join(f"{o.survey}: {o.error}" for o in failed)
            )
            error.exit_code = self.exit_code
            raise error


@dataclass(frozen=True)
class SurveySet:
    """Which surveys of which root, mirrored where: what ``--survey`` asks.

    Attributes:
        names: survey names, or ``["all"]`` for every directory the root lists.
        root_url: the ``time.series/`` root.
        root_prefix: each survey goes to ``<root_prefix><survey>/``.
        parallel: surveys synced at once.
        population_key: where the population JSON is stored: no survey is mirrored onto it.
    """

    names: Sequence[str]
    root_url: str
    root_prefix: str = ""
    parallel: int = DEFAULT_PARALLEL
    population_key: str = DEFAULT_POPULATION_KEY


def one_or_many(
    options: SyncOptions, surveys: SurveySet, *, tables_prefix: str | None = None
) -> tuple[SyncOptions, SurveySet | None]:
    """What ``--survey`` asks: one survey is its own directory (:func:`run_survey`, with the
    single directory's document); several, or ``all``, are :func:`run_surveys`'s.

    Returns:
        ``options`` with the one survey's directory and prefix, and None; or ``options`` as
        given and ``surveys``.

    Raises:
        ConfigError: a bad survey name or root prefix, or a mirror onto rq's own objects.
    """
    names = list(surveys.names)
    if names == [ALL] or len(names) != 1:
        return options, surveys
    prefix = survey_prefix(
        surveys.root_prefix,
        names[0],
        tables_prefix=tables_prefix,
        population_key=surveys.population_key,
    )
    one = dataclasses.replace(
        options, source_url=survey_url(surveys.root_url, names[0]), prefix=prefix
    )
    return one, None


def check_surveys(
    surveys: SurveySet, options: SyncOptions, *, tables_prefix: str | None = None
) -> None:
    """Before any work, refuse the surveys named in ``surveys`` that the root does not list
    (one request: the root listing); ``all`` needs no check.

    Raises:
        ConfigError: a bad survey name or root prefix, a mirror onto rq's own objects, no
            contact for bls.gov.
        SurveyNotListedError: a survey the root does not list, with the names close to it.
    """
    names = list(surveys.names)
    if ALL in names:
        return
    for name in names:
        survey_prefix(
            surveys.root_prefix,
            name,
            tables_prefix=tables_prefix,
            population_key=surveys.population_key,
        )
    root_url = check_http_url(surveys.root_url, "root URL").rstrip("/") + "/"
    client = make_http(
        root_url,
        contact=options.contact,
        user_agent=options.user_agent,
        max_rps=options.max_rps,
        retry=options.retry,
        connections=1,
    )
    try:
        check_listed(client, root_url, names)
        # The run's own client starts with a fresh rate limiter: wait out this request's
        # interval here, so that its first request keeps the source's 1/max_rps spacing.
        client.limiter.acquire()
    finally:
        client.close()


def run_surveys(
    store: ObjectStore,
    surveys: SurveySet,
    options: SyncOptions,
    after: AfterSync | None = None,
    *,
    http: HttpClient | None = None,
    on_progress: Callable[[str, Progress], None] | None = None,
    on_survey: Callable[[SurveyOutcome], None] | None = None,
) -> MultiSyncResult:
    """Run each survey's job (:func:`run_survey`), ``surveys.parallel`` at once.

    Each survey is mirrored into ``<root prefix><survey>/`` with its own plan, delete guard,
    lease and state: one survey's failed listing or tripped guard never stops or deletes
    anything in another. All share one HTTP client, hence one rate limiter: ``options.max_rps``
    holds for every request of every survey together.

    Args:
        store: the bucket.
        surveys: which surveys, where.
        options: what every survey shares (``source_url``, ``prefix``, ``state_key`` and
            ``index_key`` are each survey's own and ignored here).
        after: what follows each survey's sync, under its lease.
        http: a client to use instead of building one (its rate limiter is the budget).
        on_progress: called with ``(survey, Progress)`` from worker threads.
        on_survey: called with each survey's outcome as it finishes.

    Returns:
        Every survey's outcome; a failed survey is recorded, not raised
        (see :meth:`MultiSyncResult.raise_for_errors`).

    Raises:
        ConfigError: bad settings (nothing was fetched).
        StorageError: the bucket cannot be used (nothing was fetched).
        SourceError: ``all`` was asked and the root listing failed (nothing was changed).
    """

    after = after or AfterSync()
    root_url = check_http_url(surveys.root_url, "root URL")
    if not root_url.endswith("/"):
        root_url += "/"
    if surveys.parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    if options.transfers < 1:
        raise ConfigError("--transfers must be at least 1")
    names = list(surveys.names)
    if not names:
        raise ConfigError("no survey named: give --survey pr,cu (or --survey all)")

    def prefix_of(name: str) -> str:
        return survey_prefix(
            surveys.root_prefix,
            name,
            tables_prefix=after.tables_prefix,
            population_key=surveys.population_key,
        )

    for name in names:  # "all" as a name checks the root prefix
        prefix_of(name)
    DeleteLimit.parse(options.max_delete)  # a bad guard is a usage error before any request
    # One check for the whole run, before the source is asked anything: a missing or forbidden
    # bucket is one error, not the same error once per survey.
    store.check_bucket()
    at_once = min(surveys.parallel, len(names) if ALL not in names else 64)
    stop = threading.Event()
    budget = options.time_left

    def time_left() -> float:
        """The run's time budget, or none left once the run is being stopped."""
        if stop.is_set():
            return 0.0
        return budget() if budget is not None else math.inf

    client = http or make_http(
        root_url,
        contact=options.contact,
        user_agent=options.user_agent,
        max_rps=options.max_rps,
        retry=options.retry,
        connections=max(4, options.transfers * at_once),
    )
    try:
        result = MultiSyncResult(root_url, store.bucket, dry_run=options.dry_run)
        if names == [ALL]:
            names = list_surveys(client, root_url)
            log.info("the root lists %d survey(s)", len(names), extra={"surveys": names})
            names, result.skipped = mirrorable_surveys(names, prefix_of)
        outcomes = {name: SurveyOutcome(name, prefix_of(name)) for name in names}
        result.surveys = outcomes

        def one(name: str) -> None:
            outcome = outcomes[name]
            own = dataclasses.replace(
                options,
                source_url=survey_url(root_url, name),
                prefix=outcome.prefix,
                state_key=None,
                index_key=None,
                time_left=time_left,
            )
            with in_survey(name):
                with recorded(outcome, f"survey {name}", survey=name):
                    # The sync plans first without the survey's lease and takes it only when
                    # there is something to write: an unchanged survey costs its listing, one
                    # ListObjectsV2 and the state GET.
                    outcome.result = run_survey(
                        store,
                        own,
                        after,
                        http=client,
                        on_progress=(
                            (lambda event: on_progress(name, event)) if on_progress else None
                        ),
                    )
                    outcome.result.raise_for_errors()
                    log.info("survey %s synced", name, extra={"survey": name})
                if on_survey is not None:
                    on_survey(outcome)

        with ThreadPoolExecutor(max_workers=min(surveys.parallel, len(names)) or 1) as pool:
            # Each survey runs in a copy of this context, so log filters see its name.
            futures = [pool.submit(contextvars.copy_context().run, one, n) for n in names]
            try:
                wait_all(futures)
            except BaseException:
                # Ctrl-C or SIGTERM in the main thread: the surveys not begun never start (the
                # futures are cancelled first: a survey ending now must not let the next begin),
                # and those under way stop at their last whole part (recorded for the next run,
                # as a time budget stops them) and release their leases before this goes on.
                stop.set()
                raise
        result.requests = client.requests
        return result
    finally:
        if http is None:
            client.close()


class Outcome(Protocol):
    """A step or a survey that records its failure instead of raising it."""

    error: str | None
    exit_code: int


@contextlib.contextmanager
def recorded(outcome: Outcome, what: str, *, survey: str | None = None) -> Iterator[None]:
    """Record an error raised in the block as ``outcome``'s failure, instead of raising it.

    An ``OSError`` (a full temporary disk, say) is a failure like an :class:`RqError` (exit
    code 1), and so is any other exception (a bug, logged with its traceback): the next step,
    or the other surveys, still run. ``KeyboardInterrupt`` and ``SystemExit`` go through.
    """
    extra = {"survey": survey} if survey is not None else None
    try:
        yield
    except RqError as exc:
        outcome.error, outcome.exit_code = str(exc), exc.exit_code
        log.error("%s failed: %s", what, exc, extra=extra)
    except OSError as exc:
        outcome.error, outcome.exit_code = f"local I/O error: {exc}", 1
        log.error("%s failed: %s", what, outcome.error, extra=extra)
    except Exception as exc:  # a bug met in one step or survey must not stop the others
        outcome.error, outcome.exit_code = unexpected(exc), 1
        log.error("%s failed: %s", what, outcome.error, exc_info=exc, extra=extra)
