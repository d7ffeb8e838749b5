"""Thin AWS Lambda handlers over the same library functions as the CLI.

- :func:`scheduled_handler` (EventBridge, daily): :func:`rearcquest.jobs.pipeline.run_pipeline`, i.e.
  sync-bls then fetch-population, settings from ``RQ_*`` variables. It raises when a step failed, so
  Lambda's retries, its on-failure destination and the error alarm see it.
- :func:`index_handler` (a function URL, optional): a read-only page of the mirror with
  presigned download links.
- :func:`work_handler` (SQS, the work queue of the fan-out): syncs the survey, or the one big
  file of a survey, each message names; the scheduled function plans those messages instead of
  syncing when ``RQ_WORK_QUEUE_URL`` is set (:mod:`rearcquest.jobs.fanout`). It watches
  ``context.get_remaining_time_in_millis()``: before Lambda would stop it, it stops its
  transfers at their last whole part, records them and sends a continuation message on the
  same queue (``RQ_WORK_QUEUE_URL``).
- :func:`report_handler` (SQS, fed by the S3 notification on the population key): for each message,
  reads the population object it names and the BLS data, runs the three reports and logs them as
  JSON lines. Returns ``batchItemFailures`` so only failed messages are retried. The work is
  :func:`rearcquest.jobs.events.process_report_batch`, which ``rq demo`` runs too.

Every log line is a JSON object carrying ``request_id`` (the Lambda request id) and, while a
report message is handled, ``message_id`` (its SQS message id), library modules' lines included.
Clients are created once per container and reused across invocations.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from rearcquest.config import Settings
from rearcquest.jobs.events import current_message_id, process_report_batch
from rearcquest.logjson import JsonFormatter
from rearcquest.mirror.surveys import SurveyLogFilter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("rearcquest.lambdas")

_request_id: ContextVar[str | None] = ContextVar("rq_request_id", default=None)


class _InvocationIds(logging.Filter):
    """Stamp each record with the current Lambda request id and SQS message id.

    Context variables rather than ``extra=`` so that lines from library modules (sync, storage,
    analytics), which know nothing of Lambda, carry the ids too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        message_id = current_message_id()
        if message_id is not None:
            record.message_id = message_id
        return True


@functools.cache
def _s3_client() -> S3Client:
    from rearcquest.aws.storage import make_s3_client

    return make_s3_client()


@functools.cache
def _glue_client() -> Any:
    from rearcquest.aws.catalog import make_glue_client

    return make_glue_client()


@functools.cache
def _sqs_client() -> Any:
    from rearcquest.aws.queues import make_sqs_client

    return make_sqs_client()


@functools.cache
def _configure_logging() -> None:
    # Lambda installs its own handler on the root logger; ours writes one JSON object per line.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_InvocationIds())
    handler.addFilter(SurveyLogFilter())
    package = logging.getLogger("rearcquest")
    package.handlers[:] = [handler]
    package.setLevel(os.environ.get("RQ_LOG_LEVEL", "INFO").upper())
    package.propagate = False


@contextmanager
def _invocation(context: Any) -> Iterator[None]:
    """Configure logging and set the request id of the invocation for its log lines."""
    _configure_logging()
    request_id = getattr(context, "aws_request_id", None)
    token = _request_id.set(str(request_id) if request_id is not None else None)
    try:
        yield
    finally:
        _request_id.reset(token)


def scheduled_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run sync-bls and fetch-population; return both JSON summaries.

    Raises:
        RqError: either step failed (after the other one ran).
    """
    from rearcquest.config import FanoutSettings
    from rearcquest.jobs.pipeline import run_fanout_pipeline, run_pipeline

    with _invocation(context):
        fanout = FanoutSettings.from_env()
        if fanout.queue_url:
            # The AWS fan-out: queue the surveys' work for work_handler, then the population.
            result = run_fanout_pipeline(
                Settings.from_env(), fanout, sqs_client=_sqs_client(), s3_client=_s3_client()
            )
        else:
            result = run_pipeline(Settings.from_env(), s3_client=_s3_client())
        log.info("scheduled run finished", extra={"result": result.to_dict()})
        result.raise_for_errors()
        return result.to_dict()


def index_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a Lambda function URL with a read-only page of the BLS mirror (optional stack part).

    The page lists the objects under the mirror prefix with presigned download links that live
    15 minutes, so the bucket stays private. S3 errors become a plain 502 page.
    """
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.errors import RqError
    from rearcquest.index import render_presigned_index

    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    with _invocation(context):
        settings = Settings.from_env()
        try:
            if not settings.bls_bucket:
                raise RqError("RQ_BLS_BUCKET is not set")
            store = ObjectStore(_s3_client(), settings.bls_bucket)
            page = render_presigned_index(store, settings.resolved_bls_prefix, presign_seconds=900)
        except RqError as exc:
            log.error("index page failed: %s", exc)
            return {
                "statusCode": 502,
                "headers": {**headers, "Content-Type": "text/plain; charset=utf-8"},
                "body": "The file list is unavailable right now.",
            }
        return {"statusCode": 200, "headers": headers, "body": page.decode()}


def report_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Log the three reports for each population object named in an SQS batch.

    See :func:`rearcquest.jobs.events.process_report_batch`; settings come from ``RQ_*`` variables.
    """
    with _invocation(context):
        from rearcquest.aws.storage import S3Access

        s3 = S3Access(client=_s3_client())
        return process_report_batch(event, settings=Settings.from_env(), s3=s3)


def work_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sync what each message of an SQS batch from the work queue names (the fan-out worker).

    See :func:`rearcquest.jobs.pipeline.run_work_batch`; settings come from ``RQ_*`` variables and
    ``RQ_MAX_RPS`` is this worker's share of the politeness budget. The source root and the
    mirrors' prefix are ``RQ_BLS_ROOT_URL`` and ``RQ_BLS_ROOT_PREFIX``, never a message's: a
    message naming others fails alone. Failed messages (a held lease, a failed listing or file,
    a refused message) are returned in ``batchItemFailures`` and retried.
    """
    from rearcquest.aws.queues import Queue
    from rearcquest.config import FanoutSettings
    from rearcquest.jobs.pipeline import run_work_batch

    with _invocation(context):
        settings = Settings.from_env()
        fanout = FanoutSettings.from_env()
        return run_work_batch(
            event,
            settings,
            root_url=fanout.root_url,
            root_prefix=fanout.root_prefix,
            s3_client=_s3_client(),
            glue_client=_glue_client() if settings.glue_database else None,
            queue=Queue(_sqs_client(), fanout.queue_url) if fanout.queue_url else None,
            time_left=_time_left(context),
        )


def _time_left(context: Any) -> Callable[[], float] | None:
    """Seconds the invocation may still spend before handing over: Lambda's remaining time
    less :data:`~rearcquest.config.HANDOVER_MARGIN`; None without a Lambda context."""
    from rearcquest.config import HANDOVER_MARGIN

    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None

    def time_left() -> float:
        return float(remaining()) / 1000.0 - HANDOVER_MARGIN

    return time_left
