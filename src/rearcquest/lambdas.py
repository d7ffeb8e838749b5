"""Thin AWS Lambda handlers over the same library functions as the CLI.

- :func:`scheduled_handler` (EventBridge, daily): :func:`rearcquest.pipeline.run_pipeline`, i.e.
  sync-bls then fetch-population, settings from ``RQ_*`` variables. It raises when a step failed, so
  Lambda's retries, its on-failure destination and the error alarm see it.
- :func:`index_handler` (a function URL, optional): a read-only page of the mirror with
  presigned download links.
- :func:`report_handler` (SQS, fed by the S3 notification on the population key): for each message,
  reads the population object it names and the BLS data, runs the three reports and logs them as
  JSON lines. Returns ``batchItemFailures`` so only failed messages are retried.

Every log line is a JSON object carrying ``request_id`` (the Lambda request id) and, while a
report message is handled, ``message_id`` (its SQS message id), library modules' lines included.
Clients are created once per container and reused across invocations.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote_plus

from rearcquest.config import Settings
from rearcquest.logjson import JsonFormatter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("rearcquest.lambdas")

# S3 sends this once, when a notification is configured, to check that it may reach the queue.
S3_TEST_EVENT = "s3:TestEvent"
# The event names S3 sends for a new or overwritten object (Put, Post, Copy, CompleteMultipart...).
OBJECT_CREATED = "ObjectCreated:"

_request_id: ContextVar[str | None] = ContextVar("rq_request_id", default=None)
_message_id: ContextVar[str | None] = ContextVar("rq_message_id", default=None)


class _InvocationIds(logging.Filter):
    """Stamp each record with the current Lambda request id and SQS message id.

    Context variables rather than ``extra=`` so that lines from library modules (sync, storage,
    analytics), which know nothing of Lambda, carry the ids too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        message_id = _message_id.get()
        if message_id is not None:
            record.message_id = message_id
        return True


@functools.cache
def _s3_client() -> S3Client:
    from rearcquest.storage import make_s3_client

    return make_s3_client()


@functools.cache
def _configure_logging() -> None:
    # Lambda installs its own handler on the root logger; ours writes one JSON object per line.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_InvocationIds())
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
    from rearcquest.pipeline import run_pipeline

    with _invocation(context):
        result = run_pipeline(Settings.from_env(), s3_client=_s3_client())
        log.info("scheduled run finished", extra={"result": result.to_dict()})
        result.raise_for_errors()
        return result.to_dict()


def index_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a Lambda function URL with a read-only page of the BLS mirror (optional stack part).

    The page lists the objects under the mirror prefix with presigned download links that live
    15 minutes, so the bucket stays private. S3 errors become a plain 502 page.
    """
    from rearcquest.errors import RqError
    from rearcquest.index import render_presigned_index
    from rearcquest.storage import ObjectStore

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


class S3Event(NamedTuple):
    """One record of an S3 event notification: the object and what happened to it."""

    bucket: str
    key: str
    event_name: str


def s3_events_in_message(body: str) -> list[S3Event]:
    """Return the records of the S3 event notification carried by an SQS message body.

    An ``s3:TestEvent`` message (sent when the notification is configured) gives one record with
    ``event_name`` ``"s3:TestEvent"`` and an empty key. Keys arrive URL-encoded (``+`` for spaces)
    and are decoded.

    Raises:
        ValueError: the body is not an S3 event notification.
    """
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("the message is not an S3 event notification")
    if doc.get("Event") == S3_TEST_EVENT:
        return [S3Event(str(doc.get("Bucket", "")), "", S3_TEST_EVENT)]
    records = doc.get("Records")
    if not isinstance(records, list):
        raise ValueError("the message is not an S3 event notification (no Records)")
    events = []
    for record in records:
        try:
            s3 = record["s3"]
            events.append(
                S3Event(
                    str(s3["bucket"]["name"]),
                    unquote_plus(str(s3["object"]["key"])),
                    str(record.get("eventName", "")),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"an S3 record lacks its bucket or key: {record!r:.200}") from exc
    return events


def _reports_for(bucket: str, key: str, settings: Settings, s3_client: S3Client) -> dict[str, Any]:
    """Run the three reports on the population object ``bucket/key`` and the BLS mirror (found
    through ``settings`` as ``rq analyze`` finds it)."""
    from rearcquest.analytics import analyze
    from rearcquest.render import to_json_doc

    analysis = analyze(
        population=f"s3://{bucket}/{key}",
        s3_client=s3_client,
        settings=settings,
    )
    return to_json_doc(analysis)


def report_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Log the three reports for each population object named in an SQS batch.

    See :func:`process_report_batch`; settings come from ``RQ_*`` variables.
    """
    with _invocation(context):
        return process_report_batch(event, settings=Settings.from_env(), s3_client=_s3_client())


def process_report_batch(event: Any, *, settings: Settings, s3_client: S3Client) -> dict[str, Any]:
    """Run and log the reports for every S3 notification in an SQS batch event.

    Each report is one JSON log line (``report``: its name, ``data``: its rows), then a summary
    line per object. A message that fails is returned in ``batchItemFailures`` so that only it is
    retried (and, after the queue's ``maxReceiveCount``, moved to the dead-letter queue); a
    duplicate message just logs the same reports again. S3 records of another bucket than
    ``settings.population_bucket``, events other than ``ObjectCreated:*`` and ``s3:TestEvent``
    are skipped with one log line each.

    Any event is accepted: with no ``Records`` list the batch is logged and dropped, and a record
    that is not an object or has no ``messageId`` is logged and dropped alone.

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}``.
    """
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        # Nothing identifies a message: there is nothing to retry alone, and failing the whole
        # invocation would only bring the same unreadable batch back until it reaches the DLQ.
        log.error(
            "batch dropped: the event has no Records list",
            extra={"event_excerpt": f"{event!r:.500}"},
        )
        return {"batchItemFailures": []}
    failures: list[dict[str, str]] = []
    for index, record in enumerate(records):
        message_id = record.get("messageId") if isinstance(record, dict) else None
        if not isinstance(message_id, str) or not message_id:
            # Lambda takes an empty, null or unknown itemIdentifier as an invalid response and
            # retries the whole batch, good messages included; a record it cannot name cannot
            # be retried alone, so it is logged and dropped and the others go on.
            log.error(
                "record %d dropped: it is not an SQS message with a messageId",
                index,
                extra={"record_index": index, "record_excerpt": f"{record!r:.500}"},
            )
            continue
        token = _message_id.set(message_id)
        try:
            _process_message(record, settings, s3_client)
        except Exception as exc:  # one bad message must not fail the batch
            log.error("message failed: %s", exc, exc_info=True)
            failures.append({"itemIdentifier": message_id})
        finally:
            _message_id.reset(token)
    return {"batchItemFailures": failures}


def _process_message(record: dict[str, Any], settings: Settings, s3_client: S3Client) -> None:
    """Run and log the reports for the population objects one SQS message names.

    Raises:
        ConfigError: ``RQ_POPULATION_BUCKET`` is not set.
        ValueError: the message is not an S3 event notification.
        RqError: a report could not be made.
    """
    from rearcquest.errors import ConfigError

    body = record.get("body")
    if not isinstance(body, str):
        raise ValueError("the message has no body")
    if not settings.population_bucket:
        raise ConfigError("RQ_POPULATION_BUCKET is not set: no bucket to take reports from")
    for bucket, key, event_name in s3_events_in_message(body):
        if event_name == S3_TEST_EVENT:
            log.info("skipping s3:TestEvent", extra={"bucket": bucket})
            continue
        if bucket != settings.population_bucket:
            log.info(
                "skipping an event of bucket %s, not the population bucket",
                bucket,
                extra={"bucket": bucket, "key": key, "event_name": event_name},
            )
            continue
        if not event_name.startswith(OBJECT_CREATED):
            log.info(
                "skipping %s: only ObjectCreated:* events run the reports",
                event_name or "an event without eventName",
                extra={"bucket": bucket, "key": key, "event_name": event_name},
            )
            continue
        doc = _reports_for(bucket, key, settings, s3_client)
        for name, data in doc.items():
            log.info(
                "report %s",
                name,
                extra={"report": name, "data": data, "population_object": f"s3://{bucket}/{key}"},
            )
        log.info(
            "reports done",
            extra={
                "population_object": f"s3://{bucket}/{key}",
                "reports": sorted(doc),
                "best_year_rows": len(doc.get("best_year", [])),
            },
        )
