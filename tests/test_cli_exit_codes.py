"""The exit codes of the real ``rq`` process (``python -m rearcquest``), one per error class, each
with its ``Error: ...`` line and no traceback (docs/errors.md)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import boto3
import pytest

from rearcquest.offline import Fault, OfflineServer


def rq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rearcquest", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def sync_args(endpoint: str, bucket: str, source_url: str, *extra: str) -> list[str]:
    return [
        "sync-bls",
        *("--bucket", bucket, "--endpoint-url", endpoint, "--source-url", source_url),
        *("--contact", "exit@example.com", "--retries", "1", *extra),
    ]


@pytest.fixture
def bucket(moto_server: str) -> str:
    name = f"exit-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def check(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_config_error_exits_2() -> None:
    # bls.gov without a contact is refused before any request, so no endpoint is reached.
    proc = rq("sync-bls", "--bucket", "b", "--endpoint-url", "http://127.0.0.1:9")
    check(proc, 2, "--contact")


def test_a_storage_error_exits_1(moto_server: str, bls_server: OfflineServer) -> None:
    proc = rq(*sync_args(moto_server, "no-such-exit-bucket", bls_server.bls_url))
    check(proc, 1, "does not exist")


def test_a_source_error_exits_3(moto_server: str, bucket: str, bls_server: OfflineServer) -> None:
    bls_server.faults.append(Fault(bls_server.directory, status=403))
    check(rq(*sync_args(moto_server, bucket, bls_server.bls_url)), 3, "403 Forbidden")


def test_the_delete_guard_exits_4(moto_server: str, bucket: str, bls_server: OfflineServer) -> None:
    assert rq(*sync_args(moto_server, bucket, bls_server.bls_url)).returncode == 0
    bls_server.set_files({"pr.txt": bls_server.files["pr.txt"]})
    proc = rq(*sync_args(moto_server, bucket, bls_server.bls_url, "--max-delete", "2"))
    check(proc, 4, "--max-delete")
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    # Nothing deleted: the 12 files, the state and the release log.
    assert len(client.list_objects_v2(Bucket=bucket)["Contents"]) == 14
