"""The sync against real processes: SeaweedFS (S3) and the BLS-like server, real releases."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import release
from rearcquest.aws import storage
from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.config import RetryPolicy
from rearcquest.offline import OfflineServer, ServedFile
from sync_helpers import sync_dir

pytestmark = pytest.mark.integration
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def contents(store: ObjectStore) -> dict[str, bytes]:
    return {o.key.removeprefix("pr/"): store.get_bytes(o.key) for o in store.list_objects("pr/")}


def test_release_to_release_on_seaweedfs(seaweed_bucket: tuple[str, str]) -> None:
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    vintages = ["2024-06-06", "2025-06-05", "2025-09-04", "2026-08-06"]
    with OfflineServer(release(vintages[0])) as server:
        first = sync_dir(store, source_url=server.bls_url, contact="it@example.com", retry=FAST)
        assert len(first.added) == 12
        assert contents(store) == {n: f.data for n, f in server.files.items()}
        mark = len(server.requests)
        noop = sync_dir(store, source_url=server.bls_url, contact="it@example.com", retry=FAST)
        assert len(server.requests) - mark == 1 and len(noop.unchanged) == 12
        previous = server.files
        for vintage in vintages[1:]:
            files = release(vintage)
            server.set_files(files)
            result = sync_dir(
                store, source_url=server.bls_url, contact="it@example.com", retry=FAST
            )
            result.raise_for_errors()
            changed = sorted(n for n in files if files[n].data != previous[n].data)
            assert sorted(result.updated) == changed, vintage
            assert "pr.class" not in result.updated
            assert contents(store) == {n: f.data for n, f in files.items()}
            previous = files


def test_large_file_streams_up_in_parts_with_no_temporary_file(
    seaweed_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "PARTS_PER_UPLOAD", 2)

    # SeaweedFS runs in its own process: here no temporary file may be made at all.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a temporary file was made")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    big = os.urandom(32 * 1024 * 1024 + 17)
    files = {"big.bin": ServedFile("big.bin", big, datetime(2026, 1, 2, 3, 4))}
    with OfflineServer(files) as server:
        # S3 is another process (SeaweedFS); the BLS-like server sends the bytes made above.
        tracemalloc.start()
        try:
            result = sync_dir(
                store, source_url=server.bls_url, contact="it@example.com", retry=FAST
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.added == ["big.bin"]
    # The body streams into S3: the peak is bounded by the parts in flight plus the one filling
    # and the chunks on their way to the hash, not by the file (32 MB).
    bound = (storage.PARTS_PER_UPLOAD + 3) * storage.PART_SIZE
    assert peak < bound < len(big), f"peak {peak} bytes, bound {bound}"
    stored = store.get_bytes("pr/big.bin")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(big).digest()
    head = store.head("pr/big.bin")
    assert head is not None and head.etag.endswith("-7")  # seven parts
    # Re-dated with the same bytes: streamed again, compared, the multipart upload aborted.
    files["big.bin"] = ServedFile("big.bin", big, datetime(2026, 2, 3, 4, 5))
    with OfflineServer(files) as server:
        again = sync_dir(store, source_url=server.bls_url, contact="it@example.com", retry=FAST)
    assert again.restamped == ["big.bin"] and again.bytes_uploaded == 0
    pending = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert pending == []
    assert hashlib.sha256(store.get_bytes("pr/big.bin")).digest() == hashlib.sha256(big).digest()


# A sync in its own process, with 5 MiB parts (S3's smallest): what `rq sync-bls` runs.
_KILLABLE_SYNC = """
import sys
from rearcquest.aws import storage
storage.PART_SIZE = 5 * 1024 * 1024
from rearcquest import cli
sys.argv = ["rq", "sync-bls", "--source-url", sys.argv[1], "--bucket", sys.argv[2],
            "--prefix", "pr/", "--contact", "it@example.com", "--endpoint-url", sys.argv[3]]
cli.main()
"""


def test_a_transfer_killed_at_ten_random_points_resumes_and_completes(
    seaweed_bucket: tuple[str, str], tmp_path: Path
) -> None:
    """A 60 MB file (12 parts of 5 MiB; the issue's multi-GB file scaled down to keep the tier
    fast, the part count being what matters) synced by ``rq sync-bls`` processes, each SIGKILLed
    when the source has sent the file up to the next of ten random points (seeded, sorted); the
    run after the tenth kill completes it. Each run resumes from the parts S3 confirms, the
    stored bytes and the state's sha256 are the file's, and no multipart upload is left."""
    import random
    import subprocess
    import sys
    import time

    from rearcquest.layout import state_key

    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    rng = random.Random(2121)
    path = tmp_path / "pr.data.0.Current"
    path.write_bytes(rng.randbytes(60 * 1024 * 1024 + 4321))
    body = path.read_bytes()
    part = 5 * 1024 * 1024
    # Points anywhere but the last part: a kill there could come after the run completed.
    points = sorted(rng.sample(range(1, len(body) - part - 1024 * 1024), 10))
    files = {path.name: ServedFile(path.name, b"", datetime(2026, 8, 6, 8, 30), path=path)}

    def resumes_from() -> int:
        """The bytes a resumed run keeps: the parts S3 holds, 1..n with no gap."""
        (upload,) = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) or [None]
        if upload is None:
            return 0
        listed = store.list_parts(upload["Key"], upload["UploadId"]) or []
        numbers = [p.number for p in listed]
        return part * next((i for i, n in enumerate(numbers) if n != i + 1), len(numbers))

    with OfflineServer(files) as server:
        for run, point in enumerate([*points, None]):
            target = server.bytes_sent + (point - resumes_from() if point is not None else 0)
            with subprocess.Popen(
                [sys.executable, "-c", _KILLABLE_SYNC, server.bls_url, bucket, endpoint],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ) as proc:
                if point is not None:
                    while server.bytes_sent < target and proc.poll() is None:
                        time.sleep(0.002)
                    proc.kill()
                _, stderr = proc.communicate(timeout=300)
            if point is None:
                assert proc.returncode == 0, stderr.decode()
                break
            assert proc.returncode == -9, f"run {run} ended before its kill: {stderr.decode()}"
            # The killed run's lease stays behind; the next run takes it over at once (its
            # holder is a process that no longer exists on this host).
            uploads = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            assert len(uploads) <= 1  # one upload at most, never an orphan beside it
            state = store.fetch(state_key("pr/"))
            if state is not None and (doc := json.loads(state[0])).get("uploads"):
                recorded = doc["uploads"][path.name]
                assert [u["UploadId"] for u in uploads] == [recorded["upload_id"]]
    assert store.get_bytes("pr/" + path.name) == body
    doc = json.loads(store.get_bytes(state_key("pr/")))
    assert doc["files"][path.name]["sha256"] == hashlib.sha256(body).hexdigest()
    assert "uploads" not in doc
    assert store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # Resumed runs asked for the rest only: the source sent far less than 11 whole files.
    ranged = [r for r in server.file_requests() if "range" in r.headers]
    assert len(ranged) >= 5 and all(r.status == 206 for r in ranged)
    assert server.bytes_sent < 4 * len(body)
