"""The Lambda handlers and the whole AWS pipeline, locally: moto S3 -> SQS -> report handler.

The report path itself (malformed batches, skipped events) is tested in ``test_events.py``; here,
that the handlers read their settings from the environment, log JSON lines with the invocation's
ids and answer as Lambda expects.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from event_helpers import (
    GOOD,
    POPULATION_KEY,
    collected,
    message,
    reports,
    s3_body,
    seed_buckets,
)
from rearcquest import lambdas
from rearcquest.aws.queues import Queue
from rearcquest.aws.storage import ObjectStore
from rearcquest.config import Settings
from rearcquest.errors import RqError
from rearcquest.localaws import drain_queue, notify_queue_on_key
from rearcquest.logjson import JsonFormatter
from rearcquest.offline import Fault, OfflineServer, add_datausa_routes


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    from moto import mock_aws

    with mock_aws():
        lambdas._s3_client.cache_clear()
        yield (
            boto3.client("s3", region_name="us-east-1"),
            boto3.client("sqs", region_name="us-east-1"),
        )
    lambdas._s3_client.cache_clear()


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test's first invocation configures logging afresh, as in a new Lambda container (the
    conftest fixture restores the ``rearcquest`` logger after each test)."""
    lambdas._configure_logging.cache_clear()
    yield
    lambdas._configure_logging.cache_clear()


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    """Every record of the package, the handlers' and the report path's (rearcquest.jobs.events).

    Logging is configured first, as the handlers would, so that their configuration keeps the
    collector.
    """
    lambdas._configure_logging()
    with collected("rearcquest") as records:
        yield records


def pipeline_env(monkeypatch: pytest.MonkeyPatch, server: OfflineServer, key: str) -> None:
    urls = add_datausa_routes(server)
    for name, value in {
        "RQ_BLS_BUCKET": "rq-bls",
        "RQ_POPULATION_BUCKET": "rq-population",
        "RQ_POPULATION_KEY": key,
        "RQ_BLS_URL": server.bls_url,
        "RQ_POPULATION_URL": urls["tesseract"],
        "RQ_CONTACT": "lambda@example.com",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def seeded(aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Both buckets holding real data (the BLS release of 2024-06-06, the ACS 1-year population)."""
    s3, _ = aws
    seed_buckets(s3)
    monkeypatch.setenv("RQ_BLS_BUCKET", "rq-bls")
    monkeypatch.setenv("RQ_POPULATION_BUCKET", "rq-population")
    monkeypatch.setenv("RQ_POPULATION_KEY", POPULATION_KEY)
    return Settings.from_env()


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the handlers' own log handler writes (as CloudWatch receives them)."""
    lambdas._configure_logging()
    (handler,) = [
        h
        for h in logging.getLogger("rearcquest").handlers
        if isinstance(h, logging.StreamHandler) and isinstance(h.formatter, JsonFormatter)
    ]
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(old)


@pytest.mark.parametrize("key", ["datausa/population.json", "datausa/us population+2024.json"])
def test_whole_pipeline_locally(
    aws: tuple[Any, Any],
    bls_server: OfflineServer,
    logged: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    s3, sqs = aws
    pipeline_env(monkeypatch, bls_server, key)
    s3.create_bucket(Bucket="rq-bls")
    s3.create_bucket(Bucket="rq-population")
    queue = Queue.create(sqs, "rq-reports")
    notify_queue_on_key(ObjectStore(s3, "rq-population"), queue, key=key)

    summary = lambdas.scheduled_handler({}, None)
    assert summary["ok"] is True
    assert len(summary["sync"]["summary"]["added"]) == 12
    assert summary["population"]["summary"]["written"] is True

    responses = drain_queue(queue, lambda event: lambdas.report_handler(event, None))
    assert all(r == {"batchItemFailures": []} for r in responses)
    got = reports(logged)
    assert set(got) == {"population", "best_year", "series_population"}
    assert got["population"]["mean"] == pytest.approx(322069808.0)
    assert got["population"]["std"] == pytest.approx(4158441.04, abs=0.01)
    assert got["population"]["years"] == [2013, 2014, 2015, 2016, 2017, 2018]
    assert len(got["best_year"]) == 237
    rows = got["series_population"]
    assert {r["series_id"] for r in rows} == {"PRS30006032"} and {r["period"] for r in rows} == {
        "Q01"
    }
    assert 2020 not in {r["year"] for r in rows}  # the ACS 1-year data has no 2020
    assert any(r.getMessage() == "skipping s3:TestEvent" for r in logged)
    done = [r for r in logged if r.getMessage() == "reports done"]
    assert [r.population_object for r in done] == [f"s3://rq-population/{key}"]  # type: ignore[attr-defined]

    # A second daily run changes nothing: no new S3 event, no new report.
    lambdas.scheduled_handler({}, None)
    assert drain_queue(queue, lambda event: lambdas.report_handler(event, None)) == []


def test_duplicates_are_harmless_and_poison_messages_fail_alone(
    aws: tuple[Any, Any],
    bls_server: OfflineServer,
    logged: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3, _ = aws
    key = "datausa/population.json"
    pipeline_env(monkeypatch, bls_server, key)
    s3.create_bucket(Bucket="rq-bls")
    s3.create_bucket(Bucket="rq-population")
    lambdas.scheduled_handler({}, None)
    good = s3_body("rq-population", key)
    missing = s3_body("rq-population", "nope.json")
    event = {
        "Records": [
            {"messageId": "a", "body": good},
            {"messageId": "b", "body": good},
            {"messageId": "c", "body": "not json"},
            {"messageId": "d", "body": missing},
            {"messageId": "e", "body": json.dumps({"Event": "s3:TestEvent"})},
        ]
    }
    response = lambdas.report_handler(event, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "c"}, {"itemIdentifier": "d"}]}
    assert len([r for r in logged if r.getMessage() == "reports done"]) == 2


def test_scheduled_handler_raises_after_running_both_steps(
    aws: tuple[Any, Any], bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, _ = aws
    pipeline_env(monkeypatch, bls_server, "datausa/population.json")
    s3.create_bucket(Bucket="rq-bls")
    s3.create_bucket(Bucket="rq-population")
    bls_server.faults.append(Fault(bls_server.directory, status=403))
    with pytest.raises(RqError, match="sync-bls failed"):
        lambdas.scheduled_handler({}, None)
    assert (
        s3.head_object(Bucket="rq-population", Key="datausa/population.json")["ContentLength"] > 0
    )


def test_settings_from_env_reads_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "RQ_BLS_BUCKET": "b",
        "RQ_BLS_PREFIX": "",
        "RQ_BLS_URL": "http://bls.test/pub/time.series/pr/",
        "RQ_POPULATION_BUCKET": "p",
        "RQ_POPULATION_KEY": "k.json",
        "RQ_POPULATION_URL": "http://datausa.test/api",
        "RQ_CONTACT": "me@example.com",
        "RQ_USER_AGENT": "rq-test/1",
        "RQ_MAX_RPS": "2.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == Settings(
        bls_bucket="b",
        bls_prefix="",
        bls_url="http://bls.test/pub/time.series/pr/",
        population_bucket="p",
        population_key="k.json",
        population_url="http://datausa.test/api",
        contact="me@example.com",
        user_agent="rq-test/1",
        max_rps=2.5,
    )
    assert Settings.from_env().resolved_bls_prefix == ""


def test_index_handler_lists_the_mirror_with_presigned_links(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, _ = aws
    s3.create_bucket(Bucket="rq-bls")
    s3.put_object(Bucket="rq-bls", Key="pr/pr.class", Body=b"x")
    s3.put_object(Bucket="rq-bls", Key="pr/<script>.txt", Body=b"y")
    s3.put_object(Bucket="rq-bls", Key="elsewhere.txt", Body=b"z")
    monkeypatch.setenv("RQ_BLS_BUCKET", "rq-bls")
    response = lambdas.index_handler({}, None)
    assert response["statusCode"] == 200
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
    page = response["body"]
    assert "pr.class" in page
    assert "X-Amz-Signature=" in page
    assert "<script>.txt" not in page and "&lt;script&gt;.txt" in page
    assert "elsewhere.txt" not in page


def test_index_handler_hides_s3_errors(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RQ_BLS_BUCKET", "no-such-bucket")
    response = lambdas.index_handler({}, None)
    assert response["statusCode"] == 502
    assert "no-such-bucket" not in response["body"]


def test_report_handler_takes_its_settings_from_the_environment(
    seeded: Settings, monkeypatch: pytest.MonkeyPatch, logged: list[logging.LogRecord]
) -> None:
    event = {"Records": [message("a", GOOD), message("b", "not json")]}
    assert lambdas.report_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert set(reports(logged)) == {"population", "best_year", "series_population"}
    monkeypatch.delenv("RQ_POPULATION_BUCKET")
    response = lambdas.report_handler({"Records": [message("a", GOOD)]}, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "a"}]}
    assert "RQ_POPULATION_BUCKET is not set" in logged[-1].getMessage()


def test_report_log_lines_carry_request_and_message_ids(
    seeded: Settings, json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    event = {
        "Records": [
            message("m-good", GOOD),
            message("m-bad", "not json"),
            {"body": GOOD},
            message("m-skip", s3_body("other-bucket", POPULATION_KEY)),
        ]
    }
    response = lambdas.report_handler(event, SimpleNamespace(aws_request_id="req-42"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    lines = json_lines()
    assert lines
    assert all(line["request_id"] == "req-42" for line in lines), lines
    by_message: dict[str | None, list[str]] = {}
    for line in lines:
        by_message.setdefault(line.get("message_id"), []).append(line["message"])
    # The analytics module's own line (the download) carries the message id too.
    assert any(
        line["logger"] == "rearcquest.data.analytics" and line.get("message_id") == "m-good"
        for line in lines
    )
    assert by_message["m-good"][-4:] == [
        "report population",
        "report best_year",
        "report series_population",
        "reports done",
    ]
    assert by_message["m-bad"][0].startswith("message failed")
    assert by_message["m-skip"] == [
        "skipping an event of bucket other-bucket, not the population bucket"
    ]
    assert by_message[None] == ["record 2 dropped: it is not an SQS message with a messageId"]

    # The ids belong to the invocation: a line logged after it carries neither.
    logging.getLogger("rearcquest.lambdas").info("after")
    assert json_lines()[-1]["request_id"] is None
    assert "message_id" not in json_lines()[-1]


def test_library_log_lines_carry_the_request_id(
    aws: tuple[Any, Any],
    bls_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    s3, _ = aws
    pipeline_env(monkeypatch, bls_server, POPULATION_KEY)
    s3.create_bucket(Bucket="rq-bls")
    s3.create_bucket(Bucket="rq-population")
    lambdas.scheduled_handler({}, SimpleNamespace(aws_request_id="req-sched"))
    lines = json_lines()
    assert {line["logger"] for line in lines} - {"rearcquest.lambdas"}, "no library line logged"
    assert {line["request_id"] for line in lines} == {"req-sched"}
    assert all("message_id" not in line for line in lines)
