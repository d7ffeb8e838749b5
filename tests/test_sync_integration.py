"""The sync against real processes: SeaweedFS (S3) and the BLS-like server, real releases."""

from __future__ import annotations

import hashlib
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
