"""Thin AWS Lambda handlers over the same library functions as the CLI.

- :func:`scheduled_handler` (EventBridge, daily): :func:`rearcquest.pipeline.run_pipeline`, i.e.
  sync-bls then fetch-population, settings from ``RQ_*`` variables. It raises when a step failed, so
  Lambda's retries and error alarms see it.
- :func:`index_handler` (a function URL, optional): a read-only page of the mirror with
  presigned download links.
- :func:`report_handler` (SQS, fed by the S3 notification on the population key): for each message,
  reads the population object it names and the BLS data, runs the three reports and logs them as
  JSON lines. Returns ``batchItemFailures`` so only failed messages are retried.

Clients are created once per container and reused across invocations.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from rearcquest.config import Settings
from rearcquest.logjson import JsonFormatter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("rearcquest.lambdas")


@functools.cache
def _s3_client() -> S3Client:
    from rearcquest.storage import make_s3_client

    return make_s3_client()


@functools.cache
def _configure_logging() -> None:
    # Lambda installs its own handler on the root logger; ours writes one JSON object per line.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    package = logging.getLogger("rearcquest")
    package.handlers[:] = [handler]
    package.setLevel(os.environ.get("RQ_LOG_LEVEL", "INFO").upper())
    package.propagate = False


def scheduled_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run sync-bls and fetch-population; return both JSON summaries.

    Raises:
        RqError: either step failed (after the other one ran).
    """
    from rearcquest.pipeline import run_pipeline

    _configure_logging()
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

    _configure_logging()
    settings = Settings.from_env()
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
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


def s3_objects_in_message(body: str) -> list[tuple[str, str]]:
    """Return the ``(bucket, key)`` pairs of an S3 event notification carried by an SQS message.

    ``s3:TestEvent`` messages (sent when the notification is configured) give an empty list.
    Keys arrive URL-encoded (``+`` for spaces) and are decoded.

    Raises:
        ValueError: the body is not an S3 event notification.
    """
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("the message is not an S3 event notification")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise ValueError("the message is not an S3 event notification (no Records)")
    pairs = []
    for record in records:
        s3 = record["s3"]
        pairs.append((s3["bucket"]["name"], unquote_plus(s3["object"]["key"])))
    return pairs


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
    _configure_logging()
    return process_report_batch(event, settings=Settings.from_env(), s3_client=_s3_client())


def process_report_batch(
    event: dict[str, Any], *, settings: Settings, s3_client: S3Client
) -> dict[str, Any]:
    """Run and log the reports for every S3 notification in an SQS batch event.

    Each report is one JSON log line (``report``: its name, ``data``: its rows), then a summary
    line per object. A message that fails is returned in ``batchItemFailures`` so that only it is
    retried (and, after the queue's ``maxReceiveCount``, moved to the dead-letter queue); a
    duplicate message just logs the same reports again.

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}``.
    """
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            objects = s3_objects_in_message(record["body"])
            if not objects:
                log.info("skipping s3:TestEvent", extra={"message_id": message_id})
            for bucket, key in objects:
                doc = _reports_for(bucket, key, settings, s3_client)
                for name, data in doc.items():
                    log.info(
                        "report %s",
                        name,
                        extra={
                            "report": name,
                            "data": data,
                            "population_object": f"s3://{bucket}/{key}",
                        },
                    )
                log.info(
                    "reports done",
                    extra={
                        "population_object": f"s3://{bucket}/{key}",
                        "reports": sorted(doc),
                        "best_year_rows": len(doc.get("best_year", [])),
                        "message_id": message_id,
                    },
                )
        except Exception as exc:  # one bad message must not fail the batch
            log.error("message failed: %s", exc, extra={"message_id": message_id}, exc_info=True)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
