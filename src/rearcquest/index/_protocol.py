"""uvicorn's h11 protocol with the two limits it lacks for a server exposed to a network.

* **A request read timeout.** uvicorn closes a keep-alive connection that stays idle after a
  response (``timeout_keep_alive``), but nothing bounds how long a client may take to send a
  request: a new connection that sends nothing, or one that dribbles a header a byte at a time
  (each byte cancels the keep-alive timer), is held for ever. Here every request, from its first
  byte (or from the connection's start) to its last, must arrive within ``request_timeout``
  seconds, else the connection gets ``408`` and is closed.
* **A bound on open connections.** ``limit_concurrency`` answers ``503`` only once a request has
  arrived, so idle sockets still pile up (and file descriptors with them). Here a connection
  beyond ``max_connections`` is answered ``503`` and closed as soon as it is accepted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: 38\r\n"
    b"\r\n"
    b"Too many connections; try again soon.\n"
)
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
# h11 states of the peer while its request is still on the way.
_RECEIVING = (h11.IDLE, h11.SEND_BODY)


class LimitedH11Protocol(H11Protocol):
    """An :class:`H11Protocol` with a request read timeout and a connection bound.

    Configure a subclass with :func:`protocol_class`; uvicorn makes one instance per connection.
    """

    request_timeout: float = 10.0
    max_connections: int = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection, or answer 503 and close it when there are too many."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d open already", self.max_connections)
            transport.write(_BUSY)
            transport.close()
            return
        # A connection that never sends a byte is held no longer than a slow request.
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its timer."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the request; start its clock at its first byte, stop it at its last."""
        if self._request_timer is None and self.conn.their_state is h11.IDLE:
            # The first bytes of a request (on a kept-alive connection, the keep-alive timer
            # that uvicorn cancels on any byte stops covering it from here).
            self._arm()
        super().data_received(data)
        if self.conn.their_state not in _RECEIVING:
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or self.conn.their_state not in _RECEIVING:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closed %s: no complete request within %g s", client, self.request_timeout)
        started = self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])
        if started and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            # Part of a request came and no answer has started: say why before closing (a
            # connection that sent nothing is closed without a word, as after a keep-alive).
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def protocol_class(*, request_timeout: float, max_connections: int) -> type[LimitedH11Protocol]:
    """A :class:`LimitedH11Protocol` subclass with these limits, for ``uvicorn.Config(http=...)``.

    Args:
        request_timeout: seconds a client has to send a whole request (headers and body), and a
            new connection to send its first one.
        max_connections: connections open at once; more are answered 503 and closed.

    Returns:
        The protocol class.
    """
    return type(
        "ConfiguredH11Protocol",
        (LimitedH11Protocol,),
        {"request_timeout": request_timeout, "max_connections": max_connections},
    )
