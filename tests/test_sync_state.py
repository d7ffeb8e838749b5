"""The sync state: outside the mirror, strictly read, rebuilt when hostile, migrated, never
overwritten when another run changed it."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from conftest import FAST
from rearcquest.aws.storage import ObjectStore
from rearcquest.errors import ConfigError, StateConflictError, StorageError
from rearcquest.jobs.job import AfterSync
from rearcquest.layout import LEGACY_STATE_NAME, META_SHA256, state_key
from rearcquest.mirror.sync import load_state
from rearcquest.offline import OfflineServer, ServedFile
from rearcquest.records.state import SyncState
from sync_helpers import before_each_upload, run_job, sync_dir

CONTACT = "tests@example.com"
STATE = state_key("pr/")
LEGACY = "pr/" + LEGACY_STATE_NAME
SHA = "0" * 64


def run(store: ObjectStore, server: OfflineServer, **kw: Any) -> Any:
    kw.setdefault("retry", FAST)
    return sync_dir(store, source_url=server.bls_url, contact=CONTACT, **kw)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """Warnings logged by rearcquest (the CLI may have stopped propagation to the root logger)."""
    records: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    logger = logging.getLogger("rearcquest")
    handler, level = _Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def entry(**changes: Any) -> dict[str, Any]:
    base = {
        "size": 3,
        "modified": "2024-06-06 08:30",
        "last_modified": None,
        "sha256": SHA,
        "etag": "e1",
    }
    return {**base, **changes}


def document(**changes: Any) -> dict[str, Any]:
    base = {"version": 1, "source_url": "u", "updated": "2026-01-01", "files": {"a": entry()}}
    return {**base, **changes}


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


HOSTILE: list[tuple[str, bytes]] = [
    ("garbage-bytes", b"\x00\xff\xfe garbage \x80"),
    ("empty", b""),
    ("null", b"null"),
    ("list", b"[]"),
    ("number", b"42"),
    ("string", b'"state"'),
    ("files-list", js({"version": 1, "files": []})),
    ("files-list-full", js(document(files=[]))),
    ("files-null", js(document(files=None))),
    ("version-string", js(document(version="1"))),
    ("version-2", js(document(version=2))),
    ("version-true", js(document(version=True))),
    ("version-float", js(document(version=1.0))),
    ("version-missing", js(without(document(), "version"))),
    ("extra-key", js(document(extra=1))),
    ("source-url-null", js(document(source_url=None))),
    ("entry-list", js(document(files={"a": [1, 2]}))),
    ("entry-null", js(document(files={"a": None}))),
    ("size-string", js(document(files={"a": entry(size="3")}))),
    ("size-negative", js(document(files={"a": entry(size=-1)}))),
    ("size-null", js(document(files={"a": entry(size=None)}))),
    ("size-bool", js(document(files={"a": entry(size=True)}))),
    ("size-float", js(document(files={"a": entry(size=3.0)}))),
    ("modified-number", js(document(files={"a": entry(modified=5)}))),
    # Sent back to the source as If-Modified-Since: a line break is no header value.
    ("last-modified-line-break", js(document(files={"a": entry(last_modified="x\r\nY: 1")}))),
    ("modified-too-long", js(document(files={"a": entry(modified="x" * 300)}))),
    ("sha-short", js(document(files={"a": entry(sha256="abc")}))),
    ("sha-null", js(document(files={"a": entry(sha256=None)}))),
    ("etag-null", js(document(files={"a": entry(etag=None)}))),
    ("entry-extra-key", js(document(files={"a": entry(x=1)}))),
    ("entry-missing-key", js(document(files={"a": without(entry(), "etag")}))),
    ("name-with-slash", js(document(files={"../a": entry()}))),
    ("name-empty", js(document(files={"": entry()}))),
    ("name-dot-dot", js(document(files={"..": entry()}))),
    ("name-nul", js(document(files={"a\x00b": entry()}))),
    ("name-control", js(document(files={"a\x1bb": entry()}))),
    ("name-backslash", js(document(files={"..\\a": entry()}))),
    ("name-too-long", js(document(files={"x" * 256: entry()}))),
    ("non-utf8", js(document()).replace(b'"u"', b'"\xff\xfe"')),
    ("nan-size", js(document()).replace(b'"size": 3', b'"size": NaN')),
    ("huge-int", js(document()).replace(b'"size": 3', b'"size": ' + b"9" * 5000)),
    ("deep-nesting", b"[" * 100_000),
    ("truncated", js(document())[:40]),
]


@pytest.mark.parametrize("data", [d for _, d in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_anything_but_the_exact_document_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SyncState.from_json(data)


def test_the_written_document_reads_back() -> None:
    state = SyncState.from_json(js(document()))
    assert state.files["a"].sha256 == SHA
    assert SyncState.from_json(SyncState("u", state.files).to_json()).files == state.files


def seed_objects(store: ObjectStore, names: list[str]) -> dict[str, Any]:
    for name in names:
        data = name.encode()
        store.put_bytes(
            "pr/" + name, data, metadata={META_SHA256: hashlib.sha256(data).hexdigest()}
        )
    return {o.key: o for o in store.list_objects("pr/")}


@pytest.mark.parametrize("data", [d for _, d in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_hostile_state_is_rebuilt_from_metadata_with_one_warning(
    store: ObjectStore, warnings: list[str], data: bytes
) -> None:
    stored = seed_objects(store, ["a", "b"])
    store.put_bytes(STATE, data)
    state = load_state(store, "pr/", "u", stored)
    assert sorted(state.files) == ["a", "b"]
    assert state.files["a"].sha256 == hashlib.sha256(b"a").hexdigest()
    assert state.stale
    assert state.etag == store.head(STATE).etag  # type: ignore[union-attr]
    assert len(warnings) == 1
    assert STATE in warnings[0] and "rebuilding it from the objects' metadata" in warnings[0]


@pytest.mark.parametrize(
    "data",
    [b"\x00garbage", b"null", js({"version": 1, "files": []}), js(document(files={"x": 1}))],
    ids=["garbage", "null", "files-list", "entry-int"],
)
def test_a_sync_over_a_hostile_state_succeeds_and_the_next_is_clean(
    store: ObjectStore, bls_server: OfflineServer, warnings: list[str], data: bytes
) -> None:
    run(store, bls_server).raise_for_errors()
    store.put_bytes(STATE, data)
    before = len(bls_server.requests)
    result = run(store, bls_server)
    result.raise_for_errors()
    assert len(bls_server.requests) - before == 1  # the listing only: rebuilt from metadata
    assert len(result.unchanged) == 12
    assert len(warnings) == 1
    assert sorted(SyncState.from_json(store.get_bytes(STATE)).files) == sorted(bls_server.files)
    heads: list[str] = []
    real_head = store.head

    def head(key: str) -> Any:
        heads.append(key)
        return real_head(key)

    store.head = head  # type: ignore[method-assign]
    run(store, bls_server).raise_for_errors()
    assert heads == [] and len(warnings) == 1  # the next day: nothing to rebuild, no warning


def test_state_lives_outside_the_mirror(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server).raise_for_errors()
    mirror = {o.key for o in store.list_objects("pr/")}
    assert mirror == {f"pr/{n}" for n in bls_server.files}
    assert store.head(STATE) is not None
    assert STATE == ".rearcquest/state/pr.json"


def test_state_key_can_be_chosen(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server, state_key="ops/rq/pr-state.json").raise_for_errors()
    assert store.head("ops/rq/pr-state.json") is not None
    assert store.head(STATE) is None
    before = len(bls_server.requests)
    assert len(run(store, bls_server, state_key="ops/rq/pr-state.json").unchanged) == 12
    assert len(bls_server.requests) - before == 1


@pytest.mark.parametrize(
    ("state_key_", "prefix", "message"),
    [
        ("pr/state.json", "pr/", "inside the mirror prefix"),
        ("state.json", "", "inside the mirror prefix"),
        ("pr/" + LEGACY_STATE_NAME, "pr/", "inside the mirror prefix"),
        (".rearcquest/locks/pr.json", "pr/", "another object rq writes"),
        ("", "pr/", "not an object key"),
        ("state/", "pr/", "not an object key"),
    ],
    ids=["in-prefix", "in-root", "legacy-place", "lock-key", "empty", "folder"],
)
def test_bad_state_key_is_refused_before_anything(
    store: ObjectStore, bls_server: OfflineServer, state_key_: str, prefix: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run(store, bls_server, state_key=state_key_, prefix=prefix)
    assert bls_server.requests == []
    assert list(store.list_objects("")) == []


def test_prefix_inside_rqs_own_area_is_refused(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    with pytest.raises(ConfigError, match="keeps its own objects"):
        run(store, bls_server, prefix=".rearcquest/x")


def move_state_to_legacy(store: ObjectStore) -> bytes:
    data = store.get_bytes(STATE)
    store.put_bytes(LEGACY, data)
    store.client.delete_object(Bucket=store.bucket, Key=STATE)
    return data


def test_old_state_inside_the_mirror_is_migrated(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, bls_server).raise_for_errors()
    old = SyncState.from_json(move_state_to_legacy(store)).files
    heads: list[str] = []
    real_head = store.head
    monkeypatch.setattr(store, "head", lambda key: heads.append(key) or real_head(key))
    before = len(bls_server.requests)
    result = run(store, bls_server)
    result.raise_for_errors()
    assert len(bls_server.requests) - before == 1 and heads == []  # the old state was used
    assert len(result.unchanged) == 12 and result.deleted == []
    assert SyncState.from_json(store.get_bytes(STATE)).files == old
    assert store.head(LEGACY) is None
    assert {o.key for o in store.list_objects("pr/")} == {f"pr/{n}" for n in bls_server.files}


def test_old_state_is_kept_until_the_new_one_is_written(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, bls_server).raise_for_errors()
    move_state_to_legacy(store)
    real_put = store.put_bytes_if

    def failing(key: str, data: bytes, **kw: Any) -> str:
        if key == STATE:
            raise StorageError(f"cannot write {store.url(key)}: injected")
        return real_put(key, data, **kw)

    monkeypatch.setattr(store, "put_bytes_if", failing)
    with pytest.raises(StorageError, match="injected"):
        run(store, bls_server)
    assert store.head(LEGACY) is not None
    monkeypatch.undo()
    run(store, bls_server).raise_for_errors()
    assert store.head(LEGACY) is None and store.head(STATE) is not None


def test_old_state_beside_a_new_one_is_removed(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server).raise_for_errors()
    store.put_bytes(LEGACY, b"\x00 an old, broken state")
    result = run(store, bls_server)
    result.raise_for_errors()
    assert result.deleted == [] and len(result.unchanged) == 12
    assert store.head(LEGACY) is None


def test_garbage_old_state_is_rebuilt_and_removed(
    store: ObjectStore, bls_server: OfflineServer, warnings: list[str]
) -> None:
    run(store, bls_server).raise_for_errors()
    move_state_to_legacy(store)
    store.put_bytes(LEGACY, b"{not json")
    run(store, bls_server).raise_for_errors()
    assert len(warnings) == 1 and LEGACY in warnings[0]
    assert store.head(LEGACY) is None
    assert len(SyncState.from_json(store.get_bytes(STATE)).files) == 12


def another_run_writes_the_state(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], bytes]:
    """While this run uploads, another writes the state object (no lease, or after expiry)."""
    theirs = js(document())
    done: list[bool] = []

    def upload(key: str) -> None:
        if not done:
            done.append(True)
            store.put_bytes(STATE, theirs)

    before_each_upload(monkeypatch, store, upload)
    return lambda: theirs


@pytest.mark.parametrize("first_run", [True, False], ids=["no-state-yet", "state-read"])
def test_state_changed_meanwhile_is_never_overwritten(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch, first_run: bool
) -> None:
    if not first_run:
        run(store, bls_server).raise_for_errors()
        files = bls_server.files
        name = "pr.series"
        files[name] = ServedFile(name, b"new bytes", datetime(2026, 8, 6, 8, 30))
        bls_server.set_files(files)
    theirs = another_run_writes_the_state(store, monkeypatch)
    with pytest.raises(StateConflictError, match="changed while this sync ran") as info:
        run(store, bls_server, lock=False)
    assert info.value.exit_code == 5
    assert STATE in str(info.value)
    assert store.get_bytes(STATE) == theirs()


def test_listed_file_named_like_rqs_own_objects_is_never_written(
    store: ObjectStore, bls_server: OfflineServer, warnings: list[str]
) -> None:
    files = bls_server.files
    when = datetime(2026, 1, 2, 3, 4)
    for name in (LEGACY_STATE_NAME, "index.html"):
        files[name] = ServedFile(name, b"from the source", when)
    bls_server.set_files(files)
    run = run_job(
        store,
        AfterSync(index=True),
        source_url=bls_server.bls_url,
        contact="t@example.com",
        index_key="pr/index.html",
    )
    run.raise_for_errors()
    result = run.sync
    assert sorted(s.name for s in result.skipped) == sorted([LEGACY_STATE_NAME, "index.html"])
    assert store.head(LEGACY) is None
    assert store.get_bytes("pr/index.html") != b"from the source"  # rq's page, not the file
    assert len(result.added) == 12
    assert sum("not mirroring" in w for w in warnings) == 2
    assert result.to_dict()["skipped"][0]["message"].startswith("its name is one rq uses")
    assert not any(r.path.endswith(("index.html", LEGACY_STATE_NAME)) for r in bls_server.requests)


def test_fuzz_state_documents_raise_only_value_error() -> None:
    """Random shapes of a state object: parsed exactly, or refused with the documented
    ValueError (which load_state turns into a lost state), never another exception."""
    import random

    from fuzz_helpers import random_body
    from rearcquest.records.state import FileState

    entry = FileState(10, "2026-08-06 08:30", "Thu, 06 Aug 2026 12:30:00 GMT", "a" * 64, '"e"')
    valid = json.loads(SyncState("http://h/pr/", {"pr.class": entry}).to_json())
    rng = random.Random(19)
    parsed = 0
    for case in range(2000):
        body = random_body(rng, valid)
        data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        try:
            state = SyncState.from_json(data)
        except ValueError:
            continue
        parsed += 1
        for name, got in state.files.items():
            assert name and "/" not in name, case
            assert type(got.size) is int and got.size >= 0, case
            assert isinstance(got.sha256, str) and len(got.sha256) == 64, case
            assert isinstance(got.etag, str) and got.etag, case
        # What parses is written back as the same state.
        assert SyncState.from_json(state.to_json()).files == state.files, case
    assert parsed  # some mutations keep a valid document (an unknown-free entry, say)


def test_objects_whose_names_are_not_file_names_make_no_state_entry(
    store: ObjectStore, warnings: list[str]
) -> None:
    # Keys are data: an object named like a control sequence is never a state entry, so the
    # rebuilt state reads back (a state naming it would be refused, and rebuilt, every sync).
    stored = seed_objects(store, ["a", "a\x1bb", "x" * 256])
    state = load_state(store, "pr/", "u", stored)
    assert sorted(state.files) == ["a"]
    assert SyncState.from_json(SyncState("u", state.files).to_json()).files == state.files
    store.put_bytes(STATE, SyncState("u", state.files).to_json())
    again = load_state(store, "pr/", "u", stored, peek=True)
    assert not again.stale and sorted(again.files) == ["a"]
    assert warnings == []
