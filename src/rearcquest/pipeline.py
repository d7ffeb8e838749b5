"""The scheduled job: sync the BLS mirror, then fetch the population, whatever the sync did.

One function serves ``rq run`` (cron, systemd) and the scheduled Lambda, so the two cannot drift.
Every step runs whatever the steps before it did: a failed sync does not prevent the fetch, and
the reports are computed from what is stored. The result says what failed and
:meth:`PipelineResult.raise_for_errors` turns that into one error at the end, for schedulers and
Lambda retries to see: the exit code is 0 exactly when ``ok`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rearcquest.config import DEFAULT_ROOT_URL, Settings
from rearcquest.errors import ConfigError, RqError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from rearcquest.fanout import FanoutSettings
    from rearcquest.sources._http import RetryPolicy
    from rearcquest.storage import ObjectStore
    from rearcquest.sync import SyncResult

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
    analysis: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when every step that ran succeeded."""
        return all(step.error is None for _, step in self.steps())

    def steps(self) -> list[tuple[str, StepOutcome]]:
        """The steps that ran, by name."""
        steps = [("sync-bls", self.sync), ("fetch-population", self.population)]
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
    :class:`RqError` (exit code 1): the next step still runs.
    """
    try:
        yield
    except RqError as exc:
        step.error, step.exit_code = str(exc), exc.exit_code
        log.error("%s failed: %s", name, exc)
    except OSError as exc:
        step.error, step.exit_code = f"local I/O error: {exc}", 1
        log.error("%s failed: %s", name, step.error)


def sync_with_index(store: ObjectStore, *, index_key: str, **options: Any) -> SyncResult:
    """:func:`~rearcquest.sync.sync_bls`, keeping a static ``index.html`` of the mirror current.

    The page at ``index_key`` is rewritten, under the sync's lease, when the sync changed something
    or the page is missing; it is never deleted as a stale file (see ``rq serve-index``).

    Args:
        store: the bucket to mirror into.
        index_key: where the page goes (inside the mirror prefix or not).
        options: the other keyword arguments of :func:`~rearcquest.sync.sync_bls`.

    Returns:
        The sync's result, with ``index_written`` set when the page was written.
    """
    from rearcquest.index import write_static_index
    from rearcquest.sync import sync_bls

    def write_page(result: SyncResult) -> None:
        if result.added or result.updated or result.deleted or store.head(index_key) is None:
            result.index_written = write_static_index(store, result.prefix, index_key).key

    return sync_bls(store, index_key=index_key, on_synced=write_page, **options)


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
        ConfigError: a bucket is not configured, or ``surveys`` is given with
            ``settings.bls_prefix`` (each survey has its own prefix); nothing was attempted.
    """
    from rearcquest.storage import ObjectStore, make_s3_client
    from rearcquest.surveys import ALL, survey_prefix, survey_url, sync_surveys
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
    result = PipelineResult()
    with _recording(result.sync, "sync-bls"):
        if surveys is not None and (list(surveys) == [ALL] or len(surveys) > 1):
            many = sync_surveys(
                store, surveys=surveys, root_url=root_url, root_prefix=root_prefix, **common
            )
            result.sync.summary = many.to_dict()
            many.raise_for_errors()
        else:
            source_url, prefix = settings.bls_url, settings.resolved_bls_prefix
            if surveys is not None:  # one survey keeps the single-directory summary
                source_url = survey_url(root_url, surveys[0])
                prefix = survey_prefix(root_prefix, surveys[0])
            synced = sync_bls(store, source_url=source_url, prefix=prefix, **common)
            result.sync.summary = synced.to_dict()
            synced.raise_for_errors()
    _fetch_step(result.population, settings, client, retry)
    if reports:
        result.reports = StepOutcome()
        with _recording(result.reports, "analyze"):
            from rearcquest.analytics import analyze
            from rearcquest.render import to_json_doc

            result.analysis = analyze(settings=settings, s3_client=client)
            result.reports.summary = to_json_doc(result.analysis)
    return result


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
    syncing (:func:`run_work_batch`). The population fetch stays here. Each step runs whatever
    the other did; failures are recorded, not raised.

    Args:
        settings: contact, rate, population bucket and URL.
        fanout: the queue, surveys, root and big-file threshold.
        sqs_client: the SQS client.
        s3_client: a boto3 S3 client to reuse.
        retry: the retry policy for both sources.

    Returns:
        The outcomes; the sync step's summary is the work plan.

    Raises:
        ConfigError: no queue or no population bucket is configured; nothing was attempted.
    """
    from rearcquest.fanout import enqueue_work, plan_work
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
            )
        summary = plan.to_dict()
        summary["queued"] = enqueue_work(sqs_client, fanout.queue_url, plan.messages)
        result.sync.summary = summary
        log.info("work queued", extra={"plan": summary})
    _fetch_step(result.population, settings, client, retry)
    return result


def run_work_batch(
    event: Any,
    settings: Settings,
    *,
    root_url: str | None = None,
    s3_client: S3Client | None = None,
    retry: RetryPolicy | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """The worker of the AWS fan-out: sync what each work message of an SQS batch names.

    One HTTP client serves the batch; its rate (``settings.max_rps``) is this worker's share of
    the politeness budget, the queue's maximum concurrency times it being the whole.

    Args:
        event: the SQS batch event.
        settings: the bucket, contact and the worker's rate (``max_rps``).
        root_url: the root the messages name (it picks the default rate: 1/s for bls.gov).
        s3_client: a boto3 S3 client to reuse.
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
    from rearcquest.config import DEFAULT_ROOT_URL

    with make_http(
        root_url or DEFAULT_ROOT_URL,
        contact=settings.contact,
        user_agent=settings.user_agent,
        max_rps=settings.max_rps,
        retry=retry,
        connections=4,
    ) as http:
        return process_work_batch(
            event,
            run=lambda message: run_work(
                message, store=store, http=http, wait=wait, vintages=settings.vintages
            ),
        )
