"""A lease on one mirror, so that two syncs of it never run at once.

The lease is one small JSON object (:func:`rearcquest.layout.lock_key`), created with an S3
conditional write (``If-None-Match: *``): of two runs, exactly one creates it. It names its holder
and an expiry; the holder renews it every third of its time to live (``If-Match`` on its own ETag)
and deletes it at the end (again only if it is still its own). A lease whose expiry has passed (a
crashed or killed run) is taken over with ``If-Match`` on the expired object's ETag, so two runs
that see it expired cannot both win.

The lock also names the holder's process (:class:`rearcquest._process.ProcessId`: its host, pid
and start time). A run on the same host that finds the holder's process gone (a SIGKILLed sync, a
Lambda worker killed at its timeout) takes the lease over at once, with the same ``If-Match``,
instead of waiting for its expiry. A holder on another host, or a lock that names no process rq
can check, is waited for as before; and whatever a lock object says, it is held at most
:data:`MAX_TRUSTED_TTL` after its last write (or ``ttl``, if longer): garbage, another tool's
object or a lock claiming to last for years never blocks a mirror for longer.

An S3 endpoint that ignores conditional headers cannot give this guarantee; :meth:`Lease.acquire`
detects it (a second ``If-None-Match: *`` write of the lock must fail) and raises
:class:`~rearcquest.errors.LockUnsupportedError` rather than pretend to hold a lock. The probe
runs on a store's first lease of the process; later leases on the same store trust its result.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from rearcquest import _process
from rearcquest._process import ProcessId
from rearcquest.config import DEFAULT_LEASE_TTL
from rearcquest.errors import (
    LeaseHeldError,
    LeaseLostError,
    LockUnsupportedError,
    PreconditionFailedError,
    StorageError,
)

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore

log = logging.getLogger(__name__)

# While waiting for a lease, poll first after this many seconds, doubling up to the cap.
POLL_START = 0.25
POLL_MAX = 5.0
_MAX_LOCK_BYTES = 64 * 1024
# The longest a lock object is believed after its last write, whatever expiry it claims (unless
# the lease's own ttl is longer): a holder renews every third of its ttl, so no real holder's
# expiry is that far past the object's date.
MAX_TRUSTED_TTL = 24 * 3600.0
# Endpoints found to ignore conditional writes, reported once per process.
_unsupported_reported: set[str] = set()
# Stores whose endpoint was seen to honour conditional writes: the probe runs once per store, not
# once per lease (a run over sixty surveys takes sixty leases on one store).
_honoured: weakref.WeakSet[ObjectStore] = weakref.WeakSet()


def default_holder() -> str:
    """A holder name unique to this run: ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class LeaseInfo:
    """What a lock object says: who holds the mirror, since when and until when."""

    holder: str
    acquired: datetime
    expires: datetime
    # The holder's process, when it could tell (see rearcquest._process).
    process: ProcessId | None = None

    def to_json(self) -> bytes:
        """Serialise the lock object."""
        doc: dict[str, object] = {
            "holder": self.holder,
            "acquired": self.acquired.isoformat(timespec="seconds"),
            "expires": self.expires.isoformat(timespec="milliseconds"),
        }
        if self.process is not None:
            doc["process"] = self.process.to_dict()
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        """Parse a lock object.

        A ``process`` that is not one (another tool, a hand edit) is left out: such a lock lasts
        until its expiry.

        Raises:
            ValueError: it is not one.
        """
        doc = json.loads(data)
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), str) for k in ("holder", "acquired", "expires")
        ):
            raise ValueError("not a rearcquest lock object")
        acquired = datetime.fromisoformat(doc["acquired"])
        expires = datetime.fromisoformat(doc["expires"])
        if acquired.tzinfo is None or expires.tzinfo is None:
            raise ValueError("lock times carry no time zone")
        # A holder name is for people: a long one (another tool's lock) is cut for messages.
        holder = doc["holder"] if len(doc["holder"]) <= 200 else doc["holder"][:200] + "..."
        return cls(holder, acquired, expires, ProcessId.from_dict(doc.get("process")))


class Lease:
    """The lease of one mirror, held by this run.

    Use it as a context manager (``with Lease(store, key).acquire():``): it is renewed by a
    background thread while the block runs and released at the end, even on error.

    Args:
        store: the bucket of the mirror.
        key: the lock object's key (:func:`rearcquest.layout.lock_key`).
        ttl: seconds the lease lasts without renewal.
        holder: the name written in the lock; default ``<host>:<pid>:<random>``.
        clock: the wall clock (seconds since the epoch), for tests.
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease time to live must be positive")
        self.store = store
        self.key = key
        self.ttl = ttl
        self.holder = holder or default_holder()
        self.process = _process.current()
        self._clock = clock
        self._etag: str | None = None
        self._expires: datetime | None = None
        self._acquired: datetime | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._renewing = threading.Lock()

    def __repr__(self) -> str:
        return f"Lease({self.store.url(self.key)!r}, holder={self.holder!r})"

    @property
    def held(self) -> bool:
        """True while this run holds the lease (acquired, not lost, not released)."""
        return self._etag is not None and self._lost is None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _document(self) -> tuple[bytes, datetime]:
        now = self._now()
        expires = now + timedelta(seconds=self.ttl)
        acquired = self._acquired if self._etag is not None and self._acquired else now
        return LeaseInfo(self.holder, acquired, expires, self.process).to_json(), expires

    def acquire(self, *, wait: float = 0.0) -> Lease:
        """Take the lease, waiting up to ``wait`` seconds for another holder to let go.

        Returns:
            This lease, held; use it in a ``with`` block to renew and release it.

        Raises:
            LeaseHeldError: another run holds it (beyond ``wait``); the message names the holder
                and the expiry.
            LockUnsupportedError: the endpoint ignores conditional writes.
            StorageError: S3 failed.
        """
        deadline = time.monotonic() + max(0.0, wait)
        pause = POLL_START
        while True:
            current = self._try_take()
            if current is None:
                return self
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LeaseHeldError(
                    f"another sync holds the mirror: {self.store.url(self.key)} is held by "
                    f"{current.holder} until {current.expires.isoformat(timespec='seconds')}; "
                    "wait for it to finish, re-run with --wait SECONDS, or delete that object "
                    "if you are sure no sync runs"
                )
            until_expiry = (current.expires - self._now()).total_seconds()
            time.sleep(max(0.01, min(pause, remaining, max(until_expiry, 0.01))))
            pause = min(pause * 2, POLL_MAX)

    def _try_take(self) -> LeaseInfo | None:
        """One attempt; ``None`` when the lease is now ours, else the current holder's lock."""
        while True:
            body, expires = self._document()
            try:
                etag = self.store.put_bytes_if(self.key, body, if_none_match=True)
            except PreconditionFailedError:
                pass
            else:
                self._check_conditions_honoured(body, etag)
                self._won(etag, expires)
                return None
            found = self.store.fetch(self.key, max_bytes=_MAX_LOCK_BYTES)
            if found is not None:
                break
            # Released between our write and our read: try again at once.
        data, info = found
        written = info.last_modified or self._now()
        try:
            current = LeaseInfo.from_json(data)
        except (ValueError, TypeError, RecursionError, OverflowError):
            # Not a lock we can read (garbage, another tool): it expires a TTL after it was written.
            current = LeaseInfo(
                "(an unreadable lock object)", written, written + timedelta(seconds=self.ttl)
            )
        trusted = written + timedelta(seconds=max(self.ttl, MAX_TRUSTED_TTL))
        if current.expires > trusted:
            current = replace(current, expires=trusted)
        if current.expires > self._now():
            if current.process is None or not _process.gone(current.process):
                return current
            log.warning(
                "taking over the lease %s of %s: its process (pid %d on this host) has ended",
                self.store.url(self.key),
                current.holder,
                current.process.pid,
            )
        else:
            log.warning(
                "taking over the expired lease %s of %s (expired %s)",
                self.store.url(self.key),
                current.holder,
                current.expires.isoformat(timespec="seconds"),
            )
        body, expires = self._document()
        try:
            etag = self.store.put_bytes_if(self.key, body, if_match=info.etag)
        except PreconditionFailedError:
            return current  # another run took it over first
        self._check_conditions_honoured(body, etag)
        self._won(etag, expires)
        return None

    def _check_conditions_honoured(self, body: bytes, etag: str) -> None:
        # A second create of the object just created, and a write on an ETag it does not have,
        # must both fail. If either succeeds, the endpoint ignores conditional headers and a lock
        # on it would be a pretence. (The body is the same, so a wrong success changes nothing.)
        # Once seen to hold on a store, the endpoint is trusted for the rest of the process.
        if self.store in _honoured:
            return
        wrong_etag = "1" * 32 if etag == "0" * 32 else "0" * 32
        try:
            self.store.put_bytes_if(self.key, body, if_none_match=True)
        except PreconditionFailedError:
            pass
        else:
            self._unsupported("If-None-Match")
        try:
            self.store.put_bytes_if(self.key, body, if_match=wrong_etag)
        except PreconditionFailedError:
            pass
        else:
            self._unsupported("If-Match")
        _honoured.add(self.store)

    def _unsupported(self, header: str) -> NoReturn:
        try:
            self.store.delete(self.key)
        except StorageError:
            log.warning("could not remove the lock object %s", self.store.url(self.key))
        endpoint = self.store.endpoint_url
        message = (
            f"the S3 endpoint {endpoint} ignores conditional writes ({header}), so rq cannot "
            f"hold a lease on {self.store.url(self.key)}; re-run with --no-lock to sync without "
            "one, and make sure no two syncs of this mirror run at once"
        )
        if endpoint not in _unsupported_reported:
            _unsupported_reported.add(endpoint)
            log.warning("%s", message)
        raise LockUnsupportedError(message)

    def _won(self, etag: str, expires: datetime) -> None:
        with self._lock:
            self._etag, self._expires, self._lost = etag, expires, None
            self._acquired = expires - timedelta(seconds=self.ttl)
        log.info(
            "holding the lease %s as %s until %s",
            self.store.url(self.key),
            self.holder,
            expires.isoformat(timespec="seconds"),
        )

    def renew(self) -> bool:
        """Extend the lease by ``ttl`` from now, if it is still ours.

        Returns:
            True if renewed; False if it was lost (taken over after expiring) or S3 failed (the
            lease stays valid until its expiry and the next renewal tries again).
        """
        # One renewal at a time: two on the same ETag would take each other for a takeover.
        with self._renewing:
            with self._lock:
                etag = self._etag
                if etag is None or self._lost is not None:
                    return False
            body, expires = self._document()
            try:
                new_etag = self.store.put_bytes_if(self.key, body, if_match=etag)
            except PreconditionFailedError:
                self._mark_lost("it was taken over by another sync after it expired")
                return False
            except StorageError as exc:
                log.warning("could not renew the lease %s: %s", self.store.url(self.key), exc)
                return False
            with self._lock:
                if self._etag == etag:
                    self._etag, self._expires = new_etag, expires
            return True

    def _mark_lost(self, why: str) -> None:
        with self._lock:
            if self._lost is None:
                self._lost = why
        log.error("lost the lease %s: %s", self.store.url(self.key), why)

    def check(self) -> None:
        """Make sure the lease is still held, before a step that changes the mirror.

        It is renewed on the spot (one conditional PUT), which proves it is still this run's: a
        run stalled past its expiry whose lease was taken over learns it here.

        Raises:
            LeaseLostError: it was taken over, or it expired without renewal.
        """
        self.renew()
        with self._lock:
            lost, expires = self._lost, self._expires
        if lost is None and expires is not None and expires <= self._now():
            lost = f"it expired at {expires.isoformat(timespec='seconds')} without renewal"
        if lost is not None or expires is None:
            raise LeaseLostError(
                f"this sync lost its lease {self.store.url(self.key)} ({lost or 'never held'}); "
                "it stopped before changing more. Re-run the sync"
            )

    def release(self) -> None:
        """Stop renewing and delete the lock object if it is still ours (errors are logged)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            etag, self._etag = self._etag, None
            lost = self._lost
        if etag is None or lost is not None:
            return
        try:
            self.store.delete(self.key, if_match=etag)
        except PreconditionFailedError:
            log.warning("the lease %s was no longer ours at release", self.store.url(self.key))
        except StorageError as exc:
            # The lock expires by itself; the next run takes it over then.
            log.warning("could not release the lease %s: %s", self.store.url(self.key), exc)

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            if not self.renew() and self._lost is not None:
                return

    def __enter__(self) -> Lease:
        if self._etag is None:
            self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_loop, name="rq-lease-renewal", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
