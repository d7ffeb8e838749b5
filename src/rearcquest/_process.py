"""rq's own process: who it is, whether another one still lives, and its temporary folders.

A killed rq (SIGKILL, a Lambda timeout, a stopped container) leaves behind what it held: its lease
(:mod:`rearcquest.records.lease`) and its temporary folders. Both carry the identity of the process
that made them, a :class:`ProcessId` (the host, the pid and the process's start time), so that a
later run on the same host can tell that their owner is gone and clean up at once, instead of
waiting for the lease's time to live, or for ever for the folders.

The host is the hostname, the kernel's boot id and the pid namespace: two containers of one machine
share the boot id but not their pids, and a pid means nothing in another namespace. The start time
(clock ticks after boot, field 22 of ``/proc/<pid>/stat``) tells a recycled pid from its first
owner. Where these cannot be read (not Linux, no ``/proc``), a process has no identity: its lease
lasts its time to live and its folders are never swept. A process is called gone only when that is
certain; any doubt (a ``/proc`` that hides other users' processes, an unreadable line) keeps it
alive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Linux's largest pid (PID_MAX_LIMIT on 64-bit): a larger one is not a process of any host.
MAX_PID = 4_194_304
_MAX_HOST = 200
# A temporary folder of rq: rq-<pid>-<start>-<host digest>-<what it is for>-<random>.
_SCRATCH = re.compile(r"rq-([0-9]{1,7})-([0-9]{1,20})-([0-9a-f]{12})-")
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    """One process of one host: enough to tell, on that host, whether it still runs.

    Attributes:
        host: the hostname, boot id and pid namespace of its host (:func:`current`).
        pid: its process id.
        start: its start time, in clock ticks after the host booted.
    """

    host: str
    pid: int
    start: int

    def to_dict(self) -> dict[str, str | int]:
        """``{"host": ..., "pid": ..., "start": ...}``, for a lock object."""
        return {"host": self.host, "pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, doc: object) -> ProcessId | None:
        """The process a lock object names, or ``None`` when it names none that could be one."""
        if not isinstance(doc, dict):
            return None
        host, pid, start = doc.get("host"), doc.get("pid"), doc.get("start")
        if not isinstance(host, str) or not 0 < len(host) <= _MAX_HOST:
            return None
        # bool is an int: true is not pid 1.
        if type(pid) is not int or not 0 < pid <= MAX_PID:
            return None
        if type(start) is not int or not 0 <= start < 2**63:
            return None
        return cls(host, pid, start)


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time of ``pid`` from ``/proc``, or ``None`` if unreadable.

    Raises:
        FileNotFoundError: there is no such process (any more).
    """
    try:
        with (_PROC / str(pid) / "stat").open("rb") as file:
            line = file.read(4096)
    except FileNotFoundError:
        raise
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold anything, spaces and ")" too.
    fields = line[line.rfind(b")") + 1 :].split()
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return fields[0].decode("ascii", "replace"), int(fields[19])


def _read_host() -> str | None:
    try:
        with (_PROC / "sys/kernel/random/boot_id").open(encoding="ascii") as file:
            boot = file.read(100).strip()
        namespace = (_PROC / "self/ns/pid").readlink()
        # /proc of another pid namespace (a host's /proc mounted in a container) would name
        # other processes than the ones this process's pids mean.
        with (_PROC / "self/stat").open("rb") as file:
            own = file.read(4096).split(b" ", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    if not boot or own != str(os.getpid()).encode():
        return None
    host = f"{socket.gethostname()}/{boot}/{namespace}"
    return host if len(host) <= _MAX_HOST else None


_current: dict[int, ProcessId | None] = {}


def current() -> ProcessId | None:
    """This process, or ``None`` where its identity cannot be read (see the module's text)."""
    pid = os.getpid()  # a forked child is another process
    if pid not in _current:
        host = _read_host()
        try:
            found = _stat(pid) if host is not None else None
        except FileNotFoundError:
            found = None
        _current[pid] = ProcessId(host, pid, found[1]) if host and found else None
    return _current[pid]


def gone(process: ProcessId) -> bool:
    """Whether ``process`` certainly no longer runs: it was of this host, and its pid is free,
    a zombie, or another process's (started at another time).

    False whenever that is not certain: another host, no identity here, a ``/proc`` that does
    not show the process.
    """
    here = current()
    if here is None or process.host != here.host:
        return False
    if not 0 < process.pid <= MAX_PID:
        return False
    try:
        os.kill(process.pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        found = _stat(process.pid)
    except FileNotFoundError:
        # It ended between the two looks, or /proc hides it (hidepid): kill(0) tells which.
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False
    if found is None:
        return False
    state, start = found
    return state in ("Z", "X") or start != process.start


def _tag(process: ProcessId) -> str:
    digest = hashlib.sha256(process.host.encode()).hexdigest()[:12]
    return f"{process.pid}-{process.start}-{digest}"


_swept: set[int] = set()
_sweeping = threading.Lock()


def scratch_dir(purpose: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder of rq for ``purpose`` (a word), named after this process.

    Its name, ``rq-<pid>-<start>-<host>-<purpose>-<random>`` in ``TMPDIR``, lets a later run
    remove it if this process is killed before it can (:func:`sweep_scratch`, run here once per
    process before the first folder is made). Use it as ``tempfile.TemporaryDirectory``.
    """
    me = current()
    with _sweeping:
        if os.getpid() not in _swept:
            _swept.add(os.getpid())
            sweep_scratch()
    tag = _tag(me) if me is not None else str(os.getpid())
    return tempfile.TemporaryDirectory(prefix=f"rq-{tag}-{purpose}-")


def sweep_scratch(directory: str | None = None) -> list[str]:
    """Remove rq's temporary folders in ``directory`` (default ``TMPDIR``) whose process is gone.

    Only folders named by :func:`scratch_dir` on this host, owned by this user, whose process
    :func:`gone` says has ended; never a live process's folder, a link, or anything else.

    Returns:
        The folders removed.
    """
    me = current()
    if me is None:
        return []
    where = directory or tempfile.gettempdir()
    host = _tag(me).rsplit("-", 1)[1]
    removed: list[str] = []
    try:
        entries = list(os.scandir(where))
    except OSError:
        return []
    for entry in entries:
        match = _SCRATCH.match(entry.name)
        if match is None or match.group(3) != host:
            continue
        try:
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
            ):
                continue
        except OSError:
            continue
        owner = ProcessId(me.host, int(match.group(1)), int(match.group(2)))
        if not gone(owner):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if os.path.lexists(entry.path):
            log.warning("could not remove %s, left by a killed rq", entry.path)
        else:
            removed.append(entry.path)
    if removed:
        log.info("removed %d temporary folder(s) left by killed rq runs", len(removed))
    return removed


def wait_all(futures: Iterable[Future[T]]) -> list[T]:
    """Every future's result, in order, raising the first error.

    The calling thread wakes every quarter second: a Ctrl-C or SIGTERM that the kernel hands to
    another thread of the process is only raised in the main thread when it runs, not while it
    blocks on a future. On any exception (that one included) the futures not yet begun are
    cancelled before it is raised on.
    """
    futures = list(futures)
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise
