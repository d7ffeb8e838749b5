"""`rq sync-bls` end to end: exit codes, output and the resulting bucket state."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from rearcquest.cli import app
from rearcquest.layout import state_key
from rearcquest.offline import Fault, OfflineServer

runner = CliRunner()


@pytest.fixture
def bucket(moto_server: str) -> tuple[str, Any]:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"cli-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name, client


def sync(moto_server: str, bucket: str, server: OfflineServer, *extra: str) -> Any:
    args = [
        "sync-bls",
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_server,
        "--source-url",
        server.bls_url,
        "--contact",
        "cli@example.com",
        "--retries",
        "2",
        *extra,
    ]
    return runner.invoke(app, args)


def keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_json_summary_and_bucket_state(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in (
        "added",
        "updated",
        "deleted",
        "unchanged",
        "errors",
        "bytes_downloaded",
        "bytes_uploaded",
        "dry_run",
    ):
        assert key in doc
    assert len(doc["added"]) == 12 and doc["errors"] == [] and doc["dry_run"] is False
    assert keys(client, name) == {f"pr/{n}" for n in bls_server.files} | {state_key("pr/")}


def test_text_summary_and_noop(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, _ = bucket
    assert sync(moto_server, name, bls_server).exit_code == 0
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == 0
    assert "unchanged   12" in result.stdout
    assert "1 request(s) to the source" in result.stdout


def test_dry_run_prints_plan_with_reasons(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--dry-run")
    assert result.exit_code == 0
    assert "dry run, nothing changed" in result.stdout
    assert "add       pr.class" in result.stdout and "new file" in result.stdout
    assert keys(client, name) == set()


def test_env_vars_configure_the_command(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, client = bucket
    monkeypatch.setenv("RQ_BLS_BUCKET", name)
    monkeypatch.setenv("RQ_CONTACT", "env@example.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("RQ_BLS_URL", bls_server.bls_url)
    result = runner.invoke(app, ["sync-bls", "--prefix", "", "--include", "pr.c*"])
    assert result.exit_code == 0, result.output
    assert keys(client, name) == {"pr.class", "pr.contacts", state_key("")}
    assert all("env@example.com" in r.user_agent for r in bls_server.requests)


def test_missing_contact_for_bls_gov_exits_2_without_request(moto_server: str) -> None:
    result = runner.invoke(app, ["sync-bls", "--bucket", "x", "--endpoint-url", moto_server])
    assert result.exit_code == 2
    assert "Error: BLS answers 403" in result.stderr
    assert "--contact" in result.stderr


def test_missing_bucket_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sync-bls", "--contact", "a@b.c"])
    assert result.exit_code == 2
    assert "--bucket" in result.stderr


def test_no_such_bucket_exits_1(moto_server: str, bls_server: OfflineServer) -> None:
    result = sync(moto_server, "does-not-exist-bucket", bls_server)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        (Fault("/pub/time.series/pr/", status=403), 3, "403 Forbidden"),
        (Fault("/pub/time.series/pr/", status=500, times=9), 3, "HTTP 500"),
        (Fault("/pub/time.series/pr/", status=200, body=b"<html>oops"), 3, "listing"),
        (Fault("*/pr.series", status=500, times=9), 1, "1 file(s) failed: pr.series"),
    ],
    ids=["forbidden", "unreachable", "garbled", "one-file"],
)
def test_fault_exit_codes(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    fault: Fault,
    code: int,
    message: str,
) -> None:
    name, _ = bucket
    bls_server.faults.append(fault)
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")


def test_delete_guard_exit_4(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    assert sync(moto_server, name, bls_server).exit_code == 0
    bls_server.set_files({"pr.txt": bls_server.files["pr.txt"]})
    result = sync(moto_server, name, bls_server, "--max-delete", "2", "--format", "json")
    assert result.exit_code == 4
    assert json.loads(result.stdout)["deleted"] == []
    assert "--max-delete" in result.stderr
    assert len(keys(client, name)) == 13


@pytest.mark.parametrize(
    ("flags", "logged"), [([], False), (["-v"], True), (["-q"], False)], ids=["default", "-v", "-q"]
)
def test_verbosity_controls_logs_on_stderr(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    flags: list[str],
    logged: bool,
) -> None:
    name, _ = bucket
    bls_server.faults.append(Fault("/pub/time.series/pr/", status=503))
    args = [
        *flags,
        "sync-bls",
        "--bucket",
        name,
        "--endpoint-url",
        moto_server,
        "--source-url",
        bls_server.bls_url,
        "--contact",
        "cli@example.com",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # JSON off a terminal
    assert any("retrying" in line["message"] for line in lines) is logged
