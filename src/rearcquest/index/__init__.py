"""Browse and download a bucket's objects: a live index server and a static ``index.html``.

* :func:`serve` / :func:`start_server` run the live index (Starlette on uvicorn, from the
  ``serve`` extra): folder navigation, sortable columns, a filter box, a JSON listing, and
  downloads streamed from S3 with ``Range`` and conditional requests.
* :func:`write_static_index` writes a self-contained ``index.html`` into the bucket from its
  current listing, for S3 static website hosting or sharing by presigned URL. It needs no extra.

Rendering (:mod:`rearcquest.index._render`) is pure; only the server modules import Starlette.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_CACHE_SECONDS,
    DEFAULT_HOST,
    DEFAULT_INDEX_KEY,
    DEFAULT_PORT,
    MAX_PRESIGN_SECONDS,
    normalise_prefix,
)
from rearcquest.errors import ConfigError, OptionError
from rearcquest.index._http import UnsafePath, check_path, is_servable
from rearcquest.index._render import View, build_listing, relative_href, render_page

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from rearcquest.index._server import RunningServer
    from rearcquest.storage import ObjectStore

__all__ = [
    "AUTO_TOKEN",
    "DEFAULT_CACHE_SECONDS",
    "DEFAULT_HOST",
    "DEFAULT_INDEX_KEY",
    "DEFAULT_PORT",
    "KEEP_ALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_PRESIGN_SECONDS",
    "MIN_TOKEN_CHARS",
    "REQUEST_TIMEOUT",
    "Limits",
    "StaticIndex",
    "check_mode",
    "create_app",
    "exposure_warning",
    "render_presigned_index",
    "resolve_token",
    "serve",
    "start_server",
    "write_static_index",
]

log = logging.getLogger(__name__)

# A token anyone on the network may try to guess: shorter ones are refused.
MIN_TOKEN_CHARS = 16
# ``--token auto``: generate one (32 URL-safe characters, 192 random bits).
AUTO_TOKEN = "auto"
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


def check_token(token: str | None) -> str | None:
    """Return ``token`` if it may protect the index (``''`` and ``None`` mean no token).

    Raises:
        ConfigError: the token is shorter than :data:`MIN_TOKEN_CHARS` or has spaces or
            control characters around or in it (they cannot travel in a bearer header).
    """
    if not token:
        return None
    if token == AUTO_TOKEN:
        raise ConfigError("the token 'auto' must be resolved first: call resolve_token()")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the index token is {len(token)} characters long; use at least {MIN_TOKEN_CHARS}, "
            f"or --token {AUTO_TOKEN} to generate one"
        )
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(
            "the index token has spaces or control characters; use printable characters only, "
            f"or --token {AUTO_TOKEN} to generate one"
        )
    return token


# The options of ``rq serve-index`` that only one of its modes uses.
_LIVE_ONLY = ("--host", "--port", "--token", "--cache-seconds")
_STATIC_ONLY = ("--index-key", "--presign", "--format")


def check_mode(write_static: bool, given: Collection[str]) -> None:
    """Refuse the options of the other mode of ``rq serve-index`` rather than ignore them.

    Args:
        write_static: writing a static page (``--write-static``), not serving.
        given: the options given on the command line, as written (``--host``).

    Raises:
        OptionError: an option of the other mode was given; it names them all.
    """
    clash = [flag for flag in (_LIVE_ONLY if write_static else _STATIC_ONLY) if flag in given]
    if clash:
        mode = "--write-static" if write_static else "serving (without --write-static)"
        raise OptionError(f"cannot be used with {mode}", options=", ".join(clash))


def resolve_token(token: str | None) -> str | None:
    """Turn a ``--token`` value into the token to require.

    Args:
        token: ``None`` or ``''`` (no token), :data:`AUTO_TOKEN` (generate one) or the token.

    Returns:
        The token, or ``None`` for none.

    Raises:
        ConfigError: the token is too short or not printable (see :func:`check_token`).
    """
    if token == AUTO_TOKEN:
        return secrets.token_urlsafe(24)
    return check_token(token)


def _server_module() -> Any:
    try:
        from rearcquest.index import _server
    except ImportError as exc:
        raise ConfigError(
            "serving the index needs Starlette and uvicorn: pip install 'rearcquest[serve]'"
        ) from exc
    return _server


def create_app(
    store: ObjectStore,
    *,
    prefix: str = "",
    token: str | None = None,
    allowed_hosts: set[str] | frozenset[str] | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
) -> Starlette:
    """Build the ASGI application (for embedding, or another ASGI server).

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        token: when set, every request needs it.
        allowed_hosts: accept only these ``Host`` names; ``None`` accepts any.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).

    Returns:
        The Starlette application.

    Raises:
        ConfigError: the serve extra is missing, or the prefix or the token is invalid.
    """
    app: Starlette = _server_module().create_app(
        store,
        prefix=prefix,
        token=token,
        allowed_hosts=allowed_hosts,
        cache_seconds=cache_seconds,
    )
    return app


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
) -> None:
    """Serve the live index until Ctrl-C (or SIGTERM); returns after a clean shutdown.

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        host: the address to listen on; loopback by default. Other addresses log a warning.
        port: the port (0 picks a free one).
        token: require this token on every request (bearer header or cookie).
        on_ready: called with the URL (``http://127.0.0.1:8000/``) once the socket is bound.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).
        limits: request and keep-alive timeouts and the connection bound
            (:class:`Limits`); by default :data:`REQUEST_TIMEOUT`,
            :data:`KEEP_ALIVE_TIMEOUT` and :data:`MAX_CONNECTIONS`.

    Raises:
        ConfigError: the serve extra is missing, the prefix or the token is invalid, or the
            port is taken.
        StorageError: the bucket does not exist or cannot be reached.
    """
    _server_module().serve(
        store,
        prefix=prefix,
        host=host,
        port=port,
        token=token,
        on_ready=on_ready,
        cache_seconds=cache_seconds,
        limits=limits,
    )


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
    """Start the live index in a background thread; return its ``url`` and ``stop()`` handle.

    Use it as a context manager to be sure it stops::

        with start_server(store, prefix="pr/") as server:
            print(server.url)

    Args:
        store: the bucket.
        prefix: only keys under this prefix are listed or served.
        host: the address to listen on.
        port: the port; 0 (the default) picks a free one.
        token: require this token on every request.
        cache_seconds: reuse a folder's listing for this long (0 lists on every request).
        limits: request and keep-alive timeouts and the connection bound (see :func:`serve`).

    Returns:
        The running server.

    Raises:
        ConfigError: the serve extra is missing, the prefix or the token is invalid, or the
            port is taken.
        StorageError: the bucket does not exist or cannot be reached.
    """
    server: RunningServer = _server_module().start_server(
        store,
        prefix=prefix,
        host=host,
        port=port,
        token=token,
        cache_seconds=cache_seconds,
        limits=limits,
    )
    return server


def exposure_warning(host: str, token: str | None) -> str | None:
    """Return the warning for listening on ``host``, or ``None`` for a loopback address."""
    from rearcquest.index._server import exposure_warning as warning

    result: str | None = warning(host, token)
    return result


@dataclass(frozen=True)
class StaticIndex:
    """What :func:`write_static_index` wrote.

    Attributes:
        bucket: the bucket.
        key: the key of the page.
        prefix: the prefix whose objects it lists.
        objects: how many objects it lists.
        total_bytes: their total size.
        page_bytes: the size of the page.
        etag: the page's ETag.
        share_url: a presigned URL of the page, when its links are presigned.
        expires: when the presigned links expire (ISO 8601), if presigned.
    """

    bucket: str
    key: str
    prefix: str
    objects: int
    total_bytes: int
    page_bytes: int
    etag: str
    share_url: str | None = None
    expires: str | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/key`` of the page."""
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict."""
        return {**asdict(self), "url": self.url}


def check_index_key(index_key: str) -> str:
    """Return ``index_key`` if it is a usable object key for the page.

    Raises:
        ConfigError: it is empty, ends with ``/``, starts with ``/`` or has ``.``/``..`` segments.
    """
    key = index_key.strip()
    if not key or key.endswith("/") or key.startswith("/"):
        raise ConfigError(f"index key {index_key!r} must be an object name such as 'index.html'")
    try:
        check_path(key, "")
    except UnsafePath as exc:
        raise ConfigError(f"index key {index_key!r} is not usable: {exc}") from exc
    return key


def _render_static(
    store: ObjectStore,
    root: str,
    key: str | None,
    presign_seconds: int | None,
    generated: datetime,
) -> tuple[bytes, Any]:
    """Render the static page of the objects under ``root`` (the page ``key`` left out)."""
    objects = list(store.list_objects(root))
    exclude = {key} if key else set()
    listing = build_listing(
        store.bucket, root, "", objects, (), generated=generated, exclude=exclude
    )
    page_dir = key.rpartition("/")[0] + "/" if key and "/" in key else ""

    if presign_seconds is None:

        def href(path: str) -> str | None:
            return relative_href(page_dir, root + path) if is_servable(root + path) else None

    else:
        seconds = presign_seconds

        def href(path: str) -> str | None:
            if not is_servable(root + path):
                return None
            return store.presigned_url(root + path, expires_in=seconds)

    return render_page(listing, View(), href=href, mode="static").encode(), listing


def render_presigned_index(
    store: ObjectStore, prefix: str = "", *, presign_seconds: int = 900
) -> bytes:
    """Render, without writing it anywhere, a static page of the objects under ``prefix`` whose
    links are presigned for ``presign_seconds`` (the public index function of the AWS stack).

    Raises:
        ConfigError: the prefix or the expiry is invalid.
        StorageError: the listing failed.
    """
    if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
        raise ConfigError(
            f"presigned links live between 1 second and 7 days; got {presign_seconds}"
        )
    page, _ = _render_static(
        store, normalise_prefix(prefix), None, presign_seconds, datetime.now(UTC)
    )
    return page


def write_static_index(
    store: ObjectStore,
    prefix: str = "",
    index_key: str = DEFAULT_INDEX_KEY,
    *,
    presign_seconds: int | None = None,
    now: datetime | None = None,
) -> StaticIndex:
    """Write a self-contained ``index.html`` listing every object under ``prefix``.

    The page is rendered from the bucket's current listing (all pages of ``ListObjectsV2``), so
    calling this after each sync keeps it current. Its links are relative to the page, for S3
    static website hosting; with ``presign_seconds`` they are presigned URLs instead, so the
    page (shared by its own presigned URL, :attr:`StaticIndex.share_url`) works on a private
    bucket until they expire. The page itself and rq's own objects (``.rearcquest/``) are not
    listed.

    Args:
        store: the bucket.
        prefix: list the objects under this prefix (``''`` for the whole bucket).
        index_key: where to write the page.
        presign_seconds: presign every link for this long (at most 7 days).
        now: the generation time shown on the page; default now.

    Returns:
        What was written.

    Raises:
        ConfigError: the prefix, the key or the expiry is invalid.
        StorageError: the listing or the write failed.
    """
    root = normalise_prefix(prefix)
    key = check_index_key(index_key)
    if presign_seconds is not None and not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
        raise ConfigError(
            f"presigned links live between 1 second and 7 days ({MAX_PRESIGN_SECONDS} s); "
            f"got {presign_seconds}"
        )
    generated = now or datetime.now(UTC)
    page, listing = _render_static(store, root, key, presign_seconds, generated)
    etag = store.put_bytes(key, page, content_type="text/html; charset=utf-8")
    share_url = expires = None
    if presign_seconds is not None:
        share_url = store.presigned_url(key, expires_in=presign_seconds)
        expires = datetime.fromtimestamp(generated.timestamp() + presign_seconds, UTC).isoformat(
            timespec="seconds"
        )
    log.info("wrote %s listing %d objects", store.url(key), len(listing.files))
    return StaticIndex(
        bucket=store.bucket,
        key=key,
        prefix=root,
        objects=len(listing.files),
        total_bytes=listing.total_bytes,
        page_bytes=len(page),
        etag=etag,
        share_url=share_url,
        expires=expires,
    )
