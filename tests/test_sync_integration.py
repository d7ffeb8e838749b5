"""The sync against real processes: SeaweedFS (S3) and the BLS-like server, real releases."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from datetime import datetime

import pytest

from conftest import release
from rearcquest import storage, sync
from rearcquest.offline import OfflineServer, ServedFile
from rearcquest.sources._http import RetryPolicy
from rearcquest.storage import ObjectStore, make_s3_client
from rearcquest.sync import sync_bls

pytestmark = pytest.mark.integration
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def contents(store: ObjectStore) -> dict[str, bytes]:
    return {o.key.removeprefix("pr/"): store.get_bytes(o.key) for o in store.list_objects("pr/")}


def test_release_to_release_on_seaweedfs(seaweed_bucket: tuple[str, str]) -> None:
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    vintages = ["2024-06-06", "2025-06-05", "2025-09-04", "2026-08-06"]
    with OfflineServer(release(vintages[0])) as server:
        first = sync_bls(store, source_url=server.bls_url, contact="it@example.com", retry=FAST)
        assert len(first.added) == 12
        assert contents(store) == {n: f.data for n, f in server.files.items()}
        mark = len(server.requests)
        noop = sync_bls(store, source_url=server.bls_url, contact="it@example.com", retry=FAST)
        assert len(server.requests) - mark == 1 and len(noop.unchanged) == 12
        previous = server.files
        for vintage in vintages[1:]:
            files = release(vintage)
            server.set_files(files)
            result = sync_bls(
                store, source_url=server.bls_url, contact="it@example.com", retry=FAST
            )
            result.raise_for_errors()
            changed = sorted(n for n in files if files[n].data != previous[n].data)
            assert sorted(result.updated) == changed, vintage
            assert "pr.class" not in result.updated
            assert contents(store) == {n: f.data for n, f in files.items()}
            previous = files


def test_large_file_goes_up_in_parts_with_bounded_memory(
    seaweed_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 1024 * 1024)
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    big = os.urandom(32 * 1024 * 1024 + 17)
    files = {"big.bin": ServedFile("big.bin", big, datetime(2026, 1, 2, 3, 4))}
    with OfflineServer(files) as server:
        # S3 is another process (SeaweedFS); the BLS-like server sends the bytes made above.
        tracemalloc.start()
        try:
            result = sync_bls(
                store, source_url=server.bls_url, contact="it@example.com", retry=FAST
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.added == ["big.bin"]
    # The download is spooled (in memory up to the spool size, then on disk) and goes up one part
    # at a time: the peak is bounded by the spool and two parts, not by the file (32 MB).
    bound = sync._SPOOL_BYTES + 2 * storage.PART_SIZE
    assert peak < bound < len(big), f"peak {peak} bytes, bound {bound}"
    stored = store.get_bytes("pr/big.bin")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(big).digest()
    head = store.head("pr/big.bin")
    assert head is not None and head.etag.endswith("-7")  # seven parts
