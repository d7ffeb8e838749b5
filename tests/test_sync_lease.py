"""Two syncs of one mirror at once: the lease keeps them apart, on moto and on SeaweedFS."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from conftest import FAST, release
from rearcquest.aws.storage import ObjectStore
from rearcquest.errors import LeaseHeldError, LeaseLostError, LockUnsupportedError
from rearcquest.layout import lock_key, state_key
from rearcquest.mirror.sync import SyncResult
from rearcquest.offline import OfflineServer
from rearcquest.records import lease as lease_module
from rearcquest.records.lease import Lease, LeaseInfo
from sync_helpers import before_each_upload, sync_dir

CONTACT = "tests@example.com"
LOCK = lock_key("pr/")


def run(store: ObjectStore, server: OfflineServer, **kw: Any) -> SyncResult:
    kw.setdefault("retry", FAST)
    return sync_dir(store, source_url=server.bls_url, contact=CONTACT, **kw)


def mirror(store: ObjectStore) -> dict[str, bytes]:
    return {o.key.removeprefix("pr/"): store.get_bytes(o.key) for o in store.list_objects("pr/")}


def test_a_sync_holds_the_lease_and_releases_it(
    any_store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    before_each_upload(
        monkeypatch, any_store, lambda key: seen.append(json.loads(any_store.get_bytes(LOCK)))
    )
    run(any_store, bls_server).raise_for_errors()
    assert len(seen) == 12 and {doc["holder"] for doc in seen} == {seen[0]["holder"]}
    assert any_store.fetch(LOCK) is None  # released


def test_a_second_sync_exits_5_and_changes_nothing(
    any_store: ObjectStore, bls_server: OfflineServer
) -> None:
    held = Lease(any_store, LOCK, holder="cron:99:abc").acquire()
    with pytest.raises(LeaseHeldError, match="cron:99:abc") as info:
        run(any_store, bls_server)
    assert info.value.exit_code == 5
    assert bls_server.requests == []  # not even the listing: there is no state to plan from
    assert mirror(any_store) == {} and any_store.fetch(state_key("pr/")) is None
    dry = run(any_store, bls_server, dry_run=True)  # a dry run takes no lease
    assert len(dry.added) == 12
    unlocked = run(any_store, bls_server, lock=False)  # proceed knowingly
    assert len(unlocked.added) == 12
    held.release()


def test_dry_run_leaves_no_lock(any_store: ObjectStore, bls_server: OfflineServer) -> None:
    run(any_store, bls_server, dry_run=True)
    assert list(any_store.list_objects("")) == []


def test_expired_lease_of_a_crashed_run_is_taken_over(
    any_store: ObjectStore, bls_server: OfflineServer
) -> None:
    from datetime import UTC, datetime, timedelta

    past = datetime.now(UTC) - timedelta(hours=2)
    any_store.put_bytes(
        LOCK, LeaseInfo("crashed:1:x", past, past + timedelta(minutes=10)).to_json()
    )
    result = run(any_store, bls_server)
    result.raise_for_errors()
    assert len(result.added) == 12
    assert any_store.fetch(LOCK) is None


def test_lost_lease_stops_before_deletes_and_state(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, bls_server).raise_for_errors()
    state_before = store.get_bytes(state_key("pr/"))
    files = release("2026-08-06")
    del files["pr.footnote"]
    bls_server.set_files(files)

    def stalled(key: str) -> None:
        # This run stalled past its expiry and another run took the lease over.
        other = LeaseInfo.from_json(store.get_bytes(LOCK))
        store.put_bytes(LOCK, LeaseInfo("other:2:y", other.acquired, other.expires).to_json())

    before_each_upload(monkeypatch, store, stalled)
    with pytest.raises(LeaseLostError, match="lost its lease") as info:
        run(store, bls_server)
    assert info.value.exit_code == 5
    assert store.head("pr/pr.footnote") is not None  # no delete after the loss
    assert store.get_bytes(state_key("pr/")) == state_before
    assert json.loads(store.get_bytes(LOCK))["holder"] == "other:2:y"  # theirs, left alone


def test_endpoint_ignoring_conditions_needs_no_lock(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "_unsupported_reported", set())

    def strip(request: Any, **_: Any) -> None:
        for name in ("If-None-Match", "If-Match"):
            if name in request.headers:
                del request.headers[name]

    store.client.meta.events.register("before-sign.s3", strip)
    with pytest.raises(LockUnsupportedError, match="--no-lock"):
        run(store, bls_server)
    assert bls_server.requests == [] and list(store.list_objects("")) == []
    result = run(store, bls_server, lock=False)
    result.raise_for_errors()
    assert len(result.added) == 12


def test_overlapping_syncs_lose_nothing(any_store: ObjectStore, bls_server: OfflineServer) -> None:
    """The race of issue #9: a slow run that listed an old release, a fast one on the new."""
    slow_store = ObjectStore(any_store.client, any_store.bucket)
    in_upload, go_on = threading.Event(), threading.Event()

    def slow_upload(key: str) -> None:
        in_upload.set()
        assert go_on.wait(timeout=60)

    before_each_upload(None, slow_store, slow_upload)
    outcome: list[Any] = []
    slow = threading.Thread(target=lambda: outcome.append(run(slow_store, bls_server)))
    slow.start()
    assert in_upload.wait(timeout=60)  # the slow run listed the old release and is uploading
    new = release("2026-08-06")
    bls_server.set_files(new)
    with pytest.raises(LeaseHeldError, match="another sync holds the mirror"):
        run(any_store, bls_server)  # the fast run is refused, exit 5
    waited: list[SyncResult] = []
    waiter = threading.Thread(target=lambda: waited.append(run(any_store, bls_server, wait=60)))
    waiter.start()
    go_on.set()
    slow.join(timeout=60)
    waiter.join(timeout=120)
    # The slow run may find files that changed on the server under it (sizes no longer as
    # listed): it uploads none of those, lists the directory once more and ends on the new
    # release itself. If none of its downloads saw the change, the run after it (on the newest
    # listing) updates what the slow run wrote from the old release. Either way nothing is lost.
    outcome[0].raise_for_errors()
    waited[0].raise_for_errors()
    assert mirror(any_store) == {n: f.data for n, f in new.items()}
    assert any_store.fetch(LOCK) is None


@pytest.mark.parametrize("first_run", [True, False], ids=["no-state-yet", "state-read"])
def test_state_write_is_conditional(
    any_store: ObjectStore, bls_server: OfflineServer, first_run: bool
) -> None:
    """A run without a lease (or past its expiry) never overwrites a state another run wrote."""
    from rearcquest.errors import StateConflictError

    if not first_run:
        run(any_store, bls_server).raise_for_errors()
        bls_server.set_files(release("2026-08-06"))
    theirs = b'{"written by": "another run"}'
    wrote: list[bool] = []

    def upload(key: str) -> None:
        if not wrote:
            wrote.append(True)
            any_store.put_bytes(state_key("pr/"), theirs)

    with pytest.MonkeyPatch.context() as patch:
        before_each_upload(patch, any_store, upload)
        with pytest.raises(StateConflictError, match="it was not overwritten") as info:
            run(any_store, bls_server, lock=False)
    assert info.value.exit_code == 5
    assert any_store.get_bytes(state_key("pr/")) == theirs
    # The next run treats that foreign document as lost, rebuilds and converges.
    run(any_store, bls_server).raise_for_errors()
    assert mirror(any_store) == {n: f.data for n, f in bls_server.files.items()}


def test_a_no_op_takes_no_lease(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, bls_server).raise_for_errors()
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    bls_server.requests.clear()
    # Another run holds the lease: a no-op does not need it, so it neither fails nor waits.
    with Lease(store, LOCK, holder="another run").acquire():
        calls.clear()
        result = run(store, bls_server)
        seen = list(calls)
    result.raise_for_errors()
    assert len(result.unchanged) == 12 and result.requests == 1
    assert seen == ["ListObjectsV2", "GetObject"]  # the mirror's objects and the state
    assert [r.path for r in bls_server.requests] == ["/pub/time.series/pr/"]


def test_a_sync_with_work_plans_again_under_the_lease(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, bls_server).raise_for_errors()
    store.delete("pr/pr.class")  # work: a file to put back
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    bls_server.requests.clear()
    result = run(store, bls_server)
    result.raise_for_errors()
    assert result.added == ["pr.class"] and result.requests == 2  # one listing, one file
    # Planned once without the lease, then again under it from a fresh read of the bucket.
    lease_at = calls.index("PutObject")
    assert calls[:lease_at] == ["ListObjectsV2", "GetObject"]
    assert calls[lease_at:].count("ListObjectsV2") == 1
    assert store.fetch(LOCK) is None


def test_a_lost_state_is_rebuilt_once_under_the_lease(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server).raise_for_errors()
    store.delete(state_key("pr/"))
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    bls_server.requests.clear()
    result = run(store, bls_server)
    result.raise_for_errors()
    assert len(result.unchanged) == 12 and store.fetch(state_key("pr/")) is not None
    # The plan before the lease stops at the missing state: no HEAD there, and the listing is
    # fetched once, under the lease, where the twelve objects are read back from their metadata.
    assert calls.count("HeadObject") == 12
    assert calls.index("PutObject") < calls.index("HeadObject")
    assert len(bls_server.requests) == 1
