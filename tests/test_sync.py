"""sync_bls against moto S3 and the BLS-like server on 127.0.0.1, with the real releases."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from conftest import release
from rearcquest.aws.storage import ObjectStore
from rearcquest.config import RetryPolicy
from rearcquest.errors import (
    ConfigError,
    DeleteGuardError,
    ListingError,
    SourceError,
    TransferError,
)
from rearcquest.layout import state_key
from rearcquest.mirror.sync import META_SHA256, STATE_NAME
from rearcquest.offline import Fault, OfflineServer
from sync_helpers import before_each_upload, run_job, sync_dir

CONTACT = "tests@example.com"
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05, max_retry_after=0.05)
STATE = state_key("pr/")  # .rearcquest/state/pr.json, outside the mirror


def run(store: ObjectStore, server: OfflineServer, **kw: Any) -> Any:
    kw.setdefault("retry", FAST)
    return sync_dir(store, source_url=server.bls_url, contact=CONTACT, **kw)


def bucket_files(store: ObjectStore, prefix: str = "pr/") -> dict[str, bytes]:
    """Every object under the prefix: the mirror holds the source's files and nothing else."""
    return {o.key[len(prefix) :]: store.get_bytes(o.key) for o in store.list_objects(prefix)}


def test_first_sync_uploads_every_file_byte_for_byte(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    result = run(store, bls_server)
    served = {name: f.data for name, f in bls_server.files.items()}
    assert len(served) == 12
    assert sorted(result.added) == sorted(served)
    assert bucket_files(store) == served
    assert result.bytes_uploaded == sum(len(d) for d in served.values())
    head = store.head("pr/pr.class")
    assert head is not None
    assert head.metadata[META_SHA256] == hashlib.sha256(served["pr.class"]).hexdigest()
    result.raise_for_errors()


def test_second_sync_makes_no_file_request(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    before = len(bls_server.requests)
    result = run(store, bls_server)
    assert bls_server.requests[before:] and all(
        r.path == bls_server.directory for r in bls_server.requests[before:]
    )
    assert len(bls_server.requests) - before == 1
    assert (result.added, result.updated, result.deleted) == ([], [], [])
    assert len(result.unchanged) == 12
    assert result.bytes_downloaded == 0


def test_newer_release_uploads_only_changed_bytes(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server)
    old = bls_server.files
    new = release("2026-08-06")
    bls_server.set_files(new)
    etag_before = store.head("pr/pr.class")
    result = run(store, bls_server)
    changed = sorted(n for n in new if new[n].data != old[n].data)
    assert sorted(result.updated) == changed
    # pr.class is re-stamped on release day with identical bytes: fetched, compared, not uploaded.
    assert new["pr.class"].listed != old["pr.class"].listed
    assert "pr.class" in result.restamped
    head = store.head("pr/pr.class")
    assert etag_before is not None and head is not None
    assert (head.etag, head.size) == (etag_before.etag, etag_before.size)  # same bytes, no upload
    assert bucket_files(store) == {n: f.data for n, f in new.items()}
    assert result.bytes_uploaded == sum(len(new[n].data) for n in changed)


def test_304_is_unchanged(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    files = bls_server.files
    # The listing says "changed" (new date) but Last-Modified stays: the server answers 304.
    stale = files["pr.txt"]
    files["pr.txt"] = type(stale)(stale.name, stale.data, stale.listed.replace(minute=59))
    bls_server.set_files(files)
    state = json.loads(store.get_bytes(STATE))
    state["files"]["pr.txt"]["last_modified"] = "Thu, 01 Jan 2099 00:00:00 GMT"
    store.put_bytes(STATE, json.dumps(state).encode())
    before = len(bls_server.requests)
    result = run(store, bls_server)
    assert [r.status for r in bls_server.requests[before:] if r.path.endswith("pr.txt")] == [304]
    assert result.restamped == ["pr.txt"]
    assert result.bytes_downloaded == 0


def test_removed_file_is_deleted(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    files = bls_server.files
    del files["pr.footnote"]
    bls_server.set_files(files)
    result = run(store, bls_server)
    assert result.deleted == ["pr.footnote"]
    assert store.head("pr/pr.footnote") is None
    assert "pr.footnote" not in json.loads(store.get_bytes(STATE))["files"]


def test_delete_guard_trips_before_deleting(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    files = bls_server.files
    bls_server.set_files({"pr.class": files["pr.class"]})
    result = run(store, bls_server, max_delete=3)
    assert result.deleted == []
    assert len(bucket_files(store)) == 12
    with pytest.raises(DeleteGuardError, match="would delete 11 objects"):
        result.raise_for_errors()


def test_no_delete_keeps_removed_files(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    files = bls_server.files
    del files["pr.footnote"]
    bls_server.set_files(files)
    result = run(store, bls_server, delete=False)
    assert result.deleted == []
    assert store.head("pr/pr.footnote") is not None


def test_out_of_band_change_is_repaired(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    store.put_bytes("pr/pr.series", b"tampered")
    store.client.delete_object(Bucket=store.bucket, Key="pr/pr.measure")
    result = run(store, bls_server)
    assert sorted(result.updated + result.added) == ["pr.measure", "pr.series"]
    assert bucket_files(store) == {n: f.data for n, f in bls_server.files.items()}


def test_lost_state_is_rebuilt_from_metadata(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server)
    store.client.delete_object(Bucket=store.bucket, Key=STATE)
    before = len(bls_server.requests)
    result = run(store, bls_server)
    assert len(bls_server.requests) - before == 1  # the listing only
    assert len(result.unchanged) == 12
    assert store.head(STATE) is not None


def test_dry_run_changes_nothing(store: ObjectStore, bls_server: OfflineServer) -> None:
    result = run(store, bls_server, dry_run=True)
    assert result.dry_run
    assert len(result.added) == 12
    assert list(store.list_objects("")) == []
    assert bls_server.file_requests() == []
    assert all(a.reason == "new file" for a in result.plan.actions)


def test_prefix_root_and_custom(store: ObjectStore, bls_server: OfflineServer) -> None:
    run(store, bls_server, prefix="")
    run(store, bls_server, prefix="mirror/bls")
    keys = {o.key for o in store.list_objects("")}
    assert "pr.class" in keys
    assert "mirror/bls/pr.class" in keys


def test_bls_gov_without_contact_is_refused_before_any_request(store: ObjectStore) -> None:
    with pytest.raises(ConfigError, match="--contact"):
        sync_dir(store)


def test_server_403_says_how_to_fix(store: ObjectStore, bls_server: OfflineServer) -> None:
    with pytest.raises(SourceError, match=r"403.*--contact"):
        sync_dir(store, source_url=bls_server.bls_url, user_agent="curl/8.0", retry=FAST)
    assert list(store.list_objects("")) == []


def seeded(store: ObjectStore, server: OfflineServer) -> dict[str, bytes]:
    run(store, server)
    server.set_files(release("2026-08-06"))
    return bucket_files(store)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("/pub/time.series/pr/", status=500, times=99), SourceError),
        (Fault("/pub/time.series/pr/", status=403), SourceError),
        (Fault("/pub/time.series/pr/", status=200, body=b"<html>garbled", times=99), ListingError),
        (Fault("/pub/time.series/pr/", status=200, body=b"<html><pre></pre></html>"), ListingError),
    ],
    ids=["listing-500", "listing-403", "garbled", "empty"],
)
def test_bad_listing_leaves_bucket_as_it_was(
    store: ObjectStore, bls_server: OfflineServer, fault: Fault, error: type[Exception]
) -> None:
    before = seeded(store, bls_server)
    bls_server.faults.append(fault)
    with pytest.raises(error):
        run(store, bls_server)
    assert bucket_files(store) == before
    bls_server.faults.clear()
    run(store, bls_server).raise_for_errors()  # a re-run converges
    assert bucket_files(store) == {n: f.data for n, f in bls_server.files.items()}


@pytest.mark.parametrize(
    "fault",
    [
        Fault("*/pr.data.0.Current", status=500, times=99),
        Fault("*/pr.data.0.Current", reset=True, times=99),
        Fault("*/pr.data.0.Current", truncate=True, times=99),
    ],
    ids=["file-500", "reset-mid-body", "truncated"],
)
def test_failed_file_is_reported_others_synced_nothing_deleted(
    store: ObjectStore, bls_server: OfflineServer, fault: Fault
) -> None:
    before = seeded(store, bls_server)
    files = bls_server.files
    del files["pr.footnote"]
    bls_server.set_files(files)
    bls_server.faults.append(fault)
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.data.0.Current"]
    assert bucket_files(store)["pr.data.0.Current"] == before["pr.data.0.Current"]
    assert "pr.series" in result.updated
    assert result.deleted == []
    assert result.deletes_skipped
    with pytest.raises(TransferError, match=r"pr\.data\.0\.Current"):
        result.raise_for_errors()
    bls_server.faults.clear()
    again = run(store, bls_server)
    again.raise_for_errors()
    assert again.updated == ["pr.data.0.Current"]
    assert again.deleted == ["pr.footnote"]


def test_transient_faults_are_retried(store: ObjectStore, bls_server: OfflineServer) -> None:
    bls_server.faults += [
        Fault("/pub/time.series/pr/", status=503),
        Fault("*/pr.class", status=429, retry_after="0"),
        Fault("*/pr.series", reset=True),
    ]
    result = run(store, bls_server)
    result.raise_for_errors()
    assert len(result.added) == 12
    statuses = [r.status for r in bls_server.requests if r.path.endswith("pr.class")]
    assert statuses == [429, 200]


def test_s3_unavailable_is_a_storage_error_and_source_untouched(bls_server: OfflineServer) -> None:
    from rearcquest.aws.storage import make_s3_client
    from rearcquest.errors import StorageError

    store = ObjectStore(make_s3_client(endpoint_url="http://127.0.0.1:9"), "nowhere")
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        run(store, bls_server)
    assert bls_server.requests == []


@pytest.mark.parametrize(("prefix", "index_key"), [("pr/", "index.html"), ("", "index.html")])
def test_static_index_is_kept_current_and_never_deleted(
    store: ObjectStore, bls_server: OfflineServer, prefix: str, index_key: str
) -> None:
    from rearcquest.jobs.job import AfterSync

    def indexed(**kw: Any) -> Any:
        return run_job(
            store,
            AfterSync(index=True),
            source_url=bls_server.bls_url,
            contact=CONTACT,
            retry=FAST,
            **kw,
        )

    first = indexed(prefix=prefix, index_key=index_key)
    assert first.index_written == index_key
    page = store.get_bytes(index_key).decode()
    assert "pr.data.0.Current" in page
    assert STATE_NAME not in page
    etag = store.head(index_key)
    again = indexed(prefix=prefix, index_key=index_key)
    assert again.index_written is None  # nothing changed: the page is not rewritten
    assert again.sync.deleted == []
    assert store.head(index_key) == etag
    files = bls_server.files
    del files["pr.footnote"]
    bls_server.set_files(files)
    third = indexed(prefix=prefix, index_key=index_key)
    assert third.sync.deleted == ["pr.footnote"]
    assert third.index_written == index_key
    assert "pr.footnote" not in store.get_bytes(index_key).decode()


def test_partial_sync_keeps_the_state_of_other_files(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server)
    run(store, bls_server, include=["pr.data.*"])
    state = json.loads(store.get_bytes(STATE))["files"]
    assert sorted(state) == sorted(bls_server.files)
    before = len(bls_server.requests)
    result = run(store, bls_server)
    assert len(bls_server.requests) - before == 1  # the listing only: nothing to re-check
    assert len(result.unchanged) == 12


# -- issue 9: other tools agree with the mirror (Content-Type, rclone's mtime, true metadata) --


def http_mtime(server: OfflineServer, name: str) -> str:
    """The served file's Last-Modified as rclone's mtime metadata."""
    return f"{server.files[name].last_modified.timestamp():.9f}"


def test_objects_are_utf8_text_with_rclone_mtime_whatever_the_server_says(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    # `python -m http.server` calls pr.class application/java-vm.
    bls_server.faults.append(Fault("*/pr.class", content_type="application/java-vm"))
    run(store, bls_server).raise_for_errors()
    for name in ("pr.class", "pr.series"):
        head = store.head("pr/" + name)
        assert head is not None
        assert head.content_type == "text/plain; charset=utf-8"
        assert head.metadata["mtime"] == http_mtime(bls_server, name)
    assert float(http_mtime(bls_server, "pr.class")).is_integer()


def test_redated_identical_bytes_get_true_metadata_by_a_server_side_copy(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server)
    bls_server.set_files(release("2026-08-06"))
    old = store.head("pr/pr.class")
    calls: list[str] = []
    original = store.client.put_object

    def counting_put(**kw: Any) -> Any:
        calls.append(kw["Key"])
        return original(**kw)

    store.client.put_object = counting_put  # type: ignore[method-assign]
    result = run(store, bls_server)
    assert "pr.class" in result.restamped
    assert "pr/pr.class" not in calls, "same bytes: never uploaded again"
    new = store.head("pr/pr.class")
    assert old is not None and new is not None
    assert (new.etag, new.size) == (old.etag, old.size)
    assert new.metadata["mtime"] == http_mtime(bls_server, "pr.class") != old.metadata["mtime"]
    assert new.metadata["rq-listing-date"] == "2026-08-06 08:30"
    assert new.metadata["rq-sha256"] == old.metadata["rq-sha256"]
    assert new.content_type == "text/plain; charset=utf-8"
    state = json.loads(store.get_bytes(state_key("pr/")))["files"]["pr.class"]
    assert state["etag"] == new.etag and state["modified"] == "2026-08-06 08:30"
    again = run(store, bls_server)
    assert len(again.unchanged) == 12 and again.restamped == []


def test_304_refreshes_the_listing_date_in_the_metadata(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server)
    files = bls_server.files
    stale = files["pr.txt"]
    files["pr.txt"] = type(stale)(stale.name, stale.data, stale.listed.replace(minute=59))
    bls_server.set_files(files)
    state = json.loads(store.get_bytes(state_key("pr/")))
    state["files"]["pr.txt"]["last_modified"] = "Thu, 01 Jan 2099 00:00:00 GMT"
    store.put_bytes(state_key("pr/"), json.dumps(state).encode())
    result = run(store, bls_server)
    assert result.restamped == ["pr.txt"] and result.bytes_uploaded == 0
    head = store.head("pr/pr.txt")
    assert head is not None
    assert head.metadata["rq-listing-date"].endswith(":59")
    assert head.metadata["rq-last-modified"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    assert head.metadata["mtime"] == "4070908800.000000000"


# -- issue 5: a hostile or broken source cannot smuggle data in or hang a run --


@pytest.fixture
def elsewhere() -> Any:
    """Another server on another port: a redirect there leaves the source's origin."""
    with OfflineServer(release("2024-06-06")) as other:
        yield other


def test_cross_origin_redirect_of_a_file_fails_that_file_only(
    store: ObjectStore, bls_server: OfflineServer, elsewhere: OfflineServer
) -> None:
    bls_server.faults.append(
        Fault("*/pr.class", status=302, location=elsewhere.bls_url + "pr.class", times=9)
    )
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.class"]
    assert "outside" in result.errors[0].message
    assert elsewhere.requests == []
    assert store.head("pr/pr.class") is None
    assert len(result.added) == 11


def test_cross_origin_redirect_of_the_listing_changes_nothing(
    store: ObjectStore, bls_server: OfflineServer, elsewhere: OfflineServer
) -> None:
    before = seeded(store, bls_server)
    bls_server.faults.append(Fault(bls_server.directory, status=301, location=elsewhere.bls_url))
    with pytest.raises(SourceError, match="outside") as caught:
        run(store, bls_server)
    assert caught.value.exit_code == 3
    assert elsewhere.requests == []
    assert bucket_files(store) == before


def test_same_origin_redirect_is_followed(store: ObjectStore, bls_server: OfflineServer) -> None:
    bls_server.faults.append(
        Fault("*/pr.class", status=302, location="/pub/time.series/pr/pr.class")
    )
    run(store, bls_server).raise_for_errors()
    assert bucket_files(store)["pr.class"] == bls_server.files["pr.class"].data


@pytest.mark.parametrize(
    "fault",
    [
        Fault("*/pr.data.0.Current", chunked=True, truncate=True, times=9),
        Fault("*/pr.data.0.Current", chunked=True, extra=50 * 1024 * 1024, times=9),
    ],
    ids=["shorter", "longer"],
)
def test_body_of_another_size_than_listed_fails_without_content_length(
    store: ObjectStore, bls_server: OfflineServer, fault: Fault
) -> None:
    bls_server.faults.append(fault)
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.data.0.Current"]
    assert "the listing says" in result.errors[0].message
    assert store.head("pr/pr.data.0.Current") is None
    size = bls_server.files["pr.data.0.Current"].size
    other = sum(f.size for n, f in bls_server.files.items() if n != "pr.data.0.Current")
    # A longer body is cut off right after the listed size, not read to its (huge) end.
    assert result.bytes_downloaded - other <= size


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def listings(server: OfflineServer) -> int:
    """How many times the run asked for the directory listing."""
    return sum(r.path == server.directory for r in server.requests)


def publish_on_first_upload(store: ObjectStore, server: OfflineServer, vintage: str) -> None:
    """Serve the release ``vintage`` once the sync's first object is written: a release
    published mid-run, after the listing was read and some files were fetched."""
    published: list[str] = []

    def hook(key: str) -> None:
        if not published:
            published.append(key)
            server.set_files(release(vintage))

    before_each_upload(None, store, hook)


def test_a_release_published_mid_run_ends_on_the_new_release_entirely(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    new = {name: f.data for name, f in release("2026-08-06").items()}
    publish_on_first_upload(store, bls_server, "2026-08-06")
    # One transfer at a time: pr.class is written (and the release published) before the data
    # files, whose sizes changed, are fetched.
    result = run(store, bls_server, transfers=1)
    result.raise_for_errors()
    assert result.changed == [] and result.errors == []
    assert sorted(result.added) == sorted(new)
    assert listings(bls_server) == 2  # the run's listing, and the one more look
    assert sha256s(bucket_files(store)) == sha256s(new)
    state = json.loads(store.get_bytes(STATE))
    assert {n: e["sha256"] for n, e in state["files"].items()} == sha256s(new)
    assert {n: e["size"] for n, e in state["files"].items()} == {n: len(d) for n, d in new.items()}
    listed = {n: f.listed.strftime("%Y-%m-%d %H:%M") for n, f in release("2026-08-06").items()}
    assert {n: e["modified"] for n, e in state["files"].items()} == listed
    # The next run finds the mirror current: nothing to fetch.
    again = run(store, bls_server)
    assert (again.added, again.updated, again.deleted) == ([], [], [])


def test_a_file_whose_size_never_matches_fails_after_one_more_listing(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    bls_server.faults.append(Fault("*/pr.data.0.Current", chunked=True, truncate=True, times=9))
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.data.0.Current"]
    assert result.changed == ["pr.data.0.Current"]
    message = result.errors[0].message
    assert "the listing says" in message
    assert "listed again, still gives the old size" in message
    assert listings(bls_server) == 2
    assert len([r for r in bls_server.requests if r.path.endswith("/pr.data.0.Current")]) == 1
    assert store.head("pr/pr.data.0.Current") is None
    with pytest.raises(TransferError, match=r"pr\.data\.0\.Current"):
        result.raise_for_errors()


def test_a_file_changing_again_after_the_second_listing_fails(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    publish_on_first_upload(store, bls_server, "2026-08-06")
    bls_server.faults.append(Fault("*/pr.data.1.AllData", chunked=True, truncate=True, times=9))
    result = run(store, bls_server, transfers=1)
    assert [e.name for e in result.errors] == ["pr.data.1.AllData"]
    assert "changed again after the directory was listed a second time" in result.errors[0].message
    assert listings(bls_server) == 2  # one more look only
    assert len([r for r in bls_server.requests if r.path.endswith("/pr.data.1.AllData")]) == 2
    assert store.head("pr/pr.data.1.AllData") is None
    # What could be synced is the new release.
    new = sha256s({n: f.data for n, f in release("2026-08-06").items()})
    got = sha256s(bucket_files(store))
    assert got == {n: h for n, h in new.items() if n != "pr.data.1.AllData"}


def test_a_dripping_file_fails_in_bounded_time_the_others_are_synced(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    from rearcquest.sources._http import HttpClient

    bls_server.faults.append(Fault("*/pr.footnote", drip=0.05, times=9))
    http = HttpClient(user_agent=f"rq-test ({CONTACT})", retry=FAST, grace=0.3, min_rate=100)
    with http:
        result = run(store, bls_server, http=http)
    assert [e.name for e in result.errors] == ["pr.footnote"]
    assert "too slow" in result.errors[0].message
    assert len(result.added) == 11
    assert len([r for r in bls_server.requests if r.path.endswith("pr.footnote")]) == 1


def test_local_error_mid_stream_fails_that_file_only(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from rearcquest.aws.storage import ObjectWriter

    before = seeded(store, bls_server)
    files = bls_server.files
    del files["pr.footnote"]
    bls_server.set_files(files)
    real_write = ObjectWriter.write

    def out_of_memory(self: ObjectWriter, data: bytes) -> None:
        # No disk is involved any more, but the machine can still refuse: memory, sockets.
        if self.size + len(data) > 2 * 1024 * 1024:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
        real_write(self, data)

    monkeypatch.setattr(ObjectWriter, "write", out_of_memory)
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.data.1.AllData"]  # the only file over 2 MB
    assert "local I/O error" in result.errors[0].message
    assert "Cannot allocate memory" in result.errors[0].message
    assert bucket_files(store)["pr.data.1.AllData"] == before["pr.data.1.AllData"]
    assert "pr.series" in result.updated
    assert result.deleted == [] and result.deletes_skipped
    with pytest.raises(TransferError, match=r"pr\.data\.1\.AllData"):
        result.raise_for_errors()
