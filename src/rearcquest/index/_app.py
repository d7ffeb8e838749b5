"""The Starlette application behind ``rq serve-index``.

One catch-all route maps the URL path onto the served prefix: a path ending with ``/`` lists that
folder (``?format=json`` for scripts), any other path downloads that object, streamed from S3
through a thread pool (boto3 bodies block) without holding it in memory. An ASGI guard in front
checks the ``Host`` header, the optional token, and adds the security headers to every answer.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterator
from datetime import UTC, datetime
from hashlib import sha256
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from rearcquest.config import DEFAULT_CACHE_SECONDS
from rearcquest.errors import StorageError
from rearcquest.index import _http
from rearcquest.index._render import (
    PAGE_CSP,
    Listing,
    View,
    build_listing,
    href_path,
    listing_document,
    render_page,
)
from rearcquest.layout import is_reserved, normalise_prefix

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from rearcquest.aws.storage import ListPage, ObjectStore, ObjectStream

log = logging.getLogger(__name__)

COOKIE_NAME = "rq_index_auth"
# Rows (folders and files) on one page of a folder: one ListObjectsV2 call, S3's largest page.
PAGE_SIZE = 1000
CHUNK_SIZE = 256 * 1024
# Pages smaller than this are sent as they are; larger ones gzipped when the client accepts it.
_GZIP_MIN = 2048
_MAX_LOGIN_BODY = 4096
# A downloaded object is never a page of this site: even if S3 says text/html, it runs nowhere.
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _error_page(status: int, title: str, detail: str, *, home: str = "/") -> HTMLResponse:
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {escape(title)}</title></head>
<body><h1>{status} {escape(title)}</h1><p>{escape(detail)}</p>
<p><a href="{escape(home, quote=True)}">Back to the index</a></p></body></html>
"""
    # Set here too: a 500 page is made outside the guard that adds them to everything else.
    headers = {
        "cache-control": "no-store",
        "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
    }
    return HTMLResponse(body, status_code=status, headers=headers)


def _error(request: Request, status: int, title: str, detail: str) -> Response:
    if request.query_params.get("format") == "json":
        return JSONResponse(
            {"error": title, "detail": detail, "status": status},
            status_code=status,
            headers={"cache-control": "no-store"},
        )
    return _error_page(status, title, detail, home=_base(request.scope) + "/")


def _storage_status(exc: StorageError) -> int:
    """404 when S3 said the object is gone (e.g. deleted since the HEAD), else 502."""
    return 404 if exc.code in ("NoSuchKey", "404", "NotFound") else 502


def _base(scope: Scope) -> str:
    return str(scope.get("root_path", "")).rstrip("/")


class _ObjectResponse(Response):
    """Stream an open S3 object body and always release its connection, even on disconnect."""

    def __init__(self, stream: ObjectStream, status_code: int, headers: dict[str, str]) -> None:
        self.stream = stream
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def body() -> None:
                    await self._send_body(send)
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    # A server may quietly drop what is sent after the client left; without this
                    # the rest of the object would still be read from S3 and thrown away.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(body)
                group.start_soon(watch)
        finally:
            self.stream.close()

    async def _send_body(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in iterate_in_threadpool(self._chunks()):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _chunks(self) -> Iterator[bytes]:
        try:
            yield from self.stream.chunks(CHUNK_SIZE)
        except Exception:
            # Headers are gone already: all that is left is to cut the transfer short, which a
            # client sees as an incomplete body (Content-Length is not met).
            log.warning("reading s3://%s failed mid-transfer", self.stream.info.key, exc_info=True)
            raise


# A folder's listing, ready to render, and whether S3 listed anything at all there (a folder
# holding only its marker object or the sync state is empty, but exists).
_Collected = tuple[Listing, bool]


class _ListingCache:
    """Recent listings by prefix, kept ``ttl`` seconds; concurrent misses for a prefix list once.

    Each page of a folder is one ``ListObjectsV2`` call: under load, or with a page reloaded
    while sorting, the cache keeps S3 from being asked the same thing many times a second.
    Entries are few (LRU) and short-lived, so a sync shows up within ``ttl`` seconds.
    """

    _STRIPES = 64

    def __init__(self, ttl: float, max_entries: int = 32) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, _Collected]] = OrderedDict()
        self._guard = threading.Lock()
        # Striped locks: one listing per prefix at a time, without a lock object per prefix ever
        # asked for (which a client could grow without bound).
        self._locks = [threading.Lock() for _ in range(self._STRIPES)]

    def get(self, prefix: str, load: Callable[[], _Collected]) -> _Collected:
        """Return the cached listing of ``prefix``, or ``load()`` it (once for many callers)."""
        if self.ttl <= 0:
            return load()
        with self._locks[hash(prefix) % self._STRIPES]:
            with self._guard:
                hit = self._entries.get(prefix)
                if hit is not None and time.monotonic() - hit[0] < self.ttl:
                    self._entries.move_to_end(prefix)
                    return hit[1]
            started = time.monotonic()
            value = load()
            with self._guard:
                self._entries[prefix] = (started, value)
                self._entries.move_to_end(prefix)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value


class _PageCache:
    """Rendered pages of cached listings, least recently used first out, within a byte budget.

    Rendering 1,000 rows takes about as long as listing them; a page asked for again while its
    listing is cached is sent as it was rendered.
    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, tuple[bytes, bool]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bytes, bool] | None:
        """The page stored under ``key``, if any."""
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: Hashable, page: tuple[bytes, bool]) -> None:
        """Store a page, dropping the least recently used ones beyond the budget."""
        if len(page[0]) > self.max_bytes:
            return
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self._size -= len(old[0])
            self._pages[key] = page
            self._size += len(page[0])
            while self._size > self.max_bytes:
                _, dropped = self._pages.popitem(last=False)
                self._size -= len(dropped[0])


class _Index:
    """The request handler: listings and downloads under one prefix of one bucket."""

    def __init__(self, store: ObjectStore, root: str, cache_seconds: float) -> None:
        self.store = store
        self.root = root
        self.cache = _ListingCache(cache_seconds)
        self.pages = _PageCache()

    def _href(self, base: str) -> Callable[[str], str | None]:
        root = self.root

        def href(path: str) -> str | None:
            return base + href_path(path) if _http.is_servable(root + path) else None

        return href

    async def handle(self, request: Request) -> Response:
        """Answer one request: a listing for a folder path, a download otherwise."""
        path = str(request.path_params.get("path", ""))
        try:
            key = _http.check_path(path, self.root)
        except _http.UnsafePath as exc:
            return _error(request, 404, "Not Found", f"This path is not served: {exc}.")
        if is_reserved(key):
            # rq's own objects (sync state, locks) are not part of the mirror: not listed, not
            # served, answered as if absent.
            return _error(request, 404, "Not Found", "There is no such object.")
        if key == self.root or key.endswith("/"):
            return await self._listing(request, path)
        return await self._download(request, key)

    def _collect(self, path: str, page: str) -> _Collected:
        # NUL cannot be in a key, so prefix and page token never run into each other.
        return self.cache.get(f"{self.root}{path}\0{page}", lambda: self._list(path, page))

    def _list(self, path: str, page: str) -> _Collected:
        """One page of the folder: one ``ListObjectsV2`` call, whatever the folder's size."""
        when = datetime.now(UTC)
        listed: ListPage = self.store.list_page(
            self.root + path, delimiter="/", token=page or None, max_keys=PAGE_SIZE
        )
        listing = build_listing(
            self.store.bucket,
            self.root,
            path,
            listed.objects,
            listed.prefixes,
            generated=when,
            page=page,
            next_page=listed.next_token,
        )
        return listing, bool(listed.objects or listed.prefixes)

    async def _listing(self, request: Request, path: str) -> Response:
        params = request.query_params
        view = View.from_query(
            params.get("sort"), params.get("order"), params.get("q"), params.get("page")
        )
        try:
            listing, exists = await run_in_threadpool(self._collect, path, view.page)
        except StorageError as exc:
            log.warning("listing failed: %s", exc)
            if view.page and exc.code == "InvalidArgument":
                # S3's answer to a continuation token it did not issue (or for another folder).
                return _error(
                    request,
                    400,
                    "Bad Request",
                    "This page link is not valid for this folder; start again from its first page.",
                )
            return _error(request, 502, "Bad Gateway", "The storage backend could not be listed.")
        if path and not exists and not view.page:
            return _error(request, 404, "Not Found", "There is no such folder.")
        base = _base(request.scope)
        as_json = params.get("format") == "json"
        zipped = "gzip" in request.headers.get("accept-encoding", "").lower()
        # The same listing (same `generated`) seen the same way renders to the same bytes.
        key = (self.root + path, listing.generated, view, base, as_json, zipped)
        page = self.pages.get(key)
        if page is None:
            page = await run_in_threadpool(self._render, listing, view, base, as_json, zipped)
            if self.cache.ttl > 0:
                self.pages.put(key, page)
        body, encoded = page
        headers = {"cache-control": "no-cache", "vary": "accept-encoding"}
        if encoded:
            headers["content-encoding"] = "gzip"
        media_type = "application/json" if as_json else "text/html; charset=utf-8"
        return Response(body, media_type=media_type, headers=headers)

    def _render(
        self, listing: Listing, view: View, base: str, as_json: bool, zipped: bool
    ) -> tuple[bytes, bool]:
        """The page (or JSON) for a listing, gzipped when asked and worth it: (body, gzipped)."""
        href = self._href(base)
        if as_json:
            doc = listing_document(listing, view, href=href)
            body = json.dumps(doc, ensure_ascii=False).encode()
        else:
            json_href = view.query(format="json")
            body = render_page(listing, view, href=href, mode="live", json_href=json_href).encode()
        if zipped and len(body) >= _GZIP_MIN:
            # Level 1: a tenth of the size already, at half the time of the default level.
            return gzip.compress(body, compresslevel=1, mtime=0), True
        return body, False

    async def _download(self, request: Request, key: str) -> Response:
        try:
            info = await run_in_threadpool(self.store.head, key)
        except StorageError as exc:
            log.warning("head failed: %s", exc)
            return _error(request, 502, "Bad Gateway", "The storage backend could not be read.")
        if info is None:
            return await self._missing(request, key)
        headers = {
            "etag": _http.entity_tag(info.etag),
            "accept-ranges": "bytes",
            "cache-control": "private, no-cache",
            "content-security-policy": DOWNLOAD_CSP,
        }
        if info.last_modified is not None:
            headers["last-modified"] = _http.http_date(info.last_modified)
        h = request.headers
        if _http.precondition_failed(
            h.get("if-match"), h.get("if-unmodified-since"), info.etag, info.last_modified
        ):
            return Response(status_code=412, headers=headers)
        if _http.not_modified(
            h.get("if-none-match"), h.get("if-modified-since"), info.etag, info.last_modified
        ):
            return Response(status_code=304, headers=headers)
        headers["content-type"] = _http.content_type(key, info.content_type)
        headers["content-disposition"] = _http.content_disposition(key)
        byte_range: _http.ByteRange | None = None
        if _http.if_range_allows(h.get("if-range"), info.etag, info.last_modified):
            try:
                byte_range = _http.parse_range(h.get("range"), info.size)
            except _http.RangeNotSatisfiable:
                headers.pop("content-type")
                headers.pop("content-disposition")
                headers["content-range"] = f"bytes */{info.size}"
                headers["content-length"] = "0"
                return Response(status_code=416, headers=headers)
        status = 200
        headers["content-length"] = str(info.size)
        if byte_range is not None:
            status = 206
            headers["content-range"] = byte_range.content_range
            headers["content-length"] = str(byte_range.length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        wanted = (byte_range.start, byte_range.end) if byte_range is not None else None
        try:
            stream = await run_in_threadpool(self.store.open, key, byte_range=wanted)
        except StorageError as exc:
            status = _storage_status(exc)
            log.warning("get failed: %s", exc)
            if status == 404:
                return _error(request, 404, "Not Found", "There is no such object.")
            return _error(request, 502, "Bad Gateway", "The storage backend could not be read.")
        if stream.info.etag != info.etag:
            # Replaced between HEAD and GET: its headers would describe other bytes.
            stream.close()
            response = _error(request, 503, "Changed", "The object changed; try again.")
            response.headers["retry-after"] = "1"
            return response
        return _ObjectResponse(stream, status, headers)

    async def _missing(self, request: Request, key: str) -> Response:
        """404, unless the path is a folder named without its trailing slash: redirect there."""
        if is_reserved(key + "/"):
            return _error(request, 404, "Not Found", "There is no such object.")
        try:
            page = await run_in_threadpool(self.store.list_page, key + "/", max_keys=1)
        except StorageError:
            page = None
        if page is not None and (page.objects or page.prefixes):
            # Relative, and the name fully encoded, so the target can only be on this server.
            location = "./" + quote(key.rsplit("/", 1)[-1], safe="") + "/"
            if request.url.query:
                location += "?" + request.url.query
            return RedirectResponse(location, status_code=302)
        return _error(request, 404, "Not Found", "There is no such object.")


def _cookie_value(token: str) -> str:
    # The cookie is a MAC of the token, not the token itself.
    return hmac.new(token.encode(), b"rearcquest serve-index cookie", sha256).hexdigest()


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _self_location(scope: Scope, query: list[tuple[str, str]]) -> str:
    """A same-origin URL for the current path (never ``//host``), with ``query``."""
    path = str(scope.get("path", "/"))
    base = _base(scope)
    rel = path[len(base) :] if base and path.startswith(base) else path
    location = base + href_path(rel.removeprefix("/"))
    if query:
        location += "?" + urlencode(query)
    return location


class _Throttle:
    """Failed token attempts per client address, and how long to hold back the next answer.

    The first :attr:`FREE` failures are answered at once (typos happen); each further one waits
    twice as long as the one before, from 1 s up to :attr:`CAP` s. The wait is a sleep of that
    request only, so other clients are not slowed. A success, or :attr:`FORGET` seconds without a
    failure, clears a client; at most :attr:`MAX_CLIENTS` are remembered (the oldest go first).
    """

    FREE = 5
    FIRST_DELAY = 1.0
    CAP = 10.0
    FORGET = 15 * 60.0
    MAX_CLIENTS = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # client -> (failures, time of the last failure)
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, client: str) -> float:
        """Count a failure of ``client``; return the seconds to wait before answering it."""
        now = self.clock()
        count, last = self._failures.pop(client, (0, now))
        count = 1 if now - last > self.FORGET else count + 1
        self._failures[client] = (count, now)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)
        if count <= self.FREE:
            return 0.0
        delay: float = self.FIRST_DELAY * 2.0 ** min(count - self.FREE - 1, 16)
        return min(self.CAP, delay)

    def succeeded(self, client: str) -> None:
        """Forget the failures of ``client``."""
        self._failures.pop(client, None)

    def failures(self, client: str) -> int:
        """How many failures of ``client`` are remembered."""
        return self._failures.get(client, (0, 0.0))[0]


# The sleep of a throttled answer; tests replace it to see the delays without waiting.
_sleep: Callable[[float], Awaitable[None]] = anyio.sleep


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class _Guard:
    """Host check, token check and security headers around the whole application."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, allowed_hosts: Collection[str] | None
    ) -> None:
        self.app = app
        self.token = token or None
        self.cookie = _cookie_value(token) if token else ""
        self.allowed_hosts = (
            frozenset(h.lower() for h in allowed_hosts) if allowed_hosts is not None else None
        )
        self.throttle = _Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope)
        request = Request(scope, receive)
        if self.allowed_hosts is not None:
            host = _host_name(request.headers.get("host", ""))
            if host not in self.allowed_hosts:
                # A page on another site can point a DNS name at 127.0.0.1 (DNS rebinding);
                # answering only to the names of this host keeps such pages out.
                await _error_page(400, "Bad Request", "Unknown Host header.")(scope, receive, send)
                return
        verdict = None if self.token is None else self._authorised(request)
        if self.token is None or verdict:
            if verdict:
                self.throttle.succeeded(_client(scope))
            if request.method == "POST":
                response: Response = Response(status_code=405, headers={"allow": "GET, HEAD"})
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self._login(request, scope, receive, send, wrong_bearer=verdict is False)

    def _authorised(self, request: Request) -> bool | None:
        """True: a valid bearer token or cookie; False: a wrong bearer token; None: neither."""
        assert self.token is not None
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        bearer = scheme.lower() == "bearer"
        if bearer and hmac.compare_digest(value.strip().encode(), self.token.encode()):
            return True
        # A wrong cookie is not counted as a guess: it is a 256-bit MAC, no shorter to guess than
        # the token, and a browser keeps sending the stale one of a server started with another
        # token.
        cookie = request.cookies.get(COOKIE_NAME, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.cookie.encode()):
            return True
        return False if bearer else None

    def _valid(self, candidate: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    async def _login(
        self, request: Request, scope: Scope, receive: Receive, send: Send, *, wrong_bearer: bool
    ) -> None:
        """Accept the token from a form POST or a ``?token=`` link, set the cookie, redirect.

        A wrong token (link, form or bearer header) counts against the client; past the free
        failures the answer waits (:class:`_Throttle`).
        """
        query = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)]
        offered: str | None = None
        if request.method == "POST":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > _MAX_LOGIN_BODY:
                    break
            form = dict(parse_qsl(body[:_MAX_LOGIN_BODY].decode("utf-8", "replace")))
            offered = form.get("token", "")
        elif request.method in ("GET", "HEAD"):
            offered = next((v for k, v in query if k == "token"), None)
        client = _client(scope)
        if offered is not None and self._valid(offered):
            self.throttle.succeeded(client)
            location = _self_location(scope, [(k, v) for k, v in query if k != "token"])
            response: Response = RedirectResponse(location, status_code=303)
            response.set_cookie(
                COOKIE_NAME,
                self.cookie,
                path=_base(scope) + "/",
                httponly=True,
                samesite="lax",
                secure=scope.get("scheme") == "https",
            )
            response.headers["cache-control"] = "no-store"
        else:
            wrong = offered is not None or wrong_bearer
            if wrong:
                delay = self.throttle.failed(client)
                if delay:
                    log.warning(
                        "wrong token from %s (%d failures): answering in %g s",
                        client,
                        self.throttle.failures(client),
                        delay,
                    )
                    await _sleep(delay)
            response = _login_page(wrong=wrong)
        await response(scope, receive, send)


def _login_page(*, wrong: bool) -> Response:
    message = "That token is not right." if wrong else "This index needs a token."
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>401 Token required</title></head>
<body><h1>401 Token required</h1><p>{message}</p>
<form method="post"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open</button></form>
<p>Scripts: send <code>Authorization: Bearer &lt;token&gt;</code>.</p></body></html>
"""
    return HTMLResponse(
        body,
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="rq serve-index"', "cache-control": "no-store"},
    )


def _with_security_headers(send: Send, scope: Scope) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            # The raw path is percent-encoded ASCII: a hostile key cannot forge log lines.
            raw = bytes(scope.get("raw_path") or b"").decode("ascii", "replace")
            log.info("%s %s %s", scope.get("method"), raw, message.get("status"))
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            for name, value in _SECURITY_HEADERS:
                if name not in present:
                    headers.append((name, value))
            if b"content-security-policy" not in present:
                headers.append((b"content-security-policy", PAGE_CSP.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error_page(500, "Internal Server Error", "Something went wrong; see the server log.")


def create_app(
    store: ObjectStore,
    *,
    prefix: str = "",
    token: str | None = None,
    allowed_hosts: Collection[str] | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
) -> Starlette:
    """Build the ASGI application that serves ``prefix`` of ``store``'s bucket.

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        token: when set, every request needs it (``Authorization: Bearer``, or the cookie that a
            ``?token=`` link or the login form sets).
        allowed_hosts: accept only these ``Host`` names (without port); ``None`` accepts any.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).

    Returns:
        The Starlette application.

    Raises:
        ConfigError: the prefix or the token is invalid (a token has at least 16 characters).
    """
    root = normalise_prefix(prefix)
    token = _http.check_token(token)
    index = _Index(store, root, cache_seconds)
    return Starlette(
        routes=[Route("/{path:path}", index.handle, methods=["GET", "HEAD", "POST"])],
        middleware=[Middleware(_Guard, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={Exception: _server_error},
    )
