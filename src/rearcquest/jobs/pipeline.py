"""The scheduled job: sync the BLS mirror, then fetch the population, whatever the sync did.

With tables (``rq sync-bls --tables``, ``RQ_TABLES``) a sync that changed something is followed,
under the same lease, by a build of the survey's Parquet tables (:mod:`rearcquest.jobs.job`), and
the population fetch by the population table.

One function serves ``rq run`` (cron, systemd) and the scheduled Lambda, so the two cannot drift.
Every step runs whatever the steps before it did: a failed sync does not prevent the fetch, and
the reports are computed from what is stored. The result says what failed and
:meth:`PipelineResult.raise_for_errors` turns that into one error at the end, for schedulers and
Lambda retries to see: the exit code is 0 exactly when ``ok`` is true.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rearcquest.aws.catalog import Catalog, make_glue_client
from rearcquest.aws.queues import Queue
from rearcquest.aws.storage import ObjectStore
from rearcquest.config import DEFAULT_ROOT_URL, Settings, SyncOptions
from rearcquest.data.tables import (
    LEASE_HELD,
    build_population_table,
    build_tables,
    population_source,
)
from rearcquest.errors import ConfigError, DataError, RqError, StorageError
from rearcquest.jobs.fanout import enqueue_work, plan_work, process_work_batch, run_work
from rearcquest.jobs.job import (
    AfterSync,
    SurveyRun,
    SurveySet,
    one_or_many,
    recorded,
    register_glue_tables,
    run_survey,
    run_surveys,
    survey_of,
)
from rearcquest.layout import POPULATION_TABLE
from rearcquest.layout import tables_prefix as resolve_tables_prefix
from rearcquest.mirror.population import fetch_population
from rearcquest.mirror.surveys import make_http, survey_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from rearcquest.aws.catalog import Catalog
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.config import FanoutSettings, RetryPolicy
    from rearcquest.data.tables import TablesOptions, TablesResult
    from rearcquest.jobs.fanout import WorkMessage

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
            :func:`rearcquest.data.tables.population_source`).
        on_progress: called with a message before each table is built.
        glue_client: a Glue client to use instead of the default one.

    Raises:
        StorageError: the Glue database does not exist (checked before anything is built).
        RqError: as :func:`~rearcquest.data.tables.build_tables`.
    """

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


def _fetch_step(
    step: StepOutcome, settings: Settings, client: S3Client, retry: RetryPolicy | None
) -> None:
    """The fetch-population step of the scheduled job, recorded in ``step``."""

    with recorded(step, "fetch-population"):
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
    s3_client: S3Client,
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
        s3_client: the S3 client (the entry point's; Lambda keeps one per container).
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

    if not settings.bls_bucket or not settings.population_bucket:
        raise ConfigError(
            "set RQ_BLS_BUCKET and RQ_POPULATION_BUCKET (or --bls-bucket/--population-bucket)"
        )
    if surveys is not None and settings.bls_prefix is not None:
        raise ConfigError(
            "RQ_BLS_PREFIX cannot be combined with --survey: each survey is mirrored to "
            "<root prefix><survey>/ (use --root-prefix)"
        )
    store = ObjectStore(s3_client, settings.bls_bucket)
    options = SyncOptions(
        source_url=settings.bls_url,
        prefix=settings.resolved_bls_prefix,
        contact=settings.contact,
        user_agent=settings.user_agent,
        max_rps=settings.max_rps,
        retry=retry,
        vintages=settings.vintages,
    )
    many: SurveySet | None = None
    if surveys is not None:
        asked = SurveySet(surveys, root_url, root_prefix, population_key=settings.population_key)
        options, many = one_or_many(options, asked, tables_prefix=settings.tables_prefix)
    # Where the tables go by default: beside the mirrors (<root>tables/). A mirror at the
    # bucket root has no survey folder to build tables of: refused before anything is done.
    root = survey_of(options.prefix or "")[0] if settings.tables and many is None else root_prefix
    catalog = _catalog(settings.glue_database, None) if settings.tables else None
    after = AfterSync(tables=settings.tables, tables_prefix=settings.tables_prefix, catalog=catalog)
    result = PipelineResult()
    synced: SurveyRun | None = None
    with recorded(result.sync, "sync-bls"):
        if many is not None:
            # Each survey's tables are built under its lease, right after its sync; a survey
            # whose tables fail fails alone, in this step.
            outcomes = run_surveys(store, many, options, after)
            result.sync.summary = outcomes.to_dict()
            outcomes.raise_for_errors()
        else:
            synced = run_survey(store, options, after)
            result.sync.summary = synced.to_dict()
            # The tables' failure is the tables step's, not the sync's: its files are synced.
            synced.sync.raise_for_errors()
    _fetch_step(result.population, settings, s3_client, retry)
    if settings.tables:
        result.tables = _tables_step(store, synced, settings, root=root, catalog=catalog)
    if reports:
        result.reports = StepOutcome()
        with recorded(result.reports, "analyze"):
            from rearcquest.aws.storage import S3Access
            from rearcquest.data.analytics import ReportInputs, analyze, to_json_doc

            # With surveys the pr mirror the reports read is <root prefix>pr/.
            read = settings
            if surveys is not None:
                read = replace(settings, bls_prefix=survey_prefix(root_prefix, "pr"))
            result.analysis = analyze(ReportInputs(), s3=S3Access(client=s3_client), settings=read)
            result.reports.summary = to_json_doc(result.analysis)
    return result


def _tables_step(
    store: ObjectStore,
    synced: SurveyRun | None,
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

    step = StepOutcome()
    where = resolve_tables_prefix(settings.tables_prefix, root)
    errors = [synced.tables_error] if synced is not None and synced.tables_error else []
    summary: dict[str, Any] = {
        "survey": synced.tables if synced is not None else None,
        "population": None,
    }
    with recorded(step, "tables"):
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
    s3_client: S3Client,
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
        sqs_client: the SQS client (:func:`rearcquest.aws.queues.make_sqs_client`).
        s3_client: the S3 client (the entry point's).
        retry: the retry policy for both sources.

    Returns:
        The outcomes; the sync step's summary is the work plan.

    Raises:
        ConfigError: no queue or no population bucket is configured; nothing was attempted.
    """

    if not fanout.queue_url:
        raise ConfigError("set RQ_WORK_QUEUE_URL: the work queue the surveys are planned onto")
    if not settings.population_bucket:
        raise ConfigError("set RQ_POPULATION_BUCKET (or --population-bucket)")
    result = PipelineResult()
    with recorded(result.sync, "plan-surveys"):
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
    _fetch_step(result.population, settings, s3_client, retry)
    if settings.tables:
        # The workers build each survey's tables; the population table is built here.
        result.tables = _tables_step(
            ObjectStore(s3_client, settings.bls_bucket or settings.population_bucket),
            None,
            settings,
            root=fanout.root_prefix,
        )
    return result


def _send_on(queue: Queue, message: WorkMessage) -> None:
    """Send a continuation message on the work queue."""
    queue.send([message.to_json()])


def _catalog(database: str | None, glue_client: Any) -> Catalog | None:
    """The Glue database the tables are registered in (``RQ_GLUE_DATABASE``), or None."""
    if not database:
        return None

    return Catalog(glue_client or make_glue_client(), database)


def run_work_batch(
    event: Any,
    settings: Settings,
    *,
    root_url: str | None = None,
    root_prefix: str = "",
    s3_client: S3Client,
    glue_client: Any = None,
    retry: RetryPolicy | None = None,
    wait: float = 0.0,
    queue: Queue | None = None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The worker of the AWS fan-out: sync what each work message of an SQS batch names.

    One HTTP client serves the batch; its rate (``settings.max_rps``) is this worker's share of
    the politeness budget, the queue's maximum concurrency times it being the whole. With
    ``settings.tables`` each message's sync that changed something builds the survey's tables
    under the survey's lease (:func:`rearcquest.jobs.job.run_survey`, to ``RQ_TABLES_PREFIX`` or
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
        s3_client: the S3 client (the entry point's).
        glue_client: a Glue client to reuse (with ``settings.glue_database``).
        retry: the retry policy for the source.
        wait: seconds to wait for a survey's lease before failing its message.
        queue: the work queue, where a message whose time ran out sends its continuation.
        time_left: seconds the invocation may still spend before it must hand over (Lambda's
            remaining time less the margin); None for no limit.

    Returns:
        The partial batch response (``batchItemFailures``): failed messages are retried.

    Raises:
        ConfigError: ``RQ_BLS_BUCKET`` is not set.
    """

    if not settings.bls_bucket:
        raise ConfigError("set RQ_BLS_BUCKET: the bucket the surveys are mirrored into")
    store = ObjectStore(s3_client, settings.bls_bucket)
    root_url = root_url or DEFAULT_ROOT_URL
    where = SurveySet((), root_url, root_prefix, population_key=settings.population_key)
    options = SyncOptions(wait=wait, vintages=settings.vintages, time_left=time_left)
    after = AfterSync(
        tables=settings.tables,
        tables_prefix=settings.tables_prefix,
        catalog=_catalog(settings.glue_database, glue_client) if settings.tables else None,
    )
    with make_http(
        root_url,
        contact=settings.contact,
        user_agent=settings.user_agent,
        max_rps=settings.max_rps,
        retry=retry,
        connections=4,
    ) as http:

        def run(message: WorkMessage) -> SurveyRun:
            return run_work(
                message,
                store=store,
                http=http,
                surveys=where,
                options=options,
                after=after,
                requeue=None if queue is None else functools.partial(_send_on, queue),
            )

        return process_work_batch(event, run=run)
