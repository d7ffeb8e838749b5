"""The lease on a mirror and the conditional S3 writes under it, on moto and on SeaweedFS."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rearcquest import _process
from rearcquest._process import ProcessId
from rearcquest.aws.storage import ObjectStore
from rearcquest.errors import (
    LeaseHeldError,
    LeaseLostError,
    LockUnsupportedError,
    PreconditionFailedError,
    StorageError,
)
from rearcquest.layout import lock_key
from rearcquest.records import lease as lease_module
from rearcquest.records.lease import Lease, LeaseInfo

KEY = lock_key("pr/")


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """The records rearcquest logs (the CLI may have stopped propagation to the root logger)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("rearcquest")
    handler, level = _Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def lock_doc(store: ObjectStore) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(store.get_bytes(KEY))
    return doc


def expired_lock(store: ObjectStore, holder: str = "crashed:1:abc") -> str:
    past = datetime.now(UTC) - timedelta(hours=1)
    info = LeaseInfo(holder, past - timedelta(minutes=10), past)
    return store.put_bytes(KEY, info.to_json(), content_type="application/json")


# -- conditional writes in storage ------------------------------------------------------------


def test_conditional_put_and_delete(any_store: ObjectStore) -> None:
    store = any_store
    etag = store.put_bytes_if("k", b"one", if_none_match=True)
    with pytest.raises(PreconditionFailedError, match=r"s3://.*/k: the object changed"):
        store.put_bytes_if("k", b"two", if_none_match=True)
    newer = store.put_bytes_if("k", b"three", if_match=etag)
    with pytest.raises(PreconditionFailedError):
        store.put_bytes_if("k", b"four", if_match=etag)  # a stale ETag never overwrites
    with pytest.raises(PreconditionFailedError):
        store.put_bytes_if("missing", b"x", if_match=etag)  # nor creates
    with pytest.raises(PreconditionFailedError):
        store.delete("k", if_match=etag)
    found = store.fetch("k")
    assert found is not None and found[0] == b"three" and found[1].etag == newer
    store.delete("k", if_match=newer)
    assert store.fetch("k") is None
    assert issubclass(PreconditionFailedError, StorageError)


def test_fetch_reads_at_most_one_byte_past_the_limit(store: ObjectStore) -> None:
    store.put_bytes("big", b"x" * 300_000)
    found = store.fetch("big", max_bytes=10)
    assert found is not None
    assert 10 < len(found[0]) < 300_000 and found[1].size == 300_000


# -- the lease ---------------------------------------------------------------------------------


def test_second_holder_is_refused_with_holder_and_expiry(any_store: ObjectStore) -> None:
    first = Lease(any_store, KEY, holder="cron-host:42:aaa").acquire()
    doc = lock_doc(any_store)
    assert doc["holder"] == "cron-host:42:aaa"
    assert datetime.fromisoformat(doc["expires"]) > datetime.now(UTC)
    with pytest.raises(LeaseHeldError) as info:
        Lease(any_store, KEY, holder="manual:7:bbb").acquire()
    message = str(info.value)
    assert "another sync holds the mirror" in message
    assert "cron-host:42:aaa" in message and doc["expires"][:19] in message
    assert "--wait" in message
    assert info.value.exit_code == 5
    first.release()
    assert any_store.fetch(KEY) is None
    Lease(any_store, KEY).acquire().release()  # free again


def test_expired_lease_is_taken_over(
    any_store: ObjectStore, log_records: list[logging.LogRecord]
) -> None:
    expired_lock(any_store)
    with Lease(any_store, KEY, holder="new:1:ccc") as lease:
        assert lease.held
        assert lock_doc(any_store)["holder"] == "new:1:ccc"
    assert any("taking over the expired lease" in r.getMessage() for r in log_records)
    assert any_store.fetch(KEY) is None


def test_two_takers_of_an_expired_lease_cannot_both_win(
    any_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    expired_lock(any_store)
    stale = any_store.fetch(KEY)  # what the slower taker read before the faster one took over
    winner = Lease(any_store, KEY, holder="fast:1:aaa").acquire()
    monkeypatch.setattr(any_store, "fetch", lambda key, **kw: stale)
    loser = Lease(any_store, KEY, holder="slow:2:bbb")
    with pytest.raises(LeaseHeldError):
        loser.acquire()
    assert not loser.held
    monkeypatch.undo()
    assert lock_doc(any_store)["holder"] == "fast:1:aaa"
    assert winner.held
    winner.release()


def test_renewal_extends_and_keeps_the_holder(any_store: ObjectStore) -> None:
    now = [1_800_000_000.0]
    lease = Lease(any_store, KEY, ttl=60, holder="me:1:a", clock=lambda: now[0]).acquire()
    before = lock_doc(any_store)
    now[0] += 30
    assert lease.renew()
    after = lock_doc(any_store)
    assert after["holder"] == "me:1:a" and after["acquired"] == before["acquired"]
    assert datetime.fromisoformat(after["expires"]) - datetime.fromisoformat(
        before["expires"]
    ) == timedelta(seconds=30)
    lease.check()
    lease.release()


def test_taken_over_lease_is_lost_and_not_released(any_store: ObjectStore) -> None:
    lease = Lease(any_store, KEY, holder="slow:1:a").acquire()
    # Another run decided it had expired and took it over.
    other = LeaseInfo("other:2:b", datetime.now(UTC), datetime.now(UTC) + timedelta(minutes=10))
    any_store.put_bytes(KEY, other.to_json())
    assert not lease.renew()
    with pytest.raises(LeaseLostError, match="taken over") as info:
        lease.check()
    assert info.value.exit_code == 5
    lease.release()
    assert lock_doc(any_store)["holder"] == "other:2:b"  # not ours to delete


def test_lease_expired_without_renewal_is_lost(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_800_000_000.0]
    lease = Lease(store, KEY, ttl=60, clock=lambda: now[0]).acquire()
    now[0] += 61

    def s3_down(*args: Any, **kw: Any) -> str:
        raise StorageError("cannot write: S3 is down")

    # Renewal fails: the lease is only as good as its expiry.
    monkeypatch.setattr(store, "put_bytes_if", s3_down)
    assert not lease.renew()
    with pytest.raises(LeaseLostError, match="expired"):
        lease.check()


def test_released_at_the_end_even_on_error(any_store: ObjectStore) -> None:
    held: list[bool] = []

    def fail_while_holding() -> None:
        with Lease(any_store, KEY):
            held.append(any_store.fetch(KEY) is not None)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_while_holding()
    assert held == [True]
    assert any_store.fetch(KEY) is None


def test_background_renewal(any_store: ObjectStore) -> None:
    with Lease(any_store, KEY, ttl=0.9) as lease:
        first = lock_doc(any_store)["expires"]
        deadline = time.monotonic() + 20  # a bounded wait for the renewal thread, not a timing
        while lock_doc(any_store)["expires"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock_doc(any_store)["expires"] > first
        assert lease.held
    assert any_store.fetch(KEY) is None
    assert not any(t.name == "rq-lease-renewal" for t in threading.enumerate())


def test_wait_takes_the_lease_once_the_holder_lets_go(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "POLL_START", 0.01)
    holder = Lease(store, KEY, holder="first:1:a").acquire()
    refused = threading.Event()
    real_fetch = store.fetch

    def fetch(key: str, **kw: Any) -> Any:
        found = real_fetch(key, **kw)
        refused.set()  # the waiter found the lease held at least once
        return found

    monkeypatch.setattr(store, "fetch", fetch)
    got: list[Lease] = []
    second = Lease(store, KEY, holder="second:2:b")
    waiter = threading.Thread(target=lambda: got.append(second.acquire(wait=30)))
    waiter.start()
    assert refused.wait(timeout=10)
    holder.release()
    waiter.join(timeout=30)
    assert got == [second] and second.held
    assert lock_doc(store)["holder"] == "second:2:b"
    second.release()


def test_wait_gives_up_with_exit_5(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_module, "POLL_START", 0.01)
    Lease(store, KEY, holder="busy:1:a").acquire()
    with pytest.raises(LeaseHeldError, match="busy:1:a"):
        Lease(store, KEY).acquire(wait=0.1)


@pytest.mark.parametrize(
    ("body", "ttl", "taken"),
    [(b"\x00garbage", 600, False), (b"\x00garbage", 0.001, True), (b"[]", 0.001, True)],
    ids=["garbage-fresh", "garbage-old", "list-old"],
)
def test_unreadable_lock_object_expires_a_ttl_after_it_was_written(
    store: ObjectStore, body: bytes, ttl: float, taken: bool
) -> None:
    store.put_bytes(KEY, body)
    time.sleep(0.01)  # older than the tiny TTL
    lease = Lease(store, KEY, ttl=ttl)
    if taken:
        lease.acquire().release()
    else:
        with pytest.raises(LeaseHeldError, match="unreadable lock object"):
            lease.acquire()


def _ignore_conditions(store: ObjectStore, headers: tuple[str, ...]) -> None:
    """Make the client drop conditional headers, like an endpoint that ignores them."""

    def strip(request: Any, **_: Any) -> None:
        for name in headers:
            if name in request.headers:
                del request.headers[name]

    store.client.meta.events.register("before-sign.s3", strip)


@pytest.mark.parametrize(
    "headers", [("If-None-Match", "If-Match"), ("If-Match",)], ids=["both", "if-match-only"]
)
def test_endpoint_ignoring_conditions_is_detected_and_said_once(
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    log_records: list[logging.LogRecord],
    headers: tuple[str, ...],
) -> None:
    monkeypatch.setattr(lease_module, "_unsupported_reported", set())
    _ignore_conditions(store, headers)
    for _ in range(2):
        with pytest.raises(LockUnsupportedError, match="--no-lock") as info:
            Lease(store, KEY).acquire()
        assert headers[0] in str(info.value)
        assert store.fetch(KEY) is None  # no pretend lock is left behind
    said = [r for r in log_records if "ignores conditional writes" in r.getMessage()]
    assert len(said) == 1
    assert info.value.exit_code == 2


def test_conditions_are_probed_on_a_stores_first_lease_only(any_store: ObjectStore) -> None:
    # A run over sixty surveys takes sixty leases on one store: two probe writes each would be
    # 120 needless requests.
    puts: list[str] = []
    any_store.client.meta.events.register(
        "before-sign.s3.PutObject", lambda request, **_: puts.append(request.url)
    )
    with Lease(any_store, lock_key("a/")).acquire():
        pass
    assert len(puts) == 3  # the lock, then the If-None-Match and If-Match probes
    puts.clear()
    with Lease(any_store, lock_key("b/")).acquire():
        pass
    assert len(puts) == 1
    puts.clear()
    with Lease(ObjectStore(any_store.client, any_store.bucket), lock_key("c/")).acquire():
        pass
    assert len(puts) == 3  # another store probes again


def test_takeover_on_an_endpoint_ignoring_if_match_is_refused(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "_unsupported_reported", set())
    expired_lock(store)
    _ignore_conditions(store, ("If-Match",))
    with pytest.raises(LockUnsupportedError, match="If-Match"):
        Lease(store, KEY).acquire()


# -- the holder's process: a killed holder on this host is taken over at once -----------------


def held_by(store: ObjectStore, process: ProcessId | None, *, minutes: float = 10) -> None:
    now = datetime.now(UTC)
    info = LeaseInfo("other:1:abc", now, now + timedelta(minutes=minutes), process)
    store.put_bytes(KEY, info.to_json(), content_type="application/json")


def this_process() -> ProcessId:
    me = _process.current()
    assert me is not None, "the tests run on Linux, with /proc"
    return me


def free_pid() -> int:
    """A pid no process has now (the highest free one: the kernel hands pids out upwards)."""
    for pid in range(_process.MAX_PID, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free pid")


def test_the_lock_names_the_holders_process(store: ObjectStore) -> None:
    with Lease(store, KEY).acquire():
        assert lock_doc(store)["process"] == this_process().to_dict()
    assert LeaseInfo.from_json(LeaseInfo("h", *[datetime.now(UTC)] * 2).to_json()).process is None


@pytest.mark.parametrize("how", ["pid-free", "pid-recycled"])
def test_a_lease_whose_process_has_ended_on_this_host_is_taken_over_at_once(
    store: ObjectStore, log_records: list[logging.LogRecord], how: str
) -> None:
    me = this_process()
    # A free pid, or this pid started at another time: its first owner has ended.
    ended = (
        ProcessId(me.host, free_pid(), me.start)
        if how == "pid-free"
        else (dataclasses.replace(me, start=me.start + 1))
    )
    held_by(store, ended)
    with Lease(store, KEY, holder="next:2:def") as lease:
        assert lease.held and lock_doc(store)["holder"] == "next:2:def"
    said = [r.getMessage() for r in log_records if "has ended" in r.getMessage()]
    assert said == [
        f"taking over the lease {store.url(KEY)} of other:1:abc: its process "
        f"(pid {ended.pid} on this host) has ended"
    ]


def test_the_takeover_of_an_ended_holder_is_conditional(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = this_process()
    held_by(store, dataclasses.replace(me, start=me.start + 1))
    stale = store.fetch(KEY)  # what the slower taker read before the faster one took over
    winner = Lease(store, KEY, holder="fast:1:aaa").acquire()
    monkeypatch.setattr(store, "fetch", lambda key, **kw: stale)
    with pytest.raises(LeaseHeldError):
        Lease(store, KEY, holder="slow:2:bbb").acquire()
    monkeypatch.undo()
    assert lock_doc(store)["holder"] == "fast:1:aaa" and winner.held
    winner.release()


def _start_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 1 :].split()[19])


@pytest.mark.parametrize("who", ["this-process", "parent-process", "other-host", "no-process"])
def test_a_live_or_unknowable_holder_is_waited_for_until_its_expiry(
    store: ObjectStore, who: str
) -> None:
    me = this_process()
    named = {
        "this-process": me,
        "parent-process": ProcessId(me.host, os.getppid(), _start_of(os.getppid())),
        # An ended process's pid, but on another host: it cannot be checked from here.
        "other-host": ProcessId("elsewhere", free_pid(), me.start),
        "no-process": None,
    }[who]
    held_by(store, named)
    with pytest.raises(LeaseHeldError, match="other:1:abc"):
        Lease(store, KEY).acquire()
    later = time.time() + 601
    Lease(store, KEY, clock=lambda: later).acquire().release()  # after its expiry: taken over


def test_a_lock_claiming_years_is_held_a_day_at_most(store: ObjectStore) -> None:
    held_by(store, None, minutes=60 * 24 * 365 * 100)
    with pytest.raises(LeaseHeldError):
        Lease(store, KEY).acquire()
    almost = time.time() + lease_module.MAX_TRUSTED_TTL - 60
    with pytest.raises(LeaseHeldError):
        Lease(store, KEY, clock=lambda: almost).acquire()
    later = time.time() + lease_module.MAX_TRUSTED_TTL + 60
    Lease(store, KEY, clock=lambda: later).acquire().release()


def test_hostile_lock_bodies_never_crash_and_never_outlast_their_ttl(store: ObjectStore) -> None:
    from fuzz_helpers import random_body

    me = this_process()
    now = datetime.now(UTC)
    rng = random.Random(21)
    after = time.time() + lease_module.MAX_TRUSTED_TTL + 60
    outcomes: set[str] = set()
    for case in range(200):
        valid = {
            "holder": "fuzz:1:abc",
            "acquired": now.isoformat(timespec="seconds"),
            "expires": rng.choice(
                [(now + timedelta(minutes=10)).isoformat(), "9999-12-31T23:59:59+00:00"]
            ),
            "process": rng.choice(
                [me.to_dict(), dataclasses.replace(me, pid=free_pid()).to_dict(), {}]
            ),
        }
        body = random_body(rng, valid)
        store.put_bytes(
            KEY, body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        )
        try:
            Lease(store, KEY).acquire().release()
            outcomes.add("taken")
        except LeaseHeldError:
            outcomes.add("held")
        store.put_bytes(
            KEY, body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        )
        # Whatever it says, a day after its last write the lock is taken over.
        try:
            Lease(store, KEY, clock=lambda: after).acquire().release()
        except LeaseHeldError as exc:
            raise AssertionError(f"case {case}: {exc}") from exc
    assert outcomes == {"taken", "held"}


def test_lock_objects_parse_or_raise_value_error() -> None:
    from fuzz_helpers import random_body

    me = this_process()
    now = datetime.now(UTC)
    valid = json.loads(LeaseInfo("h:1:a", now, now, me).to_json())
    rng = random.Random(2121)
    for case in range(3000):
        body = random_body(rng, valid)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        try:
            info = LeaseInfo.from_json(data)
        except (ValueError, RecursionError):
            continue
        assert info.process is None or 0 < info.process.pid <= _process.MAX_PID, f"case {case}"
