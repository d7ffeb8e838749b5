"""The Lambda handlers and the whole AWS pipeline, locally: moto S3 -> SQS -> report handler."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from rearcquest import lambdas
from rearcquest.config import Settings
from rearcquest.errors import RqError
from rearcquest.localaws import drain_queue, notify_queue_on_key
from rearcquest.offline import Fault, OfflineServer, add_datausa_routes
from rearcquest.storage import ObjectStore


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    handler = _Collect()
    logger = logging.getLogger("rearcquest.lambdas")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


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


def reports(records: list[logging.LogRecord]) -> dict[str, Any]:
    return {r.report: r.data for r in records if hasattr(r, "report")}  # type: ignore[attr-defined]


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
    queue = notify_queue_on_key(ObjectStore(s3, "rq-population"), sqs, key=key, queue="rq-reports")

    summary = lambdas.scheduled_handler({}, None)
    assert summary["ok"] is True
    assert len(summary["sync"]["summary"]["added"]) == 12
    assert summary["population"]["summary"]["written"] is True

    responses = drain_queue(sqs, queue, lambda event: lambdas.report_handler(event, None))
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
    assert drain_queue(sqs, queue, lambda event: lambdas.report_handler(event, None)) == []


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
    good = json.dumps(
        {"Records": [{"s3": {"bucket": {"name": "rq-population"}, "object": {"key": key}}}]}
    )
    missing = json.dumps(
        {"Records": [{"s3": {"bucket": {"name": "rq-population"}, "object": {"key": "nope.json"}}}]}
    )
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


def test_s3_objects_in_message_decodes_keys() -> None:
    body = json.dumps(
        {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "a+b%2Bc%C3%A9.json"}}}]}
    )
    assert lambdas.s3_objects_in_message(body) == [("b", "a b+cé.json")]
    assert lambdas.s3_objects_in_message(json.dumps({"Event": "s3:TestEvent"})) == []
    with pytest.raises(ValueError, match="not an S3 event"):
        lambdas.s3_objects_in_message("[]")


def test_settings_from_env_reads_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RQ_BLS_PREFIX", "")
    monkeypatch.setenv("RQ_MAX_RPS", "2.5")
    settings = Settings.from_env()
    assert settings.resolved_bls_prefix == ""
    assert settings.max_rps == 2.5


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
