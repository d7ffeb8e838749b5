"""The release log: what each release of a mirror held, so that the past can be read again.

BLS revises earlier quarters in every release; a mirror keeps only the latest bytes. A versioned
bucket keeps the older bytes too, and the release log says which version of each file made up
each release. It is one JSON object beside the sync state, outside the mirror
(``.rearcquest/releases/<prefix>.json``, see :mod:`rearcquest.layout`)::

    {"version": 1, "prefix": "pr/", "releases": [          oldest first
      {"release": "2025-06-05 12:30",                      UTC: the changed files' latest Last-Modified
       "synced_at": "2025-06-05T14:02:11+00:00",
       "changed": ["pr.data.0.Current", ...],             added or with new bytes
       "removed": [],                                     gone from the mirror
       "files": {"pr.class": {"sha256": "...", "version_id": "..."}, ...}}]}

A sync that leaves the mirror clean (every transfer done) appends a release when the mirror's
files differ from the latest release logged; the write is conditional (``If-Match`` /
``If-None-Match``), under the sync's lease. Version ids are ``null`` when the bucket is not
versioned: the log is kept anyway, and such a release can be read back only while its bytes
are still the current ones.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rearcquest.errors import (
    ConfigError,
    DataError,
    PreconditionFailedError,
    StateConflictError,
)
from rearcquest.layout import name_problem, releases_key, shown_name
from rearcquest.sources._http import parse_http_date

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore

log = logging.getLogger(__name__)

RELEASES_VERSION = 1
# A release log of 16 MB holds thousands of releases of thousands of files: anything larger is
# not one rq wrote.
_MAX_LOG_BYTES = 16 * 1024 * 1024
# ASCII digits only: \d would also take other scripts' digits, which no release stamp holds.
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_STAMP = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2})$")
_SPEC_HELP = (
    "give YYYY-MM-DD, a release stamp 'YYYY-MM-DD HH:MM', 'previous' or 'latest' (see rq releases)"
)
# A stamp as the log keeps it.
_STAMP_WRITTEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")
_STAMP_FORMAT = "%Y-%m-%d %H:%M"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its sha256 and the S3 version id that holds those bytes."""

    sha256: str
    version_id: str | None = None


@dataclass(frozen=True)
class Release:
    """One release of a mirror.

    Attributes:
        release: the release stamp, ``YYYY-MM-DD HH:MM`` in UTC: the latest ``Last-Modified``
            among the changed files (the sync time when none has one), moved to the minute after
            the previous release's when it is not later: unique in the log, never going back.
        synced_at: when the sync that recorded it ran (ISO 8601, UTC).
        changed: the files added or changed since the previous release.
        removed: the files gone since the previous release.
        files: every file of the release.
    """

    release: str
    synced_at: str
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    files: Mapping[str, ReleaseFile] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The release as ``rq releases --format json`` prints it (and the log stores it)."""
        return {
            "release": self.release,
            "synced_at": self.synced_at,
            "changed": list(self.changed),
            "removed": list(self.removed),
            "files": {
                name: {"sha256": f.sha256, "version_id": f.version_id}
                for name, f in sorted(self.files.items())
            },
        }


@dataclass(frozen=True)
class ReleaseLog:
    """The releases of one mirror, oldest first, and the ETag of the log object as read."""

    prefix: str
    releases: tuple[Release, ...] = ()
    etag: str | None = None
    key: str = ""

    @property
    def latest(self) -> Release | None:
        """The newest release, if any."""
        return self.releases[-1] if self.releases else None

    def to_json(self) -> bytes:
        """Serialise the log."""
        doc = {
            "version": RELEASES_VERSION,
            "prefix": self.prefix,
            "releases": [r.to_dict() for r in self.releases],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()


def _names(where: str, what: str, names: object) -> None:
    """Refuse a name of the log that is not one plain file name: it would become a path."""
    for name in names if isinstance(names, (list, dict)) else ():
        if (problem := name_problem(name)) is not None:
            raise ValueError(f"{where}: {what} {shown_name(name)} is not a file name ({problem})")


def _parse_release(doc: object, index: int) -> Release:
    where = f"release {index}"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not an object")
    for name in ("release", "synced_at"):
        if not isinstance(doc.get(name), str):
            raise ValueError(f"{where}: {name!r} is not a string")
    if not _is_stamp(doc["release"]):
        raise ValueError(f"{where}: release {shown_name(doc['release'])} is not YYYY-MM-DD HH:MM")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("changed", "removed"):
        value = doc.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: {name!r} is not a list of file names")
        _names(where, f"{name!r} names", value)
        lists[name] = tuple(value)
    files_doc = doc.get("files")
    if not isinstance(files_doc, dict):
        raise ValueError(f"{where}: 'files' is not an object")
    _names(where, "file", files_doc)
    files: dict[str, ReleaseFile] = {}
    for name, entry in files_doc.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: file {name!r} is not an object")
        sha, version_id = entry.get("sha256"), entry.get("version_id")
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
            raise ValueError(f"{where}: file {name!r}: sha256 is not 64 hex digits")
        if version_id is not None and not isinstance(version_id, str):
            raise ValueError(f"{where}: file {name!r}: version_id is neither a string nor null")
        files[name] = ReleaseFile(sha, version_id)
    return Release(doc["release"], doc["synced_at"], lists["changed"], lists["removed"], files)


def parse_log(data: bytes, prefix: str) -> tuple[Release, ...]:
    """Parse a release log document.

    Raises:
        ValueError: it is not one; the message says why.
    """
    try:
        doc = json.loads(data)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JSON document ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")
    if doc.get("version") != RELEASES_VERSION:
        raise ValueError(f"version {doc.get('version')!r}, not {RELEASES_VERSION}")
    if doc.get("prefix") != prefix:
        raise ValueError(f"the log of prefix {doc.get('prefix')!r}, not {prefix!r}")
    if not isinstance(doc.get("releases"), list):
        raise ValueError("'releases' is not a list")
    return tuple(_parse_release(r, i) for i, r in enumerate(doc["releases"]))


def load_releases(store: ObjectStore, prefix: str, *, key: str | None = None) -> ReleaseLog:
    """Read the release log of the mirror at ``prefix`` (empty when there is none yet).

    Raises:
        DataError: the log object is not a release log.
        StorageError: S3 failed.
    """
    key = key or releases_key(prefix)
    found = store.fetch(key, max_bytes=_MAX_LOG_BYTES)
    if found is None:
        return ReleaseLog(prefix, key=key)
    data, info = found
    try:
        if len(data) > _MAX_LOG_BYTES:
            raise ValueError(f"larger than {_MAX_LOG_BYTES} bytes")
        releases = parse_log(data, prefix)
    except ValueError as exc:
        raise DataError(
            f"{store.url(key)} is not a release log ({exc}); move it aside and the next sync "
            "starts a new one"
        ) from exc
    return ReleaseLog(prefix, releases, etag=info.etag, key=key)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_STAMP_FORMAT)


def _is_stamp(text: str) -> bool:
    """Whether ``text`` is a real ``YYYY-MM-DD HH:MM`` (a release stamp)."""
    if not _STAMP_WRITTEN.fullmatch(text):
        return False
    try:
        datetime.strptime(text, _STAMP_FORMAT)
    except ValueError:
        return False
    return True


def _http_stamp(value: str | None) -> str | None:
    """An HTTP ``Last-Modified`` date as a stamp, UTC; ``None`` when it is no date."""

    when = parse_http_date(value)
    return None if when is None else _stamp(when)


def _after(stamp: str, previous: Release | None) -> str:
    """``stamp``, or the minute after the previous release's when it is not later.

    Files may be re-published in the minute of the last release, or with an older date (a file
    put back): the log's stamps still name one release each and only grow, so a date or stamp
    resolves to one release.
    """
    if previous is None or not _is_stamp(previous.release) or stamp > previous.release:
        return stamp
    return (datetime.strptime(previous.release, _STAMP_FORMAT) + timedelta(minutes=1)).strftime(
        _STAMP_FORMAT
    )


def next_release(
    previous: Release | None,
    files: Mapping[str, ReleaseFile],
    last_modified: Mapping[str, str | None],
    *,
    now: datetime,
) -> Release | None:
    """The release a mirror now holding ``files`` makes after ``previous``; ``None`` if none.

    A file is changed when its sha256 differs from the previous release's (or it is new). The
    release stamp is in UTC: the latest ``Last-Modified`` among the changed files (the sync time
    when none has one); a stamp not later than the previous release's becomes the minute after
    it, so stamps are unique and never go backwards. Only new version ids of unchanged bytes (a
    metadata refresh copies the object) make no release.

    Args:
        previous: the latest release logged.
        files: the mirror's files now.
        last_modified: each file's HTTP ``Last-Modified`` as the source sent it.
        now: the sync time (the stamp when no changed file has a ``Last-Modified``).
    """
    before = previous.files if previous is not None else {}
    changed = tuple(
        sorted(n for n, f in files.items() if n not in before or before[n].sha256 != f.sha256)
    )
    removed = tuple(sorted(n for n in before if n not in files))
    if not changed and not removed:
        return None
    # Read back from the state: data, of which only a real date makes a stamp.
    dates = [d for n in changed if (d := _http_stamp(last_modified.get(n)))]
    stamp = _after(max(dates) if dates else _stamp(now), previous)
    return Release(
        release=stamp,
        synced_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        changed=changed,
        removed=removed,
        files=dict(files),
    )


def record_release(
    store: ObjectStore,
    prefix: str,
    files: Mapping[str, ReleaseFile],
    last_modified: Mapping[str, str | None],
    *,
    key: str | None = None,
    now: datetime | None = None,
    check: Callable[[], None] | None = None,
) -> Release | None:
    """Append a release to the log when the mirror's files differ from the latest one logged.

    Costs one GET, and one conditional PUT when there is a release to add. A log that is not
    a release log is left as it is, with a warning (history is never overwritten); the sync
    still succeeds.

    Args:
        store: the bucket.
        prefix: the mirror prefix.
        files: the mirror's files after the sync.
        last_modified: each file's HTTP ``Last-Modified``.
        key: the log's key; default ``.rearcquest/releases/<prefix>.json``.
        now: the sync time; default now.
        check: called before the write; raises when the sync no longer holds the mirror.

    Returns:
        The release added, or ``None``.

    Raises:
        StateConflictError: the log changed since it was read; it was not overwritten.
        StorageError: S3 failed.
    """
    try:
        current = load_releases(store, prefix, key=key)
    except DataError as exc:
        log.warning("not recording the release: %s", exc)
        return None
    release = next_release(current.latest, files, last_modified, now=now or datetime.now(UTC))
    if release is None:
        return None
    new = ReleaseLog(prefix, (*current.releases, release), key=current.key)
    if check is not None:
        check()
    try:
        if current.etag is None:
            store.put_bytes_if(current.key, new.to_json(), if_none_match=True)
        else:
            store.put_bytes_if(current.key, new.to_json(), if_match=current.etag)
    except PreconditionFailedError as exc:
        raise StateConflictError(
            f"the release log {store.url(current.key)} changed while this sync ran; it was not "
            "overwritten. Re-run the sync to record the release"
        ) from exc
    log.info("recorded release %s of %s", release.release, store.url(prefix))
    return release


def require_versioning(store: ObjectStore) -> None:
    """Refuse a bucket that does not keep old versions (``--vintages``).

    Raises:
        ConfigError: versioning is off or suspended; the message says how to enable it.
        StorageError: the status cannot be read.
    """
    status = store.versioning()
    if status != "Enabled":
        state = "suspended" if status == "Suspended" else "not enabled"
        raise ConfigError(
            f"bucket {store.bucket!r} does not keep old versions (versioning is {state}), so "
            "releases cannot be kept; enable it with: aws s3api put-bucket-versioning --bucket "
            f"{store.bucket} --versioning-configuration Status=Enabled (or sync without "
            "--vintages)"
        )


def _on_or_before(spec: str) -> Callable[[Release], bool]:
    """Which releases are on or before the date or stamp ``spec`` (a date includes its day).

    Raises:
        ConfigError: ``spec`` is neither, or not a real calendar date and time.
    """
    if _DATE.match(spec):
        bound = spec
    elif match := _STAMP.match(spec):
        bound = f"{match[1]} {match[2]}"
    else:
        raise ConfigError(f"{spec!r} is not a release: {_SPEC_HELP}")
    try:
        datetime.fromisoformat(bound)
    except ValueError as exc:
        # The shape is right but the calendar is not: 2025-02-30, 2025-13-45, 25:61.
        raise ConfigError(f"{spec!r} is not a real date ({exc}): {_SPEC_HELP}") from None
    if len(bound) == len("YYYY-MM-DD"):
        return lambda r: r.release[:10] <= bound
    return lambda r: r.release <= bound


def resolve_release(releases: Sequence[Release], spec: str) -> Release:
    """The release ``spec`` names: ``latest``, ``previous``, a date or a release stamp.

    A date (``YYYY-MM-DD``) or a stamp (``YYYY-MM-DD HH:MM``) names the latest release on or
    before it (a date includes its whole day). Either must be a real calendar date and time.

    Raises:
        ConfigError: ``spec`` is none of these (or not a real date), no release is logged, or
            no release is that old.
    """
    text = spec.strip()
    # The spec is checked before the log: a bad date is named even where nothing is logged.
    keep = None if text in ("latest", "previous") else _on_or_before(text)
    if not releases:
        raise ConfigError(
            "no release is logged for this mirror yet; run rq sync-bls (a sync that changes "
            "files records one)"
        )
    if text == "latest":
        return releases[-1]
    if keep is None:
        if len(releases) < 2:
            raise ConfigError(
                f"only one release is logged ({releases[0].release}); there is no previous one"
            )
        return releases[-2]
    chosen = [r for r in releases if keep(r)]
    if not chosen:
        raise ConfigError(
            f"no release on or before {text}; the first logged is {releases[0].release} "
            "(see rq releases)"
        )
    return chosen[-1]
