"""The release log: recorded by every clean sync (CLI, `rq run`, the Lambdas), read strictly."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from conftest import FAST, release
from rearcquest.aws.storage import ObjectStore, S3Access
from rearcquest.config import Settings
from rearcquest.data import vintages
from rearcquest.data.analytics import ReportInputs
from rearcquest.errors import ConfigError, DataError, StateConflictError
from rearcquest.jobs.pipeline import run_pipeline
from rearcquest.layout import plain_name, releases_key, state_key
from rearcquest.offline import Fault, OfflineServer, add_datausa_routes
from rearcquest.records.releases import (
    Release,
    ReleaseFile,
    load_releases,
    next_release,
    record_release,
    resolve_release,
)
from rearcquest.records.state import SyncState
from sync_helpers import sync_dir
from vintage_helpers import STAMPS

CONTACT = "tests@example.com"
SHA = {c: c * 64 for c in "abcdef"}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def run(store: ObjectStore, server: OfflineServer) -> Any:
    return sync_dir(store, source_url=server.bls_url, contact=CONTACT, retry=FAST)


# -- the state keeps version ids, compatibly --


def _state_doc(**entry_extra: Any) -> bytes:
    entry = {"size": 1, "modified": None, "last_modified": None, "sha256": SHA["a"], "etag": "e"}
    doc = {"version": 1, "source_url": "u", "updated": "t", "files": {"f": entry | entry_extra}}
    return json.dumps(doc).encode()


def test_state_without_version_ids_still_loads_and_round_trips() -> None:
    state = SyncState.from_json(_state_doc())
    assert state.files["f"].version_id is None
    assert "version_id" not in json.loads(state.to_json())["files"]["f"]


def test_state_with_a_version_id_round_trips() -> None:
    state = SyncState.from_json(_state_doc(version_id="v1"))
    assert state.files["f"].version_id == "v1"
    assert SyncState.from_json(state.to_json()).files == state.files


@pytest.mark.parametrize("bad", ["", 3, ["v"]], ids=["empty", "number", "list"])
def test_state_with_a_bad_version_id_is_invalid(bad: Any) -> None:
    with pytest.raises(ValueError, match="version_id"):
        SyncState.from_json(_state_doc(version_id=bad))


def test_an_old_state_is_read_without_a_warning(
    store: ObjectStore, bls_server: OfflineServer, caplog: pytest.LogCaptureFixture
) -> None:
    run(store, bls_server).raise_for_errors()
    doc = json.loads(store.get_bytes(state_key("pr/")))
    for entry in doc["files"].values():
        entry.pop("version_id", None)
    store.put_bytes(state_key("pr/"), json.dumps(doc).encode())
    with caplog.at_level(logging.WARNING, logger="rearcquest"):
        result = run(store, bls_server)
    result.raise_for_errors()
    assert len(result.unchanged) == 12
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- deciding a release (pure) --


def test_next_release_stamps_with_the_changed_files_dates_only() -> None:
    before = Release("2025-06-05 08:30", "x", files={"a": ReleaseFile(SHA["a"], "1")})
    files = {"a": ReleaseFile(SHA["a"], "2"), "b": ReleaseFile(SHA["b"], "3")}
    modified = {"a": "Thu, 04 Sep 2025 13:00:00 GMT", "b": "Thu, 04 Sep 2025 12:30:00 GMT"}
    got = next_release(before, files, modified, now=NOW)
    assert got is not None
    # a was only re-stamped (new version, same bytes): not changed, its date not the stamp.
    assert (got.release, got.changed, got.removed) == ("2025-09-04 12:30", ("b",), ())
    assert got.synced_at == "2026-11-29T12:00:00+00:00"


def test_next_release_is_none_without_a_change_and_notes_removals() -> None:
    before = Release("r", "x", files={"a": ReleaseFile(SHA["a"]), "b": ReleaseFile(SHA["b"])})
    assert (
        next_release(before, {"a": ReleaseFile(SHA["a"]), "b": ReleaseFile(SHA["b"])}, {}, now=NOW)
        is None
    )
    gone = next_release(before, {"a": ReleaseFile(SHA["a"])}, {}, now=NOW)
    assert gone is not None
    assert (gone.changed, gone.removed, gone.release) == ((), ("b",), "2026-11-29 12:00")


LOG = [Release(s, "x") for s in ("2024-06-06 08:30", "2025-06-05 08:30", "2025-09-04 08:30")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("latest", "2025-09-04 08:30"),
        ("previous", "2025-06-05 08:30"),
        ("2025-06-05", "2025-06-05 08:30"),
        ("2025-06-04", "2024-06-06 08:30"),
        ("2025-06-05 08:29", "2024-06-06 08:30"),
        ("2025-06-05T08:30", "2025-06-05 08:30"),
        ("2030-01-01", "2025-09-04 08:30"),
    ],
    ids=["latest", "previous", "date", "day-before", "stamp-before", "iso-stamp", "future"],
)
def test_resolve_release(spec: str, expected: str) -> None:
    assert resolve_release(LOG, spec).release == expected


@pytest.mark.parametrize(
    ("log", "spec", "message"),
    [
        ([], "latest", "no release is logged"),
        (LOG[:1], "previous", "only one release is logged"),
        (LOG, "2024-06-05", "no release on or before 2024-06-05"),
        (LOG, "06/05/2025", "is not a release"),
        (LOG, "2024-02-29 23:59", "no release on or before 2024-02-29 23:59"),
    ],
    ids=["empty", "no-previous", "too-early", "us-date", "leap-day"],
)
def test_resolve_release_errors(log: list[Release], spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_release(log, spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("2025-02-30", "day is out of range for month"),
        ("2025-13-45", "month must be in 1..12"),
        ("2023-02-29", "day is out of range for month"),
        ("0000-01-01", "year 0 is out of range"),
        ("2025-01-01 25:61", "hour must be in 0..23"),
        ("2025-01-01T23:60", "minute must be in 0..59"),
        ("\u0662\u0660\u0662\u0665-01-01", "is not a release"),
    ],
    ids=[
        "feb-30",
        "month-13",
        "not-a-leap-year",
        "year-0",
        "hour-25",
        "minute-60",
        "arabic-digits",
    ],
)
@pytest.mark.parametrize("log", [LOG, []], ids=["logged", "nothing-logged"])
def test_resolve_release_refuses_dates_not_on_the_calendar(
    log: list[Release], spec: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_release(log, spec)
    assert str(caught.value).startswith(f"{spec!r} is not a ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_resolve_release_fuzz_names_only_real_dates() -> None:
    """Date-shaped specs with every field out of range or not: a release comes back only for a
    date on the calendar; anything else is a ConfigError, never another exception."""
    rng = random.Random(19)
    for _ in range(2000):
        year, month, day = rng.randint(0, 9999), rng.randint(0, 19), rng.randint(0, 39)
        spec = f"{year:04d}-{month:02d}-{day:02d}"
        if rng.random() < 0.5:
            spec += f"{rng.choice(' T')}{rng.randint(0, 29):02d}:{rng.randint(0, 69):02d}"
        try:
            datetime.fromisoformat(spec)
            real = True
        except ValueError:
            real = False
        found, refused = None, ""
        try:
            found = resolve_release(LOG, spec)
        except ConfigError as exc:
            refused = str(exc)
        if found is not None:
            assert real and found.release[:10] <= spec[:10], spec
        else:
            assert real == ("is not a real date" not in refused), spec


# -- recording --


def test_unversioned_bucket_logs_releases_with_null_versions(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    run(store, bls_server).raise_for_errors()
    (first,) = load_releases(store, "pr/").releases
    assert first.release == STAMPS[0]
    assert {f.version_id for f in first.files.values()} == {None}
    client = store.client
    latest = vintages.analyze_at(
        ReportInputs(
            bls="s3://test-bucket/pr/pr.data.0.Current", reports=["best-year"], as_of="latest"
        ),
        s3=S3Access(client=client),
    )
    assert latest.release == first.release
    bls_server.set_files(release("2025-06-05"))
    run(store, bls_server).raise_for_errors()
    assert len(load_releases(store, "pr/").releases) == 2
    with pytest.raises(DataError, match="was not kept: the bucket was not versioned"):
        vintages.analyze_at(
            ReportInputs(
                bls="s3://test-bucket/pr/pr.data.0.Current",
                reports=["best-year"],
                as_of="2024-06-06",
            ),
            s3=S3Access(client=client),
        )


def test_a_sync_with_failures_records_no_release(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    bls_server.faults.append(Fault(bls_server.directory + "pr.series", status=404, times=99))
    result = run(store, bls_server)
    assert [e.name for e in result.errors] == ["pr.series"]
    assert store.head(releases_key("pr/")) is None
    bls_server.faults.clear()
    run(store, bls_server).raise_for_errors()
    (first,) = load_releases(store, "pr/").releases
    assert len(first.changed) == 12  # the clean run records the whole release


def test_a_corrupt_log_is_kept_and_the_sync_succeeds(
    store: ObjectStore, bls_server: OfflineServer, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_bytes(releases_key("pr/"), b"[1, 2]")
    with caplog.at_level(logging.WARNING, logger="rearcquest"):
        run(store, bls_server).raise_for_errors()
    assert store.get_bytes(releases_key("pr/")) == b"[1, 2]"
    assert any("not a release log" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="is not a release log"):
        load_releases(store, "pr/")


def test_a_log_changed_meanwhile_is_not_overwritten(store: ObjectStore) -> None:
    key = releases_key("pr/")

    def meanwhile() -> None:
        store.put_bytes(key, b"theirs")

    with pytest.raises(StateConflictError, match=r"release log .* changed while this sync ran"):
        record_release(store, "pr/", {"a": ReleaseFile(SHA["a"])}, {}, now=NOW, check=meanwhile)
    assert store.get_bytes(key) == b"theirs"


def test_the_pipeline_records_releases(store: ObjectStore, bls_server: OfflineServer) -> None:
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store.client.create_bucket(Bucket="pop-bucket")
    urls = add_datausa_routes(bls_server)
    settings = Settings(
        bls_bucket=store.bucket,
        population_bucket="pop-bucket",
        bls_url=bls_server.bls_url,
        population_url=urls["tesseract"],
        contact=CONTACT,
    )
    for vintage in ("2024-06-06", "2025-06-05"):
        bls_server.set_files(release(vintage))
        run_pipeline(settings, s3_client=store.client, retry=FAST).raise_for_errors()
    logged = load_releases(store, "pr/").releases
    assert [r.release for r in logged] == STAMPS[:2]
    assert all(f.version_id for r in logged for f in r.files.values())


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("1", True), ("Yes", True), ("off", False), ("", False)],
    ids=["unset", "1", "Yes", "off", "empty"],
)
def test_rq_vintages_is_read_from_the_environment(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"RQ_VINTAGES": value}
    assert Settings.from_env(environ).vintages is expected


def test_a_bad_rq_vintages_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RQ_VINTAGES='maybe' is not true or false"):
        Settings.from_env({"RQ_VINTAGES": "maybe"})


def test_the_pipeline_with_vintages_refuses_an_unversioned_mirror(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    store.client.create_bucket(Bucket="pop-bucket")
    urls = add_datausa_routes(bls_server)
    settings = Settings(
        bls_bucket=store.bucket,
        population_bucket="pop-bucket",
        bls_url=bls_server.bls_url,
        population_url=urls["tesseract"],
        contact=CONTACT,
        vintages=True,
    )
    result = run_pipeline(settings, s3_client=store.client, retry=FAST)
    assert result.sync.error is not None and "does not keep old versions" in result.sync.error
    assert list(store.list_objects()) == []
    assert result.population.summary is not None  # the fetch still ran


def test_a_lost_state_is_rebuilt_with_the_objects_version_ids(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    run(store, bls_server).raise_for_errors()
    store.delete(state_key("pr/"))
    run(store, bls_server).raise_for_errors()
    state = SyncState.from_json(store.get_bytes(state_key("pr/")))
    for name, entry in state.files.items():
        head = store.head("pr/" + name)
        assert head is not None and entry.version_id == head.version_id
    (only,) = load_releases(store, "pr/").releases  # the same files: no second release
    assert {n: f.version_id for n, f in only.files.items()} == {
        n: f.version_id for n, f in state.files.items()
    }


def test_a_multipart_object_of_the_latest_release_is_read_through_the_state(
    store: ObjectStore, bls_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.s3.models

    from rearcquest.aws import storage

    # Parts of 512 KiB: pr.data.0.Current (1.6 MB) goes up in parts, without rq-sha256.
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 512 * 1024)
    run(store, bls_server).raise_for_errors()
    head = store.head("pr/pr.data.0.Current")
    assert head is not None and "rq-sha256" not in head.metadata
    inputs = ReportInputs(bls="s3://test-bucket/pr/pr.data.0.Current", reports=["best-year"])
    s3 = S3Access(client=store.client)
    first = vintages.analyze_at(replace(inputs, as_of="latest"), s3=s3)
    assert first.release == STAMPS[0]
    bls_server.set_files(release("2025-06-05"))
    run(store, bls_server).raise_for_errors()
    # The state now records the new bytes: the old release's are gone, and that is said.
    with pytest.raises(DataError, match="was not kept"):
        vintages.analyze_at(replace(inputs, as_of="2024-06-06"), s3=s3)
    assert vintages.analyze_at(replace(inputs, as_of="latest"), s3=s3).release != (first.release)


# -- stamps are UTC, unique and never go back (issue 19) --


def _appended(previous: Release, modified: str | None) -> Release:
    got = next_release(previous, {"a": ReleaseFile(SHA["b"], "2")}, {"a": modified}, now=NOW)
    assert got is not None
    return got


def test_the_stamp_is_the_last_modified_in_utc() -> None:
    first = Release("2025-06-05 12:30", "x", files={"a": ReleaseFile(SHA["a"], "1")})
    for modified in ("Thu, 04 Sep 2025 12:30:00 GMT", "Thu, 04 Sep 2025 08:30:00 -0400"):
        assert _appended(first, modified).release == "2025-09-04 12:30"


def test_two_releases_in_one_minute_get_two_stamps() -> None:
    first = Release("2025-09-04 12:30", "x", files={"a": ReleaseFile(SHA["a"], "1")})
    second = _appended(first, "Thu, 04 Sep 2025 12:30:59 GMT")
    assert second.release == "2025-09-04 12:31"
    # Both stay reachable: by stamp and by date.
    log = [first, second]
    assert resolve_release(log, "2025-09-04 12:30") is first
    assert resolve_release(log, "2025-09-04T12:31") is second
    assert resolve_release(log, "2025-09-04") is second


def test_a_release_modified_earlier_than_the_last_comes_after_it() -> None:
    last = Release("2025-09-04 12:30", "x", files={"a": ReleaseFile(SHA["a"], "1")})
    older = _appended(last, "Wed, 02 Jan 2024 03:04:00 GMT")
    assert older.release == "2025-09-04 12:31"
    # Without a Last-Modified: the sync time, still after the last release.
    assert _appended(Release("2025-12-31 23:59", "x"), None).release == "2026-11-29 12:00"
    assert _appended(Release("2026-11-29 12:00", "x"), None).release == "2026-11-29 12:01"
    # A day's last minute rolls over into the next day.
    assert (
        _appended(Release("2026-12-31 23:59", "x"), "Thu, 31 Dec 2026 23:59:00 GMT").release
        == "2027-01-01 00:00"
    )


@pytest.mark.parametrize(
    "modified",
    ["Thu, 40 Sep 2025 12:30:00 GMT", "../../x", "2025-09-04 08:30"],
    ids=["impossible", "path", "listing-date"],
)
def test_a_last_modified_that_is_no_date_is_not_a_stamp(modified: str) -> None:
    got = _appended(Release("2025-09-04 12:30", "x"), modified)
    assert got.release == "2026-11-29 12:00"  # the sync time, UTC


def test_recorded_stamps_only_grow(store: ObjectStore) -> None:
    modified = "Thu, 04 Sep 2025 12:30:00 GMT"
    for sha, date in (
        (SHA["b"], modified),
        (SHA["c"], modified),
        (SHA["d"], "Wed, 01 Jan 2025 00:00:00 GMT"),
    ):
        record_release(store, "pr/", {"a": ReleaseFile(sha, "1")}, {"a": date}, now=NOW)
    stamps = [r.release for r in load_releases(store, "pr/").releases]
    assert stamps == ["2025-09-04 12:30", "2025-09-04 12:31", "2025-09-04 12:32"]


# -- the names a log holds are data, never paths (issue 19) --


def _log_doc(**release: Any) -> dict[str, Any]:
    entry = {"sha256": SHA["a"], "version_id": "v1"}
    doc = {
        "release": "2025-09-04 08:30",
        "synced_at": "2025-09-04T15:00:00+00:00",
        "changed": ["pr.series"],
        "removed": [],
        "files": {"pr.series": entry},
    } | release
    return {"version": 1, "prefix": "pr/", "releases": [doc]}


BAD_NAMES = [
    "/etc/passwd",
    "../../x",
    "a/b",
    "a\\b",
    "..",
    ".",
    "",
    "x\0y",
    "x\ny",
    "x" * 256,
    "é" * 128,
]
BAD_IDS = [
    "absolute",
    "dot-dot",
    "nested",
    "backslash",
    "parent",
    "dot",
    "empty",
    "nul",
    "newline",
    "long",
    "long-utf8",
]


@pytest.mark.parametrize("field", ["files", "changed", "removed"])
@pytest.mark.parametrize("bad", BAD_NAMES, ids=BAD_IDS)
def test_a_log_naming_a_path_is_not_a_release_log(store: ObjectStore, field: str, bad: str) -> None:
    entry = {"sha256": SHA["a"], "version_id": "v1"}
    value: Any = {"pr.series": entry, bad: entry} if field == "files" else ["pr.series", bad]
    store.put_bytes(releases_key("pr/"), json.dumps(_log_doc(**{field: value})).encode())
    with pytest.raises(DataError) as caught:
        load_releases(store, "pr/")
    message = str(caught.value)
    assert message.startswith("s3://test-bucket/.rearcquest/releases/pr.json is not a release log")
    assert "is not a file name" in message
    assert repr(bad)[:40] in message


@pytest.mark.parametrize("stamp", ["../../x", "2025-09-04", "2025-09-04 08:30\n", ""])
def test_a_log_whose_stamp_is_no_stamp_is_not_a_release_log(store: ObjectStore, stamp: str) -> None:
    store.put_bytes(releases_key("pr/"), json.dumps(_log_doc(release=stamp)).encode())
    with pytest.raises(DataError, match="is not YYYY-MM-DD HH:MM"):
        load_releases(store, "pr/")


class _OneObject:
    """Just enough of an ObjectStore for load_releases: one object's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def fetch(self, key: str, *, max_bytes: int | None = None) -> tuple[bytes, Any]:
        return self.data, type("Info", (), {"etag": '"e"'})()

    def url(self, key: str) -> str:
        return f"s3://b/{key}"


_ODD = [
    None,
    True,
    0,
    -1,
    1.5,
    10**30,
    "",
    "x",
    "..",
    "/abs",
    "a/b",
    "x\0",
    "\ud800",
    "x" * 300,
    "\x85" * 9,
    "y" * 100_000,
    [],
    {},
    [1],
    {"a": 1},
]


def _shake(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one random part replaced, dropped or renamed."""
    if depth > 4 or not isinstance(value, (dict, list)) or not value or rng.random() < 0.2:
        return rng.choice(_ODD)
    if isinstance(value, list):
        i = rng.randrange(len(value))
        return [*value[:i], _shake(rng, value[i], depth + 1), *value[i + 1 :]]
    key = rng.choice(sorted(value))
    out = dict(value)
    roll = rng.random()
    if roll < 0.15:
        del out[key]
    elif roll < 0.3:
        out[rng.choice([k for k in _ODD if isinstance(k, str)])] = out.pop(key)
    else:
        out[key] = _shake(rng, value[key], depth + 1)
    return out


def test_fuzzed_logs_give_only_rq_errors() -> None:
    rng = random.Random(19)
    base = _log_doc()
    base["releases"].append(_log_doc(release="2025-09-05 08:30")["releases"][0])
    for _ in range(1500):
        doc = base
        for _ in range(rng.randint(1, 3)):
            doc = _shake(rng, doc)
        data = (
            json.dumps(doc).encode()
            if rng.random() < 0.9
            else json.dumps(doc).encode()[: rng.randint(0, 60)]
        )
        try:
            log = load_releases(cast(ObjectStore, _OneObject(data)), "pr/")
        except DataError:
            continue
        for rel in log.releases:
            assert all(plain_name(n) for n in (*rel.files, *rel.changed, *rel.removed))
            assert rel.release == datetime.strptime(rel.release, "%Y-%m-%d %H:%M").strftime(
                "%Y-%m-%d %H:%M"
            )
