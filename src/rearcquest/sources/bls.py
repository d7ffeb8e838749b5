"""BLS time-series directories: parse the listing page, download files with change detection.

The listing is the server's own directory page. ``download.bls.gov`` is IIS and writes one line
per file (``  8/6/2026  8:30 AM   102 <A HREF="/pub/time.series/pr/pr.class">pr.class</A><br>``);
Apache and nginx autoindex pages are understood too, so a mirror of a BLS directory works as well.
"""

from __future__ import annotations

import hashlib
import html
import logging
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from rearcquest.errors import DataError, ListingError, SourceChangedError
from rearcquest.layout import plain_name, shown_name

if TYPE_CHECKING:
    import httpx

    from rearcquest.sources._http import HttpClient

log = logging.getLogger(__name__)

MAX_LISTING_BYTES = 8 * 1024 * 1024
_CHUNK = 256 * 1024
# Chunks waiting for the hashing thread: at most this many (4 MiB) per download.
_HASH_QUEUE = 16
# A body is hashed on the reading thread up to this many bytes (one S3 part); only a larger one
# gets a hashing thread. Starting a thread waits for it to run: ~25 ms per file under load, more
# than hashing a small file takes.
_INLINE_HASH = 8 * 1024 * 1024

_ANCHOR = re.compile(
    r"""<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>(.*?)</a\s*>""",
    re.IGNORECASE | re.DOTALL,
)
# Row separators of the listing formats: IIS uses <br>, nginx newlines, Apache table rows.
_ROW_SPLIT = re.compile(r"<br\s*/?>|</?tr\b[^>]*>|</li\s*>|\n", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DATE_IIS = re.compile(
    r"\b(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::\d{2})?\s*([AP]M)\b", re.IGNORECASE
)
_DATE_NGINX = re.compile(r"\b(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d{1,2}):(\d{2})(?::\d{2})?")
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::\d{2})?")
_SIZE_EXACT = re.compile(r"^\d+$")
_SIZE_HUMAN = re.compile(r"^\d+(?:\.\d+)?[KMGTP]i?B?$", re.IGNORECASE)
_END_MARKERS = ("</pre", "</table", "</body", "</html", "</ul")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote directory listing.

    Attributes:
        name: the file name (decoded), never containing ``/``.
        url: the absolute URL to download it.
        size: its size in bytes, or ``None`` when the listing gives none (or a rounded one).
        modified: the listing's date, normalised to ``YYYY-MM-DD HH:MM`` in the server's local
            time, or ``None``. It is compared as text, never converted to another zone.
    """

    name: str
    url: str
    size: int | None
    modified: str | None


class BodySink(Protocol):
    """Where a download's body goes, chunk by chunk (an S3 object writer, a buffer)."""

    def write(self, data: bytes, /) -> None:
        """Take the next chunk."""

    def abort(self) -> None:
        """Drop everything written: the attempt failed. Never raises."""


SinkT = TypeVar("SinkT", bound=BodySink)


@dataclass(frozen=True)
class Download:
    """The outcome of a download that returned a body.

    Attributes:
        size: the whole file's size (``start`` included).
        sha256: the whole body's sha256; ``None`` when only the rest was fetched (``start``
            above 0): the hash never saw the first bytes.
        start: where the body began: 0, or the offset a resumed download asked for.
    """

    size: int
    sha256: str | None
    last_modified: str | None
    content_type: str | None
    start: int = 0


class TransferStopped(Exception):
    """Raised by a download's ``on_bytes`` to stop it on purpose (a time budget, Ctrl-C).

    :func:`download` lets it through without aborting the sink: the caller keeps what the sink
    holds (a multipart upload's finished parts) to resume later.
    """


@dataclass(frozen=True)
class Resume(Generic[SinkT]):
    """Ask only for the rest of a file whose first ``offset`` bytes are already kept.

    Attributes:
        offset: the first byte wanted (``Range: bytes=<offset>-``).
        if_range: the ``Last-Modified`` the kept bytes came with, sent as ``If-Range``: a
            server whose file changed since then answers 200 with the whole new file.
        open: opens the sink that continues from ``offset`` (called on a 206 only).
    """

    offset: int
    if_range: str
    open: Callable[[], SinkT]


def _norm_date(text: str) -> tuple[str | None, str]:
    """Find a listing date in ``text``; return it normalised and the text without it."""
    if m := _DATE_IIS.search(text):
        month, day, year, hour, minute, ampm = m.groups()
        h = int(hour) % 12 + (12 if ampm.upper() == "PM" else 0)
        return f"{year}-{int(month):02d}-{int(day):02d} {h:02d}:{minute}", text[: m.start()] + text[
            m.end() :
        ]
    if (m := _DATE_NGINX.search(text)) and m.group(2).lower() in _MONTHS:
        day, mon, year, hour, minute = m.groups()
        month = _MONTHS[mon.lower()]
        return f"{year}-{month:02d}-{int(day):02d} {int(hour):02d}:{minute}", text[
            : m.start()
        ] + text[m.end() :]
    if m := _DATE_ISO.search(text):
        year, month, day, hour, minute = m.groups()
        return f"{year}-{month}-{day} {int(hour):02d}:{minute}", text[: m.start()] + text[m.end() :]
    return None, text


def _parse_size(text: str) -> tuple[int | None, bool]:
    """Return ``(size, is_dir)`` from the text of a row other than its link and date."""
    tokens = html.unescape(text).split()
    if "<dir>" in (t.lower() for t in tokens):
        return None, True
    for token in tokens:
        if _SIZE_EXACT.match(token):
            return int(token), False
        if _SIZE_HUMAN.match(token):
            return None, False  # rounded: not good enough to detect a change
    return None, False


@dataclass(frozen=True)
class _Row:
    """One link row of a directory page, inside the directory and on its host."""

    path: str  # the link's URL path
    url: str  # the link as an absolute URL (no query or fragment)
    name: str  # the path below the directory, decoded (a directory's may end with "/")
    modified: str | None
    size: int | None
    is_dir: bool  # "<dir>" in the size column (IIS) or a link ending with "/"


def _rows(page: str, base_url: str) -> tuple[str, list[_Row]]:
    """The rows of a directory page that link inside ``base_url``; also ``base_url`` with ``/``.

    The parent link, links to other hosts, links with a query string or fragment (Apache's sort
    links) and links that leave the directory are left out.

    Raises:
        ListingError: the page is not a directory listing or looks cut short.
    """
    if not base_url.endswith("/"):
        base_url += "/"
    base = urlsplit(base_url)
    lowered = page.lower()
    if "<a" not in lowered:
        raise ListingError(f"{base_url}: the page is not a directory listing (no links in it)")
    if not any(marker in lowered for marker in _END_MARKERS):
        raise ListingError(f"{base_url}: the directory listing looks cut short")
    rows: list[_Row] = []
    for row in _ROW_SPLIT.split(page):
        anchors = list(_ANCHOR.finditer(row))
        if len(anchors) != 1:
            continue
        anchor = anchors[0]
        href = html.unescape(next(g for g in anchor.groups()[:3] if g is not None)).strip()
        target = _resolve(base, base_url, href)
        if target is None or target.query or target.fragment or "?" in href:
            continue
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            continue
        if not target.path.startswith(base.path):
            continue
        outside = row[: anchor.start()] + " " + row[anchor.end() :]
        # IIS escapes it (&lt;dir&gt;), but a copied page may carry a bare <dir> "tag".
        bare_dir = "<dir>" in outside.lower()
        modified, rest = _norm_date(html.unescape(_TAG.sub(" ", outside)))
        size, is_dir = _parse_size(rest)
        rows.append(
            _Row(
                path=target.path,
                url=f"{target.scheme}://{target.netloc}{target.path}",
                name=unquote(target.path[len(base.path) :]),
                modified=modified,
                size=size,
                is_dir=is_dir or bare_dir or target.path.endswith("/"),
            )
        )
    return base_url, rows


# What urljoin/urlsplit would rewrite in a link: dot segments, empty segments, and the
# characters urlsplit strips (tab, CR, LF); a backslash is left to them too.
_SLOW_HREF = ("/.", "//", ";", "\\", "\t", "\r", "\n")


def _resolve(base: SplitResult, base_url: str, href: str) -> SplitResult | None:
    """``urlsplit(urljoin(base_url, href))``, with a fast path for IIS's absolute paths; ``None``
    for a link that is no URL at all (``//[x``: urlsplit refuses it).

    BLS's pages link every file as ``/pub/time.series/pr/pr.class``: such a path resolves to
    itself on the base's host when it has nothing ``urljoin`` would rewrite (a dot segment, an
    empty segment or ``//`` authority, characters ``urlsplit`` removes). Anything else goes
    through ``urljoin``; tests compare the two on hostile links.
    """
    if href.startswith("/") and not any(c in href for c in _SLOW_HREF):
        path, _, fragment = href.partition("#")
        path, _, query = path.partition("?")
        return SplitResult(base.scheme, base.netloc, path, query, fragment)
    try:
        return urlsplit(urljoin(base_url, href))
    except ValueError:  # "Invalid IPv6 URL", a bad port: not a link to anything here
        return None


def parse_listing(page: str, base_url: str) -> list[RemoteFile]:
    """Parse a directory page into the files directly inside ``base_url``.

    The parent link, sub-directories, links to other hosts, links with a query string or fragment,
    and links that leave the directory are ignored. File names are never assumed.

    Args:
        page: the HTML of the directory page.
        base_url: the directory URL the page was served for (ends with ``/``).

    Returns:
        The files, sorted by name.

    Raises:
        ListingError: the page is not a directory listing, looks cut short or lists no file.
    """
    base_url, rows = _rows(page, base_url)
    files: dict[str, RemoteFile] = {}
    for row in rows:
        if row.is_dir or not plain_name(row.name):
            continue
        files[row.name] = RemoteFile(
            name=row.name, url=row.url, size=row.size, modified=row.modified
        )
    if not files:
        raise ListingError(f"{base_url}: the directory listing names no file")
    return sorted(files.values(), key=lambda f: f.name)


@dataclass(frozen=True)
class RemoteDir:
    """One sub-directory of a remote directory listing (a BLS survey of ``time.series/``).

    Attributes:
        name: the directory name (decoded), without slashes.
        url: its absolute URL, ending with ``/``.
        modified: the listing's date (``YYYY-MM-DD HH:MM``), or ``None``.
    """

    name: str
    url: str
    modified: str | None


def parse_subdirectories(page: str, base_url: str) -> list[RemoteDir]:
    """Parse a directory page into the directories directly inside ``base_url``.

    IIS (``download.bls.gov``) marks them with ``<dir>`` in the size column; Apache and nginx
    with a link ending in ``/``. The parent link, links to other hosts or with a query string
    (Apache's sort links) and links that leave the directory are ignored.

    Args:
        page: the HTML of the directory page.
        base_url: the directory URL the page was served for.

    Returns:
        The directories, sorted by name.

    Raises:
        ListingError: the page is not a directory listing, looks cut short or lists no directory.
    """
    base_url, rows = _rows(page, base_url)
    dirs: dict[str, RemoteDir] = {}
    for row in rows:
        name = row.name.rstrip("/")
        if not row.is_dir or not plain_name(name):
            continue
        url = urljoin(base_url, row.path.rstrip("/") + "/")
        dirs[name] = RemoteDir(name=name, url=url, modified=row.modified)
    if not dirs:
        raise ListingError(f"{base_url}: the directory listing names no directory")
    return sorted(dirs.values(), key=lambda d: d.name)


def _fetch_page(http: HttpClient, url: str) -> tuple[str, str]:
    """GET a directory page (size-capped); return its text and its URL ending with ``/``."""
    if not url.endswith("/"):
        url += "/"
    body = http.get_bytes(url, max_bytes=MAX_LISTING_BYTES)
    return body.decode("utf-8", errors="replace"), url


def fetch_subdirectories(http: HttpClient, url: str) -> list[RemoteDir]:
    """Fetch the directory page at ``url`` and return its sub-directories.

    Raises:
        SourceError: the server is unreachable or answered with an error.
        ListingError: the page could not be parsed or names no directory.
    """
    return parse_subdirectories(*_fetch_page(http, url))


def fetch_listing(http: HttpClient, url: str) -> list[RemoteFile]:
    """Fetch and parse the directory page at ``url``.

    Raises:
        SourceError: the server is unreachable or answered with an error.
        ListingError: the page could not be parsed or names no file.
    """
    return parse_listing(*_fetch_page(http, url))


class _Sha256:
    """The sha256 of a body, computed on a thread of its own as the chunks arrive (past one part).

    hashlib lets go of the GIL while it hashes, so one chunk is hashed on another core while the
    next is read and sent on: inline, hashing was half the work of the reading thread (a CPU
    without SHA extensions hashes ~200 MB/s, slower than the network).
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._inline = 0
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_HASH_QUEUE)
        self._thread: threading.Thread | None = None
        self._closed = False

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash ``chunk`` next (waits when the hashing thread is behind)."""
        if self._thread is None:
            if self._inline < _INLINE_HASH:
                self._inline += len(chunk)
                self._digest.update(chunk)
                return
            self._thread = threading.Thread(target=self._run, name="rq-sha256", daemon=True)
            self._thread.start()
        self._chunks.put(chunk)

    def close(self) -> None:
        """Wait for the chunks already given; stop the thread, if one started. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                self._chunks.put(None)
                self._thread.join()

    def hexdigest(self) -> str:
        """The digest of every chunk given."""
        self.close()
        return self._digest.hexdigest()


_CONTENT_RANGE = re.compile(r"^bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$")


class _WrongRange(DataError):
    """A 206 of other bytes than the rest asked for."""


def _rest_starts_at(response: httpx.Response, file: RemoteFile, offset: int) -> None:
    """Check a 206 answer's ``Content-Range``: the rest of ``file`` from ``offset`` to its end.

    Raises:
        SourceChangedError: the file's total is not the listed size.
        DataError: the range is not the one asked for.
    """
    found = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if found is None:
        raise _WrongRange(
            f"{file.name}: answered 206 without a usable Content-Range "
            f"({shown_name(response.headers.get('Content-Range'))})"
        )
    first, last, total = (int(g) for g in found.groups())
    if file.size is not None and total != file.size:
        raise SourceChangedError(
            f"{file.name}: the server gives {total} bytes but the listing says {file.size}; "
            "the file may be changing on the server, try again later"
        )
    if first != offset or last != total - 1:
        raise _WrongRange(
            f"{file.name}: asked for bytes {offset}- of {total}, the server sent {first}-{last}"
        )


def download(
    http: HttpClient,
    file: RemoteFile,
    open_sink: Callable[[str | None], SinkT],
    *,
    if_modified_since: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
    resume: Resume[SinkT] | None = None,
) -> tuple[Download, SinkT] | None:
    """Stream ``file``'s body into a sink, hashing and checking it on the way; no temporary file.

    Each attempt opens a new sink once the answer's status is known, with its ``Last-Modified``
    (so an object writer can carry it as metadata from the start); an attempt that fails aborts
    its sink before the next one starts, so a retried body is never written twice.

    With ``resume``, the first attempt asks only for the rest (``Range`` and ``If-Range``): a
    206 goes into ``resume.open()``'s sink, unhashed; a 200 (the file changed, or the server
    ignores ranges) into ``open_sink``'s, as without ``resume``. Once a ranged attempt failed
    (its sink aborted), the retries ask for the whole file.

    Args:
        http: the client.
        file: the listed file; its ``size``, when known, must match the body.
        open_sink: called with the answer's ``Last-Modified`` (or ``None``); returns the sink.
        if_modified_since: an HTTP date; the server may answer 304.
        on_bytes: called with each chunk's length, for progress; it may raise
            :class:`TransferStopped` to stop (the sink is then left as it is, for the caller).
        resume: ask for the rest of the file only.

    Returns:
        The download's size, sha256 and ``Last-Modified``, and the sink holding the whole body
        (the caller completes or aborts it), or ``None`` for 304 Not Modified (no sink opened).

    Raises:
        SourceError: the server failed after retries, answered an error, redirected outside
            its origin or sent the body too slowly.
        DataError: the body's length differs from ``Content-Length``, or a 206 answers a
            request for the whole file (a 206 of another range than the rest asked for is not
            written: the whole file is asked for at once).
        SourceChangedError: the body's length differs from the listed size (with or without a
            ``Content-Length``; a longer body is cut off as soon as it exceeds the listed size):
            the file changed since it was listed.
        TransferStopped: ``on_bytes`` stopped it; the sink was not aborted.
        Exception: whatever the sink raised; the sink has been aborted.
    """
    headers = {"Accept-Encoding": "identity"}
    if if_modified_since:
        headers["If-Modified-Since"] = if_modified_since
    ranged = resume is not None and resume.offset > 0

    def attempt() -> tuple[Download, SinkT] | None:
        nonlocal ranged
        try:
            return one()
        except _WrongRange as exc:
            # Not the bytes asked for: nothing of it was written. Ask for the whole file now,
            # so a server that gets ranges wrong costs one request, never the file.
            log.warning("%s; fetching the whole file", exc)
            ranged = False
            return one()

    def one() -> tuple[Download, SinkT] | None:
        nonlocal ranged
        sent = dict(headers)
        if ranged and resume is not None:
            sent["Range"] = f"bytes={resume.offset}-"
            sent["If-Range"] = resume.if_range
        with http.stream(file.url, headers=sent) as response:
            if response.status_code == 304:
                return None
            http.check_status(response, file.url)
            last_modified = response.headers.get("Last-Modified")
            start = 0
            if response.status_code == 206:
                if not ranged or resume is None:
                    raise DataError(f"{file.name}: answered 206 to a request for the whole file")
                _rest_starts_at(response, file, resume.offset)
                start = resume.offset
                sink = resume.open()
            else:
                sink = open_sink(last_modified)
            digest = _Sha256()
            try:
                size = start
                for chunk in http.iter_body(response, file.url, raw=True, chunk_size=_CHUNK):
                    size += len(chunk)
                    if file.size is not None and size > file.size:
                        # Stop at once: a body longer than listed (chunked, no Content-Length)
                        # could otherwise go on for ever, and into S3.
                        raise SourceChangedError(
                            f"{file.name}: the server sent more than the {file.size} bytes the "
                            "listing says; the file may be changing on the server, try again later"
                        )
                    if not start:
                        digest.update(chunk)
                    sink.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) != size - start:
                    raise DataError(
                        f"{file.name}: received {size - start} bytes but Content-Length said "
                        f"{length}"
                    )
                if file.size is not None and file.size != size:
                    raise SourceChangedError(
                        f"{file.name}: received {size} bytes but the listing says {file.size}; "
                        "the file may be changing on the server, try again later"
                    )
            except TransferStopped:
                digest.close()
                raise
            except BaseException:
                digest.close()
                sink.abort()
                if start:
                    ranged = False  # the kept parts went with the sink: start over
                raise
            got = Download(
                size=size,
                sha256=None if start else digest.hexdigest(),
                last_modified=last_modified,
                content_type=response.headers.get("Content-Type"),
                start=start,
            )
            return got, sink

    return http.call(file.url, attempt)
