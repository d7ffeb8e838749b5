"""The polite HTTP client: rate limit, Retry-After, bounded retries, error translation."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from rearcquest.errors import SourceError, SourceForbiddenError
from rearcquest.sources._http import (
    HttpClient,
    RateLimiter,
    RetryPolicy,
    parse_http_date,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 06 Aug 2026 12:30:00 GMT", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        ("Thu, 06 Aug 2026 12:30:00 -0000", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        ("Thu, 06 Aug 2026 14:30:00 +0200", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
    ids=["gmt", "no-zone-is-gmt", "offset", "junk", "empty", "none"],
)
def test_http_dates_are_read_in_utc(value: str | None, expected: datetime | None) -> None:
    """One reader of HTTP dates (Last-Modified for stamps and mtimes, Retry-After)."""
    got = parse_http_date(value)
    assert got == expected
    assert got is None or got.tzinfo is UTC


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


# -- hostile sources: redirects stay on the source's origin, slow bodies end in bounded time --


def redirecting(location: str, seen: list[str], body: bytes = b"ok") -> HttpClient:
    """A client whose first answer is a 302 to ``location``; records every URL requested."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if len(seen) == 1:
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, content=body)

    return HttpClient(retry=RetryPolicy(attempts=2), transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "location",
    ["/b", "https://x.test/b", "https://X.TEST:443/b"],
    ids=["relative", "absolute", "explicit-port"],
)
def test_same_origin_redirect_is_followed(location: str) -> None:
    seen: list[str] = []
    http = redirecting(location, seen)
    assert http.get_bytes("https://x.test/a", max_bytes=10) == b"ok"
    assert seen == ["https://x.test/a", "https://x.test/b"]
    assert http.requests == 2  # each hop is rate limited and counted


@pytest.mark.parametrize(
    "location",
    ["https://evil.test/a", "http://x.test/a", "https://x.test:8443/a", "ftp://x.test/a"],
    ids=["other-host", "other-scheme", "other-port", "ftp"],
)
def test_cross_origin_redirect_is_refused_without_following(location: str) -> None:
    seen: list[str] = []
    http = redirecting(location, seen)
    with pytest.raises(SourceError, match=r"redirected to .*outside https://x\.test:443") as caught:
        http.get_bytes("https://x.test/a", max_bytes=10)
    assert seen == ["https://x.test/a"], "the other origin is never asked"
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "location",
    ["//[evil.test/a", "https://[x.test/a", "https://x.test:99999/a"],
    ids=["bracket-authority", "bracket-host", "port-out-of-range"],
)
def test_a_redirect_to_no_url_is_refused_not_a_crash(location: str) -> None:
    seen: list[str] = []
    http = redirecting(location, seen)
    with pytest.raises(SourceError, match="which is no URL; refused") as caught:
        http.get_bytes("https://x.test/a", max_bytes=10)
    assert seen == ["https://x.test/a"]
    assert caught.value.exit_code == 3


def test_redirect_loop_is_bounded() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "/again"})

    http = HttpClient(transport=httpx.MockTransport(handler), max_redirects=3)
    with pytest.raises(SourceError, match="more than 3 redirects"):
        http.get_bytes("https://x.test/a", max_bytes=10)
    assert len(seen) == 4


def test_a_dripping_body_fails_in_bounded_time_and_is_not_retried() -> None:
    from rearcquest.offline import Fault, OfflineServer

    with OfflineServer(require_contact=False) as server:
        server.add_route("/slow", b"x" * 10_000, content_type="text/plain")
        server.faults.append(Fault("/slow", drip=0.02, times=9))
        http = HttpClient(retry=RetryPolicy(attempts=3, base=0.0), grace=0.2, min_rate=1000)
        with pytest.raises(SourceError, match=r"/slow: too slow: \d+ bytes in") as caught:
            http.get_bytes(server.url + "/slow", max_bytes=100_000)
        assert caught.value.exit_code == 3
        assert len(server.requests) == 1, "another attempt would be as slow"


def test_header_drip_fails_without_retry() -> None:
    """Headers dripped a byte at a time, each within the read timeout: the deadline ends it."""
    from rearcquest.offline import Fault, OfflineServer

    with OfflineServer(require_contact=False) as server:
        server.add_route("/slow", b"body", content_type="text/plain")
        server.faults.append(Fault("/slow", header_drip=0.01, times=9))
        retry = RetryPolicy(attempts=3, base=0.0)
        with HttpClient(retry=retry, timeout=5, header_timeout=0.3) as http:
            with pytest.raises(SourceError, match="/slow: the server did not finish its answer"):
                http.get_bytes(server.url + "/slow", max_bytes=100)
            assert len(server.requests) == 1, "another attempt would be as slow"
            # The deadline is per answer: the next request on the client is not affected.
            server.add_route("/fast", b"fine", content_type="text/plain")
            assert http.get_bytes(server.url + "/fast", max_bytes=100) == b"fine"


def test_the_client_pools_read_through_the_header_deadline() -> None:
    """The default pools (http, and https once made) open connections through the deadline."""
    from rearcquest.sources import _http

    with HttpClient() as http:
        assert http.header_timeout == _http.HEADER_TIMEOUT
        (plain,) = http.client._mounts.values()
        tls = http.client._transport._transport()  # type: ignore[attr-defined]
        for transport in (plain, tls):
            pool = transport._pool  # type: ignore[attr-defined]
            assert getattr(pool._network_backend, "bounds_header_reads", False)


@contextmanager
def _serving(body: bytes, *, tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[str]]]:
    """A server on 127.0.0.1 answering every GET with ``body``: its port, and the paths asked."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An https server on 127.0.0.1 with a self-signed certificate: its URL and the certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rq test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with _serving(b"over tls", tls=context) as (port, _):
        yield f"https://127.0.0.1:{port}/", cert_file


def test_the_tls_context_is_made_at_the_first_https_request(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run against a plain-http source never reads the root certificates; https still works."""
    import httpx._transports.default as transports

    from rearcquest.offline import OfflineServer

    made: list[object] = []  # contexts made with the roots (the plain transport's has none)
    create = transports.create_ssl_context

    def counted(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("verify", True) is True:
            made.append(kwargs)
        return create(*args, **kwargs)

    monkeypatch.setattr(transports, "create_ssl_context", counted)
    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx's rule: trust this file's roots
    with OfflineServer(require_contact=False) as server, HttpClient() as http:
        server.add_route("/plain", b"plain", content_type="text/plain")
        assert http.get_bytes(server.url + "/plain", max_bytes=100) == b"plain"
        assert made == []
        assert http.get_bytes(url + "a", max_bytes=100) == b"over tls"
        assert http.get_bytes(url + "b", max_bytes=100) == b"over tls"
        assert len(made) == 1


def test_a_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` and friends keep working (a client given its own transport ignores them)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with _serving(b"via the proxy") as (port, asked):
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
        with HttpClient(retry=RetryPolicy(attempts=1)) as http:
            body = http.get_bytes("http://bls.example.test/pub/a", max_bytes=100)
    assert body == b"via the proxy"
    assert asked == ["http://bls.example.test/pub/a"]  # a proxy is asked for the absolute URL


def test_https_still_verifies_the_certificate(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    url, _ = tls_server
    with (
        HttpClient(retry=RetryPolicy(attempts=1)) as http,
        pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        http.get_bytes(url + "a", max_bytes=100)


def test_a_body_above_the_minimum_rate_is_accepted_without_grace() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 500, b"y" * 500]))

    # 500 bytes buy 500 s at 1 byte/s: far more than a local answer takes.
    http = HttpClient(transport=httpx.MockTransport(handler), grace=0.0, min_rate=1.0)
    assert http.get_bytes("https://x.test/a", max_bytes=1000) == b"x" * 500 + b"y" * 500


def test_rate_limits_default_to_the_module_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from rearcquest.sources import _http

    assert (HttpClient().min_rate, HttpClient().grace) == (_http.MIN_RATE, _http.RATE_GRACE)
    monkeypatch.setattr(_http, "RATE_GRACE", 0.5)
    assert HttpClient().grace == 0.5


def test_iter_body_joins_reads_into_chunks_of_the_asked_size() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"a" * 3, b"b" * 3, b"c" * 3, b"d"]))

    http = HttpClient(transport=httpx.MockTransport(handler))
    with http.stream("https://x.test/a") as response:
        chunks = list(http.iter_body(response, "https://x.test/a", raw=True, chunk_size=5))
    assert chunks == [b"aaabbb", b"cccd"]


def test_a_counted_view_counts_its_own_requests_and_shares_the_rest() -> None:
    slept: list[float] = []
    http = client_for([httpx.Response(200, content=b"ok") for _ in range(3)], slept)
    one, two = http.counted(), http.counted()
    assert one.get_bytes("https://x.test/a", max_bytes=10) == b"ok"
    assert two.get_bytes("https://x.test/b", max_bytes=10) == b"ok"
    assert two.get_bytes("https://x.test/c", max_bytes=10) == b"ok"
    assert (one.requests, two.requests, http.requests) == (1, 2, 3)
    assert one.limiter is http.limiter  # one politeness budget
    one.close()  # the owner closes the connections, not a view
    assert not http.client.is_closed
    http.close()
    assert http.client.is_closed
