"""One polite HTTP client for every source: User-Agent, rate limit, retries with backoff.

Retries cover connection errors, timeouts, bodies cut short, 429 and 5xx, with exponential backoff
and full jitter, honouring ``Retry-After``; a bounded number of attempts. Every other answer is
final. The wrapped ``httpx.Client`` can be injected (``transport=``) for tests.
"""

from __future__ import annotations

import email.utils
import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from rearcquest import __version__
from rearcquest.errors import RqError, SourceError, SourceForbiddenError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        attempts: total attempts, the first included.
        base: the first backoff, in seconds; doubled each attempt, with full jitter.
        cap: the longest backoff.
        max_retry_after: the longest ``Retry-After`` honoured; longer ones are capped.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Return the delay before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


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


def parse_retry_after(value: str | None) -> float | None:
    """Read a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
        timeout: seconds to wait for a connection or for data.
        transport: an ``httpx`` transport, for tests.
        sleep: the sleep function, for tests.
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
    ) -> None:
        _import_httpx_without_cli()
        import httpx

        self.user_agent = user_agent or default_user_agent()
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(max_rps, sleep=sleep)
        self._sleep = sleep
        self.requests = 0
        self._count_lock = threading.Lock()
        self.client = httpx.Client(
            headers={"User-Agent": self.user_agent},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=max_connections),
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def before_request(self) -> None:
        """Wait for the rate limiter and count the request."""
        self.limiter.acquire()
        with self._count_lock:
            self.requests += 1

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
            self.before_request()
            with self.client.stream("GET", url, headers=headers) as response:
                self.check_status(response, url)
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise oversized(length)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise oversized(f"more than {max_bytes}")
                return bytes(body)

        return self.call(url, attempt)


def _describe_transport_error(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken mid-response ({exc})"
    return f"{type(exc).__name__}: {exc}"
