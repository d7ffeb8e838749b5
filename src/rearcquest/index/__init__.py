"""Browse and download a bucket's objects: a live index server and a static ``index.html``.

* :func:`serve` / :func:`start_server` run the live index (Starlette on uvicorn, from the
  ``serve`` extra): folder navigation, sortable columns, a filter box, a JSON listing, and
  downloads streamed from S3 with ``Range`` and conditional requests.
* :func:`write_static_index` writes a self-contained ``index.html`` into the bucket from its
  current listing, for S3 static website hosting or sharing by presigned URL. It needs no extra.

Rendering (:mod:`rearcquest.index._render`) and the HTTP rules (:mod:`rearcquest.index._http`,
the token included) are pure; only :mod:`rearcquest.index._app` imports Starlette, on first use of
:func:`create_app` or when :mod:`rearcquest.index._server` builds a server. This package re-exports
its submodules' public names; they never import it back.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_CACHE_SECONDS,
    DEFAULT_HOST,
    DEFAULT_INDEX_KEY,
    DEFAULT_PORT,
    MAX_PRESIGN_SECONDS,
)
from rearcquest.errors import ConfigError, OptionError
from rearcquest.index._http import (
    AUTO_TOKEN,
    MIN_TOKEN_CHARS,
    UnsafePath,
    check_path,
    is_servable,
    resolve_token,
)
from rearcquest.index._http import (
    check_token as check_token,  # not in __all__, kept importable
)
from rearcquest.index._render import View, build_listing, relative_href, render_page
from rearcquest.index._server import (
    KEEP_ALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
    Limits,
    _missing_extra,
    exposure_warning,
    listen,
    serve,
    start_server,
)
from rearcquest.layout import normalise_prefix

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.index._app import create_app

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
    "listen",
    "render_presigned_index",
    "resolve_token",
    "serve",
    "start_server",
    "write_static_index",
]

log = logging.getLogger(__name__)

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


def __getattr__(name: str) -> Any:
    # create_app needs the serve extra (Starlette): it is imported on first use, so the package,
    # the static page and serve() itself (which checks the extra when it starts) load without it.
    if name == "create_app":
        try:
            from rearcquest.index._app import create_app
        except ImportError as exc:
            raise _missing_extra() from exc
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
