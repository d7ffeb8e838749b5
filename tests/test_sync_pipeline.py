"""The sync's two pools: downloads go on while S3 takes earlier bodies; upload errors are per file."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conftest import FAST
from rearcquest.aws.storage import ObjectStore, ObjectWriter
from rearcquest.errors import StorageError, TransferError
from rearcquest.layout import state_key
from rearcquest.offline import OfflineServer
from rearcquest.records.state import SyncState
from sync_helpers import sync_dir

CONTACT = "tests@example.com"


def test_next_download_starts_while_an_upload_is_in_progress(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_complete = ObjectWriter.complete
    overlapped: list[bool] = []

    def slow_complete(self: ObjectWriter, **kw: Any) -> str:
        if not overlapped:
            # The first upload holds on until the source sees another file request (bounded).
            seen = len(bls_server.file_requests())
            deadline = time.monotonic() + 5
            while len(bls_server.file_requests()) == seen and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append(len(bls_server.file_requests()) > seen)
        return real_complete(self, **kw)

    monkeypatch.setattr(ObjectWriter, "complete", slow_complete)
    result = sync_dir(
        store, source_url=bls_server.bls_url, contact=CONTACT, transfers=1, retry=FAST
    )
    result.raise_for_errors()
    assert overlapped == [True]
    assert len(result.added) == 12
    stored = {o.key for o in store.list_objects("pr/")}
    assert stored == {f"pr/{n}" for n in bls_server.files}


def test_failed_upload_is_a_per_file_error(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_complete = ObjectWriter.complete
    writers: list[ObjectWriter] = []
    lock = threading.Lock()

    def failing_complete(self: ObjectWriter, **kw: Any) -> str:
        with lock:
            writers.append(self)
        if self.key == "pr/pr.series":
            raise StorageError("cannot write s3://test-bucket/pr/pr.series: injected")
        return real_complete(self, **kw)

    monkeypatch.setattr(ObjectWriter, "complete", failing_complete)
    result = sync_dir(
        store, source_url=bls_server.bls_url, contact=CONTACT, transfers=3, retry=FAST
    )
    assert [(e.name, e.message) for e in result.errors] == [
        ("pr.series", "cannot write s3://test-bucket/pr/pr.series: injected")
    ]
    assert len(result.added) == 11 and "pr.series" not in result.added
    # Every body was released, the failed one too (its writer aborted, nothing held).
    assert len(writers) == 12
    with pytest.raises(StorageError, match="closed"):
        next(w for w in writers if w.key == "pr/pr.series").write(b"x")
    with pytest.raises(TransferError, match=r"pr\.series"):
        result.raise_for_errors()
    state = SyncState.from_json(store.get_bytes(state_key("pr/")))
    assert "pr.series" not in state.files and len(state.files) == 11
    assert store.head("pr/pr.series") is None


def test_unexpected_upload_error_is_raised(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_complete(self: ObjectWriter, **kw: Any) -> str:
        raise ZeroDivisionError("a bug, not an S3 failure")

    monkeypatch.setattr(ObjectWriter, "complete", broken_complete)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        sync_dir(store, source_url=bls_server.bls_url, contact=CONTACT, retry=FAST)
