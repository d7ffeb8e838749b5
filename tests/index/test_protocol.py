"""``rearcquest.index._protocol``: exposed to a network, the server closes half-sent, dribbled,
silent and idle connections and answers 503 beyond its connection bound."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from rearcquest.aws.storage import ObjectStore
from rearcquest.index import Limits, start_server

# Short limits so the tests do not wait; the generous socket timeouts only bound a broken run.
QUICK = Limits(request_timeout=0.5, keep_alive_timeout=0.5, max_connections=3)


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=20)


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test)."""
    received = b""
    for _ in range(10_000):
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError("the server kept sending")


def _read_head(sock: socket.socket) -> bytes:
    """One response's status line and headers (for HEAD requests, which have no body)."""
    received = b""
    for _ in range(10_000):
        if b"\r\n\r\n" in received:
            return received
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    raise AssertionError("no end of headers")


def _head_request(path: str = "/pr.class", *, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n".encode()


@pytest.fixture
def quick_server(loaded: ObjectStore) -> Iterator[str]:
    with start_server(loaded, prefix="pr/", limits=QUICK) as server:
        yield server.url


def test_half_sent_request_gets_408_and_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers unfinished
        answer = _read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_dribbled_request_is_closed_although_bytes_keep_coming(quick_server: str) -> None:
    # Each byte would cancel uvicorn's keep-alive timer; the request clock keeps running.
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
    with _connect(quick_server) as sock:
        sent = 0
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset: closed while sending
                closed = True
                break
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                closed = True
                break
        assert closed, "the server waited for the whole dribbled request"
        assert sent < len(request)
        assert _read_to_eof(sock).startswith(b"HTTP/1.1 408")


def test_silent_connection_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        assert _read_to_eof(sock) == b""


def test_idle_keep_alive_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(_head_request())
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
        # Kept alive: a second request on the same connection is answered ...
        sock.sendall(_head_request())
        assert _read_head(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        # ... and then, idle, the connection is closed.
        assert _read_to_eof(sock) == b""


def test_connections_beyond_the_bound_get_503(loaded: ObjectStore) -> None:
    limits = Limits(request_timeout=30, keep_alive_timeout=30, max_connections=3)
    with start_server(loaded, prefix="pr/", limits=limits) as server:
        held = [_connect(server.url) for _ in range(3)]
        try:
            for sock in held:  # answered, so surely accepted, and kept open
                sock.sendall(_head_request())
                assert _read_head(sock).startswith(b"HTTP/1.1 200 OK\r\n")
            with _connect(server.url) as extra:
                answer = _read_to_eof(extra)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"retry-after: 1" in answer
            # The connections within the bound still work.
            held[0].sendall(_head_request())
            assert _read_head(held[0]).startswith(b"HTTP/1.1 200 OK\r\n")
            # A freed place is taken again (once the server has seen the close).
            held.pop().close()
            for _ in range(200):
                with _connect(server.url) as again:
                    again.sendall(_head_request(close=True))
                    answer = _read_to_eof(again)
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                time.sleep(0.05)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        finally:
            for sock in held:
                sock.close()
