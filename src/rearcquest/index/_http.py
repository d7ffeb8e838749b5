"""Pure HTTP semantics for downloads (RFC 9110): paths, ranges, validators, headers, the bearer
token. No I/O."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from mimetypes import guess_type
from urllib.parse import quote

from rearcquest.errors import ConfigError

# S3 limits a key to 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
# Bidirectional controls (embeddings, overrides, isolates, marks): they reorder how a name reads.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# C0/C1 controls and the line and paragraph separators.
_CONTROL = frozenset({"Cc", "Zl", "Zp"})
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# One range only; at most 19 digits so a hostile header cannot make int() work hard.
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*(\d{0,19})[ \t]*-[ \t]*(\d{0,19})[ \t]*", re.IGNORECASE)


class UnsafePath(ValueError):
    """A request path that must not become an S3 key."""


def check_path(path: str, root: str) -> str:
    """Return the key for a request ``path`` (relative to the served prefix ``root``).

    S3 keys are opaque, but the key travels in the URL of the S3 request, where an HTTP stack or
    an S3-compatible server may resolve ``.`` and ``..`` segments: ``pr/../../other-bucket/x``
    could then read another bucket. So such segments are refused outright, as are control
    characters and keys longer than S3 allows; what is left is always ``root`` plus the path.

    Args:
        path: the decoded request path without its leading ``/``.
        root: the served prefix (``''`` or ending with ``/``).

    Returns:
        ``root + path``.

    Raises:
        UnsafePath: the path has a ``.``/``..`` segment, a backslash, a control character, or
            the key would be too long.
    """
    if any(segment in (".", "..") for segment in path.split("/")):
        raise UnsafePath("the path has a '.' or '..' segment")
    if "\\" in path:
        raise UnsafePath("the path has a backslash")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in path):
        raise UnsafePath("the path has a control character")
    key = root + path
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafePath("the key would be longer than S3 allows")
    return key


def is_servable(key: str) -> bool:
    """Tell whether an existing key can be downloaded (see :func:`check_path`)."""
    try:
        check_path(key, "")
    except UnsafePath:
        return False
    return True


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range ``start..end`` of an object of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """The number of bytes in the range."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value."""
        return f"bytes {self.start}-{self.end}/{self.size}"


class RangeNotSatisfiable(Exception):
    """The Range header asks only for bytes the object does not have (answer 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Interpret a ``Range`` header against an object of ``size`` bytes.

    Args:
        header: the header value, or ``None``.
        size: the object size.

    Returns:
        The range to send, or ``None`` to send the whole object: no header, a syntax this
        server does not serve (several ranges, another unit, invalid numbers; RFC 9110 lets a
        server ignore them), or an empty object.

    Raises:
        RangeNotSatisfiable: the range starts at or beyond the end, or is an empty suffix.
    """
    if not header or size == 0:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end, size)


def entity_tag(etag: str) -> str:
    """Return the quoted ``ETag`` header value for an S3 ETag."""
    clean = "".join(c for c in etag if 0x21 <= ord(c) <= 0x7E and c != '"')
    return f'"{clean}"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def http_date(value: datetime) -> str:
    """Format a time as an HTTP date (``Thu, 06 Aug 2026 08:30:00 GMT``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _parse_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None  # type: ignore[unreachable]
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.replace(microsecond=0)


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, modified: datetime | None
) -> bool:
    """Tell whether a GET/HEAD can be answered 304 (RFC 9110 13.1.2 and 13.1.3).

    ``If-None-Match`` wins over ``If-Modified-Since``; it matches weakly, ``*`` matches any.
    """
    tag = entity_tag(etag)
    if if_none_match is not None:
        return any(t == "*" or _weak_equal(t, tag) for t in _tags(if_none_match))
    if if_modified_since and modified is not None:
        since = _parse_date(if_modified_since)
        return since is not None and _seconds(modified) <= since
    return False


def precondition_failed(
    if_match: str | None, if_unmodified_since: str | None, etag: str, modified: datetime | None
) -> bool:
    """Tell whether ``If-Match`` / ``If-Unmodified-Since`` fail (answer 412)."""
    tag = entity_tag(etag)
    if if_match is not None:
        return not any(t == "*" or (t == tag and not t.startswith("W/")) for t in _tags(if_match))
    if if_unmodified_since and modified is not None:
        since = _parse_date(if_unmodified_since)
        return since is not None and _seconds(modified) > since
    return False


def if_range_allows(if_range: str | None, etag: str, modified: datetime | None) -> bool:
    """Tell whether a Range may be honoured given ``If-Range`` (a strong ETag or an exact date)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == entity_tag(etag)
    since = _parse_date(value)
    return since is not None and modified is not None and _seconds(modified) == since


def content_type(key: str, stored: str | None) -> str:
    """Return the stored Content-Type, or a guess from the name when S3 has only a generic one."""
    if stored and stored.split(";")[0].strip().lower() not in _GENERIC_TYPES:
        return stored
    guessed, _ = guess_type(key.rsplit("/", 1)[-1], strict=False)
    return guessed or "application/octet-stream"


def _saved_name(name: str) -> str:
    """``name`` without the characters that must not reach a saved file's name."""
    return "".join(c for c in name if c not in _BIDI and unicodedata.category(c) not in _CONTROL)


def content_disposition(key: str) -> str:
    """Return an ``attachment`` Content-Disposition naming the key's last segment.

    Control characters and bidirectional controls are removed from the name first, from both
    parameters: a browser saves the file under the ``filename*`` name, where
    ``invoice\u202etxt.exe`` would read as ``invoiceexe.txt``. The plain ``filename`` is an ASCII stand-in; ``filename*``
    carries the UTF-8 name (RFC 6266), percent-encoded, so no key can break out of the header.
    """
    name = _saved_name(key.rsplit("/", 1)[-1]) or "download"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


# A token anyone on the network may try to guess: shorter ones are refused.
MIN_TOKEN_CHARS = 16
# ``--token auto``: generate one (32 URL-safe characters, 192 random bits).
AUTO_TOKEN = "auto"


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
