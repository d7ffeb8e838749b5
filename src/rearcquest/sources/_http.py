"""One polite HTTP client for every source: User-Agent, rate limit, retries with backoff.

Retries cover connection errors, timeouts, bodies cut short, 429 and 5xx, with exponential backoff
and full jitter, honouring ``Retry-After``; a bounded number of attempts. Every other answer is
final. The wrapped ``httpx.Client`` can be injected (``transport=``) for tests.

A hostile or broken source cannot hang a run or smuggle data in: redirects are followed only
within the scheme, host and port of the URL asked for (at most :data:`MAX_REDIRECTS` hops), a read
that waits ``timeout`` seconds for a byte fails, the status line and headers must arrive within
``header_timeout`` seconds of the request, and a body must keep an average of ``min_rate`` bytes a
second once ``grace`` seconds have passed: a server that drips one byte a second fails after about
``header_timeout`` or ``grace`` seconds instead of never.
"""

from __future__ import annotations

import copy
import email.utils
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urljoin, urlsplit

from rearcquest._version import __version__
from rearcquest.config import RetryPolicy
from rearcquest.errors import RqError, SourceError, SourceForbiddenError

if TYPE_CHECKING:
    import ssl

    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")

# The most redirects followed for one request; real sources redirect once, if at all.
MAX_REDIRECTS = 5
# The slowest average a body may arrive at once the grace period is over (bytes per second), and
# that grace period (seconds): a 1 GB file may take 60 s + 20,000 s, a drip fails after ~60 s.
MIN_RATE = 50_000.0
RATE_GRACE = 60.0
# Seconds from sending a request to the end of its answer's headers (a few kB at most): past it,
# the answer fails. Without it a server dripping header bytes just under ``timeout`` apart could
# hold a request for days before h11's 64 kB header limit stopped it.
HEADER_TIMEOUT = 60.0


class RateLimiter:
    """Space requests at least ``1/rps`` seconds apart, across threads; ``rps <= 0`` is no limit."""

    def __init__(
        self,
        rps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until the next request may go."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class Retry(Exception):
    """Raised inside an attempt to ask for another one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def parse_http_date(value: str | None) -> datetime | None:
    """Read an HTTP date (``Last-Modified``, ``Retry-After``), aware and in UTC; ``None`` when it
    is no date. HTTP dates are GMT: one without a zone (``-0000``) is read as GMT too."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_retry_after(value: str | None) -> float | None:
    """Read a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    return None if when is None else max(0.0, when.timestamp() - time.time())


def _import_httpx_without_cli() -> None:
    """Import httpx, leaving out its command line.

    ``import httpx`` also imports ``httpx._main``, its command line, and with it click, rich and
    pygments whenever they are installed (typer brings them): a sixth of a second of start-up in
    every ``rq`` run, for code rq never calls. A ``None`` in ``sys.modules`` makes that one import
    fail, which httpx expects and answers with a stub; the entry is removed again afterwards.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx  # noqa: F401
    finally:
        if sys.modules.get("httpx._main", ...) is None:
            del sys.modules["httpx._main"]


def default_user_agent() -> str:
    """A User-Agent without contact details, for sources that do not ask for one."""
    return f"rearcquest/{__version__}"


class HttpClient:
    """A rate-limited, retrying HTTP client for one source.

    Args:
        user_agent: the User-Agent header for every request.
        max_rps: the highest request rate; ``0`` for no limit.
        retry: the retry policy.
        timeout: seconds to wait for a connection or for the next byte (a stalled body fails
            after this long without progress, and is retried).
        max_connections: connections kept open at once.
        transport: an ``httpx`` transport, for tests.
        sleep: the sleep function, for tests.
        min_rate: the slowest average rate a body may arrive at, in bytes per second, once
            ``grace`` has passed; default :data:`MIN_RATE`. A slower body fails, not retried.
        grace: seconds a body may take before ``min_rate`` applies; default :data:`RATE_GRACE`.
        max_redirects: redirects followed (same origin only); default :data:`MAX_REDIRECTS`.
        header_timeout: seconds an answer's status line and headers may take once the request is
            sent; default :data:`HEADER_TIMEOUT`. A slower answer fails, not retried.
    """

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        max_rps: float = 0.0,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_connections: int = 8,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        min_rate: float | None = None,
        grace: float | None = None,
        max_redirects: int | None = None,
        header_timeout: float | None = None,
    ) -> None:
        _import_httpx_without_cli()
        import httpx

        # The module defaults are read now, not at import, so a test can shrink them for a run.
        self.min_rate = MIN_RATE if min_rate is None else min_rate
        self.grace = RATE_GRACE if grace is None else grace
        self.max_redirects = MAX_REDIRECTS if max_redirects is None else max_redirects
        self.header_timeout = HEADER_TIMEOUT if header_timeout is None else header_timeout
        self.user_agent = user_agent or default_user_agent()
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(max_rps, sleep=sleep)
        self._sleep = sleep
        self.requests = 0
        self._count_lock = threading.Lock()
        self._parent: HttpClient | None = None
        limits = httpx.Limits(max_connections=max_connections)
        mounts: dict[str, httpx.BaseTransport] | None = None
        if transport is None and not _proxies_in_environment():
            # httpx's own transports, except that the TLS one (its context reads ~150 root
            # certificates, ~40 ms at every start) is made at the first https request; a plain
            # http source (rq demo, the tests, the benchmarks) never makes it. With a proxy in
            # the environment httpx builds everything itself: a given transport would turn its
            # proxies off.
            transport = cast(
                "httpx.BaseTransport", _OnFirstRequest(lambda: httpx.HTTPTransport(limits=limits))
            )
            mounts = {"http://": httpx.HTTPTransport(limits=limits, verify=_no_tls_context())}
        self.client = httpx.Client(
            headers={"User-Agent": self.user_agent},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            # Redirects are followed by stream(), which refuses to leave the source's origin.
            follow_redirects=False,
            limits=limits,
            transport=transport,
            mounts=mounts,
        )
        _bound_header_reads(self.client)

    def close(self) -> None:
        """Close the connection pool (a :meth:`counted` view leaves it to its owner)."""
        if self._parent is None:
            self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counted(self) -> HttpClient:
        """A view of this client with a request count of its own, e.g. for one survey of a run.

        The view shares the connections, the retry policy and the rate limiter (the politeness
        budget stays one for the whole run); its requests count in its own ``requests`` and in
        this client's. Closing the view does nothing: the owner of this client closes it.
        """
        view = copy.copy(self)
        view.requests = 0
        view._count_lock = threading.Lock()
        view._parent = self
        return view

    def before_request(self) -> None:
        """Wait for the rate limiter and count the request (here and in the client viewed)."""
        if self._parent is not None:
            self._parent.before_request()
        else:
            self.limiter.acquire()
        with self._count_lock:
            self.requests += 1

    @contextmanager
    def stream(
        self, url: str, *, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """GET ``url``, following redirects only within its scheme, host and port.

        Each request (redirects included) waits for the rate limiter and is counted. The body is
        not read: iterate :meth:`iter_body` inside the ``with`` block.

        Args:
            url: the URL.
            headers: extra request headers, sent on every hop.

        Yields:
            The first answer that is not a redirect.

        Raises:
            SourceError: a redirect leaves the origin of ``url``, or there are too many.
        """
        origin = _origin(url)
        current = url
        for _ in range(self.max_redirects + 1):
            self.before_request()
            with ExitStack() as answer:
                with _headers_due(time.monotonic() + self.header_timeout, current):
                    response = answer.enter_context(
                        self.client.stream("GET", current, headers=headers)
                    )
                if not response.has_redirect_location:
                    yield response
                    return
                location = response.headers["Location"]
                try:
                    target = urljoin(str(response.url), location)
                    urlsplit(target).port  # noqa: B018  (a port out of range raises)
                except ValueError:
                    raise SourceError(
                        f"{url}: the server redirected to {location!r}, which is no URL; refused"
                    ) from None
                if _origin(target) != origin:
                    scheme, host, port = origin
                    raise SourceError(
                        f"{url}: the server redirected to {target}, outside "
                        f"{scheme}://{host}:{port}; refused, since a source may redirect only "
                        "within its own scheme, host and port. Use the final URL if you trust it"
                    )
                log.debug("%s: redirected to %s", current, target)
                current = target
        raise SourceError(f"{url}: more than {self.max_redirects} redirects; refused")

    def iter_body(
        self, response: httpx.Response, what: str, *, raw: bool = False, chunk_size: int = 0
    ) -> Iterator[bytes]:
        """Yield the body's chunks as they arrive, failing a body that arrives too slowly.

        Once ``grace`` seconds have passed since the answer began, the body must have arrived at
        ``min_rate`` bytes a second on average (``elapsed <= grace + received / min_rate``): a
        body of known size gets at most ``grace + size / min_rate`` seconds, one that drips never
        ends is stopped after about ``grace`` seconds.

        Args:
            response: an open streamed answer.
            what: names the body in messages, e.g. the URL.
            raw: yield the bytes as sent (no content decoding).
            chunk_size: join what arrives into chunks of at least this many bytes (the last one
                may be shorter); the rate is still checked at every read.

        Raises:
            SourceError: the body arrived too slowly (not retried: another attempt would take
                as long).
        """
        start = time.monotonic()
        received = 0
        pending: list[bytes] = []
        pending_size = 0
        # httpx's own chunk_size would buffer a drip until a whole chunk is in, unseen by the
        # clock: the chunks are taken as read and joined here instead.
        chunks = response.iter_raw() if raw else response.iter_bytes()
        for chunk in chunks:
            received += len(chunk)
            elapsed = time.monotonic() - start
            if elapsed > self.grace + received / self.min_rate:
                raise SourceError(
                    f"{what}: too slow: {received} bytes in {elapsed:.1f} s, below the minimum "
                    f"of {self.min_rate:.0f} bytes/s after {self.grace:g} s; the server is "
                    "overloaded or misbehaving, try again later"
                )
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= chunk_size:
                yield pending[0] if len(pending) == 1 else b"".join(pending)
                pending, pending_size = [], 0
        if pending:
            yield b"".join(pending)

    def call(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it returns, retrying on :class:`Retry` and transport errors.

        Args:
            what: names the request in messages, e.g. the URL.
            attempt: makes one request; raises :class:`Retry` to ask for another.

        Raises:
            SourceError: the attempts ran out; the message says why the last one failed.
        """
        import httpx

        for number in range(1, self.retry.attempts + 1):
            try:
                return attempt()
            except Retry as exc:
                reason, retry_after = exc.reason, exc.retry_after
                cause: BaseException = exc
            except httpx.TransportError as exc:
                reason, retry_after = _describe_transport_error(exc), None
                cause = exc
            if number == self.retry.attempts:
                raise SourceError(f"{what}: {reason} (gave up after {number} attempts)") from cause
            if retry_after is not None:
                delay = min(retry_after, self.retry.max_retry_after)
            else:
                delay = self.retry.backoff(number)
            log.info("%s: %s; retrying in %.1fs", what, reason, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def check_status(self, response: httpx.Response, what: str) -> None:
        """Raise :class:`Retry` for 429/5xx and a final error for other non-2xx answers.

        Raises:
            Retry: the status is worth retrying.
            SourceForbiddenError: 403.
            SourceError: any other error status.
        """
        status = response.status_code
        if status == 429 or status >= 500:
            raise Retry(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
        if status == 403:
            raise SourceForbiddenError(
                f"{what}: HTTP 403 Forbidden. The server refused User-Agent "
                f"{self.user_agent!r}; BLS requires contact information in it: set --contact "
                "you@example.com (or RQ_CONTACT), or --user-agent"
            )
        if status >= 400 or status < 200:
            raise SourceError(f"{what}: HTTP {status} {response.reason_phrase}")

    def get_bytes(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        too_large: Callable[[str], RqError] | None = None,
    ) -> bytes:
        """GET ``url`` and return the body, refusing bodies over ``max_bytes``.

        Args:
            url: the URL.
            max_bytes: the largest body accepted.
            headers: extra request headers.
            too_large: builds the error for a body over the limit from its size (as text);
                by default a :class:`SourceError`.

        Raises:
            SourceError: the request failed or the status was an error.
            RqError: the body was too large (``too_large``'s error).
        """

        def oversized(size: str) -> RqError:
            if too_large is not None:
                return too_large(size)
            return SourceError(f"{url}: body of {size} bytes exceeds {max_bytes}")

        def attempt() -> bytes:
            with self.stream(url, headers=headers) as response:
                self.check_status(response, url)
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise oversized(length)
                body = bytearray()
                for chunk in self.iter_body(response, url):
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise oversized(f"more than {max_bytes}")
                return bytes(body)

        return self.call(url, attempt)


def _origin(url: str) -> tuple[str, str, int | None]:
    """The scheme, host and port of ``url`` (the port made explicit for http and https)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _describe_transport_error(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken mid-response ({exc})"
    return f"{type(exc).__name__}: {exc}"


# -- the header deadline --------------------------------------------------------------------------
# httpx has a timeout per read but none for a whole answer's headers. Reads happen in the thread
# that sends the request (the client is synchronous), so a thread-local deadline, set while the
# headers are awaited, bounds every read of the connection's socket in that time.

_header_deadline = threading.local()


@contextmanager
def _headers_due(deadline: float, url: str) -> Iterator[None]:
    _header_deadline.value = (deadline, url)
    try:
        yield
    finally:
        _header_deadline.value = None


def _bound_header_reads(client: httpx.Client) -> None:
    """Make the client's connection pools read through :class:`_DeadlineBackend`.

    httpx has no public hook for the network backend: the pools it builds take it from their
    ``_network_backend`` attribute when they open a connection (httpcore 1.x). A test
    (``test_header_drip_fails_without_retry``) fails if that ever stops working.
    """
    for transport in [client._transport, *client._mounts.values()]:
        _bound_pool(transport)


def _bound_pool(transport: object) -> None:
    """Make one transport's connection pool read through :class:`_DeadlineBackend`."""
    import httpcore

    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        backend = pool._network_backend
        if not getattr(backend, "bounds_header_reads", False):
            # Duck-typed: httpcore is not imported until a client is made.
            pool._network_backend = cast("httpcore.NetworkBackend", _DeadlineBackend(backend))


def _proxies_in_environment() -> bool:
    """Whether ``HTTP_PROXY``, ``HTTPS_PROXY`` or ``ALL_PROXY`` (any case) names a proxy, which
    httpx uses for a client built without a transport of its own."""
    from urllib.request import getproxies

    return any(getproxies().get(scheme) for scheme in ("http", "https", "all"))


def _no_tls_context() -> ssl.SSLContext:
    """The TLS context of the plain-http transport, which never uses it: one that verifies
    against no roots, so that any use of it would fail closed."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _OnFirstRequest:
    """A transport made by ``make`` when the first request comes: an ``httpx.BaseTransport`` by
    its methods (a subclass would import httpx with this module)."""

    def __init__(self, make: Callable[[], httpx.BaseTransport]) -> None:
        self._make = make
        self._inner: httpx.BaseTransport | None = None
        self._lock = threading.Lock()

    def _transport(self) -> httpx.BaseTransport:
        with self._lock:
            if self._inner is None:
                self._inner = self._make()
                _bound_pool(self._inner)
            return self._inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport().handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._inner is not None:
                self._inner.close()

    def __enter__(self) -> _OnFirstRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remaining(timeout: float | None) -> float | None:
    """The read timeout, shortened to the header deadline when one is set."""
    due: tuple[float, str] | None = getattr(_header_deadline, "value", None)
    if due is None:
        return timeout
    deadline, url = due
    left = deadline - time.monotonic()
    if left <= 0:
        raise _headers_too_slow(url)
    return left if timeout is None else min(timeout, left)


def _headers_too_slow(url: str) -> SourceError:
    return SourceError(
        f"{url}: the server did not finish its answer's headers in time; it is overloaded or "
        "misbehaving, try again later"
    )


class _DeadlineStream:
    """A network stream whose reads end at the header deadline (see :func:`_remaining`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        limit = _remaining(timeout)
        try:
            data: bytes = self._inner.read(max_bytes, limit)
        except httpcore.ReadTimeout:
            due: tuple[float, str] | None = getattr(_header_deadline, "value", None)
            if due is not None and limit != timeout:
                raise _headers_too_slow(due[1]) from None  # the deadline ran out, not the read's
            raise
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> _DeadlineStream:
        return _DeadlineStream(self._inner.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's network backend, with every stream wrapped in :class:`_DeadlineStream`."""

    bounds_header_reads = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _DeadlineStream:
        return _DeadlineStream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _DeadlineStream:
        return _DeadlineStream(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
