"""Run the index application with uvicorn: blocking (:func:`serve`) or in a thread.

Starlette and uvicorn (the ``serve`` extra) are imported when a server is built, so this module,
its :class:`Limits` and :func:`exposure_warning` load without them.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rearcquest.config import DEFAULT_CACHE_SECONDS, DEFAULT_HOST, DEFAULT_PORT
from rearcquest.errors import ConfigError, RqError

if TYPE_CHECKING:
    import uvicorn

    from rearcquest.aws.storage import ObjectStore

log = logging.getLogger(__name__)

_ALL_INTERFACES = frozenset({"0.0.0.0", "::", ""})
_START_TIMEOUT = 15.0

# Seconds a client has to send a whole request (and a new connection its first one).
REQUEST_TIMEOUT = 10.0
# Seconds an idle kept-alive connection stays open after a response.
KEEP_ALIVE_TIMEOUT = 5.0
# Connections open at once; more are answered 503 and closed.
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class Limits:
    """How long clients may take and how many may connect (``rearcquest.index._protocol``).

    Attributes:
        request_timeout: seconds to send a whole request; a new connection, its first one.
        keep_alive_timeout: seconds an idle kept-alive connection stays open.
        max_connections: connections open at once; more are answered 503 and closed.
    """

    request_timeout: float = REQUEST_TIMEOUT
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.request_timeout > 0 or not self.keep_alive_timeout > 0:
            raise ConfigError("the request and keep-alive timeouts must be positive")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1; got {self.max_connections}")


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """Return a warning when the index can be reached from other machines, else ``None``."""
    if is_loopback(host):
        return None
    where = "all interfaces" if host in _ALL_INTERFACES else host
    advice = (
        "every request needs the token"
        if token
        else "anyone who can reach this machine can read the listed objects; "
        "add --token auto (or set RQ_INDEX_TOKEN) to require a token"
    )
    return f"serve-index is listening on {where}: {advice}"


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not between 0 and 65535")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on host {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now, connections made as soon as the URL is announced wait in the backlog
        # until uvicorn accepts them, instead of being refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port or --host"
        ) from exc
    return sock


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A socket listening on ``host:port`` now, for :func:`serve` (``listening=``) to serve later:
    a port that is taken is refused before the work that comes first (``rq demo --serve``).

    Raises:
        ConfigError: the host cannot be listened on, or the port is taken.
    """
    return _bind(host, port)


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    if host in _ALL_INTERFACES:
        shown = "127.0.0.1" if sock.family == socket.AF_INET else "[::1]"
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    else:
        shown = host
    return f"http://{shown}:{port}/"


def _server(
    store: ObjectStore,
    *,
    prefix: str,
    host: str,
    token: str | None,
    cache_seconds: float,
    limits: Limits,
) -> uvicorn.Server:
    try:
        import uvicorn

        from rearcquest.index._app import LOOPBACK_HOSTS, create_app
        from rearcquest.index._protocol import protocol_class
    except ImportError as exc:
        raise _missing_extra() from exc

    allowed = LOOPBACK_HOSTS | {host.lower()} if is_loopback(host) else None
    app = create_app(
        store, prefix=prefix, token=token, allowed_hosts=allowed, cache_seconds=cache_seconds
    )
    config = uvicorn.Config(
        app,
        host=host,
        # uvicorn leaves logging alone: the CLI (or the embedding program) configures it.
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        http=protocol_class(
            request_timeout=limits.request_timeout, max_connections=limits.max_connections
        ),
        # Typed int, but used as a delay for loop.call_later: fractions work (and tests use them).
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
        # Requests still running count too (a download outlives its client for a moment).
        limit_concurrency=limits.max_connections + 1,
    )
    return uvicorn.Server(config)


def _missing_extra() -> RqError:
    return ConfigError(
        "serving the index needs Starlette and uvicorn: pip install 'rearcquest[serve]'"
    )


def _prepare(
    store: ObjectStore,
    *,
    prefix: str,
    host: str,
    port: int,
    token: str | None,
    cache_seconds: float,
    limits: Limits | None,
    listening: socket.socket | None = None,
) -> tuple[uvicorn.Server, socket.socket]:
    """The server and its bound socket (``listening``, or one bound to ``host:port`` first: a
    port that is taken is refused before the bucket is asked), once the bucket answers; warns of
    an exposed address. The socket is closed when the bucket fails."""
    sock = listening if listening is not None else _bind(host, port)
    try:
        server = _server(
            store,
            prefix=prefix,
            host=host,
            token=token,
            cache_seconds=cache_seconds,
            limits=limits or Limits(),
        )
        store.check_bucket()
    except BaseException:
        sock.close()
        raise
    warning = exposure_warning(host, token)
    if warning:
        log.warning(warning)
    return server, sock


def serve(
    store: ObjectStore,
    *,
    prefix: str = "",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    limits: Limits | None = None,
    listening: socket.socket | None = None,
) -> None:
    """Serve the index of ``prefix`` in ``store`` until interrupted (Ctrl-C or SIGTERM).

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        host: the address to listen on; loopback by default. Other addresses log a warning.
        port: the port (0 picks a free one).
        token: require this token on every request.
        on_ready: called with the URL once the socket is bound, before serving starts.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).
        limits: timeouts and the connection bound; the defaults suit a network.
        listening: a socket :func:`listen` bound earlier, served instead of binding ``port``
            (closed at the end).

    Raises:
        ConfigError: the serve extra is missing, the prefix is invalid or the port is taken.
        StorageError: the bucket does not exist or cannot be reached.
    """
    server, sock = _prepare(
        store,
        prefix=prefix,
        host=host,
        port=port,
        token=token,
        cache_seconds=cache_seconds,
        limits=limits,
        listening=listening,
    )
    try:
        if on_ready is not None:
            on_ready(_url(sock, host))
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it handled once it has shut down cleanly.
        pass
    finally:
        sock.close()


class RunningServer:
    """An index server running in a background thread; stop it with :meth:`stop` or ``with``.

    Attributes:
        url: the base URL, e.g. ``http://127.0.0.1:49152/``.
    """

    def __init__(self, url: str, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.url = url
        self._server = server
        self._thread = thread

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r})"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    store: ObjectStore,
    *,
    prefix: str = "",
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    limits: Limits | None = None,
) -> RunningServer:
    """Start the index server in a background thread and return once it accepts connections.

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        host: the address to listen on.
        port: the port; 0 (the default) picks a free one.
        token: require this token on every request.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).
        limits: timeouts and the connection bound; the defaults suit a network.

    Returns:
        The running server: its ``url`` and ``stop()``.

    Raises:
        ConfigError: the serve extra is missing, the prefix is invalid or the port is taken.
        StorageError: the bucket does not exist or cannot be reached.
        RuntimeError: the server did not start.
    """
    server, sock = _prepare(
        store,
        prefix=prefix,
        host=host,
        port=port,
        token=token,
        cache_seconds=cache_seconds,
        limits=limits,
    )
    url = _url(sock, host)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="rq-serve-index", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the index server at {url} did not start")
        time.sleep(0.005)
    return RunningServer(url, server, thread)
