"""Helpers shared by the tests of the report path (``test_events.py``) and its Lambda handler
(``test_lambdas.py``): SQS messages carrying S3 notifications, seeded buckets, collected logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import DATAUSA, release

POPULATION_KEY = "datausa/population.json"


def s3_body(bucket: str, key: str, event: str | None = "ObjectCreated:Put") -> str:
    """An S3 event notification as S3 puts it in an SQS message body (``key`` URL-encoded)."""
    record: dict[str, Any] = {"s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
    if event is not None:
        record["eventName"] = event
    return json.dumps({"Records": [record]})


def message(message_id: str, body: str) -> dict[str, Any]:
    return {"messageId": message_id, "body": body, "eventSource": "aws:sqs"}


GOOD = s3_body("rq-population", POPULATION_KEY)
MISSING = s3_body("rq-population", "datausa/nope.json")


def seed_buckets(s3: Any) -> None:
    """Both buckets holding real data (the BLS release of 2024-06-06, the ACS 1-year population)."""
    s3.create_bucket(Bucket="rq-bls")
    s3.create_bucket(Bucket="rq-population")
    s3.put_object(
        Bucket="rq-bls",
        Key="pr/pr.data.0.Current",
        Body=release("2024-06-06")["pr.data.0.Current"].data,
    )
    s3.put_object(
        Bucket="rq-population",
        Key=POPULATION_KEY,
        Body=(DATAUSA / "tesseract-acs1-2013-2023-raw.json").read_bytes(),
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def collected(logger: str) -> Iterator[list[logging.LogRecord]]:
    """The records of ``logger`` and its children, INFO and up, while the block runs."""
    handler = _Collect()
    target = logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def reports(records: list[logging.LogRecord]) -> dict[str, Any]:
    return {r.report: r.data for r in records if hasattr(r, "report")}  # type: ignore[attr-defined]
