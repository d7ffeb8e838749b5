"""S3 event notifications carried by SQS batches: parse them and run the reports they call for.

The code of the report path, shared by the ``report_handler`` Lambda, ``rq demo`` and the local
S3 -> SQS wiring (:mod:`rearcquest.localaws`), so that the demo runs what the Lambda runs:

- :func:`s3_events_in_message`: the records of the S3 notification in one SQS message body;
- :func:`sqs_batch_event`: messages received from a queue, in the event Lambda's SQS source sends;
- :func:`process_report_batch`: run and log the reports for every message of such an event and
  return the partial batch response (``batchItemFailures``);
- :func:`failed_message_ids`: the messages a partial batch response asks to retry.

While a message is handled, :func:`current_message_id` gives its SQS message id, so that a log
filter (the Lambda's) can stamp every line with it, library modules' lines included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote_plus

from rearcquest.data.analytics import ReportInputs, analyze, to_json_doc
from rearcquest.errors import ConfigError

if TYPE_CHECKING:
    from rearcquest.aws.storage import S3Access
    from rearcquest.config import Settings

log = logging.getLogger(__name__)

# S3 sends this once, when a notification is configured, to check that it may reach the queue.
S3_TEST_EVENT = "s3:TestEvent"
# The event names S3 sends for a new or overwritten object (Put, Post, Copy, CompleteMultipart...).
OBJECT_CREATED = "ObjectCreated:"

_message_id: ContextVar[str | None] = ContextVar("rq_message_id", default=None)


def current_message_id() -> str | None:
    """Return the SQS message id of the message being handled, or ``None`` outside one."""
    return _message_id.get()


@contextmanager
def handling_message(message_id: str) -> Iterator[None]:
    """Within the block, :func:`current_message_id` gives ``message_id`` (for log filters)."""
    token = _message_id.set(message_id)
    try:
        yield
    finally:
        _message_id.reset(token)


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

    Args:
        body: the SQS message body.

    Returns:
        The records, in the message's order.

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


def sqs_batch_event(messages: Iterable[Mapping[str, Any]], *, queue: str) -> dict[str, Any]:
    """Return the event Lambda's SQS event source would send for ``messages``.

    Args:
        messages: messages as SQS ``ReceiveMessage`` returns them (``MessageId``,
            ``ReceiptHandle``, ``Body``).
        queue: the queue they came from (its URL or ARN), as ``eventSourceARN``.

    Returns:
        ``{"Records": [{"messageId", "receiptHandle", "body", "eventSource", "eventSourceARN"}]}``.
    """
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue,
            }
            for m in messages
        ]
    }


def failed_message_ids(response: Mapping[str, Any]) -> set[str]:
    """Return the message ids a partial batch response (``batchItemFailures``) asks to retry."""
    return {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}


def process_report_batch(event: Any, *, settings: Settings, s3: S3Access) -> dict[str, Any]:
    """Run and log the reports for every S3 notification in an SQS batch event.

    Each report is one JSON log line (``report``: its name, ``data``: its rows), then a summary
    line per object. A message that fails is returned in ``batchItemFailures`` so that only it is
    retried (and, after the queue's ``maxReceiveCount``, moved to the dead-letter queue); a
    duplicate message just logs the same reports again. S3 records of another bucket than
    ``settings.population_bucket``, events other than ``ObjectCreated:*`` and ``s3:TestEvent``
    are skipped with one log line each.

    Any event is accepted: with no ``Records`` list the batch is logged and dropped, and a record
    that is not an object or has no ``messageId`` is logged and dropped alone.

    Args:
        event: the SQS batch event (see :func:`sqs_batch_event`).
        settings: where the population bucket and the BLS mirror are.
        s3: the S3 access to read both with.

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
            _process_message(record, settings, s3)
        except Exception as exc:  # one bad message must not fail the batch
            log.error("message failed: %s", exc, exc_info=True)
            failures.append({"itemIdentifier": message_id})
        finally:
            _message_id.reset(token)
    return {"batchItemFailures": failures}


def _reports_for(bucket: str, key: str, settings: Settings, s3: S3Access) -> dict[str, Any]:
    """Run the three reports on the population object ``bucket/key`` and the BLS mirror (found
    through ``settings`` as ``rq analyze`` finds it)."""

    analysis = analyze(ReportInputs(population=f"s3://{bucket}/{key}"), s3=s3, settings=settings)
    return to_json_doc(analysis)


def _process_message(record: dict[str, Any], settings: Settings, s3: S3Access) -> None:
    """Run and log the reports for the population objects one SQS message names.

    Raises:
        ConfigError: ``RQ_POPULATION_BUCKET`` is not set.
        ValueError: the message is not an S3 event notification.
        RqError: a report could not be made.
    """

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
        doc = _reports_for(bucket, key, settings, s3)
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
