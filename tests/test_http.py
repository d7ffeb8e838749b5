"""The polite HTTP client: rate limit, Retry-After, bounded retries, error translation."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from rearcquest.errors import SourceError, SourceForbiddenError
from rearcquest.sources._http import HttpClient, RateLimiter, RetryPolicy, parse_retry_after


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    slept: list[float] = []
    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=slept.append)
    for _ in range(3):
        limiter.acquire()
    assert slept == [0.5, 1.0]  # the 2nd waits half a second, the 3rd a whole one
    now[0] += 10
    limiter.acquire()
    assert slept == [0.5, 1.0]  # long after: no wait


def test_no_rate_limit() -> None:
    slept: list[float] = []
    limiter = RateLimiter(0, sleep=slept.append)
    for _ in range(5):
        limiter.acquire()
    assert slept == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (None, None), ("soon", None), ("", None)],
    ids=["seconds", "absent", "garbage", "empty"],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = parse_retry_after(when)
    assert delay is not None and 25 <= delay <= 31


def client_for(answers: list[httpx.Response], slept: list[float], attempts: int = 3) -> HttpClient:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        assert "contact" in request.headers["User-Agent"]
        return queue.pop(0)

    return HttpClient(
        user_agent="rq-test (contact: t@example.com)",
        retry=RetryPolicy(attempts=attempts, base=0.25, cap=1.0, max_retry_after=60),
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
    )


def test_retry_after_is_honoured_then_success() -> None:
    slept: list[float] = []
    http = client_for(
        [httpx.Response(429, headers={"Retry-After": "12"}), httpx.Response(200, content=b"ok")],
        slept,
    )
    assert http.get_bytes("https://x.test/a", max_bytes=10) == b"ok"
    assert slept == [12.0]
    assert http.requests == 2


def test_backoff_is_bounded_and_attempts_run_out() -> None:
    slept: list[float] = []
    http = client_for([httpx.Response(503) for _ in range(3)], slept)
    with pytest.raises(SourceError, match=r"HTTP 503 \(gave up after 3 attempts\)"):
        http.get_bytes("https://x.test/a", max_bytes=10)
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.25 and 0 <= slept[1] <= 0.5  # full jitter under the doubling cap


def test_long_retry_after_is_capped() -> None:
    slept: list[float] = []
    http = client_for(
        [httpx.Response(429, headers={"Retry-After": "9999"}), httpx.Response(200)], slept
    )
    http.get_bytes("https://x.test/a", max_bytes=10)
    assert slept == [60.0]


@pytest.mark.parametrize(
    ("status", "error"), [(403, SourceForbiddenError), (404, SourceError)], ids=["403", "404"]
)
def test_final_statuses_are_not_retried(status: int, error: type[Exception]) -> None:
    slept: list[float] = []
    http = client_for([httpx.Response(status)], slept)
    with pytest.raises(error, match=f"HTTP {status}"):
        http.get_bytes("https://x.test/a", max_bytes=10)
    assert slept == [] and http.requests == 1


def test_oversized_body_is_refused() -> None:
    http = client_for([httpx.Response(200, content=b"x" * 11)], [])
    with pytest.raises(SourceError, match="exceeds 10"):
        http.get_bytes("https://x.test/a", max_bytes=10)
