"""The exit codes of the real ``rq`` process (``python -m rearcquest``), one per error class, each
with its ``Error: ...`` line and no traceback (docs/errors.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

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


def _big_bls_file(path: Path, series: int = 6000) -> Path:
    """A BLS data file with one quarterly row for each of ``series`` series: its best-year report
    is far more than a pipe holds (64 kB), so a reader that stops early always cuts it short."""
    rows = [f"PRS{i:08d}\t2020\tQ01\t{i % 997}.5\t" for i in range(series)]
    path.write_text("series_id\tyear\tperiod\tvalue\tfootnote_codes\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
def test_a_reader_that_stops_early_ends_rq_quietly_with_exit_0(tmp_path: Path, fmt: str) -> None:
    bls = _big_bls_file(tmp_path / "pr.data.0.Current")
    # rq analyze ... | head -1
    args = ["analyze", "--report", "best-year", "--bls", str(bls), "--format", fmt]
    with subprocess.Popen(
        [sys.executable, "-m", "rearcquest", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert stderr == b""


def test_ctrl_c_exits_130_with_one_line(bls_server: OfflineServer) -> None:
    # A root listing that comes one byte every 10 s: rq is still reading it when interrupted.
    bls_server.add_route("/slow/", b"<html><body>" + b" " * 100 + b"</body></html>")
    bls_server.faults.append(Fault("/slow/", drip=10.0))
    bls_server.requests.clear()
    root = bls_server.url + "/slow/"
    with subprocess.Popen(
        [sys.executable, "-m", "rearcquest", "surveys", "--root-url", root, "--contact", "x@y.z"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        # Interrupt only once rq is working: its request has reached the server.
        while not bls_server.requests and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert (stdout, stderr) == ("", "Interrupted.\n")
