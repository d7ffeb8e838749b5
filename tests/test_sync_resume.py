"""Transfers that resume: a multipart upload cut short is recorded in the state and continued
from its last confirmed part with ``Range``/``If-Range``; anything doubtful starts over, and no
upload rq will not resume is left behind (moto S3, the BLS-like server)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from conftest import FAST
from rearcquest.aws import storage
from rearcquest.aws.storage import ObjectStore
from rearcquest.layout import lock_key, state_key
from rearcquest.mirror.sync import Progress
from rearcquest.offline import OfflineServer, ServedFile
from rearcquest.records.state import SyncState
from sync_helpers import sync_dir

PART = 512 * 1024
NAME = "pr.data.0.Current"
KEY = "pr/" + NAME
LISTED = datetime(2026, 8, 6, 8, 30)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.s3.models

    monkeypatch.setattr(storage, "PART_SIZE", PART)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", PART // 2)


def big_body(seed: int = 1, size: int = 9 * PART + 12_345) -> bytes:
    return random.Random(seed).randbytes(size)


def serve(body: bytes, listed: datetime = LISTED) -> OfflineServer:
    return OfflineServer({NAME: ServedFile(NAME, body, listed)})


def budget(chunks: int) -> Callable[[], float]:
    """A time budget that runs out after about ``chunks`` chunks (256 KiB) of the transfer: the
    sync asks it once before each transfer and once after each chunk."""
    calls = [chunks + 1]

    def time_left() -> float:
        calls[0] -= 1
        return 1.0 if calls[0] >= 0 else -1.0

    return time_left


def sync(store: ObjectStore, server: OfflineServer, **kw: Any) -> Any:
    return sync_dir(store, source_url=server.bls_url, contact="t@example.com", retry=FAST, **kw)


def pending_uploads(store: ObjectStore) -> list[dict[str, Any]]:
    return list(store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def state_doc(store: ObjectStore) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(store.get_bytes(state_key("pr/")))
    return loaded


def file_requests(server: OfflineServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith(NAME)]


def test_a_transfer_out_of_time_is_recorded_and_resumed_from_its_last_part(
    store: ObjectStore,
) -> None:
    body = big_body()
    with serve(body) as server:
        first = sync(store, server, time_left=budget(8))
        assert first.added == [] and first.errors == []
        (handed,) = first.handed_over
        assert handed.name == NAME and handed.start == 0
        assert handed.reached % PART == 0 and PART <= handed.reached < len(body)
        # Recorded under the lease, the upload left open (not aborted), the lease released.
        upload = state_doc(store)["uploads"][NAME]
        assert upload["size"] == len(body) and upload["part_size"] == PART
        assert len(upload["parts"]) == handed.reached // PART
        assert [u["UploadId"] for u in pending_uploads(store)] == [upload["upload_id"]]
        assert store.head(lock_key("pr/")) is None and store.head(KEY) is None

        sent = server.bytes_sent
        second = sync(store, server)
        assert second.errors == []
        assert second.added == [NAME] and second.handed_over == []
        resumed = file_requests(server)[-1]
        assert resumed.headers["range"] == f"bytes={handed.reached}-"
        assert resumed.headers["if-range"] == upload["last_modified"] and resumed.status == 206
        # Only the rest came again (the page is a few hundred bytes).
        assert server.bytes_sent - sent < len(body) - handed.reached + 10_000
    assert store.get_bytes(KEY) == body
    doc = state_doc(store)
    assert "uploads" not in doc
    assert doc["files"][NAME]["sha256"] == hashlib.sha256(body).hexdigest()
    assert pending_uploads(store) == []


def test_a_transfer_handed_over_several_times_completes_with_the_right_bytes(
    store: ObjectStore,
) -> None:
    body = big_body(seed=2)
    with serve(body) as server:
        reached = [0]
        for _ in range(10):
            result = sync(store, server, time_left=budget(4))
            if result.added:
                break
            (handed,) = result.handed_over
            assert handed.start == reached[-1] and handed.reached >= handed.start
            reached.append(handed.reached)
        else:
            pytest.fail("never completed")
    assert len(reached) >= 3 and reached == sorted(reached)
    assert store.get_bytes(KEY) == body
    assert state_doc(store)["files"][NAME]["sha256"] == hashlib.sha256(body).hexdigest()
    assert pending_uploads(store) == []


def test_a_file_changed_at_the_source_aborts_the_recorded_upload_and_starts_over(
    store: ObjectStore,
) -> None:
    with serve(big_body()) as server:
        sync(store, server, time_left=budget(8))
        old = state_doc(store)["uploads"][NAME]["upload_id"]
        changed = big_body(seed=3)
        server.set_files({NAME: ServedFile(NAME, changed, datetime(2026, 9, 3, 8, 30))})
        result = sync(store, server)
        result.raise_for_errors()
        assert "range" not in file_requests(server)[-1].headers
    assert store.get_bytes(KEY) == changed
    assert old not in [u["UploadId"] for u in pending_uploads(store)]
    assert pending_uploads(store) == [] and "uploads" not in state_doc(store)


def tamper(store: ObjectStore, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the state's recorded upload as a hostile or stale writer might."""
    doc = state_doc(store)
    change(doc["uploads"][NAME])
    store.put_bytes(state_key("pr/"), json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("change", "status"),
    [
        # The source's date no longer matches: a real server answers 200 with the whole file.
        (lambda u: u.update(last_modified="Mon, 01 Jan 2024 00:00:00 GMT"), 200),
        # Parts the state claims but S3 does not confirm: nothing of it is trusted.
        (lambda u: u.update(parts=[[n, "0" * 32] for n, _ in u["parts"]]), 200),
        (lambda u: u.update(parts=[*u["parts"], [len(u["parts"]) + 1, "f" * 32]]), 200),
        # An upload S3 does not know.
        (lambda u: u.update(upload_id="no-such-upload"), 200),
    ],
    ids=["if-range-mismatch", "wrong-etags", "part-s3-lacks", "unknown-upload"],
)
def test_a_doubtful_recorded_upload_starts_over_and_leaves_nothing(
    store: ObjectStore, change: Callable[[dict[str, Any]], None], status: int
) -> None:
    body = big_body(seed=4)
    with serve(body) as server:
        sync(store, server, time_left=budget(10))
        tamper(store, change)
        result = sync(store, server)
        result.raise_for_errors()
        assert result.added == [NAME]
        assert file_requests(server)[-1].status == status
    assert store.get_bytes(KEY) == body
    assert state_doc(store)["files"][NAME]["sha256"] == hashlib.sha256(body).hexdigest()
    assert pending_uploads(store) == [] and "uploads" not in state_doc(store)


def test_an_upload_no_state_records_is_aborted_by_the_next_transfer(store: ObjectStore) -> None:
    # A run killed between starting its upload and its first checkpoint.
    stray = store.client.create_multipart_upload(Bucket=store.bucket, Key=KEY)["UploadId"]
    body = big_body(seed=5)
    with serve(body) as server:
        sync(store, server).raise_for_errors()
    assert stray not in [u["UploadId"] for u in pending_uploads(store)]
    assert pending_uploads(store) == [] and store.get_bytes(KEY) == body


def test_a_recorded_upload_of_an_unchanged_file_is_aborted(store: ObjectStore) -> None:
    body = big_body(seed=6)
    with serve(body) as server:
        sync(store, server).raise_for_errors()
        doc = state_doc(store)
        stale = store.client.create_multipart_upload(Bucket=store.bucket, Key=KEY)["UploadId"]
        doc["uploads"] = {
            NAME: {
                "key": KEY,
                "upload_id": stale,
                "size": len(body),
                "modified": "2026-08-06 08:30",
                "last_modified": "Thu, 06 Aug 2026 12:30:00 GMT",
                "part_size": PART,
                "parts": [],
            }
        }
        store.put_bytes(state_key("pr/"), json.dumps(doc).encode())
        again = sync(store, server)
    assert again.unchanged == [NAME]
    assert pending_uploads(store) == [] and "uploads" not in state_doc(store)


def test_a_survey_sync_leaves_the_recorded_uploads_of_files_it_excludes(
    store: ObjectStore,
) -> None:
    body = big_body(seed=7)
    with serve(body) as server:
        sync(store, server, time_left=budget(8))
        recorded = state_doc(store)["uploads"][NAME]
        # The survey's own message excludes its big files: their cut transfers are not its own.
        sync(store, server, exclude=(NAME,)).raise_for_errors()
        assert state_doc(store)["uploads"][NAME] == recorded
        assert [u["UploadId"] for u in pending_uploads(store)] == [recorded["upload_id"]]
        sync(store, server).raise_for_errors()
    assert store.get_bytes(KEY) == body and pending_uploads(store) == []


def test_ctrl_c_records_the_transfer_releases_the_lease_and_the_next_run_resumes(
    store: ObjectStore,
) -> None:
    import threading

    body = big_body(seed=8, size=40 * PART + 99)
    landed = threading.Event()

    def ctrl_c(signum: int, frame: Any) -> None:
        landed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        with serve(body) as server:
            moved = [0]

            def interrupt(event: Progress) -> None:
                # Ctrl-C arrives in the main thread while the transfer runs on its own; the
                # transfer goes on only once it has landed there.
                moved[0] += event.nbytes
                if event.kind == "bytes" and moved[0] > 5 * PART >= moved[0] - event.nbytes:
                    os.kill(os.getpid(), signal.SIGINT)
                    assert landed.wait(30)

            with pytest.raises(KeyboardInterrupt):
                sync(store, server, on_progress=interrupt)
            upload = state_doc(store)["uploads"][NAME]
            assert upload["parts"] and store.head(lock_key("pr/")) is None
            assert [u["UploadId"] for u in pending_uploads(store)] == [upload["upload_id"]]
            assert store.head(KEY) is None
            result = sync(store, server)
            result.raise_for_errors()
            assert file_requests(server)[-1].status == 206
    finally:
        signal.signal(signal.SIGINT, previous)
    assert store.get_bytes(KEY) == body and pending_uploads(store) == []
    assert state_doc(store)["files"][NAME]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_small_file_out_of_time_leaves_nothing_to_resume(store: ObjectStore) -> None:
    body = os.urandom(PART // 2)
    with serve(body) as server:
        result = sync(store, server, time_left=lambda: -1.0)
        assert [(h.name, h.start, h.reached) for h in result.handed_over] == [(NAME, 0, 0)]
        assert result.added == []
        assert not file_requests(server)  # out of time before it began
        assert pending_uploads(store) == []
        sync(store, server).raise_for_errors()
    assert store.get_bytes(KEY) == body


# -- the BLS-like server speaks Range and If-Range as a real one -------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "expect"),
    [
        ({"Range": "bytes=10-"}, 206, (10, 99)),
        ({"Range": "bytes=10-19"}, 206, (10, 19)),
        ({"Range": "bytes=-5"}, 206, (95, 99)),
        ({"Range": "bytes=10-", "If-Range": "LAST"}, 206, (10, 99)),
        ({"Range": "bytes=100-"}, 416, None),
    ],
    ids=["from", "span", "suffix", "if-range-match", "past-end"],
)
def test_the_offline_server_answers_ranges(
    headers: dict[str, str], status: int, expect: tuple[int, int] | None
) -> None:
    data = bytes(range(100))
    with OfflineServer({NAME: ServedFile(NAME, data, LISTED)}, require_contact=False) as server:
        url = server.bls_url + NAME
        last = httpx.get(url).headers["Last-Modified"]
        sent = {k: (last if v == "LAST" else v) for k, v in headers.items()}
        answer = httpx.get(url, headers=sent)
    assert answer.status_code == status
    if status == 206:
        assert expect is not None
        first, end = expect
        assert answer.content == data[first : end + 1]
        assert answer.headers["Content-Range"] == f"bytes {first}-{end}/100"
    else:
        assert answer.headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Range": "Mon, 01 Jan 2024 00:00:00 GMT"},
        {"If-Range": '"another-etag"'},
        {"Range": "bytes=1-2,5-6"},
    ],
    ids=["stale-date", "stale-etag", "several-ranges"],
)
def test_the_offline_server_sends_the_whole_file_for_a_range_it_will_not_serve(
    headers: dict[str, str],
) -> None:
    data = bytes(range(100))
    with OfflineServer({NAME: ServedFile(NAME, data, LISTED)}, require_contact=False) as server:
        url = server.bls_url + NAME
        last = httpx.get(url).headers["Last-Modified"]
        # The same range, validated by the file's own date, is served.
        assert httpx.get(url, headers={"Range": "bytes=10-", "If-Range": last}).status_code == 206
        answer = httpx.get(url, headers={"Range": "bytes=10-", **headers})
    assert answer.status_code == 200 and answer.content == data


def test_the_offline_server_serves_a_range_of_a_file_on_disk(tmp_path: Any) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    path.write_bytes(data)
    files = {NAME: ServedFile(NAME, b"", LISTED, path=path)}
    with OfflineServer(files, require_contact=False) as server:
        answer = httpx.get(server.bls_url + NAME, headers={"Range": "bytes=1048576-"})
    assert answer.status_code == 206 and answer.content == data[1048576:]


# -- the state's uploads, parsed strictly --------------------------------------------------------

GOOD_UPLOAD = {
    "key": KEY,
    "upload_id": "abc",
    "size": 10_000_000,
    "modified": "2026-08-06 08:30",
    "last_modified": "Thu, 06 Aug 2026 12:30:00 GMT",
    "part_size": PART,
    "parts": [[1, "e1"], [2, "e2"]],
}


def state_with(upload: object) -> bytes:
    return json.dumps(
        {
            "version": 1,
            "source_url": "https://x/",
            "updated": "now",
            "files": {},
            "uploads": {NAME: upload},
        }
    ).encode()


def test_a_state_with_uploads_round_trips() -> None:
    state = SyncState.from_json(state_with(GOOD_UPLOAD))
    again = SyncState.from_json(state.to_json())
    assert again.uploads == state.uploads
    assert state.uploads[NAME].parts == ((1, "e1"), (2, "e2"))
    # A state with no upload writes no "uploads" key: documents stay as they were.
    assert "uploads" not in json.loads(SyncState("https://x/").to_json())


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"key": "pr/another.file"},
        {"key": 5},
        {"upload_id": ""},
        {"upload_id": "a\nb"},
        {"upload_id": "x" * 2000},
        {"size": -1},
        {"size": True},
        {"size": 1.5},
        {"part_size": 0},
        {"part_size": 6 * 1024**3},
        {"modified": 5},
        {"last_modified": []},
        {"last_modified": "Thu, 06 Aug 2026\r\nX: 1"},
        {"modified": "x" * 300},
        {"parts": {}},
        {"parts": [[2, "e2"]]},
        {"parts": [[1, ""]]},
        {"parts": [[True, "e"]]},
        {"parts": [[1, "e", 3]]},
        {"parts": [["1", "e"]]},
    ],
    ids=lambda c: json.dumps(c)[:30],
)
def test_a_state_with_a_bad_upload_is_refused(change: dict[str, Any]) -> None:
    assert SyncState.from_json(state_with(GOOD_UPLOAD)).uploads  # the good one is taken
    upload = {**GOOD_UPLOAD, **change}
    with pytest.raises(ValueError, match="upload"):
        SyncState.from_json(state_with(upload))


@pytest.mark.parametrize("uploads", [[], "x", None, {"../x": GOOD_UPLOAD}])
def test_a_state_whose_uploads_is_not_an_object_of_file_names_is_refused(uploads: Any) -> None:
    assert SyncState.from_json(state_with(GOOD_UPLOAD)).uploads  # the good one is taken
    doc = json.loads(state_with(GOOD_UPLOAD))
    doc["uploads"] = uploads
    with pytest.raises(ValueError, match="upload"):
        SyncState.from_json(json.dumps(doc).encode())


def test_fuzz_recorded_uploads_parse_or_raise_value_error() -> None:
    assert SyncState.from_json(state_with(GOOD_UPLOAD)).uploads  # the good one is taken
    rng = random.Random(21)
    values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", "\x00", [], {}, [[1, "e"]]]
    for _ in range(2000):
        upload: dict[str, Any] = dict(GOOD_UPLOAD)
        for key in rng.sample(sorted(upload), rng.randint(1, 3)):
            upload[key] = rng.choice(values)
        with contextlib.suppress(ValueError):
            SyncState.from_json(state_with(upload))


def test_a_role_that_may_not_list_uploads_or_parts_still_syncs(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.errors import StorageError

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("cannot list: AccessDenied", code="AccessDenied")

    body = big_body(seed=9)
    with serve(body) as server:
        sync(store, server, time_left=budget(8))
        monkeypatch.setattr(store, "list_parts", denied)
        monkeypatch.setattr(store, "uploads_at", denied)
        result = sync(store, server)
        result.raise_for_errors()
        assert "range" not in file_requests(server)[-1].headers  # fetched whole
    assert store.get_bytes(KEY) == body and pending_uploads(store) == []


def test_a_resumed_file_whose_read_back_would_not_fit_the_time_left_waits_for_the_next_run(
    store: ObjectStore,
) -> None:
    body = big_body(seed=10)
    with serve(body) as server:
        sync(store, server, time_left=budget(8)).raise_for_errors()
        # Time never runs out, but is always too short to read the finished object back.
        second = sync(store, server, time_left=lambda: 0.01)
        (handed,) = second.handed_over
        assert second.added == [] and handed.reached > handed.start > 0
        assert store.head(KEY) is None and len(pending_uploads(store)) == 1
        third = sync(store, server)
        third.raise_for_errors()
        assert third.added == [NAME] and file_requests(server)[-1].status == 206
    assert store.get_bytes(KEY) == body and pending_uploads(store) == []
    assert state_doc(store)["files"][NAME]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_recorded_upload_naming_another_prefix_s_key_is_never_aborted(
    store: ObjectStore,
) -> None:
    # A hostile state records, under this mirror's file name, another prefix's upload in
    # progress: rq drops the record and leaves that upload alone (G3).
    body = big_body(seed=8)
    other = "other/" + NAME
    with serve(body) as server:
        sync(store, server).raise_for_errors()
        theirs = store.client.create_multipart_upload(Bucket=store.bucket, Key=other)["UploadId"]
        doc = state_doc(store)
        doc["uploads"] = {
            NAME: {
                "key": other,
                "upload_id": theirs,
                "size": len(body),
                "modified": "2026-08-06 08:30",
                "last_modified": "Thu, 06 Aug 2026 12:30:00 GMT",
                "part_size": PART,
                "parts": [],
            }
        }
        store.put_bytes(state_key("pr/"), json.dumps(doc).encode())
        sync(store, server).raise_for_errors()
    assert [u["UploadId"] for u in pending_uploads(store)] == [theirs]
    assert "uploads" not in state_doc(store)


def test_a_recorded_date_that_is_no_header_value_starts_over(store: ObjectStore) -> None:
    # A date with a line break would be sent as If-Range: refused at parse, the state is
    # rebuilt, the file fetched whole; the run is not wedged on it.
    body = big_body(seed=9)
    with serve(body) as server:
        sync(store, server, time_left=budget(10))
        tamper(store, lambda u: u.update(last_modified="Thu, 06 Aug 2026\r\nX-Evil: 1"))
        result = sync(store, server)
        result.raise_for_errors()
        assert all("x-evil" not in r.headers for r in file_requests(server))
    assert store.get_bytes(KEY) == body
    assert pending_uploads(store) == [] and "uploads" not in state_doc(store)


@pytest.mark.parametrize(
    "answer",
    [
        lambda first, last, size: (max(0, first - PART), last),  # another start
        lambda first, last, size: (first, last - 1),  # stops short of the end
    ],
    ids=["another-start", "short-end"],
)
def test_a_206_of_another_range_than_asked_fetches_the_whole_file(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    # A server that answers a range with other bytes than asked is not trusted: the bytes it
    # sent are not written, the recorded upload is aborted and the file is fetched whole at
    # once, so a server that never gets ranges right wedges nothing.
    from rearcquest import offline

    body = big_body(seed=10)
    honest = offline._Handler._range

    def wrong(self: Any, size: int, validators: tuple[str, str]) -> Any:
        span = honest(self, size, validators)
        return answer(*span, size) if isinstance(span, tuple) else span

    with serve(body) as server:
        sync(store, server, time_left=budget(10))
        assert "uploads" in state_doc(store)
        monkeypatch.setattr(offline._Handler, "_range", wrong)
        result = sync(store, server)
        result.raise_for_errors()
        assert [r.status for r in file_requests(server)][-2:] == [206, 200]
    assert store.get_bytes(KEY) == body
    assert pending_uploads(store) == [] and "uploads" not in state_doc(store)


@pytest.mark.parametrize(
    "content_range",
    ["bytes 10-99/" + "9" * 5000, "bytes 10-99/*", "bytes 11-99/100", "bytes 10-98/100", ""],
    ids=["huge-total", "no-total", "another-start", "short-end", "none"],
)
def test_a_content_range_that_is_not_the_rest_asked_for_is_a_data_error(
    content_range: str,
) -> None:
    from rearcquest.errors import DataError
    from rearcquest.sources.bls import RemoteFile, _rest_starts_at

    file = RemoteFile(NAME, "http://x/" + NAME, 100, None)
    answer = httpx.Response(206, headers={"Content-Range": content_range})
    with pytest.raises(DataError, match=NAME):
        _rest_starts_at(answer, file, 10)
