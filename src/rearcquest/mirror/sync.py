"""Mirror a BLS directory into S3: a pure planner and a separate, careful apply.

Change detection, cheapest first, so that nothing is fetched when nothing changed:

1. The state of the last sync (size, listing date, ``Last-Modified``, sha256 and the S3 ETag of
   every file) is one JSON object outside the mirror (``.rearcquest/state/<prefix>.json``),
   cross-checked against one ``ListObjectsV2``: an object changed or removed out of band is
   noticed and repaired. Each mirrored object also carries its source dates and (unless it went
   up in parts) its sha256 as metadata, so a lost or invalid state is rebuilt from the objects.
2. A file whose listing size and date match the state is unchanged: no request for it at all.
3. Otherwise a conditional GET (``If-Modified-Since``; 304 means unchanged); the body streams
   into S3 as it arrives (no temporary file), hashed on the way, and if its sha256 equals the
   stored one nothing is written: a small body is never PUT, a multipart upload is aborted (BLS
   re-stamps unchanged files on release days). Only the dates are updated.

Deletes run last, and only when the listing was complete, every transfer succeeded and the delete
guard (:class:`~rearcquest.config.DeleteLimit`, decided by the planner) allows them. A clean run
then records a release in the mirror's release log when its files changed (see
:mod:`rearcquest.records.releases`; the state keeps each object's S3 version id for it). A real run
holds a lease on the mirror (:mod:`rearcquest.records.lease`), and writes the state only if it is still
the one it read (``If-Match``), so two overlapping syncs cannot undo each other.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, assert_never

from rearcquest._process import wait_all
from rearcquest.config import (
    DEFAULT_TRANSFERS,
    DeleteLimit,
    SyncOptions,
    build_user_agent,
    check_http_url,
    default_rps,
    require_user_agent,
)
from rearcquest.errors import (
    ConfigError,
    DataError,
    DeleteGuardError,
    PreconditionFailedError,
    RqError,
    SourceChangedError,
    SourceError,
    StateConflictError,
    StorageError,
    TransferError,
)
from rearcquest.layout import (
    LEGACY_STATE_NAME,
    META_LAST_MODIFIED,
    META_LISTING_DATE,
    META_MTIME,
    META_SHA256,
    META_SOURCE,
    RESERVED_PREFIX,
    default_prefix,
    is_reserved,
    lock_key,
    normalise_prefix,
    plain_name,
    releases_key,
    shown_name,
)
from rearcquest.layout import state_key as default_state_key
from rearcquest.records.lease import Lease
from rearcquest.records.releases import ReleaseFile, record_release
from rearcquest.records.state import MAX_STATE_BYTES, FileState, SyncState, UploadState
from rearcquest.sources._http import HttpClient, parse_http_date
from rearcquest.sources.bls import Download, Resume, TransferStopped, download, fetch_listing

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectInfo, ObjectStore, ObjectWriter, UploadPart
    from rearcquest.sources._http import HttpClient
    from rearcquest.sources.bls import RemoteFile

log = logging.getLogger(__name__)

# The state's file name inside the mirror before it moved to .rearcquest/state/ (kept for readers
# that hide it); see rearcquest.layout.
STATE_NAME = LEGACY_STATE_NAME

# BLS time series are UTF-8 text whatever the server says or the name suggests (a plain web
# server calls pr.class application/java-vm); browsers and rclone see what the mirror stores.
CONTENT_TYPE = "text/plain; charset=utf-8"

ActionKind = Literal["add", "update", "delete", "unchanged", "skip"]


@dataclass(frozen=True)
class Action:
    """One planned step for one file.

    Attributes:
        name: the file name.
        key: the object key in the bucket.
        kind: ``add``, ``update``, ``delete`` or ``unchanged``.
        reason: why, for people (shown by ``--dry-run``).
        file: the listed file (``None`` for deletes).
        if_modified_since: send this ``If-Modified-Since``; ``None`` for an unconditional GET.
        known_sha256: the sha256 of the intact stored object, if any: equal bytes need no upload.
        resume: the recorded multipart upload of this file to continue, if any.
    """

    name: str
    key: str
    kind: ActionKind
    reason: str
    file: RemoteFile | None = None
    if_modified_since: str | None = None
    known_sha256: str | None = None
    # A transfer of this file cut short by an earlier run, whose listing still matches: resumed.
    resume: UploadState | None = None


@dataclass(frozen=True)
class SyncPlan:
    """The planned actions, in file-name order, with the listing that justified them.

    ``forget`` names the state entries to drop: selected files that left the listing and whose
    object is gone too. Entries of files outside ``--include``/``--exclude`` are kept, so a
    partial sync does not make the next full one fetch them again.
    """

    actions: tuple[Action, ...]
    remote: tuple[RemoteFile, ...]
    forget: tuple[str, ...] = ()
    # Why the delete guard stops this plan (nothing is changed), or None when it may run.
    delete_guard: str | None = None
    # Recorded uploads of selected files that will not be resumed (the file changed, left the
    # listing or is unchanged): aborted, so they cost nothing.
    abandon: tuple[str, ...] = ()

    def of(self, kind: ActionKind) -> list[Action]:
        """The actions of one kind."""
        return [a for a in self.actions if a.kind == kind]

    @property
    def transfers(self) -> list[Action]:
        """The actions that need a request to the source."""
        return [a for a in self.actions if a.kind in ("add", "update")]


@dataclass(frozen=True)
class Handover:
    """A transfer stopped on purpose, its multipart upload recorded in the state to be resumed.

    Attributes:
        name: the file.
        start: the bytes already in S3 (confirmed parts) when this run began it.
        reached: the bytes in S3 when it stopped (``start`` when it made no progress).
    """

    name: str
    start: int
    reached: int


@dataclass(frozen=True)
class FileError:
    """A file that failed, and why."""

    name: str
    message: str


# How a transferred file ended, when it did not fail: each has its list in SyncResult.
Transferred = Literal["added", "updated", "unchanged"]


@dataclass
class SyncResult:
    """What a sync did (or, with ``dry_run``, would do)."""

    source_url: str
    bucket: str
    prefix: str
    dry_run: bool
    plan: SyncPlan
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    restamped: list[str] = field(default_factory=list)
    skipped: list[FileError] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    requests: int = 0
    deletes_skipped: str | None = None
    delete_guard: str | None = None
    # Files whose body was not the listed size (they changed at the source during the run); also
    # in ``errors``. The sync lists the directory once more when there are any.
    changed: list[str] = field(default_factory=list)
    # Transfers stopped on purpose (the time budget ran out, Ctrl-C): recorded to be resumed.
    handed_over: list[Handover] = field(default_factory=list)

    @property
    def progressed(self) -> bool:
        """Whether the run moved anything: a file written or re-stamped, or a part kept."""
        return bool(
            self.added
            or self.updated
            or self.restamped
            or self.deleted
            or any(h.reached > h.start for h in self.handed_over)
        )

    def _record(self, name: str, outcome: Transferred) -> None:
        """List ``name`` under ``outcome``; an unchanged file was re-stamped (its dates moved)."""
        if outcome == "added":
            self.added.append(name)
        elif outcome == "updated":
            self.updated.append(name)
        elif outcome == "unchanged":
            self.unchanged.append(name)
            self.restamped.append(name)
        else:
            assert_never(outcome)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``rq sync-bls --format json`` (the job adds what it did
        after the sync: :meth:`rearcquest.jobs.job.SurveyRun.to_dict`)."""
        return {
            "source_url": self.source_url,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "dry_run": self.dry_run,
            "added": self.added,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "restamped": self.restamped,
            "skipped": [asdict(e) for e in self.skipped],
            "errors": [asdict(e) for e in self.errors],
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_uploaded": self.bytes_uploaded,
            "requests": self.requests,
            "deletes_skipped": self.deletes_skipped,
            "delete_guard": self.delete_guard is not None,
            "plan": [
                {"name": a.name, "action": a.kind, "reason": a.reason} for a in self.plan.actions
            ],
        } | ({"handed_over": [asdict(h) for h in self.handed_over]} if self.handed_over else {})

    def raise_for_errors(self) -> None:
        """Raise if any file failed or the delete guard tripped.

        Raises:
            DeleteGuardError: more deletes were planned than allowed (exit code 4).
            TransferError: some files failed (exit code 1).
        """
        if self.errors:
            names = ", ".join(e.name for e in self.errors)
            raise TransferError(
                f"{len(self.errors)} file(s) failed: {names}; the others were synced and a "
                "re-run retries only what is left"
            )
        if self.delete_guard:
            raise DeleteGuardError(self.delete_guard)


@dataclass(frozen=True)
class Progress:
    """A progress event for a callback.

    ``kind`` is ``start`` (``files``/``total_bytes`` to transfer), ``bytes`` (``nbytes`` more
    moved for ``name``) or ``file`` (``name`` finished with ``outcome``).
    """

    kind: Literal["start", "bytes", "file"]
    name: str = ""
    files: int = 0
    total_bytes: int = 0
    nbytes: int = 0
    outcome: str = ""


ProgressCallback = Callable[[Progress], None]


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def plan_sync(
    remote: Iterable[RemoteFile],
    state: SyncState,
    stored: Mapping[str, ObjectInfo],
    *,
    prefix: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    delete: bool = True,
    keep: Collection[str] = (),
    max_delete: DeleteLimit | None = None,
) -> SyncPlan:
    """Decide, without any I/O, what a sync must do, delete guard included.

    Args:
        remote: the files of the source listing.
        state: the state of the last sync (possibly empty).
        stored: the objects under ``prefix``, by key, from ``ListObjectsV2``.
        prefix: the key prefix of the mirror (``''`` or ending with ``/``).
        include: only file names matching one of these globs take part (all when empty).
        exclude: file names matching one of these globs take no part: never fetched or deleted.
        delete: plan deletes for objects whose file left the listing.
        keep: names under the prefix that are not the source's and are never deleted (the
            static index page, when it is written inside the mirror).
        max_delete: the delete guard; default :class:`DeleteLimit()` (20 objects, half the
            mirrored files, or any file when at most one would remain).

    Returns:
        The plan, one action per selected file or stale object, sorted by name. A listed file
        whose key is one rq writes itself (its state, the index page) is planned as ``skip``:
        it is never written. ``delete_guard`` says why the plan must not run, if it must not.
    """
    remote = [f for f in remote if _selected(f.name, include, exclude)]
    listed = {f.name for f in remote}
    actions: list[Action] = []
    plan_uploads = _Uploads(state, prefix)
    for file in remote:
        key = prefix + file.name
        if is_reserved(key) or file.name in keep:
            actions.append(
                Action(
                    file.name,
                    key,
                    "skip",
                    "its name is one rq uses for its own objects; not mirrored "
                    "(--exclude it to silence this)",
                    file,
                )
            )
            continue
        obj = stored.get(key)
        known = state.files.get(file.name)
        if obj is None:
            reason = "missing from the bucket" if known else "new file"
            actions.append(Action(file.name, key, "add", reason, file, resume=plan_uploads(file)))
            continue
        if known is None:
            actions.append(
                Action(
                    file.name,
                    key,
                    "update",
                    "no record of the stored copy",
                    file,
                    resume=plan_uploads(file),
                )
            )
            continue
        if obj.etag != known.etag or obj.size != known.size:
            actions.append(
                Action(
                    file.name,
                    key,
                    "update",
                    "stored copy changed out of band",
                    file,
                    resume=plan_uploads(file),
                )
            )
            continue
        changes = []
        if file.size is None or file.modified is None:
            changes.append("the listing gives no exact size or date")
        if file.size is not None and file.size != known.size:
            changes.append(f"size {known.size} -> {file.size}")
        if file.modified is not None and file.modified != known.modified:
            changes.append(f"listed {known.modified} -> {file.modified}")
        if not changes:
            actions.append(
                Action(file.name, key, "unchanged", "same size and date as the last sync", file)
            )
            continue
        actions.append(
            Action(
                file.name,
                key,
                "update",
                "; ".join(changes),
                file,
                if_modified_since=known.last_modified,
                known_sha256=known.sha256,
                resume=plan_uploads(file),
            )
        )
    mirrored = [
        key[len(prefix) :]
        for key in sorted(stored)
        if "/" not in key[len(prefix) :] and not is_reserved(key) and key[len(prefix) :] not in keep
    ]
    deletes = 0
    if delete:
        for name in mirrored:
            if name in listed or not _selected(name, include, exclude):
                continue
            actions.append(Action(name, prefix + name, "delete", "no longer listed by the source"))
            deletes += 1
    limit = max_delete or DeleteLimit()
    guard = None
    if limit.exceeded(deletes, len(mirrored)):
        guard = (
            f"the sync would delete {deletes} objects of the {len(mirrored)} mirrored, more than "
            f"{limit.describe()} allows; nothing was changed. Check the source, then re-run with "
            "a higher --max-delete N or P% (or --no-delete to keep them)"
        )
    actions.sort(key=lambda a: (a.name, a.kind))
    forget = sorted(
        name
        for name in state.files
        if name not in listed and prefix + name not in stored and _selected(name, include, exclude)
    )
    abandon = sorted(
        name
        for name in state.uploads
        if name not in plan_uploads.resumed and _selected(name, include, exclude)
    )
    return SyncPlan(
        tuple(actions), tuple(remote), tuple(forget), delete_guard=guard, abandon=tuple(abandon)
    )


class _Uploads:
    """The recorded uploads a plan resumes: those whose file the listing still gives as it was
    (same size and date, with a ``Last-Modified`` to send as ``If-Range``) at the same key."""

    def __init__(self, state: SyncState, prefix: str) -> None:
        self.state, self.prefix = state, prefix
        self.resumed: set[str] = set()

    def __call__(self, file: RemoteFile) -> UploadState | None:
        upload = self.state.uploads.get(file.name)
        if (
            upload is None
            or upload.key != self.prefix + file.name
            or file.size is None
            or file.modified is None
            or (upload.size, upload.modified) != (file.size, file.modified)
            or not upload.last_modified
        ):
            return None
        self.resumed.add(file.name)
        return upload


def _state_from_metadata(obj: ObjectInfo) -> FileState | None:
    sha = obj.metadata.get(META_SHA256)
    if not sha:
        return None
    return FileState(
        size=obj.size,
        modified=obj.metadata.get(META_LISTING_DATE) or None,
        last_modified=obj.metadata.get(META_LAST_MODIFIED) or None,
        sha256=sha,
        etag=obj.etag,
        # "null" names an object written while versioning was off: no version to come back to.
        version_id=obj.version_id if obj.version_id != "null" else None,
    )


def load_state(
    store: ObjectStore,
    prefix: str,
    source_url: str,
    stored: Mapping[str, ObjectInfo],
    *,
    state_key: str | None = None,
    keep: Collection[str] = (),
    peek: bool = False,
) -> SyncState:
    """Read the state object; rebuild entries for mirrored objects it does not know.

    The state costs one GET. Only objects missing from it (a lost, invalid or old state) cost a
    HEAD each, to read the sha256 and dates their metadata carries. A state object that is not
    exactly the document rq writes is treated as lost, with one warning: no content of it can
    stop a sync. An old state inside the mirror (``<prefix>.rearcquest-sync-state.json``) is
    read when there is no new one, and marked for removal once the new one is written.

    Args:
        store: the bucket.
        prefix: the mirror prefix.
        source_url: the mirrored directory.
        stored: the objects under ``prefix``, by key.
        state_key: the state object's key; default ``.rearcquest/state/<prefix>.json``.
        keep: names under the prefix that are not mirrored files (the index page).
        peek: only tell whether the state is current (the plan made before the lease): one
            that needs rebuilding or migrating comes back ``stale`` and empty, with no warning,
            no HEAD and no read of an old state; the sync reads it again under the lease.

    Raises:
        StorageError: S3 failed.
    """
    key = state_key or default_state_key(prefix)
    legacy = prefix + LEGACY_STATE_NAME
    legacy_key = legacy if legacy in stored and legacy != key else None
    found = store.fetch(key, max_bytes=MAX_STATE_BYTES)
    etag = found[1].etag if found is not None else None
    if peek:
        return _peeked_state(prefix, source_url, stored, found, etag, legacy_key, keep)
    read_from = key
    if found is None and legacy_key is not None:
        found, read_from = store.fetch(legacy_key, max_bytes=MAX_STATE_BYTES), legacy_key
        if found is not None:
            log.info("migrating the sync state %s to %s", store.url(legacy_key), store.url(key))
    files: dict[str, FileState] = {}
    uploads: dict[str, UploadState] = {}
    stale = found is None or legacy_key is not None
    if found is not None:
        try:
            if len(found[0]) > MAX_STATE_BYTES:
                raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
            parsed = SyncState.from_json(found[0])
            files, uploads = dict(parsed.files), dict(parsed.uploads)
        except ValueError as exc:
            log.warning(
                "the sync state %s is not a valid state document (%s); rebuilding it from the "
                "objects' metadata",
                store.url(read_from),
                exc,
            )
            stale = True
    for obj_key in stored:
        name = obj_key[len(prefix) :]
        # Only a plain name can be a state entry (the state refuses any other when read back).
        if not plain_name(name) or is_reserved(obj_key) or name in keep or name in files:
            continue
        head = store.head(obj_key)
        if head is not None and (rebuilt := _state_from_metadata(head)) is not None:
            files[name] = rebuilt
            stale = True
    return SyncState(
        source_url=source_url,
        files=files,
        stale=stale,
        etag=etag,
        legacy_key=legacy_key,
        uploads=uploads,
    )


def _peeked_state(
    prefix: str,
    source_url: str,
    stored: Mapping[str, ObjectInfo],
    found: tuple[bytes, ObjectInfo] | None,
    etag: str | None,
    legacy_key: str | None,
    keep: Collection[str],
) -> SyncState:
    """:func:`load_state` with ``peek``: the state as read, or stale at the first doubt."""
    stale = SyncState(source_url=source_url, files={}, stale=True, etag=etag)
    if found is None or legacy_key is not None or len(found[0]) > MAX_STATE_BYTES:
        return stale
    try:
        parsed = SyncState.from_json(found[0])
    except ValueError:
        return stale  # warned about once, by the read under the lease
    files = dict(parsed.files)
    for obj_key in stored:
        name = obj_key[len(prefix) :]
        if not (not plain_name(name) or is_reserved(obj_key) or name in keep or name in files):
            return stale  # an object the state does not know: rebuilt under the lease
    return SyncState(source_url=source_url, files=files, etag=etag, uploads=parsed.uploads)


def _write_state(store: ObjectStore, key: str, read: SyncState, new: SyncState) -> str:
    """Write ``new`` only if the state object is still the one ``read`` came from; return the
    new object's ETag.

    Raises:
        StateConflictError: another sync wrote it meanwhile; it was not overwritten.
        StorageError: S3 failed.
    """
    try:
        if read.etag is None:
            etag = store.put_bytes_if(key, new.to_json(), if_none_match=True)
        else:
            etag = store.put_bytes_if(key, new.to_json(), if_match=read.etag)
    except PreconditionFailedError as exc:
        raise StateConflictError(
            f"the sync state {store.url(key)} changed while this sync ran (another sync of the "
            "mirror, without a lease or after this one's expired); it was not overwritten. The "
            "files this run moved are in the bucket; re-run to record them"
        ) from exc
    if read.legacy_key is not None:
        try:
            store.delete(read.legacy_key)
        except StorageError as exc:
            log.warning("could not remove the old sync state: %s", exc)
        else:
            log.info("removed the old sync state %s", store.url(read.legacy_key))
    return etag


def _mtime(last_modified: str | None) -> str | None:
    """``Last-Modified`` as rclone's ``mtime`` metadata: seconds since the epoch, 9 decimals."""

    when = parse_http_date(last_modified)
    return None if when is None else f"{when.timestamp():.9f}"


def _object_metadata(
    file: RemoteFile, sha256: str | None, last_modified: str | None
) -> dict[str, str]:
    """The metadata of a mirrored object: its sha256, where it came from and its dates.

    ``sha256`` is ``None`` for a multipart upload, whose metadata is fixed before the body is in.
    """
    metadata = {
        META_LISTING_DATE: file.modified or "",
        META_LAST_MODIFIED: last_modified or "",
        META_SOURCE: file.url,
    }
    if sha256 is not None:
        metadata[META_SHA256] = sha256
    if (mtime := _mtime(last_modified)) is not None:
        metadata[META_MTIME] = mtime
    return metadata


def _local_error(name: str, exc: OSError) -> RqError:
    """A local operating-system failure (no file is written, but sockets and memory can fail)
    as that file's error."""
    return RqError(f"{name}: local I/O error while transferring: {exc}; re-run to retry it")


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloaded = 0
        self.uploaded = 0

    def add(self, downloaded: int = 0, uploaded: int = 0) -> None:
        with self.lock:
            self.downloaded += downloaded
            self.uploaded += uploaded


def apply_plan(
    plan: SyncPlan,
    state: SyncState,
    *,
    store: ObjectStore,
    http: HttpClient,
    prefix: str,
    source_url: str,
    transfers: int = DEFAULT_TRANSFERS,
    on_progress: ProgressCallback | None = None,
    state_key: str | None = None,
    check_lease: Callable[[], None] | None = None,
    time_left: Callable[[], float] | None = None,
) -> SyncResult:
    """Carry out ``plan``: transfers in parallel, then deletes, then the new state.

    ``transfers`` downloads run at once, each streaming its body into S3 as it arrives (no
    temporary file): a body up to one part (:data:`rearcquest.aws.storage.PART_SIZE`) is held in
    memory, a larger one goes up as a multipart upload whose parts are sent while the next ones
    arrive. Once a body is in and its sha256 differs from the stored one, it is handed to a second
    pool of ``transfers`` uploaders that PUT it or complete its multipart upload, so the next
    download starts while S3 takes the last one; equal bytes are never written (the multipart
    upload is aborted). Memory is bounded by the part size times the parts in flight. Per-file
    failures are collected in the result, never raised (a failed multipart upload is aborted);
    deletes are skipped when any transfer failed. A plan stopped by the delete guard changes
    nothing. The state is written only if it is still the one ``state`` was read from; then, when
    no file failed, a release is appended to the release log if the files differ from its latest
    release.

    A multipart upload in progress is recorded in the state (its id and finished parts, written
    every few parts or seconds), so that a run cut short resumes it (see
    :class:`~rearcquest.records.state.UploadState`). A run stopped on purpose (``time_left``
    ran out, or Ctrl-C) stops each transfer at its last whole part, records it, writes the
    state and returns the transfers in ``handed_over`` (Ctrl-C: raises ``KeyboardInterrupt``
    after that); it deletes nothing and records no release.

    Args:
        state_key: the state object's key; default ``.rearcquest/state/<prefix>.json``.
        check_lease: called before the deletes and the state write; raises when this run no
            longer holds the mirror.
        time_left: seconds this run may still spend before it must stop (margin already
            taken); None for no limit.

    Raises:
        StateConflictError: the state object changed since it was read; it was not overwritten.
        LeaseLostError: ``check_lease`` found the lease lost; nothing more was changed.
        StorageError: the state could not be written.
    """

    result = SyncResult(source_url, store.bucket, prefix, dry_run=False, plan=plan)
    result.skipped = [FileError(a.name, a.reason) for a in plan.of("skip")]
    if plan.delete_guard:
        result.delete_guard = result.deletes_skipped = plan.delete_guard
        return result
    check = check_lease or (lambda: None)
    files: dict[str, FileState] = dict(state.files)
    lock = threading.Lock()
    book = _Ledger(
        store, state_key or default_state_key(prefix), state, source_url, files, lock, check
    )
    for name in plan.abandon:
        recorded = state.uploads[name]
        if recorded.key == prefix + name:
            log.info("%s: abandoning the cut transfer recorded for it", name)
            store.abort_upload(recorded.key, recorded.upload_id)
        else:  # not this file's key (a hostile or foreign state): another's, never aborted
            log.warning("%s: dropping a recorded upload at another key", shown_name(name))
        book.uploads.pop(name, None)
    counter = _Counter()
    notify = on_progress or (lambda _event: None)
    todo = plan.transfers
    width = max(1, transfers)
    upload_slots = threading.BoundedSemaphore(width)
    uploads: list[Future[None]] = []
    stop = threading.Event()

    def stopping() -> bool:
        if not stop.is_set() and time_left is not None and time_left() <= 0:
            log.info("the time budget is spent: stopping the transfers at their last whole part")
            stop.set()
        return stop.is_set()

    notify(
        Progress(
            "start", files=len(todo), total_bytes=sum(a.file.size or 0 for a in todo if a.file)
        )
    )

    def finish(name: str, outcome: Transferred, entry: FileState) -> None:
        with lock:
            files[name] = entry
            result._record(name, outcome)
        notify(Progress("file", name=name, outcome=outcome))

    def fail(name: str, error: RqError) -> None:
        with lock:
            result.errors.append(FileError(name, str(error)))
            if isinstance(error, SourceChangedError):
                result.changed.append(name)
        log.info("%s: %s", name, error)
        notify(Progress("file", name=name, outcome="failed"))

    def upload(action: Action, writer: ObjectWriter, got: Download, mine: set[str]) -> None:
        assert action.file is not None
        file = action.file
        try:
            # A body that fits in one part gets its sha256 in the metadata now; a multipart
            # upload keeps the metadata it started with (the state holds its sha256).
            etag = writer.complete(metadata=_object_metadata(file, got.sha256, got.last_modified))
            sha256 = got.sha256
            if sha256 is None:
                # Resumed: the hash saw only the rest. One streamed GET of the object hashes
                # the whole file, and proves the parts joined to the listed size.
                size, sha256 = store.sha256_of(action.key, if_match=etag)
                if size != got.size:
                    raise DataError(
                        f"{file.name}: the resumed object holds {size} bytes, not {got.size}"
                    )
            counter.add(uploaded=got.size - got.start)
            entry = FileState(got.size, file.modified, got.last_modified, sha256, etag)
            finish(file.name, "added" if action.kind == "add" else "updated", entry)
        except RqError as exc:
            fail(file.name, exc)
        except OSError as exc:
            fail(file.name, _local_error(file.name, exc))
        finally:
            writer.abort()  # a no-op once completed; otherwise nothing is left behind
            book.forget(file.name, mine)
            upload_slots.release()

    def transfer(action: Action) -> None:
        assert action.file is not None
        file = action.file
        cut = _CutTransfer(store, action, book)
        if stopping():
            cut.hand_over(result, lock, None)
            return

        def moved(n: int) -> None:
            counter.add(downloaded=n)
            notify(Progress("bytes", name=file.name, nbytes=n))
            if stopping():
                raise TransferStopped
            cut.checkpoint()

        writer: ObjectWriter | None = None
        try:
            resume = cut.resumable()
            fetched = download(
                http,
                file,
                cut.open_writer,
                if_modified_since=action.if_modified_since,
                on_bytes=moved,
                resume=resume,
            )
            got: Download | None = None
            if fetched is not None:
                got, writer = fetched
            if got is None or got.start == 0:
                cut.drop_recorded()  # not resumed (304, or a 200 with the whole file)
            previous = files.get(file.name)
            if got is None or (action.known_sha256 and got.sha256 == action.known_sha256):
                # 304, or the same bytes re-stamped: write no byte (a multipart upload begun for
                # the body is aborted: no object, no S3 event), refresh the dates.
                if writer is not None:
                    writer.abort()
                    book.forget(file.name, cut.mine)
                assert previous is not None
                last_modified = got.last_modified if got else previous.last_modified
                etag = previous.etag
                if (file.modified, last_modified) != (previous.modified, previous.last_modified):
                    # The object's metadata must tell the new dates too (rclone reads mtime):
                    # a server-side copy onto itself, no byte downloaded again or uploaded.
                    etag = store.replace_metadata(
                        action.key,
                        _object_metadata(file, previous.sha256, last_modified),
                        content_type=CONTENT_TYPE,
                        size=previous.size,
                        if_match=previous.etag,
                    )
                entry = FileState(
                    previous.size, file.modified, last_modified, previous.sha256, etag
                )
                finish(file.name, "unchanged", entry)
                return
            assert writer is not None
            if got.start and time_left is not None and time_left() < got.size / READBACK_RATE:
                # A resumed file is read back once completed, to hash it: when that would not
                # fit in the time left, the next run (resuming from the last whole part) does
                # it, rather than a run stopped mid-read that leaves it to be fetched again.
                cut.hand_over(result, lock, writer)
                writer = None
                return
            upload_slots.acquire()
            with lock:
                uploads.append(uploader.submit(upload, action, writer, got, cut.mine))
            writer = None  # the uploader completes it now
        except TransferStopped:
            cut.hand_over(result, lock, cut.writer)
        except RqError as exc:
            cut.failed()
            fail(file.name, exc)
        except OSError as exc:
            cut.failed()
            fail(file.name, _local_error(file.name, exc))
        finally:
            if writer is not None:
                writer.abort()

    result.unchanged.extend(a.name for a in plan.of("unchanged"))
    if todo:
        try:
            with (
                ThreadPoolExecutor(max_workers=width, thread_name_prefix="rq-upload") as uploader,
                ThreadPoolExecutor(max_workers=width, thread_name_prefix="rq-sync") as pool,
            ):
                try:
                    wait_all(pool.submit(transfer, action) for action in todo)
                except BaseException:
                    # Ctrl-C (or an unexpected error): the other transfers stop at their last
                    # whole part, and what they kept is recorded before this is raised on.
                    stop.set()
                    raise
            for future in uploads:
                future.result()  # an unexpected error in an upload is raised here
        except BaseException:
            _record_on_the_way_out(book)
            raise

    deletes = plan.of("delete")
    if deletes and (result.errors or result.handed_over):
        result.deletes_skipped = (
            "some transfers failed; nothing is deleted until a clean run"
            if result.errors
            else "the run stopped before every transfer was done; nothing is deleted until a "
            "clean run"
        )
    elif deletes:
        check()
        failures = store.delete_many([a.key for a in deletes])
        for action in deletes:
            if action.key in failures:
                result.errors.append(
                    FileError(action.name, f"delete failed: {failures[action.key]}")
                )
            else:
                result.deleted.append(action.name)
                files.pop(action.name, None)
    for name in plan.forget:
        files.pop(name, None)
    lists = (result.added, result.updated, result.deleted, result.unchanged, result.restamped)
    for names in (*lists, result.changed):
        names.sort()
    result.errors.sort(key=lambda e: e.name)
    result.handed_over.sort(key=lambda h: h.name)
    result.bytes_downloaded = counter.downloaded
    result.bytes_uploaded = counter.uploaded
    result.requests = http.requests
    _note_version_ids(store, prefix, files, [*result.added, *result.updated, *result.restamped])
    if state.stale or files != state.files or book.uploads != state.uploads or book.written:
        book.write()
    if not result.errors and not result.handed_over:
        _record_release(store, prefix, files, check)
    return result


def _record_on_the_way_out(book: _Ledger) -> None:
    """Write the state as a run stops on an exception (Ctrl-C): its cut transfers are recorded.
    A failure to is logged; the exception that stopped the run is the one raised."""
    try:
        book.write()
    except Exception as exc:
        log.warning("could not record the cut transfers in the sync state: %s", exc)


# A transfer in progress is recorded in the state after this many new parts, or this many
# seconds with at least one: a kill costs at most these (ListParts finds the ones sent since),
# and a 6 GB file costs ~200 state writes instead of one per part.
CHECKPOINT_PARTS = 4
CHECKPOINT_SECONDS = 30.0
# The bytes a second a completed, resumed object is assumed to be read back and hashed at (a
# Lambda worker reads S3 in-region at ~90 MB/s and hashes at ~110 MB/s on its 0.58 vCPU): one
# that would not be done in the time left waits for the next run.
READBACK_RATE = 40 * 1024 * 1024


class _Ledger:
    """The state object as this run writes it, possibly several times (the checkpoints of cut
    transfers, then the end): each write is conditional on the ETag of the one before.

    ``files`` and ``uploads`` are changed by the transfers under ``lock``; a write takes a copy
    of both under it.
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        read: SyncState,
        source_url: str,
        files: dict[str, FileState],
        lock: threading.Lock,
        check: Callable[[], None],
    ) -> None:
        self.store, self.key, self.read, self.source_url = store, key, read, source_url
        self.files, self.lock, self.check = files, lock, check
        self.uploads: dict[str, UploadState] = dict(read.uploads)
        self.written = False
        self._write_lock = threading.Lock()

    def record(self, name: str, upload: UploadState) -> None:
        """Note a cut or growing upload (written at the next :meth:`write`)."""
        with self.lock:
            self.uploads[name] = upload

    def forget(self, name: str, upload_ids: Collection[str]) -> None:
        """Drop ``name``'s recorded upload if it is one of ``upload_ids`` (completed, aborted)."""
        with self.lock:
            upload = self.uploads.get(name)
            if upload is not None and upload.upload_id in upload_ids:
                del self.uploads[name]

    def write(self) -> None:
        """Write the state as it is now (under the lease), conditional on the last write.

        Raises:
            LeaseLostError: the lease is lost; nothing was written.
            StateConflictError: another writer changed the state object.
            StorageError: S3 failed.
        """
        with self._write_lock:
            self.check()
            with self.lock:
                new = SyncState(
                    source_url=self.source_url, files=dict(self.files), uploads=dict(self.uploads)
                )
            etag = _write_state(self.store, self.key, self.read, new)
            self.read = replace(self.read, etag=etag, legacy_key=None)
            self.written = True


class _CutTransfer:
    """One file's transfer as far as resuming goes: the recorded upload it continues (checked
    with S3's ListParts), the writers it opens, its checkpoints and its handover."""

    def __init__(self, store: ObjectStore, action: Action, book: _Ledger) -> None:
        self.store, self.action, self.book = store, action, book
        assert action.file is not None
        self.file = action.file
        self.writer: ObjectWriter | None = None
        self.mine: set[str] = set()  # the ids of the uploads this transfer made or continued
        self.kept = 0  # bytes of confirmed parts it began from
        self.last_modified: str | None = None
        self._parts: list[UploadPart] = []
        self._recorded_dropped = False
        self._checked_at = 0.0
        self._noted_at = 0.0
        self._noted_parts = -1

    def resumable(self) -> Resume[ObjectWriter] | None:
        """The rest to ask for, when the recorded upload checks out; otherwise ``None`` (the
        recorded upload, if any, is aborted) and the file is fetched whole."""
        upload = self.action.resume
        self._clear_strays(upload.upload_id if upload is not None else None)
        if upload is None:
            return None
        try:
            found = self.store.list_parts(upload.key, upload.upload_id)
        except StorageError as exc:  # e.g. no s3:ListMultipartUploadParts: fetch it whole
            log.warning("%s: cannot list the parts of its cut transfer: %s", self.file.name, exc)
            found = None
        parts = _confirmed(upload, found, self.file.size)
        if not parts:
            why = "S3 knows no such upload" if found is None else "no part of it checks out"
            log.info("%s: not resuming the cut transfer (%s); starting over", self.file.name, why)
            self.drop_recorded()
            return None
        assert upload.last_modified is not None  # the planner resumes none without it
        self._parts = parts
        self.kept = sum(p.size for p in parts)
        log.info("%s: resuming from byte %d (%d parts)", self.file.name, self.kept, len(parts))
        return Resume(self.kept, upload.last_modified, self._open_rest)

    def _clear_strays(self, keep: str | None) -> None:
        """Abort uploads at this file's key that no state records (a run killed before its
        first checkpoint): under the lease, every upload at a mirror key is rq's own."""
        from rearcquest.aws import storage

        if self.file.size is not None and self.file.size <= storage.PART_SIZE:
            return  # goes up in one PUT: never had an upload
        try:
            found = self.store.uploads_at(self.action.key)
        except StorageError as exc:  # e.g. no s3:ListBucketMultipartUploads: left to lifecycle
            log.warning("%s: cannot list the uploads at its key: %s", self.file.name, exc)
            return
        for upload_id in found:
            if upload_id != keep:
                log.info("%s: aborting an unrecorded upload left by a cut run", self.file.name)
                self.store.abort_upload(self.action.key, upload_id)

    def _open_rest(self) -> ObjectWriter:
        upload = self.action.resume
        assert upload is not None
        self.writer = self.store.resume_writer(
            upload.key,
            upload_id=upload.upload_id,
            parts=self._parts,
            part_size=upload.part_size,
            content_type=CONTENT_TYPE,
        )
        self.mine.add(upload.upload_id)
        self.last_modified = upload.last_modified
        self._noted_parts = len(self._parts)
        return self.writer

    def open_writer(self, last_modified: str | None) -> ObjectWriter:
        """The writer of a whole body (a first transfer, or a 200 where the rest was asked)."""
        self.drop_recorded()
        self.writer = self.store.writer(
            self.action.key,
            content_type=CONTENT_TYPE,
            metadata=_object_metadata(self.file, None, last_modified),
            size=self.file.size,
        )
        self.last_modified = last_modified
        self._noted_parts = -1
        return self.writer

    def drop_recorded(self) -> None:
        """Abort the recorded upload this transfer will not continue (once)."""
        upload = self.action.resume
        if upload is None or self._recorded_dropped or upload.upload_id in self.mine:
            return
        self._recorded_dropped = True
        self.store.abort_upload(upload.key, upload.upload_id)
        self.book.forget(self.file.name, {upload.upload_id})

    def _state_of(self, upload_id: str | None, parts: Sequence[UploadPart]) -> UploadState | None:
        assert self.writer is not None
        if (
            upload_id is None
            or self.file.size is None
            or self.file.modified is None
            or not self.last_modified
        ):
            return None  # nothing a later run could resume
        return UploadState(
            self.action.key,
            upload_id,
            self.file.size,
            self.file.modified,
            self.last_modified,
            self.writer.part_size,
            tuple((p.number, p.etag) for p in parts),
        )

    def checkpoint(self) -> None:
        """Record the upload when it starts, then every few parts or seconds (see
        :data:`CHECKPOINT_PARTS`); cheap between (one clock read a chunk)."""
        writer = self.writer
        if writer is None or writer.upload_id is None:
            return
        now = time.monotonic()
        first = writer.upload_id not in self.mine
        if not first and now - self._checked_at < 1.0:
            return
        self._checked_at = now
        parts = writer.completed_parts() if not first else []
        due = len(parts) - self._noted_parts >= CHECKPOINT_PARTS or (
            len(parts) > self._noted_parts and now - self._noted_at >= CHECKPOINT_SECONDS
        )
        if not first and not due:
            return
        upload = self._state_of(writer.upload_id, parts)
        if upload is None:
            return
        self.mine.add(upload.upload_id)
        self._noted_parts, self._noted_at = len(parts), now
        self.book.record(self.file.name, upload)
        self.book.write()

    def hand_over(
        self, result: SyncResult, lock: threading.Lock, writer: ObjectWriter | None
    ) -> None:
        """Stop at the last whole part and record the upload to be resumed (the state is
        written by the run, after every transfer stopped)."""
        start = self.kept if writer is not None else _recorded_bytes(self.action.resume)
        reached = start
        if writer is not None and writer.upload_id is not None:
            upload_id = writer.upload_id
            parts = writer.suspend()
            upload = self._state_of(upload_id, parts) if parts else None
            if upload is None:
                # Nothing a later run could resume: leave nothing behind either.
                self.store.abort_upload(self.action.key, upload_id)
                self.book.forget(self.file.name, {upload_id})
            else:
                self.mine.add(upload_id)
                self.book.record(self.file.name, upload)
                reached = sum(p.size for p in parts)
        elif writer is not None:
            writer.abort()  # the body fitted in memory: nothing to keep
        with lock:
            result.handed_over.append(Handover(self.file.name, start, reached))
        log.info("%s: stopped at byte %d, recorded to be resumed", self.file.name, reached)

    def failed(self) -> None:
        """The transfer failed: its writers were aborted, so their records go."""
        if self.writer is not None:
            self.writer.abort()
        self.book.forget(self.file.name, self.mine)


def _recorded_bytes(upload: UploadState | None) -> int:
    return 0 if upload is None else len(upload.parts) * upload.part_size


def _confirmed(
    upload: UploadState, found: Sequence[UploadPart] | None, size: int | None
) -> list[UploadPart]:
    """The parts of a recorded upload to continue from: what S3's ListParts confirms, never
    what the state merely says.

    Parts 1..n with no gap, each ``part_size`` bytes, as S3 lists them (parts sent after the
    last checkpoint count: S3 checked each against its CRC32); every part the state records must
    be among them with its ETag, or nothing is trusted. The last byte of the file is never
    among them (a resumed transfer asks for at least one byte).
    """
    if found is None or size is None:
        return []
    parts: list[UploadPart] = []
    for number, part in enumerate(found, 1):
        if part.number != number or part.size != upload.part_size:
            break
        parts.append(part)
    for number, etag in upload.parts:
        if number > len(parts) or parts[number - 1].etag != etag:
            return []
    while parts and sum(p.size for p in parts) >= size:
        parts.pop()
    return parts


def _note_version_ids(
    store: ObjectStore, prefix: str, files: dict[str, FileState], written: Sequence[str]
) -> None:
    """Put the S3 version id of each object this sync wrote into its state entry.

    A HEAD per written object (a few per release), kept apart from the upload so the transfer
    path stays as it is; none when the bucket was never versioned (one GetBucketVersioning). A HEAD whose ETag is not the one this sync wrote (someone wrote the
    object since) leaves the entry without a version id. When the bucket turns out to be
    versioned, the entries of older objects that lack one are completed too (once).
    """
    versioned = False

    def note(name: str) -> None:
        nonlocal versioned
        entry = files.get(name)
        if entry is None:
            return
        head = store.head(prefix + name)
        if head is None or head.etag != entry.etag:
            log.warning("%s changed since this sync wrote it; its version is not recorded", name)
            files[name] = replace(entry, version_id=None)
            return
        if head.version_id and head.version_id != "null":
            versioned = True
            files[name] = replace(entry, version_id=head.version_id)
        else:
            files[name] = replace(entry, version_id=None)

    if not written:
        return
    try:
        never_versioned = store.versioning() == ""
    except StorageError:  # no s3:GetBucketVersioning: the HEADs tell
        never_versioned = False
    if never_versioned:  # no object of the bucket has a version id: nothing to ask
        for name in written:
            if name in files:
                files[name] = replace(files[name], version_id=None)
        return
    for name in written:
        note(name)
    if versioned:
        for name in sorted(n for n, e in files.items() if e.version_id is None):
            note(name)


def _record_release(
    store: ObjectStore,
    prefix: str,
    files: Mapping[str, FileState],
    check: Callable[[], None],
) -> None:
    """Append a release to the mirror's release log if its files changed since the last one."""

    record_release(
        store,
        prefix,
        {name: ReleaseFile(f.sha256, f.version_id) for name, f in files.items()},
        {name: f.last_modified for name, f in files.items()},
        check=check,
    )


def _check_state_key(state_key: str, prefix: str, index_key: str | None) -> str:
    """Refuse a state key that would sit among the mirrored files or on another rq object.

    Raises:
        ConfigError: it would.
    """
    key = state_key.strip()
    if not key or key.endswith("/") or key.startswith("/"):
        raise ConfigError(f"--state-key {state_key!r} is not an object key")
    rest = key[len(prefix) :] if key.startswith(prefix) else None
    if rest is not None and "/" not in rest:
        raise ConfigError(
            f"--state-key {key!r} is inside the mirror prefix {prefix!r}, which holds only the "
            f"source's files; choose a key outside it (default {default_state_key(prefix)!r})"
        )
    if key in (lock_key(prefix), releases_key(prefix), index_key):
        raise ConfigError(f"--state-key {key!r} is the key of another object rq writes")
    return key


def sync_bls(
    store: ObjectStore,
    options: SyncOptions | None = None,
    *,
    http: HttpClient | None = None,
    on_progress: ProgressCallback | None = None,
    listing: Sequence[RemoteFile] | None = None,
) -> SyncResult:
    """Mirror the BLS directory ``options.source_url`` into ``store`` under ``options.prefix``.

    A file whose body is not the size its listing gives changed at the source during the run
    (a release published meanwhile): the directory is then listed once more and, if that
    listing differs, the whole directory is planned again against it and what the new plan
    says is transferred, so the mirror ends on the new release entirely. A listing that does
    not differ, or a file that changes again, fails that file as any other (one more look
    only).

    Args:
        store: the bucket to mirror into.
        options: what to mirror and how (:class:`~rearcquest.config.SyncOptions`); None for
            the defaults (``pr`` from bls.gov, which wants a contact).
        http: an HTTP client to use instead of building one.
        on_progress: called with :class:`Progress` events, from worker threads.
        listing: the directory's files, already fetched (by a caller that planned without a
            lease first); ``None`` fetches it.

    Returns:
        The result; per-file failures are in ``errors``, a tripped delete guard in
        ``delete_guard`` (see :meth:`SyncResult.raise_for_errors`).

    Raises:
        ConfigError: bad settings, e.g. no contact for bls.gov or a bad ``max_delete``, or
            ``vintages`` on a bucket without versioning.
        LockUnsupportedError: the S3 endpoint ignores conditional writes (use ``lock=False``).
        LeaseHeldError: another sync holds the mirror (beyond ``wait``); nothing was changed.
        LeaseLostError: this sync's lease was taken over; it stopped before changing more.
        StateConflictError: the state object changed meanwhile; it was not overwritten.
        SourceError: the listing could not be fetched or parsed (nothing was changed).
        StorageError: S3 failed.
    """
    with syncing(
        store, options or SyncOptions(), http=http, on_progress=on_progress, listing=listing
    ) as result:
        return result


@contextlib.contextmanager
def syncing(
    store: ObjectStore,
    options: SyncOptions,
    *,
    http: HttpClient | None = None,
    on_progress: ProgressCallback | None = None,
    listing: Sequence[RemoteFile] | None = None,
    peek: bool = True,
) -> Iterator[SyncResult]:
    """:func:`sync_bls`, whose result is handed to the ``with`` block while the lease is held.

    What follows a sync under its lease (the index page, the tables: :mod:`rearcquest.jobs.job`)
    runs in the block; the lease is released when it ends. The sync itself knows nothing of it.

    Args:
        store: the bucket to mirror into.
        options: what to mirror and how.
        http: an HTTP client to use instead of building one.
        on_progress: called with :class:`Progress` events, from worker threads.
        listing: the directory's files, already fetched; ``None`` fetches it.
        peek: plan without the lease first and, when there is nothing to do, take none (the
            block then runs without a lease); ``False`` when the block has work of its own.

    Raises:
        RqError: as :func:`sync_bls`.
    """

    o = options
    source_url = check_http_url(o.source_url, "source URL")
    if not source_url.endswith("/"):
        source_url += "/"
    prefix = default_prefix(source_url) if o.prefix is None else normalise_prefix(o.prefix)
    if prefix.startswith(RESERVED_PREFIX):
        raise ConfigError(f"prefix {prefix!r} is where rq keeps its own objects; choose another")
    if o.transfers < 1:
        raise ConfigError("--transfers must be at least 1")
    if o.wait < 0:
        raise ConfigError("--wait must not be negative")
    limit = DeleteLimit.parse(o.max_delete)
    state_key = _check_state_key(
        default_state_key(prefix) if o.state_key is None else o.state_key, prefix, o.index_key
    )
    if o.vintages:
        from rearcquest.records.releases import require_versioning

        require_versioning(store)
    own_client = http is None
    if http is None:
        ua = build_user_agent(o.contact, o.user_agent)
        require_user_agent(source_url, ua)
        rps = default_rps(source_url) if o.max_rps is None else o.max_rps
        http = HttpClient(
            user_agent=ua, max_rps=rps, retry=o.retry, max_connections=max(4, o.transfers)
        )
    else:
        # The result counts this sync's requests, not those of the client's other users (the
        # other surveys of a run share one client and its rate limiter).
        http = http.counted()
    keep: tuple[str, ...] = ()
    if o.index_key is not None and o.index_key.startswith(prefix):
        keep = (o.index_key[len(prefix) :],)
    rules = _Rules(o.include, o.exclude, o.delete, keep, limit)
    try:
        if peek and not o.dry_run and o.lock and not o.vintages:
            # Plan without the lease first: most runs find nothing to do, and then cost no
            # lease (four S3 requests, two of them writes). With work, the plan is made again
            # under the lease from a fresh read of the bucket, with the listing fetched here.
            # Not when the caller has work under the lease, nor with vintages (a release the
            # last run could not record is recorded under the lease).
            peeked, listing = _plan_without_lease(
                store, http, source_url, prefix, rules, listing=listing, state_key=state_key
            )
            if peeked is not None:
                yield peeked
                return
        with contextlib.ExitStack() as held:
            lease: Lease | None = None
            if not o.dry_run and o.lock:
                # Before anything is read: S3 first, so an unusable bucket spares the source.
                lease = Lease(store, lock_key(prefix), ttl=o.lease_ttl).acquire(wait=o.wait)
                held.enter_context(lease)
            elif not o.dry_run:
                log.info("syncing %s without a lease (--no-lock)", store.url(prefix))
            stored = {obj.key: obj for obj in store.list_objects(prefix)}
            state = load_state(store, prefix, source_url, stored, state_key=state_key, keep=keep)
            remote = fetch_listing(http, source_url) if listing is None else list(listing)
            plan = rules.plan(remote, state, stored, prefix)
            for action in plan.of("skip"):
                log.warning("not mirroring %s: %s", action.name, action.reason)
            if o.dry_run:
                result = SyncResult(source_url, store.bucket, prefix, dry_run=True, plan=plan)
                result.added = [a.name for a in plan.of("add")]
                result.updated = [a.name for a in plan.of("update")]
                result.deleted = [a.name for a in plan.of("delete")]
                result.unchanged = [a.name for a in plan.of("unchanged")]
                result.skipped = [FileError(a.name, a.reason) for a in plan.of("skip")]
                result.delete_guard = result.deletes_skipped = plan.delete_guard
                result.requests = http.requests
                yield result
                return
            apply = functools.partial(
                apply_plan,
                store=store,
                http=http,
                prefix=prefix,
                source_url=source_url,
                transfers=o.transfers,
                on_progress=on_progress,
                state_key=state_key,
                check_lease=lease.check if lease is not None else None,
                time_left=o.time_left,
            )
            result = apply(plan, state)
            if result.changed:
                result = _look_again(
                    result,
                    remote,
                    apply,
                    store=store,
                    http=http,
                    rules=rules,
                    keep=keep,
                    state_key=state_key,
                )
            yield result
    finally:
        if own_client:
            http.close()


@dataclass(frozen=True)
class _Rules:
    """What a plan follows besides the listing and the state: the options of one sync."""

    include: Sequence[str]
    exclude: Sequence[str]
    delete: bool
    keep: tuple[str, ...]
    max_delete: DeleteLimit

    def plan(
        self,
        remote: Sequence[RemoteFile],
        state: SyncState,
        stored: Mapping[str, ObjectInfo],
        prefix: str,
    ) -> SyncPlan:
        return plan_sync(
            remote,
            state,
            stored,
            prefix=prefix,
            include=self.include,
            exclude=self.exclude,
            delete=self.delete,
            keep=self.keep,
            max_delete=self.max_delete,
        )


def _plan_without_lease(
    store: ObjectStore,
    http: HttpClient,
    source_url: str,
    prefix: str,
    rules: _Rules,
    *,
    listing: Sequence[RemoteFile] | None,
    state_key: str,
) -> tuple[SyncResult | None, list[RemoteFile] | None]:
    """Plan a mirror without its lease; return a no-op result when there is nothing to do.

    Costs one ``ListObjectsV2``, the state GET and the listing (unless given): what a no-op
    needs anyway. Anything to write (a transfer, a delete, a forgotten entry, a skipped file to
    warn about, a tripped delete guard) returns ``None`` and the listing, for the sync to plan
    again under the lease; a state to rebuild (lost, invalid, old, or missing an object) returns
    ``None`` before the listing is fetched.

    Raises:
        SourceError: the listing failed.
        StorageError: S3 failed.
    """

    # S3 first, so an unusable bucket spares the source.
    stored = {o.key: o for o in store.list_objects(prefix)}
    state = load_state(
        store, prefix, source_url, stored, state_key=state_key, keep=rules.keep, peek=True
    )
    if state.stale:
        # A lost, invalid or old state: the sync rebuilds it under the lease (and the source
        # is not asked for the listing before the lease is taken).
        return None, None if listing is None else list(listing)
    remote = fetch_listing(http, source_url) if listing is None else list(listing)
    plan = rules.plan(remote, state, stored, prefix)
    busy = state.stale or plan.forget or plan.delete_guard or plan.of("skip") or plan.abandon
    if busy or any(a.kind != "unchanged" for a in plan.actions):
        return None, remote
    log.info("%s is up to date; no lease taken", store.url(prefix))
    result = SyncResult(source_url, store.bucket, prefix, dry_run=False, plan=plan)
    result.unchanged = [a.name for a in plan.actions]
    result.requests = http.requests
    return result, remote


def _look_again(
    first: SyncResult,
    listing: Sequence[RemoteFile],
    apply: Callable[[SyncPlan, SyncState], SyncResult],
    *,
    store: ObjectStore,
    http: HttpClient,
    rules: _Rules,
    keep: tuple[str, ...],
    state_key: str,
) -> SyncResult:
    """The one more look of a run during which files changed at the source.

    The directory is listed again. If the listing differs from the one the run followed, the
    whole directory is planned again against it (from a fresh read of the bucket and the state
    the first pass wrote) and that plan is applied: files the first pass wrote from the old
    release are updated, those it could not are added, and the deletes and the release log
    follow the new listing. Otherwise the files fail as they did, with the reason.

    Returns:
        The run's result: the second pass's, with what the first one wrote.

    Raises:
        LeaseLostError, StateConflictError, StorageError: as :func:`apply_plan`.
    """

    source_url, prefix = first.source_url, first.prefix
    log.warning(
        "%s changed at the source during the run (the body is not the listed size); listing %s "
        "again",
        ", ".join(first.changed),
        source_url,
    )
    try:
        second = fetch_listing(http, source_url)
    except SourceError as exc:
        return _noted(first, f"listing the directory again failed: {exc}")
    if list(second) == list(listing):
        return _noted(
            first,
            "the directory, listed again, still gives the old size: the server's listing and "
            "file disagree",
        )
    stored = {o.key: o for o in store.list_objects(prefix)}
    state = load_state(store, prefix, source_url, stored, keep=keep, state_key=state_key)
    again = apply(rules.plan(second, state, stored, prefix), state)
    again = _noted(
        again,
        "it changed again after the directory was listed a second time (rq looks once more only)",
    )
    # The first pass deleted nothing: a file that changed failed it, and a failed run deletes
    # nothing. Its writes are the second pass's too.
    added = set(first.added) | set(again.added)
    updated = (set(first.updated) | set(again.updated)) - added
    done = added | updated | set(again.deleted)
    again.added = sorted(added - set(again.deleted))
    again.updated = sorted(updated - set(again.deleted))
    again.unchanged = sorted(set(again.unchanged) - done)
    again.restamped = sorted((set(first.restamped) | set(again.restamped)) - done)
    again.bytes_downloaded += first.bytes_downloaded
    again.bytes_uploaded += first.bytes_uploaded
    return again


def _noted(result: SyncResult, why: str) -> SyncResult:
    """``result`` with ``why`` added to the error of each file that changed at the source."""
    changed = set(result.changed)
    result.errors = [
        FileError(e.name, f"{e.message}; {why}") if e.name in changed else e for e in result.errors
    ]
    return result
