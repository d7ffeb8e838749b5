"""The sync state: what the last sync of a mirror knew about each file, as one JSON object.

The mirror writes it (:mod:`rearcquest.mirror.sync`, at ``.rearcquest/state/<prefix>.json``); the data
side reads it to find the sha256 of an object uploaded in parts. It is parsed strictly: anything
but the document :meth:`SyncState.to_json` writes is a ``ValueError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rearcquest.layout import name_problem, shown_name

STATE_VERSION = 1
# A state object larger than this is not one rq wrote (10,000 files take ~3 MB): it is rebuilt.
MAX_STATE_BYTES = 64 * 1024 * 1024
_STATE_KEYS = frozenset({"version", "source_url", "updated", "files"})
# Written only while a transfer is cut short and waits to be resumed.
_OPTIONAL_STATE_KEYS = frozenset({"uploads"})
_UPLOAD_KEYS = frozenset(
    {"key", "upload_id", "size", "modified", "last_modified", "part_size", "parts"}
)
# S3 takes at most 10,000 parts of at most 5 GiB; an upload id is an opaque token (AWS's are
# ~100 characters).
_MAX_PARTS = 10_000
_MAX_PART_SIZE = 5 * 1024**3
_MAX_UPLOAD_ID = 1024
# A listing date or an HTTP date is ~30 characters.
_MAX_DATE_TEXT = 256
_ENTRY_KEYS = frozenset({"size", "modified", "last_modified", "sha256", "etag"})
# Written only when known (a versioned bucket): a state without it, older or not, is valid.
_OPTIONAL_ENTRY_KEYS = frozenset({"version_id"})
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class FileState:
    """What the last sync knew about one mirrored file."""

    size: int
    modified: str | None
    last_modified: str | None
    sha256: str
    etag: str
    # The S3 version id of the object as last written, when the bucket is versioned.
    version_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The state document's entry: ``version_id`` only when there is one."""
        doc = asdict(self)
        if self.version_id is None:
            del doc["version_id"]
        return doc


@dataclass(frozen=True)
class UploadState:
    """A multipart upload of one file cut short, to be resumed by the next sync.

    Only a hint: the next sync resumes it only if the listing still gives ``size`` and
    ``modified``, and only from the parts S3's own ListParts confirms.

    Attributes:
        key: the object key the upload writes.
        upload_id: S3's id of the upload.
        size: the file's size in the listing the transfer started from.
        modified: the listing's date then.
        last_modified: the source's ``Last-Modified`` then (sent as ``If-Range``).
        part_size: the size of every part but the last.
        parts: the parts known done, as ``(number, etag)`` for numbers 1..n.
    """

    key: str
    upload_id: str
    size: int
    modified: str | None
    last_modified: str | None
    part_size: int
    parts: tuple[tuple[int, str], ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """The state document's entry."""
        doc = asdict(self)
        doc["parts"] = [list(p) for p in self.parts]
        return doc


@dataclass(frozen=True)
class SyncState:
    """The state object: the source URL and one :class:`FileState` per mirrored file name.

    Attributes:
        stale: the stored state object is missing, invalid, old (inside the mirror) or lacked
            entries it now has: it must be written even if no file changed.
        etag: the ETag of the state object as read (``None``: there was none); the next write
            is conditional on it.
        legacy_key: an old state object inside the mirror prefix, deleted once the new one is
            written.
    """

    source_url: str
    files: Mapping[str, FileState] = field(default_factory=dict)
    stale: bool = False
    etag: str | None = None
    legacy_key: str | None = None
    # Transfers cut short (a kill, Ctrl-C, a handover), by file name: resumed by the next sync.
    uploads: Mapping[str, UploadState] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialise the state as JSON (``uploads`` only when there are any)."""
        doc: dict[str, Any] = {
            "version": STATE_VERSION,
            "source_url": self.source_url,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": {name: st.to_doc() for name, st in sorted(self.files.items())},
        }
        if self.uploads:
            doc["uploads"] = {name: up.to_doc() for name, up in sorted(self.uploads.items())}
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SyncState:
        """Parse a state object, strictly: exactly the document :meth:`to_json` writes.

        Raises:
            ValueError: anything else (not UTF-8 JSON, an unknown version, a missing or extra
                key, a value of the wrong type); the message says what.
        """
        try:
            doc = json.loads(data)
        except RecursionError:
            raise ValueError("nested too deeply to be a state document") from None
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not an object")
        version = doc.get("version")
        if type(version) is not int or version != STATE_VERSION:
            raise ValueError(f"version {version!r}, not {STATE_VERSION}")
        if not _STATE_KEYS <= set(doc) <= _STATE_KEYS | _OPTIONAL_STATE_KEYS:
            raise ValueError(f"keys {sorted(doc)}, not {sorted(_STATE_KEYS)}")
        for name in ("source_url", "updated"):
            if not isinstance(doc[name], str):
                raise ValueError(f"{name!r} is not a string")
        if not isinstance(doc["files"], dict):
            raise ValueError("'files' is not an object")
        files = {name: _file_state(name, entry) for name, entry in doc["files"].items()}
        uploads = doc.get("uploads", {})
        if not isinstance(uploads, dict):
            raise ValueError("'uploads' is not an object")
        pending = {name: _upload_state(name, entry) for name, entry in uploads.items()}
        return cls(source_url=doc["source_url"], files=files, uploads=pending)


def _is_date_text(value: object) -> bool:
    """A recorded date: ``None`` or a short string with no control character (it is sent back
    to the source as ``If-Modified-Since`` or ``If-Range``, where a line break is no header)."""
    return value is None or (
        isinstance(value, str)
        and len(value) <= _MAX_DATE_TEXT
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


def _file_state(name: str, entry: object) -> FileState:
    """Validate one entry of the state's ``files``.

    Raises:
        ValueError: it is not exactly a :class:`FileState` document.
    """
    if (problem := name_problem(name)) is not None:
        raise ValueError(f"file name {shown_name(name)} is not a mirrored file name ({problem})")
    if not isinstance(entry, dict) or not _ENTRY_KEYS <= set(entry) <= (
        _ENTRY_KEYS | _OPTIONAL_ENTRY_KEYS
    ):
        raise ValueError(f"entry {name!r} is not an object with keys {sorted(_ENTRY_KEYS)}")
    size, sha, etag = entry["size"], entry["sha256"], entry["etag"]
    if type(size) is not int or size < 0:
        raise ValueError(f"entry {name!r}: size {size!r} is not a non-negative integer")
    for key in ("modified", "last_modified"):
        if not _is_date_text(entry[key]):
            raise ValueError(f"entry {name!r}: {key} is neither a short line of text nor null")
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
        raise ValueError(f"entry {name!r}: sha256 is not 64 hex digits")
    if not isinstance(etag, str) or not etag:
        raise ValueError(f"entry {name!r}: etag is not a non-empty string")
    version_id = entry.get("version_id")
    if version_id is not None and (not isinstance(version_id, str) or not version_id):
        raise ValueError(f"entry {name!r}: version_id is neither a non-empty string nor null")
    return FileState(size, entry["modified"], entry["last_modified"], sha, etag, version_id)


def _upload_state(name: str, entry: object) -> UploadState:
    """Validate one entry of the state's ``uploads``.

    Raises:
        ValueError: it is not exactly an :class:`UploadState` document.
    """
    if (problem := name_problem(name)) is not None:
        raise ValueError(f"upload name {shown_name(name)} is not a mirrored file name ({problem})")
    if not isinstance(entry, dict) or set(entry) != _UPLOAD_KEYS:
        raise ValueError(f"upload {name!r} is not an object with keys {sorted(_UPLOAD_KEYS)}")
    key, upload_id, size, part_size = (
        entry["key"],
        entry["upload_id"],
        entry["size"],
        entry["part_size"],
    )
    if not isinstance(key, str) or (not key.endswith("/" + name) and key != name):
        raise ValueError(f"upload {name!r}: key is not the key of that file")
    if (
        not isinstance(upload_id, str)
        or not 0 < len(upload_id) <= _MAX_UPLOAD_ID
        or not upload_id.isprintable()
    ):
        raise ValueError(f"upload {name!r}: upload_id is not a printable string")
    if type(size) is not int or size < 0:
        raise ValueError(f"upload {name!r}: size {size!r} is not a non-negative integer")
    if type(part_size) is not int or not 0 < part_size <= _MAX_PART_SIZE:
        raise ValueError(f"upload {name!r}: part_size {part_size!r} is not a part size")
    for field_name in ("modified", "last_modified"):
        if not _is_date_text(entry[field_name]):
            raise ValueError(
                f"upload {name!r}: {field_name} is neither a short line of text nor null"
            )
    parts = entry["parts"]
    if not isinstance(parts, list) or len(parts) > _MAX_PARTS:
        raise ValueError(f"upload {name!r}: parts is not a list of at most {_MAX_PARTS}")
    checked: list[tuple[int, str]] = []
    for number, part in enumerate(parts, 1):
        if (
            not isinstance(part, list)
            or len(part) != 2
            or part[0] != number
            or type(part[0]) is not int
            or not isinstance(part[1], str)
            or not part[1]
        ):
            raise ValueError(f"upload {name!r}: part {number} is not [{number}, etag]")
        checked.append((number, part[1]))
    return UploadState(
        key, upload_id, size, entry["modified"], entry["last_modified"], part_size, tuple(checked)
    )
