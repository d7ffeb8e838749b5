"""Fetch the US population from DataUSA and store the answer in S3, only when it changed.

The object is the response body as received (the quest asks for the API's JSON), with metadata
saying where and when it came from, its shape and the sha256 of its canonical form. The tesseract
API reorders the keys of ``annotations`` between responses and sends neither ``ETag`` nor
``Last-Modified``, so neither bytes nor HTTP validators tell whether the data changed: the
canonical sha256 does, compared with the stored object's metadata (one HEAD). An unchanged answer
is not written, so no needless S3 event reaches anything downstream.

A body is validated completely before anything is written; bad input leaves the stored object as
it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_POPULATION_KEY,
    DEFAULT_POPULATION_URL,
    build_user_agent,
    check_http_url,
)
from rearcquest.errors import ConfigError
from rearcquest.sources._http import HttpClient
from rearcquest.sources.datausa import (
    MAX_BODY_BYTES,
    PopulationData,
    fetch_body,
    parse_population,
)

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.config import RetryPolicy
    from rearcquest.sources._http import HttpClient

log = logging.getLogger(__name__)

META_SOURCE_URL = "rq-source-url"
META_FETCHED_AT = "rq-fetched-at"
META_SHAPE = "rq-shape"
META_CANONICAL_SHA256 = "rq-canonical-sha256"
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_population` did.

    Attributes:
        url: the API URL fetched.
        bucket: the bucket.
        key: the object key.
        written: whether the object was written.
        reason: why it was (or was not) written, for people.
        data: the validated table.
        fetched_at: when the answer was received (UTC, ISO 8601).
    """

    url: str
    bucket: str
    key: str
    written: bool
    reason: str
    data: PopulationData = field(repr=False)
    fetched_at: str

    @property
    def years(self) -> tuple[int, int]:
        """The first and the last year."""
        return self.data.years[0], self.data.years[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``rq fetch-population --format json``."""
        return {
            "url": self.url,
            "bucket": self.bucket,
            "key": self.key,
            "written": self.written,
            "reason": self.reason,
            "shape": self.data.shape,
            "rows": len(self.data.rows),
            "years": list(self.years),
            "sha256": self.data.canonical_sha256,
        }


def _check_key(key: str) -> str:
    key = key.strip()
    if not key or key.startswith("/") or key.endswith("/"):
        raise ConfigError(f"key {key!r} must name an object: not empty, no leading or final '/'")
    return key


def fetch_population(
    store: ObjectStore,
    *,
    key: str = DEFAULT_POPULATION_KEY,
    url: str = DEFAULT_POPULATION_URL,
    force: bool = False,
    contact: str | None = None,
    user_agent: str | None = None,
    max_bytes: int = MAX_BODY_BYTES,
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    http: HttpClient | None = None,
) -> FetchResult:
    """Fetch the population JSON from ``url`` and store it at ``key`` unless unchanged.

    Args:
        store: the bucket to write into.
        key: the object key.
        url: the DataUSA API URL (tesseract or the old ``/api/data``).
        force: write even when the canonical form equals the stored one.
        contact: an e-mail address for the User-Agent.
        user_agent: a complete User-Agent instead.
        max_bytes: the largest body accepted.
        timeout: seconds to wait for a connection or for data.
        retry: the retry policy for the source.
        http: an HTTP client to use instead of building one.

    Returns:
        What was fetched and whether it was written.

    Raises:
        ConfigError: the URL or key is invalid (exit 2).
        SourceError: the API is unreachable or answered a non-2xx status (exit 3).
        DataError: the answer is not national population by year (exit 1); nothing was written.
        StorageError: S3 failed (exit 1).
    """

    check_http_url(url, "population URL")
    key = _check_key(key)
    own_client = http is None
    if http is None:
        http = HttpClient(
            user_agent=build_user_agent(contact, user_agent), retry=retry, timeout=timeout
        )
    try:
        # S3 first: when the bucket is unusable, the API is not bothered at all.
        stored = store.head(key)
        body = fetch_body(http, url, max_bytes=max_bytes)
    finally:
        if own_client:
            http.close()
    fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
    data = parse_population(body, source=url)

    stored_sha = stored.metadata.get(META_CANONICAL_SHA256) if stored is not None else None
    if stored is None:
        reason = "new object"
    elif not stored_sha:
        reason = f"the stored object has no {META_CANONICAL_SHA256} metadata"
    elif stored_sha != data.canonical_sha256:
        reason = "the data changed"
    elif force:
        reason = "unchanged, written anyway (--force)"
    else:
        reason = "unchanged: same canonical sha256 as the stored object"
        log.info("%s: %s; nothing written", store.url(key), reason)
        return FetchResult(url, store.bucket, key, False, reason, data, fetched_at)

    store.put_bytes(
        key,
        body,
        content_type=CONTENT_TYPE,
        metadata={
            META_SOURCE_URL: url,
            META_FETCHED_AT: fetched_at,
            META_SHAPE: data.shape,
            META_CANONICAL_SHA256: data.canonical_sha256,
        },
    )
    log.info("%s: written (%s)", store.url(key), reason)
    return FetchResult(url, store.bucket, key, True, reason, data, fetched_at)
