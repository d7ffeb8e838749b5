"""Local stand-ins for the outside world, for ``rq demo``, the tests and the benchmarks.

:class:`OfflineServer` speaks like ``download.bls.gov``: the IIS directory page, ``Last-Modified``,
304 on ``If-Modified-Since``, an ETag it ignores on requests, and 403 to a User-Agent without
contact information. It serves real BLS files (two releases ship with the package) and can be told
to misbehave (:class:`Fault`) or to be slow and strict about request rates, like the real one.
Extra routes (the DataUSA API) are added with :meth:`OfflineServer.add_route`.

:func:`embedded_s3` runs moto's S3 server in-process on 127.0.0.1 (needs ``rearcquest[demo]``).
"""

from __future__ import annotations

import email.utils
import fnmatch
import gzip
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rearcquest.errors import ConfigError

log = logging.getLogger(__name__)

BLS_DIRECTORY = "/pub/time.series/pr/"
BUNDLED_VINTAGES = ("2024-06-06", "2026-08-06")
_SERVER_ZONE = "America/New_York"  # download.bls.gov lists times in US Eastern time


def _zone() -> Any:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(_SERVER_ZONE)
    except Exception:  # no tz database on this machine: UTC is a fine stand-in for a demo
        return UTC


@dataclass(frozen=True)
class ServedFile:
    """A file the server lists and serves; ``listed`` is the listing time (server local).

    With ``path`` set, the body is streamed from that file and ``data`` is ignored: a file too
    large to hold in memory (the benchmarks' 2 GB file). Faults that cut a body short apply to
    in-memory files only.
    """

    name: str
    data: bytes
    listed: datetime
    path: Path | None = None

    @property
    def size(self) -> int:
        """The body's length in bytes."""
        return self.path.stat().st_size if self.path is not None else len(self.data)

    @property
    def last_modified(self) -> datetime:
        """The listing time as an aware UTC datetime (what ``Last-Modified`` says)."""
        return self.listed.replace(tzinfo=_zone()).astimezone(UTC)


def bundled_release(vintage: str) -> Path:
    """Return the folder of a BLS release shipped with the package.

    Raises:
        ConfigError: no such release ships with the package.
    """
    if vintage not in BUNDLED_VINTAGES:
        raise ConfigError(f"no bundled BLS release {vintage!r}; have {', '.join(BUNDLED_VINTAGES)}")
    return Path(str(resources.files("rearcquest") / "_data" / "bls" / "pr" / vintage))


def load_release(directory: Path) -> dict[str, ServedFile]:
    """Load a release folder: its ``listing.html`` (for the dates) and each file (or ``file.gz``).

    Raises:
        ConfigError: the folder lacks the listing or a listed file.
    """
    from rearcquest.sources.bls import parse_listing

    listing_path = directory / "listing.html"
    if not listing_path.is_file():
        raise ConfigError(f"{directory} has no listing.html")
    files: dict[str, ServedFile] = {}
    for remote in parse_listing(
        listing_path.read_text(), "https://download.bls.gov" + BLS_DIRECTORY
    ):
        plain, packed = directory / remote.name, directory / f"{remote.name}.gz"
        if plain.is_file():
            data = plain.read_bytes()
        elif packed.is_file():
            data = gzip.decompress(packed.read_bytes())
        else:
            raise ConfigError(f"{directory} lists {remote.name} but does not hold it")
        assert remote.modified is not None
        listed = datetime.strptime(remote.modified, "%Y-%m-%d %H:%M")
        files[remote.name] = ServedFile(remote.name, data, listed)
    return files


@dataclass
class Fault:
    """Misbehaviour for requests whose path matches ``path`` (a glob), ``times`` times.

    Attributes:
        status: answer this status instead (with ``retry_after`` as ``Retry-After``).
        truncate: send only half the body, with a matching ``Content-Length``.
        reset: announce the full length, send half, then drop the connection.
        body: the body sent with ``status``.
        location: a ``Location`` header sent with ``status`` (a redirect, e.g. 302).
        drip: send the body one byte every ``drip`` seconds (files and routes).
        piece: with ``drip``, the bytes sent every ``drip`` seconds (a slow but steady source).
        header_drip: send the status line, then header bytes one every ``header_drip`` seconds
            (at most 64 kB, h11's limit), until the client leaves; no body.
        chunked: send the body with chunked transfer encoding and no ``Content-Length``.
        extra: append this many bytes of ``x`` to the body (with ``chunked``: a body longer
            than the listing says).
        content_type: answer with this ``Content-Type`` instead.
    """

    path: str
    status: int | None = None
    retry_after: str | None = None
    truncate: bool = False
    reset: bool = False
    body: bytes | None = None
    location: str | None = None
    drip: float | None = None
    piece: int = 1
    header_drip: float | None = None
    chunked: bool = False
    extra: int = 0
    content_type: str | None = None
    times: int = 1


@dataclass(frozen=True)
class Route:
    """A fixed answer for one path (query string ignored)."""

    body: bytes
    content_type: str = "application/json"
    status: int = 200


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered."""

    method: str
    path: str
    status: int
    user_agent: str
    headers: dict[str, str] = field(default_factory=dict)
    # When the server began answering it (time.monotonic()), after any max_rps queueing.
    at: float = 0.0


def _has_contact(user_agent: str) -> bool:
    return "@" in user_agent or "http://" in user_agent or "https://" in user_agent


def _etag(file: ServedFile) -> str:
    if file.path is not None:
        # Like a real server's ETag for a file on disk: from its size and mtime, not its bytes.
        stat = file.path.stat()
        return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"
    return hashlib.sha1(file.data).hexdigest()[:16]


def _iis_row(file: ServedFile, directory: str) -> str:
    t = file.listed
    hour = t.hour % 12 or 12
    date = f"{t.month}/{t.day}/{t.year}"
    clock = f"{hour}:{t.minute:02d} {'PM' if t.hour >= 12 else 'AM'}"
    href = directory + quote(file.name)
    return f'{date:>10} {clock:>8} {file.size:>12} <A HREF="{href}">{file.name}</A><br>'


class OfflineServer:
    """A BLS-like HTTP server on 127.0.0.1 in a background thread.

    Args:
        files: the files to serve in ``directory``; change them later with :meth:`set_files`.
        directory: the served directory path.
        require_contact: answer 403 to a User-Agent without contact information, like BLS.
        delay: seconds added to every request.
        max_rps: serve at most this many requests a second (queueing the rest); 0 = no limit.
        host: the address to bind.
        port: the port; 0 picks a free one.
        surveys: more directories to serve beside ``directory``, by name (e.g. ``{"cu": ...}``
            serves ``/pub/time.series/cu/``); the parent of ``directory`` (the root,
            ``/pub/time.series/``) then lists them all as IIS ``<dir>`` rows. Change them
            later with :meth:`set_survey`.
        bandwidth: send at most this many bytes a second, over every connection together (the
            source's own bandwidth, as the benchmarks' Lambda harness needs); 0 = no limit.
    """

    def __init__(
        self,
        files: dict[str, ServedFile] | None = None,
        *,
        directory: str = BLS_DIRECTORY,
        require_contact: bool = True,
        delay: float = 0.0,
        max_rps: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        surveys: dict[str, dict[str, ServedFile]] | None = None,
        bandwidth: float = 0.0,
    ) -> None:
        if bandwidth < 0:
            raise ConfigError(f"the bandwidth must be 0 (no limit) or more, not {bandwidth}")
        self.pacer = Pacer(bandwidth) if bandwidth > 0 else None
        self.directory = directory if directory.endswith("/") else directory + "/"
        self.root = self.directory.rstrip("/").rsplit("/", 1)[0] + "/"
        self._surveys: dict[str, dict[str, ServedFile]] = {
            name: dict(files) for name, files in (surveys or {}).items()
        }
        self.require_contact = require_contact
        self.delay = delay
        self.faults: list[Fault] = []
        self.routes: dict[str, Route] = {}
        self.requests: list[RequestRecord] = []
        self.subdirs: list[str] = []
        # Body bytes sent so far (pages and files), all requests together: a test watches a
        # transfer by it.
        self.bytes_sent = 0
        self._files: dict[str, ServedFile] = dict(files or {})
        self._lock = threading.Lock()
        self._interval = 1.0 / max_rps if max_rps > 0 else 0.0
        self._next_slot = 0.0
        self._slot_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _QuietServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def bls_url(self) -> str:
        """The URL of the served BLS directory."""
        return self.url + self.directory

    @property
    def root_url(self) -> str:
        """The URL of the root listing the surveys (the parent of :attr:`directory`)."""
        return self.url + self.root

    @property
    def primary_survey(self) -> str:
        """The name of :attr:`directory` in the root (``pr``)."""
        return self.directory.rstrip("/").rsplit("/", 1)[-1]

    def survey_names(self) -> list[str]:
        """Every directory the root lists: :attr:`directory` and the added surveys, sorted."""
        with self._lock:
            return sorted({self.primary_survey, *self._surveys})

    def survey_files(self, name: str) -> dict[str, ServedFile]:
        """A copy of the files served now in survey ``name`` (the primary one included)."""
        if name == self.primary_survey:
            return self.files
        with self._lock:
            return dict(self._surveys[name])

    def set_survey(self, name: str, files: dict[str, ServedFile]) -> None:
        """Serve these files in the survey directory ``name`` from now on (added if new)."""
        if name == self.primary_survey:
            self.set_files(files)
            return
        with self._lock:
            self._surveys[name] = dict(files)

    def remove_survey(self, name: str) -> None:
        """Stop serving (and listing) the added survey ``name``."""
        with self._lock:
            del self._surveys[name]

    def requests_under(self, path: str) -> list[RequestRecord]:
        """The requests whose path starts with ``path`` (e.g. one survey's directory)."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path)]

    def set_files(self, files: dict[str, ServedFile]) -> None:
        """Serve these files from now on (a new release)."""
        with self._lock:
            self._files = dict(files)

    @property
    def files(self) -> dict[str, ServedFile]:
        """A copy of the files served now."""
        with self._lock:
            return dict(self._files)

    def add_route(
        self, path: str, body: bytes, *, content_type: str = "application/json", status: int = 200
    ) -> None:
        """Answer ``path`` (any query string) with a fixed body."""
        self.routes[path] = Route(body, content_type, status)

    def file_requests(self) -> list[RequestRecord]:
        """The requests for files of the directory (not the listing, not other routes)."""
        return [
            r
            for r in self.requests
            if r.path.startswith(self.directory) and r.path != self.directory
        ]

    def start(self) -> OfflineServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="rq-offline-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OfflineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_turn(self) -> None:
        if self.delay:
            time.sleep(self.delay)
        if not self._interval:
            return
        with self._slot_lock:
            now = time.monotonic()
            start = max(now, self._next_slot)
            self._next_slot = start + self._interval
        if start > now:
            time.sleep(start - now)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fnmatch.fnmatchcase(path, fault.path):
                    fault.times -= 1
                    return fault
        return None

    def _directory_of(self, path: str) -> tuple[str, dict[str, ServedFile]] | None:
        """The served directory ``path`` falls in (its path and files), or ``None``."""
        if path.startswith(self.directory):
            return self.directory, self.files
        if path.startswith(self.root):
            name = path[len(self.root) :].split("/", 1)[0]
            if "/" in path[len(self.root) :]:
                with self._lock:
                    files = self._surveys.get(name)
                if files is not None:
                    return f"{self.root}{name}/", dict(files)
        return None

    def _root_listing(self) -> bytes:
        rows = []
        for name in self.survey_names():
            files = self.survey_files(name)
            listed = max((f.listed for f in files.values()), default=datetime(2020, 1, 1))
            hour = listed.hour % 12 or 12
            date = f"{listed.month}/{listed.day}/{listed.year}"
            clock = f"{hour}:{listed.minute:02d} {'PM' if listed.hour >= 12 else 'AM'}"
            rows.append(
                f"{date:>10} {clock:>8} {'&lt;dir&gt;':>12} "
                f'<A HREF="{self.root}{quote(name)}/">{name}</A><br>'
            )
        return self._page(self.root, rows)

    def _listing(
        self, directory: str | None = None, files: dict[str, ServedFile] | None = None
    ) -> bytes:
        directory = self.directory if directory is None else directory
        files = self.files if files is None else files
        rows = [_iis_row(f, directory) for f in sorted(files.values(), key=lambda f: f.name)]
        if directory == self.directory:
            for sub in self.subdirs:
                rows.append(
                    f"{'1/1/2020':>10} {'12:00 AM':>8} {'&lt;dir&gt;':>12} "
                    f'<A HREF="{self.directory}{quote(sub)}/">{sub}</A><br>'
                )
        return self._page(directory, rows)

    @staticmethod
    def _page(directory: str, rows: list[str]) -> bytes:
        host = "download.bls.gov"
        parent = directory.rstrip("/").rsplit("/", 1)[0] + "/"
        page = (
            f"<html><head><title>{host} - {directory}</title></head><body>"
            f"<H1>{host} - {directory}</H1><hr>\n\n<pre>"
            f'<A HREF="{parent}">[To Parent Directory]</A><br><br>'
            + "".join(rows)
            + "</pre><hr></body></html>"
        )
        return page.encode()


class Pacer:
    """A bandwidth shared by every connection: each write waits for its slot of ``rate`` bytes a
    second. Idle time earns no credit, so the rate holds over any stretch of sending.

    Args:
        rate: bytes a second (more than 0).
        clock: the time source (``time.monotonic``).
        sleep: how to wait (``time.sleep``).
    """

    # Writes are paced in pieces of this many bytes, so a large write goes out evenly.
    PIECE = 64 * 1024

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ConfigError(f"a pacer's rate must be more than 0 bytes a second, not {rate}")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, size: int) -> None:
        """Wait until ``size`` more bytes may go out, and book their time."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + size / self.rate
        if start > now:
            self._sleep(start - now)


class _PacedWriter:
    """A connection's output stream sent at most as fast as its server's :class:`Pacer` allows."""

    def __init__(self, raw: Any, pacer: Pacer) -> None:
        self._raw = raw
        self._pacer = pacer

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for start in range(0, len(view), Pacer.PIECE):
            piece = view[start : start + Pacer.PIECE]
            self._pacer.wait(len(piece))
            self._raw.write(piece)
        return len(view)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def close(self) -> None:
        self._raw.close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a refused body, a cut connection) is normal for a
        # test double: log it for -vv instead of printing a traceback on stderr.
        log.debug("offline server: error answering %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    owner: OfflineServer
    _started: float = 0.0
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    # Headers and body go out in two writes: with Nagle's algorithm a small body waits for the
    # client's delayed ACK, ~40 ms on Linux, a delay no real server adds to every answer.
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("offline server: " + format, *args)

    def setup(self) -> None:
        super().setup()
        if self.owner.pacer is not None:
            self.wfile = _PacedWriter(self.wfile, self.owner.pacer)  # type: ignore[assignment]

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _record(self, status: int) -> None:
        with self.owner._lock:
            self.owner.requests.append(
                RequestRecord(
                    self.command,
                    urlsplit(self.path).path,
                    status,
                    self.headers.get("User-Agent", ""),
                    {k.lower(): v for k, v in self.headers.items()},
                    self._started,
                )
            )

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        head: bool,
        content_type: str = "text/html",
        headers: dict[str, str] | None = None,
        fault: Fault | None = None,
    ) -> None:
        if fault is not None:
            body += b"x" * fault.extra
            content_type = fault.content_type or content_type
        chunked = fault is not None and fault.chunked
        self._record(status)
        if fault is not None and fault.header_drip is not None:
            self._drip_headers(status, fault.header_drip)
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        if fault is not None and fault.drip is not None:
            # A hostile server: one byte at a time, until the body is out or the client leaves.
            step = max(1, fault.piece)
            for index in range(0, len(body), step):
                self.wfile.write(self._frame(body[index : index + step], chunked))
                self.wfile.flush()
                time.sleep(fault.drip)
        else:
            self.wfile.write(self._frame(body, chunked))
            self._sent(len(body))
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _drip_headers(self, status: int, every: float) -> None:
        """A hostile server: headers that never end, one byte at a time."""
        self.close_connection = True
        line = f"HTTP/1.1 {status} OK\r\n".encode()
        header = b"X-Drip: " + b"x" * 64_000
        try:
            self.wfile.write(line)
            for index in range(len(header)):
                self.wfile.write(header[index : index + 1])
                self.wfile.flush()
                time.sleep(every)
        except OSError:
            return  # the client gave up: what the fault is for

    @staticmethod
    def _frame(data: bytes, chunked: bool) -> bytes:
        if not chunked or not data:
            return data
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    def _send_path(
        self,
        path: Path,
        *,
        head: bool,
        headers: dict[str, str],
        span: tuple[int, int] | None = None,
    ) -> None:
        with path.open("rb") as body:
            size = os.fstat(body.fileno()).st_size
            first, last = span if span is not None else (0, size - 1)
            status = 200 if span is None else 206
            self._record(status)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(last + 1 - first))
            if span is not None:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if head:
                return
            body.seek(first)
            left = last + 1 - first
            while left > 0 and (chunk := body.read(min(left, 1024 * 1024))):
                self.wfile.write(chunk)
                left -= len(chunk)
                self._sent(len(chunk))

    def _sent(self, count: int) -> None:
        with self.owner._lock:
            self.owner.bytes_sent += count

    def _range(self, size: int, validators: tuple[str, str]) -> tuple[int, int] | bool | None:
        """The one byte range asked for, as a real server reads ``Range`` and ``If-Range``.

        Returns:
            ``None``: send the whole file (no ``Range``, one this server does not serve, or an
            ``If-Range`` that does not match the file's ``Last-Modified`` or ``ETag`` exactly);
            ``(first, last)``: send those bytes (206); ``False``: nothing satisfiable (416).
        """
        asked = self.headers.get("Range")
        if not asked:
            return None
        condition = self.headers.get("If-Range")
        if condition is not None and condition.strip() not in validators:
            return None  # the file changed since: the whole new file, 200
        found = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", asked)
        if found is None or found.group(1) == found.group(2) == "":
            return None  # several ranges or another unit: ignored, as a server may
        first_text, last_text = found.groups()
        if first_text == "":  # the last N bytes
            first, last = max(0, size - int(last_text)), size - 1
        else:
            first = int(first_text)
            last = min(int(last_text), size - 1) if last_text else size - 1
        if first >= size or first > last:
            return False
        return first, last

    def _serve(self, *, head: bool) -> None:
        owner = self.owner
        owner._wait_turn()
        self._started = time.monotonic()
        path = unquote(urlsplit(self.path).path)
        fault = owner._take_fault(path)
        if fault is not None and fault.status is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.location:
                extra["Location"] = fault.location
            self._send(fault.status, fault.body or b"fault", head=head, headers=extra)
            return
        if path in owner.routes:
            route = owner.routes[path]
            self._send(
                route.status,
                route.body,
                head=head,
                content_type=route.content_type,
                fault=fault,
            )
            return
        if owner.require_contact and not _has_contact(self.headers.get("User-Agent", "")):
            # BLS answers 403 to clients whose User-Agent carries no contact information.
            self._send(403, b"<html><body><h1>Access Denied</h1></body></html>", head=head)
            return
        if path == owner.root:
            self._send(200, owner._root_listing(), head=head)
            return
        served = owner._directory_of(path)
        if served is None:
            self._send(
                404, b"<html><body>404 - File or directory not found.</body></html>", head=head
            )
            return
        directory, files = served
        if path == directory:
            self._send(200, owner._listing(directory, files), head=head)
            return
        file = files.get(path[len(directory) :])
        if file is None:
            self._send(
                404, b"<html><body>404 - File or directory not found.</body></html>", head=head
            )
            return
        modified = file.last_modified
        headers = {
            "Last-Modified": email.utils.format_datetime(modified, usegmt=True),
            # BLS sends an ETag but ignores If-None-Match: only If-Modified-Since gives a 304.
            "ETag": '"' + _etag(file) + '"',
            "Accept-Ranges": "bytes",
        }
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                when = email.utils.parsedate_to_datetime(since)
            except (TypeError, ValueError):
                when = None
            if when is not None and int(modified.timestamp()) <= int(when.timestamp()):
                self._record(304)
                self.send_response(304)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                return
        span = self._range(file.size, (headers["Last-Modified"], headers["ETag"]))
        if span is False:
            self._send(416, b"", head=head, headers={"Content-Range": f"bytes */{file.size}"})
            return
        if file.path is not None:
            whole = None if not isinstance(span, tuple) else span
            self._send_path(file.path, head=head, headers=headers, span=whole)
            return
        if isinstance(span, tuple):
            first, last = span
            ranged = {**headers, "Content-Range": f"bytes {first}-{last}/{file.size}"}
            self._send(
                206,
                file.data[first : last + 1],
                head=head,
                content_type="text/plain",
                headers=ranged,
                fault=fault,
            )
            return
        data = file.data
        if fault is not None and fault.truncate:
            data = data[: len(data) // 2]
        if fault is not None and fault.reset and not head:
            self._record(200)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(200, data, head=head, content_type="text/plain", headers=headers, fault=fault)


@contextmanager
def embedded_s3() -> Iterator[str]:
    """Run moto's S3 server in-process on 127.0.0.1; yield its endpoint URL.

    Raises:
        ConfigError: moto is not installed (``pip install 'rearcquest[demo]'``).
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ConfigError(
            "the embedded S3 endpoint needs moto: pip install 'rearcquest[demo]', "
            "or pass --endpoint-url of an S3-compatible server"
        ) from exc
    # werkzeug logs every request of the embedded server; they are noise for rq's users.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# -- DataUSA population API (issue 3) --

DATAUSA_TESSERACT_PATH = "/tesseract/data.jsonrecords"
DATAUSA_LEGACY_PATH = "/api/data"
# Real answers shipped with the package (tests/data/README.md says where they came from).
DATAUSA_FILES = {
    DATAUSA_TESSERACT_PATH: "tesseract-acs1-2013-2023-raw.json",
    DATAUSA_LEGACY_PATH: "old-api-acs5-2013-2023-indent2.json",
}


def bundled_datausa(name: str) -> bytes:
    """Return the bytes of a DataUSA answer shipped with the package.

    Raises:
        ConfigError: no such file ships with the package.
    """
    if name not in DATAUSA_FILES.values():
        raise ConfigError(f"no bundled DataUSA file {name!r}")
    return (resources.files("rearcquest") / "_data" / "datausa" / name).read_bytes()


def add_datausa_routes(server: OfflineServer) -> dict[str, str]:
    """Serve the bundled DataUSA answers, like the tesseract API and the old ``/api/data``.

    Returns:
        ``{"tesseract": url, "legacy": url}``: the server's URLs with the real query strings.
    """
    from rearcquest.config import DEFAULT_POPULATION_URL, LEGACY_POPULATION_URL

    for path, name in DATAUSA_FILES.items():
        server.add_route(path, bundled_datausa(name))
    tesseract_query = urlsplit(DEFAULT_POPULATION_URL).query
    legacy_query = urlsplit(LEGACY_POPULATION_URL).query
    return {
        "tesseract": f"{server.url}{DATAUSA_TESSERACT_PATH}?{tesseract_query}",
        "legacy": f"{server.url}{DATAUSA_LEGACY_PATH}?{legacy_query}",
    }
