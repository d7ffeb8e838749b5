"""The report path (rearcquest.jobs.events): S3 notifications in SQS batches, partial batch responses,
per-message failures, skipped events; against moto S3 holding real data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from event_helpers import GOOD, MISSING, POPULATION_KEY, collected, message, s3_body, seed_buckets
from rearcquest.aws.storage import S3Access
from rearcquest.config import Settings
from rearcquest.jobs.events import (
    S3Event,
    current_message_id,
    failed_message_ids,
    process_report_batch,
    s3_events_in_message,
    sqs_batch_event,
)

SETTINGS = Settings(bls_bucket="rq-bls", population_bucket="rq-population")


@pytest.fixture
def seeded() -> Iterator[Any]:
    """A moto S3 client on both buckets holding real data."""
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        seed_buckets(s3)
        yield s3


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    with collected("rearcquest.jobs.events") as records:
        yield records


def test_s3_events_in_message_decodes_keys() -> None:
    body = s3_body("b", "a+b%2Bc%C3%A9.json")
    assert s3_events_in_message(body) == [S3Event("b", "a b+cé.json", "ObjectCreated:Put")]
    test_event = json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})
    assert s3_events_in_message(test_event) == [S3Event("b", "", "s3:TestEvent")]
    with pytest.raises(ValueError, match="not an S3 event"):
        s3_events_in_message("[]")
    with pytest.raises(ValueError, match="lacks its bucket or key"):
        s3_events_in_message(json.dumps({"Records": [{"s3": {"bucket": {}}}]}))


def test_sqs_batch_event_is_lambdas_format_and_failures_name_messages() -> None:
    received = [
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": GOOD, "MD5OfBody": "x"},
        {"MessageId": "m2", "ReceiptHandle": "r2", "Body": "b"},
    ]
    event = sqs_batch_event(received, queue="arn:aws:sqs:us-east-1:1:q")
    assert event == {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "r1",
                "body": GOOD,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            },
            {
                "messageId": "m2",
                "receiptHandle": "r2",
                "body": "b",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            },
        ]
    }
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}) == {"m2"}
    assert failed_message_ids({"batchItemFailures": []}) == set()
    assert failed_message_ids({}) == set()


def test_a_batch_from_the_queue_runs_the_reports(
    seeded: Any, logged: list[logging.LogRecord]
) -> None:
    received = [
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": GOOD},
        {"MessageId": "m2", "ReceiptHandle": "r2", "Body": MISSING},
    ]
    response = process_report_batch(
        sqs_batch_event(received, queue="q"), settings=SETTINGS, s3=S3Access(client=seeded)
    )
    assert failed_message_ids(response) == {"m2"}
    names = [r.report for r in logged if hasattr(r, "report")]  # type: ignore[attr-defined]
    assert names == ["population", "best_year", "series_population"]


def test_each_line_knows_its_message_and_none_after(
    seeded: Any, logged: list[logging.LogRecord]
) -> None:
    seen: list[tuple[str, str | None]] = []

    class _Ids(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), current_message_id()))

    ids = _Ids()
    logging.getLogger("rearcquest").addHandler(ids)
    try:
        event = {
            "Records": [
                message("m-skip", s3_body("other-bucket", POPULATION_KEY)),
                message("m-bad", "not json"),
            ]
        }
        process_report_batch(event, settings=SETTINGS, s3=S3Access(client=seeded))
    finally:
        logging.getLogger("rearcquest").removeHandler(ids)
    assert [i for _, i in seen] == ["m-skip", "m-bad"], seen
    assert current_message_id() is None


@pytest.mark.parametrize(
    ("bad", "failed", "logged_line"),
    [
        ("junk", [], "record 1 dropped"),
        (None, [], "record 1 dropped"),
        (["a", "list"], [], "record 1 dropped"),
        ({"body": GOOD}, [], "record 1 dropped"),
        ({"messageId": None, "body": GOOD}, [], "record 1 dropped"),
        ({"messageId": "", "body": GOOD}, [], "record 1 dropped"),
        ({"messageId": 7, "body": GOOD}, [], "record 1 dropped"),
        ({"messageId": "bad"}, ["bad"], "message failed: the message has no body"),
        (message("bad", "not json"), ["bad"], "message failed"),
        (message("bad", "[1]"), ["bad"], "message failed: the message is not an S3 event"),
        (message("bad", "{}"), ["bad"], "message failed: the message is not an S3 event"),
        (
            message("bad", json.dumps({"Records": [{"s3": {}}]})),
            ["bad"],
            "message failed: an S3 record lacks",
        ),
        (message("bad", MISSING), ["bad"], "message failed"),
        (
            message("skip", s3_body("other-bucket", POPULATION_KEY)),
            [],
            "skipping an event of bucket other-bucket, not the population bucket",
        ),
        (
            message("skip", s3_body("rq-population", POPULATION_KEY, "ObjectRemoved:Delete")),
            [],
            "skipping ObjectRemoved:Delete: only ObjectCreated:* events run the reports",
        ),
        (
            message("skip", s3_body("rq-population", POPULATION_KEY, None)),
            [],
            "skipping an event without eventName: only ObjectCreated:* events run the reports",
        ),
        (
            message("skip", json.dumps({"Event": "s3:TestEvent", "Bucket": "rq-population"})),
            [],
            "skipping s3:TestEvent",
        ),
    ],
    ids=[
        "record-is-a-string",
        "record-is-null",
        "record-is-a-list",
        "no-messageId",
        "messageId-null",
        "messageId-empty",
        "messageId-not-a-string",
        "no-body",
        "body-not-json",
        "body-not-an-object",
        "body-without-Records",
        "s3-record-without-bucket",
        "object-missing-in-the-population-bucket",
        "other-bucket-skipped",
        "other-event-skipped",
        "no-eventName-skipped",
        "s3-test-event-skipped",
    ],
)
def test_a_bad_record_fails_alone_and_good_ones_succeed(
    seeded: Any,
    logged: list[logging.LogRecord],
    bad: Any,
    failed: list[str],
    logged_line: str,
) -> None:
    event = {"Records": [message("good-1", GOOD), bad, message("good-2", GOOD)]}
    response = process_report_batch(event, settings=SETTINGS, s3=S3Access(client=seeded))
    assert response == {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
    done = [r for r in logged if r.getMessage() == "reports done"]
    assert [r.population_object for r in done] == [f"s3://rq-population/{POPULATION_KEY}"] * 2  # type: ignore[attr-defined]
    matching = [r for r in logged if r.getMessage().startswith(logged_line)]
    assert len(matching) == 1, [r.getMessage() for r in logged]
    assert matching[0].levelno == (logging.INFO if "skipping" in logged_line else logging.ERROR)


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": None}, {"Records": {"messageId": "a"}}, {"Records": "x"}, ["x"], None],
    ids=[
        "no-Records",
        "Records-null",
        "Records-an-object",
        "Records-a-string",
        "event-a-list",
        "event-null",
    ],
)
def test_a_batch_without_records_is_logged_and_dropped(
    seeded: Any, logged: list[logging.LogRecord], event: Any
) -> None:
    assert process_report_batch(event, settings=SETTINGS, s3=S3Access(client=seeded)) == {
        "batchItemFailures": []
    }
    assert [(r.levelno, r.getMessage()) for r in logged] == [
        (logging.ERROR, "batch dropped: the event has no Records list")
    ]


def test_reports_fail_every_message_without_a_population_bucket(
    seeded: Any, logged: list[logging.LogRecord]
) -> None:
    settings = Settings(bls_bucket="rq-bls")
    event = {"Records": [message("a", GOOD), message("b", GOOD)]}
    response = process_report_batch(event, settings=settings, s3=S3Access(client=seeded))
    assert response == {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}
    assert "RQ_POPULATION_BUCKET is not set" in logged[-1].getMessage()
