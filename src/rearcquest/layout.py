"""The bucket layout: the names of everything rearcquest itself writes, in one leaf module.

A mirror prefix holds exactly the source's files. What ``rq`` keeps for itself lives under
:data:`RESERVED_PREFIX`, outside every mirror prefix, so ``rclone check``, ``aws s3 sync`` and the
index page see a clean copy::

    .rearcquest/state/<prefix>.json     the sync state of the mirror at <prefix> (e.g. pr.json)
    .rearcquest/locks/<prefix>.json     the lease a running sync holds on that mirror
    .rearcquest/releases/<prefix>.json  the release log of that mirror (see rearcquest.releases)

Object metadata keys written on every mirrored object are here too, so a reader never needs the
module that wrote them.
"""

from __future__ import annotations

# Everything rq writes for itself starts with this; it is never a mirrored file's key.
RESERVED_PREFIX = ".rearcquest/"
STATE_PREFIX = RESERVED_PREFIX + "state/"
LOCK_PREFIX = RESERVED_PREFIX + "locks/"
RELEASES_PREFIX = RESERVED_PREFIX + "releases/"
# Where the state lived before it moved out of the mirror (read once, migrated, deleted).
LEGACY_STATE_NAME = ".rearcquest-sync-state.json"

META_SHA256 = "rq-sha256"
META_LISTING_DATE = "rq-listing-date"
META_LAST_MODIFIED = "rq-last-modified"
META_SOURCE = "rq-source-url"
# rclone reads a file's modification time from this metadata key (seconds since the epoch).
META_MTIME = "mtime"


def _slug(prefix: str) -> str:
    """The prefix as a key part: ``pr/`` -> ``pr``, ``a/b/`` -> ``a/b``, ``''`` -> ``_root``.

    A prefix that itself starts with ``_`` gets one more (``_root/`` -> ``__root``), so no two
    mirrors, the bucket root included, share a state or a lease.
    """
    slug = prefix.strip("/")
    if not slug:
        return "_root"
    return "_" + slug if slug.startswith("_") else slug


def state_key(prefix: str) -> str:
    """The default key of the sync state of the mirror at ``prefix``."""
    return f"{STATE_PREFIX}{_slug(prefix)}.json"


def lock_key(prefix: str) -> str:
    """The key of the lease object of the mirror at ``prefix``."""
    return f"{LOCK_PREFIX}{_slug(prefix)}.json"


def releases_key(prefix: str) -> str:
    """The key of the release log of the mirror at ``prefix``."""
    return f"{RELEASES_PREFIX}{_slug(prefix)}.json"


def is_reserved(key: str) -> bool:
    """Tell whether ``key`` is one of rq's own objects rather than a mirrored file."""
    return key.startswith(RESERVED_PREFIX) or key.rsplit("/", 1)[-1] == LEGACY_STATE_NAME
