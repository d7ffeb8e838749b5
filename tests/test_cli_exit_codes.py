"""The exit codes of the real ``rq`` process (``python -m rearcquest``), one per error class, each
with its ``Error: ...`` line and no traceback (docs/errors.md)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen

import boto3
import pytest

from rearcquest.layout import lock_key, state_key
from rearcquest.offline import Fault, OfflineServer, ServedFile


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


BIG = "pr.data.9.Big"


def _start_slow_sync(moto_server: str, bucket: str, bls_server: OfflineServer) -> Popen[str]:
    """A real ``rq sync-bls`` stopped mid-transfer: its lease held and a multipart upload open.

    One more file of 48 MiB (six 8 MiB parts) comes at 4 MiB a second, so the first part is up
    after two seconds and the file would take twelve: the caller acts once S3 holds the upload,
    with seconds to spare even on a loaded machine.
    """
    files = bls_server.files
    listed = files["pr.txt"].listed
    files[BIG] = ServedFile(BIG, b"PRS\t2020\tQ01\t1.0\n" * (48 * 2**20 // 17), listed)
    bls_server.set_files(files)
    bls_server.faults.append(Fault(f"{bls_server.directory}{BIG}", drip=0.25, piece=2**20))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rearcquest", *sync_args(moto_server, bucket, bls_server.bls_url)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    deadline = time.monotonic() + 60
    while not client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    assert client.get_object(Bucket=bucket, Key=lock_key("pr/"))  # the lease is held
    return proc


def test_sigterm_mid_transfer_exits_143_with_the_lease_released_and_the_upload_kept_for_resume(
    moto_server: str, bucket: str, bls_server: OfflineServer
) -> None:
    """SIGTERM is Ctrl-C: the lease is released and the cut upload is recorded for the next run,
    which resumes it and leaves no upload behind."""
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    with _start_slow_sync(moto_server, bucket, bls_server) as proc:
        # A live holder on this host still blocks another sync.
        second = rq(*sync_args(moto_server, bucket, bls_server.bls_url))
        check(second, 5, "another sync holds the mirror")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stdout == ""
    assert stderr.endswith("Terminated.\n") and "Traceback" not in stderr, stderr
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert lock_key("pr/") not in keys and f"pr/{BIG}" not in keys
    # The one upload left open is the one the state records, to be resumed.
    (left,) = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    state = json.loads(client.get_object(Bucket=bucket, Key=state_key("pr/"))["Body"].read())
    assert state["uploads"][BIG]["upload_id"] == left["UploadId"]
    bls_server.faults.clear()
    again = rq(*sync_args(moto_server, bucket, bls_server.bls_url))
    assert again.returncode == 0, again.stderr
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    body = client.get_object(Bucket=bucket, Key=f"pr/{BIG}")["Body"].read()
    assert body == bls_server.files[BIG].data


def test_a_sigkilled_sync_does_not_block_the_next(
    moto_server: str, bucket: str, bls_server: OfflineServer
) -> None:
    with _start_slow_sync(moto_server, bucket, bls_server) as proc:
        proc.kill()
        proc.communicate(timeout=60)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    left = json.loads(client.get_object(Bucket=bucket, Key=lock_key("pr/"))["Body"].read())
    assert left["expires"] > datetime.now(UTC).isoformat()  # not expired: ten minutes to go
    again = rq(*sync_args(moto_server, bucket, bls_server.bls_url))
    assert again.returncode == 0, again.stderr
    assert "its process (pid" in again.stderr  # taken over at once, and said so
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"pr/{BIG}" in keys and lock_key("pr/") not in keys


def test_a_lease_held_on_another_host_is_waited_for(
    moto_server: str, bucket: str, bls_server: OfflineServer
) -> None:
    # The same pid and start as a process that has ended here, but on another host: rq cannot
    # tell whether it still runs there, so the lease holds until its expiry.
    now = datetime.now(UTC)
    lock = {
        "holder": "elsewhere:1:abc",
        "acquired": now.isoformat(timespec="seconds"),
        "expires": (now + timedelta(minutes=10)).isoformat(timespec="milliseconds"),
        "process": {"host": "elsewhere/boot/pid:[1]", "pid": 4_000_000, "start": 1},
    }
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=lock_key("pr/"), Body=json.dumps(lock).encode())
    check(rq(*sync_args(moto_server, bucket, bls_server.bls_url)), 5, "elsewhere:1:abc")
