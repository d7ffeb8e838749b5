"""``rq fetch-population`` end to end: real local HTTP server, moto's S3 server and SeaweedFS."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.cli import app
from rearcquest.config import DEFAULT_POPULATION_KEY
from rearcquest.mirror.population import META_CANONICAL_SHA256, META_SHAPE, META_SOURCE_URL
from rearcquest.offline import (
    DATAUSA_FILES,
    DATAUSA_TESSERACT_PATH,
    OfflineServer,
    add_datausa_routes,
    bundled_datausa,
)

# Population numbers as a broken API could write them, and how the refusal shows each.
POPULATIONS_REFUSED = [
    ("1e300", "1e+300"),
    (str(2**63), str(2**63)),
    ("-5", "-5"),
    ("0", "0"),
    ("3.5", "3.5"),
    ("1e400", "inf"),
    ("true", "True"),
    ('"316128839"', "'316128839'"),
]
KEYS = {"url", "bucket", "key", "written", "reason", "shape", "rows", "years", "sha256"}


@pytest.fixture(scope="module")
def api_server() -> Iterator[OfflineServer]:
    with OfflineServer(require_contact=False) as server:
        yield server


@pytest.fixture
def api(api_server: OfflineServer) -> dict[str, str]:
    """The DataUSA-like server answering with the bundled real files; yields their URLs."""
    api_server.routes.clear()
    api_server.requests.clear()
    return add_datausa_routes(api_server)


@pytest.fixture
def moto_bucket(moto_server: str) -> tuple[str, str]:
    bucket = f"pop-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return moto_server, bucket


def rq(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


@functools.cache
def _client(endpoint: str) -> Any:
    return make_s3_client(endpoint_url=endpoint)


def stored(endpoint: str, bucket: str, key: str = DEFAULT_POPULATION_KEY) -> dict[str, Any]:
    """The object's bytes, ETag, content type and (decoded) metadata."""
    store = ObjectStore(_client(endpoint), bucket)
    with store.open(key) as stream:
        body = b"".join(stream.chunks())
        info = stream.info
    return {"body": body, "etag": info.etag, "type": info.content_type, "meta": info.metadata}


def fetch_json(endpoint: str, bucket: str, url: str, *extra: str) -> dict[str, Any]:
    result = rq(
        "fetch-population",
        "--bucket",
        bucket,
        "--url",
        url,
        "--endpoint-url",
        endpoint,
        "--format",
        "json",
        *extra,
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_json_summary_then_nothing_written_for_unchanged_data(
    moto_bucket: tuple[str, str], api: dict[str, str]
) -> None:
    endpoint, bucket = moto_bucket
    first = fetch_json(endpoint, bucket, api["tesseract"])
    assert set(first) == KEYS
    assert first["written"] is True
    assert (first["shape"], first["rows"], first["years"]) == ("tesseract", 10, [2013, 2023])
    assert (first["bucket"], first["key"], first["url"]) == (
        bucket,
        DEFAULT_POPULATION_KEY,
        api["tesseract"],
    )
    obj = stored(endpoint, bucket)
    assert obj["body"] == bundled_datausa(DATAUSA_FILES[DATAUSA_TESSERACT_PATH])
    assert obj["type"] == "application/json"
    assert obj["meta"]["rq-canonical-sha256"] == first["sha256"]

    second = fetch_json(endpoint, bucket, api["tesseract"])
    assert second["written"] is False
    assert second["sha256"] == first["sha256"]
    assert stored(endpoint, bucket)["etag"] == obj["etag"]

    forced = fetch_json(endpoint, bucket, api["tesseract"], "--force")
    assert forced["written"] is True
    assert "--force" in forced["reason"]


def test_text_summary_with_settings_from_the_environment(
    moto_bucket: tuple[str, str], api: dict[str, str]
) -> None:
    endpoint, bucket = moto_bucket
    env = {
        "RQ_POPULATION_BUCKET": bucket,
        "RQ_POPULATION_URL": api["legacy"],
        "RQ_POPULATION_KEY": "census/us.json",
        "AWS_ENDPOINT_URL": endpoint,
    }
    result = rq("fetch-population", env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Wrote s3://{bucket}/census/us.json: 11 years, 2013-2023 (datausa-legacy); new object"
    )
    assert lines[1] == f"  from {api['legacy']}"
    assert lines[2].startswith("  canonical sha256 ")
    assert stored(endpoint, bucket, "census/us.json")["meta"]["rq-shape"] == "datausa-legacy"

    again = rq("fetch-population", env=env)
    assert again.stdout.startswith(f"Unchanged s3://{bucket}/census/us.json: 11 years")
    assert again.exit_code == 0


@pytest.mark.parametrize(
    ("route", "code", "message"),
    [
        (
            {"file": "tesseract-acs5-state-by-year-raw.json"},
            1,
            "not national population: the rows are by State",
        ),
        ({"body": b"<html><title>Error</title></html>"}, 1, "an HTML page ('Error'), not JSON"),
        ({"body": b'{"data": []'}, 1, "invalid JSON"),
        ({"status": 404}, 3, "HTTP 404"),
        *(
            ({"population": value}, 1, f"row 1 (year 2013): Population {shown} is not")
            for value, shown in POPULATIONS_REFUSED
        ),
    ],
    ids=["state-level", "html", "invalid-json", "404", *(v for v, _ in POPULATIONS_REFUSED)],
)
def test_bad_answers_exit_non_zero_and_leave_the_object_untouched(
    moto_bucket: tuple[str, str],
    api_server: OfflineServer,
    api: dict[str, str],
    shared_data: Path,
    route: dict[str, Any],
    code: int,
    message: str,
) -> None:
    endpoint, bucket = moto_bucket
    fetch_json(endpoint, bucket, api["tesseract"])
    before = stored(endpoint, bucket)
    if "file" in route:
        body = (shared_data / "datausa" / route["file"]).read_bytes()
    elif "population" in route:
        # The real answer, its first population written as the hostile number.
        real = bundled_datausa(DATAUSA_FILES[DATAUSA_TESSERACT_PATH])
        body = real.replace(b"316128839.0", route["population"].encode(), 1)
        assert body != real
    else:
        body = route.get("body", b"Not Found")
    api_server.add_route(DATAUSA_TESSERACT_PATH, body, status=route.get("status", 200))
    result = rq(
        "fetch-population",
        *("--bucket", bucket, "--url", api["tesseract"], "--endpoint-url", endpoint),
    )
    assert result.exit_code == code
    assert result.stdout == ""
    # Only the error line: the server thread may log a connection the client dropped early.
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: {api['tesseract']}: ")
    assert message in errors[0]
    assert stored(endpoint, bucket) == before


def test_a_missing_bucket_option_is_a_usage_error() -> None:
    result = rq("fetch-population")
    assert result.exit_code == 2
    assert "--bucket" in result.stderr


def test_help_documents_the_defaults_and_exit_codes() -> None:
    result = rq("fetch-population", "--help")
    assert result.exit_code == 0
    assert DEFAULT_POPULATION_KEY in result.stdout
    for env in ("RQ_POPULATION_BUCKET", "RQ_POPULATION_URL", "RQ_POPULATION_KEY"):
        assert env in result.stdout
    assert "3 API unreachable" in result.stdout


@pytest.mark.integration
def test_against_seaweedfs(
    seaweed_bucket: tuple[str, str], api_server: OfflineServer, api: dict[str, str]
) -> None:
    endpoint, bucket = seaweed_bucket
    first = fetch_json(endpoint, bucket, api["tesseract"])
    assert first["written"] is True
    obj = stored(endpoint, bucket)
    assert obj["body"] == bundled_datausa(DATAUSA_FILES[DATAUSA_TESSERACT_PATH])
    assert obj["meta"][META_CANONICAL_SHA256] == first["sha256"]
    assert obj["meta"][META_SOURCE_URL] == api["tesseract"], "the URL survives the metadata trip"
    assert obj["meta"][META_SHAPE] == "tesseract"

    assert fetch_json(endpoint, bucket, api["tesseract"])["written"] is False
    assert stored(endpoint, bucket) == obj

    api_server.add_route(DATAUSA_TESSERACT_PATH, b'{"data": [], "columns": ["Nation ID"]}')
    bad = rq(
        "fetch-population",
        *("--bucket", bucket, "--url", api["tesseract"], "--endpoint-url", endpoint),
    )
    assert bad.exit_code == 1
    assert stored(endpoint, bucket) == obj

    legacy = fetch_json(endpoint, bucket, api["legacy"])
    assert (legacy["written"], legacy["shape"], legacy["rows"]) == (True, "datausa-legacy", 11)
    assert stored(endpoint, bucket)["body"] == bundled_datausa(DATAUSA_FILES["/api/data"])


def test_a_dripping_api_fails_in_bounded_time_with_exit_3(
    moto_bucket: tuple[str, str],
    api_server: OfflineServer,
    api: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rearcquest.offline import Fault
    from rearcquest.sources import _http

    endpoint, bucket = moto_bucket
    fetch_json(endpoint, bucket, api["tesseract"])
    before = stored(endpoint, bucket)
    # One byte every 20 ms; the limits shrink from 60 s and 50 kB/s so the test takes a second.
    monkeypatch.setattr(_http, "RATE_GRACE", 0.3)
    monkeypatch.setattr(_http, "MIN_RATE", 1000.0)
    api_server.faults.append(Fault(DATAUSA_TESSERACT_PATH, drip=0.02, times=9))
    api_server.requests.clear()
    result = rq(
        "fetch-population",
        *("--bucket", bucket, "--url", api["tesseract"], "--endpoint-url", endpoint),
    )
    api_server.faults.clear()
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {api['tesseract']}: too slow: ")
    assert len(api_server.requests) == 1, "not retried: another attempt would drip as long"
    assert stored(endpoint, bucket) == before
