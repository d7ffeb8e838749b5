"""The one exception tree of rearcquest.

Every error the library raises on purpose is an :class:`RqError`. The CLI catches it once, prints
``Error: <message>`` without a traceback and exits with the error's ``exit_code``::

    RqError                      exit 1   something went wrong; the message says what and how to fix it
    ├── ConfigError              exit 2   bad or missing settings (bucket, contact, URL) — nothing was tried
    │   ├── OptionError          exit 2   options that cannot go together (the CLI shows it as a usage error)
    │   ├── LockUnsupportedError exit 2   the S3 endpoint ignores conditional writes: no lease (--no-lock)
    │   ├── SurveyNotListedError exit 2   a survey asked for by name is not in the root's listing
    │   └── QueryRefusedError    exit 2   rq sql was given more than a read-only query of the tables
    ├── SourceError              exit 3   the source (BLS, DataUSA) is unreachable or answered badly
    │   ├── SourceForbiddenError exit 3   HTTP 403, almost always a User-Agent without a contact
    │   └── ListingError         exit 3   the directory page could not be parsed, or listed no file
    ├── DataError                exit 1   the data itself is bad (malformed BLS row, wrong JSON shape)
    │   └── SourceChangedError   exit 1   a file's body is not the size its listing says: it changed
    ├── StorageError             exit 1   S3 failed (no bucket, no credentials, endpoint down)
    │   └── PreconditionFailedError exit 1  a conditional write lost (412/409): the object changed
    ├── TransferError            exit 1   some files of a sync failed; the others were done
    ├── NoSpaceError             exit 1   the local disk (TMPDIR) has no room for a download
    ├── DeleteGuardError         exit 4   a sync would delete more objects than allowed
    └── ConcurrentSyncError      exit 5   another sync holds or changed the mirror; nothing overwritten
        ├── LeaseHeldError       exit 5   another sync holds the mirror's lease (holder, expiry named)
        ├── LeaseLostError       exit 5   this sync's lease was taken over; it stopped changing things
        ├── StateConflictError   exit 5   the state object changed since it was read; not overwritten
        └── SurveyPendingError   exit 5   a file's tables wait for its survey's first sync

Third-party exceptions (botocore, httpx) are translated at the boundary with ``raise ... from exc``
so the cause stays attached for ``--verbose``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConcurrentSyncError",
    "ConfigError",
    "DataError",
    "DeleteGuardError",
    "LeaseHeldError",
    "LeaseLostError",
    "ListingError",
    "LockUnsupportedError",
    "NoSpaceError",
    "OptionError",
    "PreconditionFailedError",
    "QueryRefusedError",
    "RqError",
    "SourceChangedError",
    "SourceError",
    "SourceForbiddenError",
    "StateConflictError",
    "StorageError",
    "SurveyPendingError",
    "TransferError",
]


class RqError(Exception):
    """Base class of every error rearcquest raises on purpose."""

    exit_code: int = 1


class ConfigError(RqError):
    """A setting is missing or invalid; nothing was attempted."""

    exit_code = 2


class OptionError(ConfigError):
    """Options were given together that cannot be; nothing was attempted.

    Attributes:
        options: the options at fault as the user wrote them (``"--survey"``, ``"--host, --port"``),
            for the CLI to name in its usage error.
    """

    def __init__(self, message: str, *, options: str) -> None:
        super().__init__(message)
        self.options = options


class SurveyNotListedError(ConfigError):
    """A survey asked for by name is not in the root's listing; nothing was attempted.

    Attributes:
        names: the names the root does not list.
    """

    def __init__(self, message: str, *, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = list(names)


class LockUnsupportedError(ConfigError):
    """The S3 endpoint ignores conditional writes, so no lease can be held on a mirror."""


class QueryRefusedError(ConfigError):
    """``rq sql`` (:func:`~rearcquest.data.tables.run_sql`) was given something else than one read-only
    query of the registered tables: a table function, ``COPY``, another statement; nothing ran.

    Attributes:
        refused: what was refused, as the message names it (``"COPY"``,
            ``"table function read_csv"``).
    """

    def __init__(self, message: str, *, refused: str) -> None:
        super().__init__(message)
        self.refused = refused


class SourceError(RqError):
    """The upstream source could not be reached or answered with an error."""

    exit_code = 3


class SourceForbiddenError(SourceError):
    """The source answered 403 Forbidden."""


class ListingError(SourceError):
    """A directory listing could not be parsed or was empty."""


class DataError(RqError):
    """Input data is malformed or is not what it claims to be."""


class SourceChangedError(DataError):
    """A file's body is not the size the listing gave: it changed at the source since it was
    listed (a release published during the run), or the server is inconsistent."""


class StorageError(RqError):
    """An S3 operation failed.

    Attributes:
        code: the error code S3 answered (``NoSuchKey``, ``AccessDenied``, ``NoSuchBucket``,
            ``InvalidArgument`` ...), or its HTTP status as a string when it gave no code; None when
            no answer came (no credentials, no connection) or rq refused by itself.
        key: the object key (or listing prefix) the operation was on; None for the bucket itself.
    """

    def __init__(self, message: str, *, code: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.key = key


class PreconditionFailedError(StorageError):
    """A conditional write or delete was refused: the object changed (or appeared) since it was
    read (S3 412 PreconditionFailed, 409 ConditionalRequestConflict)."""


class TransferError(RqError):
    """Some files could not be transferred; the rest of the run completed."""


class NoSpaceError(RqError):
    """The local disk has no room for what rq was about to write there (a download into
    ``TMPDIR``): checked before writing, and a full disk met while writing, both say so.

    Attributes:
        directory: the folder written to.
        needed: the bytes the write needed.
        free: the bytes free there (when the error was raised).
    """

    def __init__(self, message: str, *, directory: str, needed: int, free: int) -> None:
        super().__init__(message)
        self.directory, self.needed, self.free = directory, needed, free


class DeleteGuardError(RqError):
    """A sync would delete more objects than ``--max-delete`` allows."""

    exit_code = 4


class ConcurrentSyncError(RqError):
    """Another sync of the same mirror holds it or changed it; nothing was overwritten."""

    exit_code = 5


class LeaseHeldError(ConcurrentSyncError):
    """Another sync holds the lease of the mirror (the message names the holder and the expiry)."""


class LeaseLostError(ConcurrentSyncError):
    """This sync's lease expired and was taken over; it stopped before changing more."""


class StateConflictError(ConcurrentSyncError):
    """The sync state object changed since this run read it; it was not overwritten."""


class SurveyPendingError(ConcurrentSyncError):
    """A file's tables cannot be built yet: its survey's first sync (another work message) has
    not mirrored the series file. Nothing was built; the message is tried again later."""


# A message quotes at most this much of a cell, header or file: one 66 MB cell quoted whole made
# a 69 MB error, stored in the tables' manifest, that blocked every later build.
QUOTE_LIMIT = 80


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to its first ``limit`` characters.

    Args:
        value: what the data held (a cell, a header name).
        limit: the most characters of it to show.

    Returns:
        ``repr(value)`` (``'1.5'`` for the text, ``1.5`` for the number); or, for a longer
        value, its first ``limit`` characters and how long it was:
        ``'123456...'... (66000000 characters)``.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def clipped(message: str, limit: int = 500) -> str:
    """``message`` cut to ``limit`` characters, saying how long it was (for stored messages)."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message)} characters)"
