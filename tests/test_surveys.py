"""run_surveys and survey_inventory: several BLS surveys of one root into one bucket."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from rearcquest.aws.storage import ObjectStore
from rearcquest.config import RetryPolicy
from rearcquest.errors import ConfigError, SourceError, StorageError
from rearcquest.jobs.job import MultiSyncResult
from rearcquest.layout import lock_key, parse_surveys, state_key
from rearcquest.mirror.surveys import current_survey, survey_inventory
from rearcquest.offline import Fault, OfflineServer, ServedFile
from rearcquest.records.lease import Lease
from sync_helpers import run_jobs

CONTACT = "tests@example.com"
FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02, max_retry_after=0.02)


def survey_files(survey: str, count: int, *, day: int = 6, salt: str = "") -> dict[str, ServedFile]:
    """``count`` small files named like a BLS survey's (``cu.series``, ``cu.data.0.Current``...)."""
    names = [f"{survey}.series", f"{survey}.footnote"] + [
        f"{survey}.data.{i}.Current" for i in range(count - 2)
    ]
    listed = datetime(2026, 8, day, 8, 30)
    return {
        n: ServedFile(n, f"{n}\t{salt}\tvalue\n".encode() * (10 + i), listed)
        for i, n in enumerate(names)
    }


LISTED = datetime(2026, 8, 6, 8, 30)
TREE = {"cu": survey_files("cu", 4), "ce": survey_files("ce", 3), "la": survey_files("la", 5)}


@pytest.fixture
def tree_server() -> Iterator[OfflineServer]:
    """A root ``/pub/time.series/`` with pr (3 files), cu, ce and la."""
    with OfflineServer(survey_files("pr", 3), surveys=TREE) as server:
        yield server


def run(
    store: ObjectStore, server: OfflineServer, surveys: list[str], **kw: Any
) -> MultiSyncResult:
    kw.setdefault("retry", FAST)
    return run_jobs(store, surveys, server.root_url, contact=CONTACT, **kw)  # type: ignore[no-any-return]


def mirror(store: ObjectStore, prefix: str) -> dict[str, bytes]:
    return {o.key[len(prefix) :]: store.get_bytes(o.key) for o in store.list_objects(prefix)}


def served(server: OfflineServer, survey: str) -> dict[str, bytes]:
    return {n: f.data for n, f in server.survey_files(survey).items()}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["pr"], ["pr"]),
        (["pr,cu", "ce"], ["pr", "cu", "ce"]),
        (["pr, cu,pr"], ["pr", "cu"]),
        (["cu", "ALL"], ["all"]),
    ],
    ids=["one", "comma-and-repeated", "spaces-and-duplicates", "all"],
)
def test_parse_surveys(values: list[str], expected: list[str]) -> None:
    assert parse_surveys(values) == expected


@pytest.mark.parametrize(
    "value",
    ["pr,,cu", "../etc", "a/b", "", "p" * 256, "p\nr", "pr\x1b"],
    ids=["empty", "dots", "slash", "blank", "too-long", "newline", "control"],
)
def test_parse_surveys_refuses_non_names(value: str) -> None:
    with pytest.raises(ConfigError, match="survey"):
        parse_surveys([value])


def test_several_surveys_from_one_root_into_one_bucket(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    result = run(store, tree_server, ["pr", "cu", "ce"])
    assert result.exit_code == 0
    result.raise_for_errors()
    for survey in ("pr", "cu", "ce"):
        assert mirror(store, f"{survey}/") == served(tree_server, survey)
        assert store.head(state_key(f"{survey}/")) is not None
    assert not list(store.list_objects("la/"))
    doc = result.to_dict()
    assert sorted(doc["surveys"]) == ["ce", "cu", "pr"]
    assert doc["surveys"]["cu"]["prefix"] == "cu/"
    assert sorted(doc["surveys"]["cu"]["added"]) == sorted(TREE["cu"])
    assert doc["totals"] == {
        "added": 3 + 4 + 3,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "errors": 0,
        "bytes_downloaded": sum(
            len(d) for s in ("pr", "cu", "ce") for d in served(tree_server, s).values()
        ),
        "bytes_uploaded": sum(
            len(d) for s in ("pr", "cu", "ce") for d in served(tree_server, s).values()
        ),
    }


def test_all_mirrors_every_survey_of_the_root_under_the_root_prefix(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    result = run(store, tree_server, ["all"], root_prefix="bls")
    assert sorted(result.surveys) == ["ce", "cu", "la", "pr"]
    for survey in ("ce", "cu", "la", "pr"):
        assert mirror(store, f"bls/{survey}/") == served(tree_server, survey)
    # A no-op run: the root listing, one listing per survey, and no file request.
    before = len(tree_server.requests)
    again = run(store, tree_server, ["all"], root_prefix="bls")
    paths = sorted(r.path for r in tree_server.requests[before:])
    assert paths == sorted(
        ["/pub/time.series/"] + [f"/pub/time.series/{s}/" for s in again.surveys]
    )
    assert again.totals()["unchanged"] == 3 + 4 + 3 + 5


def test_a_failed_listing_is_isolated_and_the_exit_code_is_the_worst(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    run(store, tree_server, ["pr", "cu", "ce"]).raise_for_errors()
    # cu's listing fails; ce loses most of its files (its delete guard trips); pr changes.
    tree_server.faults.append(Fault("/pub/time.series/cu/", status=500, times=10))
    tree_server.set_survey("ce", dict(list(survey_files("ce", 3).items())[:1]))
    tree_server.set_files(survey_files("pr", 3, day=7, salt="new"))
    result = run(store, tree_server, ["pr", "cu", "ce"], max_delete=1)
    assert result.surveys["pr"].error is None
    assert sorted(result.surveys["pr"].result.sync.updated) == sorted(served(tree_server, "pr"))  # type: ignore[union-attr]
    assert mirror(store, "pr/") == served(tree_server, "pr")
    assert result.surveys["cu"].exit_code == 3
    assert "500" in (result.surveys["cu"].error or "")
    assert mirror(store, "cu/") == {n: f.data for n, f in TREE["cu"].items()}
    assert result.surveys["ce"].exit_code == 4
    assert mirror(store, "ce/") == {n: f.data for n, f in TREE["ce"].items()}  # nothing deleted
    assert result.exit_code == 4
    assert result.to_dict()["totals"]["errors"] == 1  # cu failed as a whole
    with pytest.raises(Exception, match=r"2 of 3 survey\(s\) failed: cu: .*; ce: ") as info:
        result.raise_for_errors()
    assert getattr(info.value, "exit_code", None) == 4


def test_a_held_lease_fails_only_its_survey(store: ObjectStore, tree_server: OfflineServer) -> None:
    with Lease(store, lock_key("cu/"), holder="another run").acquire():
        result = run(store, tree_server, ["pr", "cu"])
    assert result.surveys["pr"].error is None
    assert result.surveys["cu"].exit_code == 5
    assert "another run" in (result.surveys["cu"].error or "")
    assert mirror(store, "pr/") == served(tree_server, "pr")
    assert not mirror(store, "cu/")


def test_the_politeness_cap_holds_across_surveys(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    rps = 25.0
    result = run(store, tree_server, ["all"], max_rps=rps, parallel=4, transfers=4)
    result.raise_for_errors()
    times = sorted(r.at for r in tree_server.requests)
    assert len(times) == 1 + 4 + (3 + 4 + 3 + 5)
    # Server-side: no second holds more than rps requests (+1 for the window's edge), and the
    # requests are spaced 1/rps apart on average.
    for i, start in enumerate(times):
        within = [t for t in times[i:] if t < start + 1.0]
        assert len(within) <= rps + 1
    span = times[-1] - times[0]
    assert span >= (len(times) - 1) / rps * 0.9


def test_log_lines_and_progress_carry_the_survey(
    store: ObjectStore, tree_server: OfflineServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, int] = {}
    in_context: set[str | None] = set()

    def on_progress(survey: str, event: Any) -> None:
        if event.kind == "file":
            seen[survey] = seen.get(survey, 0) + 1

    def on_survey(outcome: Any) -> None:
        in_context.add(current_survey())

    caplog.set_level("INFO", logger="rearcquest")
    run(store, tree_server, ["cu", "ce"], on_progress=on_progress, on_survey=on_survey)
    assert seen == {"cu": 4, "ce": 3}
    assert in_context == {"cu", "ce"}
    assert {getattr(r, "survey", None) for r in caplog.records if "synced" in r.message} == {
        "cu",
        "ce",
    }


def test_a_failed_root_listing_changes_nothing(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    tree_server.faults.append(Fault("/pub/time.series/", status=404, times=5))
    with pytest.raises(SourceError, match="404"):
        run(store, tree_server, ["all"])
    assert not list(store.list_objects(""))


@pytest.mark.parametrize("surveys", [["all"], ["pr", "cu", "ce"]], ids=["all", "named"])
def test_a_missing_bucket_is_one_error_before_the_source_is_asked(
    store: ObjectStore, tree_server: OfflineServer, surveys: list[str]
) -> None:
    missing = ObjectStore(store.client, "no-such-bucket")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        run(missing, tree_server, surveys)
    assert tree_server.requests == []


def test_dry_run_plans_each_survey(store: ObjectStore, tree_server: OfflineServer) -> None:
    result = run(store, tree_server, ["cu", "la"], dry_run=True)
    assert result.totals()["added"] == 4 + 5
    assert not list(store.list_objects(""))
    assert not tree_server.file_requests()


def test_inventory_lists_counts_bytes_dates_and_freshness(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    run(store, tree_server, ["cu"]).raise_for_errors()
    tree_server.faults.append(Fault("/pub/time.series/la/", status=500, times=5))
    before = len(tree_server.requests)
    infos = {
        i.name: i
        for i in survey_inventory(
            root_url=tree_server.root_url, store=store, contact=CONTACT, retry=FAST
        )
    }
    assert sorted(infos) == ["ce", "cu", "la", "pr"]
    cu = infos["cu"]
    assert cu.files == 4
    assert cu.bytes == sum(len(f.data) for f in TREE["cu"].values())
    assert cu.latest == "2026-08-06 08:30"
    assert cu.mirrored == 4
    assert cu.synced is not None
    state = json.loads(store.get_bytes(state_key("cu/")))
    assert cu.synced == state["updated"]
    assert infos["pr"].mirrored is None and infos["pr"].files == 3
    assert infos["la"].files is None and "500" in (infos["la"].error or "")
    # Cheap: the root and the survey listings only (la retried once), never a file.
    assert all(r.path.endswith("/") for r in tree_server.requests[before:])


def test_an_unchanged_survey_takes_no_lease_and_a_changed_one_lists_once(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    run(store, tree_server, ["cu", "ce"]).raise_for_errors()
    with Lease(store, lock_key("cu/"), holder="another run").acquire():
        # Nothing to do: no lease needed, so another holder does not fail the run.
        quiet = run(store, tree_server, ["cu", "ce"])
        assert quiet.exit_code == 0
        assert quiet.totals()["unchanged"] == 4 + 3
        # With work to do the lease is needed again.
        tree_server.set_survey("cu", survey_files("cu", 4, day=7, salt="new"))
        busy = run(store, tree_server, ["cu", "ce"])
        assert busy.surveys["cu"].exit_code == 5
    before = len(tree_server.requests)
    result = run(store, tree_server, ["cu"])
    result.raise_for_errors()
    assert sorted(result.surveys["cu"].result.sync.updated) == sorted(served(tree_server, "cu"))  # type: ignore[union-attr]
    assert mirror(store, "cu/") == served(tree_server, "cu")
    # The listing fetched to plan without the lease is the one the sync uses: one request.
    listings = [r for r in tree_server.requests[before:] if r.path == "/pub/time.series/cu/"]
    assert len(listings) == 1


def test_each_survey_counts_its_own_source_requests(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    result = run(store, tree_server, ["cu", "ce"], parallel=2)
    result.raise_for_errors()
    # Its listing and one GET per file: not the requests of the survey beside it.
    assert result.surveys["cu"].result.sync.requests == 1 + 4  # type: ignore[union-attr]
    assert result.surveys["ce"].result.sync.requests == 1 + 3  # type: ignore[union-attr]
    assert result.requests == len(tree_server.requests) == 5 + 4
    again = run(store, tree_server, ["cu", "ce"], parallel=2)
    assert {n: o.result.sync.requests for n, o in again.surveys.items()} == {"cu": 1, "ce": 1}  # type: ignore[union-attr]
    assert again.requests == 2


# A root whose listing names "surveys" where rq keeps its own objects: the tables, the population
# JSON, and the tables' own folders.
HOSTILE = {
    **TREE,
    "tables": survey_files("tables", 3),
    "datausa": survey_files("datausa", 3),
    "population": survey_files("population", 3),
    "as-of": survey_files("as-of", 3),
}
OWN = {
    "tables/pr/_manifest.json": b'{"survey": "pr"}',
    "tables/population/_manifest.json": b'{"table": "population"}',
    "datausa/population.json": b'{"data": []}',
}


@pytest.fixture
def hostile_server() -> Iterator[OfflineServer]:
    with OfflineServer(survey_files("pr", 3), surveys=HOSTILE) as server:
        yield server


def test_all_skips_listed_surveys_that_would_land_on_rqs_own_objects(
    store: ObjectStore, hostile_server: OfflineServer
) -> None:
    for key, body in OWN.items():
        store.put_bytes(key, body)
    result = run(store, hostile_server, ["all"])
    assert result.exit_code == 0
    result.raise_for_errors()
    assert sorted(result.surveys) == ["ce", "cu", "la", "pr"]
    assert sorted(result.skipped) == ["as-of", "datausa", "population", "tables"]
    assert "the tables are kept at 'tables/'" in result.skipped["tables"]
    assert "'datausa/population.json'" in result.skipped["datausa"]
    assert "tables/population/" in result.skipped["population"]
    assert result.to_dict()["skipped"] == result.skipped
    # rq's own objects are as they were, and nothing else landed beside them.
    for key, body in OWN.items():
        assert store.get_bytes(key) == body
    for folder in ("tables/", "datausa/", "population/", "as-of/"):
        assert {o.key for o in store.list_objects(folder)} <= set(OWN)
    # A skipped survey is not even listed.
    asked = {r.path for r in hostile_server.requests}
    assert not any(
        p.startswith(("/pub/time.series/tables/", "/pub/time.series/as-of/")) for p in asked
    )


def test_the_clash_follows_where_rq_keeps_its_objects(
    store: ObjectStore, hostile_server: OfflineServer
) -> None:
    # Under a root prefix, "datausa" no longer meets the population JSON, and with the tables
    # elsewhere "tables" is a survey like another; the tables' own folders stay refused.
    result = run(store, hostile_server, ["all"], root_prefix="bls", tables_prefix="parquet/")
    result.raise_for_errors()
    assert sorted(result.skipped) == ["as-of", "population"]
    assert mirror(store, "bls/tables/") == served(hostile_server, "tables")
    assert mirror(store, "bls/datausa/") == served(hostile_server, "datausa")
    clash = run(store, hostile_server, ["all"], tables_prefix="cu/parquet/")
    assert "cu" in clash.skipped and "cu" not in clash.surveys


@pytest.mark.parametrize(
    ("survey", "options"),
    [
        ("tables", {}),
        ("datausa", {}),
        ("as-of", {"root_prefix": "bls"}),
        ("mine", {"tables_prefix": "mine/tables/"}),
    ],
    ids=["tables", "population-json", "as-of-tables", "custom-tables-prefix"],
)
def test_naming_a_survey_on_rqs_own_objects_is_refused_before_any_request(
    store: ObjectStore, hostile_server: OfflineServer, survey: str, options: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match=f"survey '{survey}' cannot be mirrored"):
        run(store, hostile_server, ["cu", survey], **options)
    assert hostile_server.requests == []
    assert not list(store.list_objects(""))


def test_an_unexpected_error_in_one_survey_fails_it_alone(
    store: ObjectStore,
    tree_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import rearcquest.sources.bls as bls

    real = bls.parse_listing

    def buggy(page: str, base_url: str) -> Any:
        if base_url.endswith("/cu/"):
            raise KeyError("a bug")
        return real(page, base_url)

    monkeypatch.setattr(bls, "parse_listing", buggy)
    result = run(store, tree_server, ["cu", "ce"])
    assert result.exit_code == 1
    assert result.surveys["cu"].error == "unexpected error (KeyError: 'a bug'); please report it"
    assert mirror(store, "ce/") == served(tree_server, "ce")
    assert not list(store.list_objects("cu/"))
    (record,) = [r for r in caplog.records if "survey cu failed" in r.getMessage()]
    assert record.exc_info is not None  # the traceback is logged


def test_ctrl_c_stops_a_run_of_several_surveys_at_once(store: ObjectStore) -> None:
    """Ctrl-C (or SIGTERM, raised as it) in the main thread: the surveys not begun never start,
    the one under way stops at its next chunk, and every lease is released before it returns."""
    import os
    import signal
    import threading
    import time

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    big = "cu.data.9.Big"
    files = {**TREE["cu"], big: ServedFile(big, b"CUUR0000SA0\t2020\tM01\t1.0\n" * 200_000, LISTED)}
    with OfflineServer(survey_files("pr", 3), surveys={**TREE, "cu": files}) as server:
        slow = f"/pub/time.series/cu/{big}"
        server.faults.append(Fault(slow, drip=0.05, piece=16 * 1024))  # ~20 s for the file

        def interrupt_once_it_streams() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(r.path == slow for r in server.requests):
                    time.sleep(0.3)
                    os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=interrupt_once_it_streams, daemon=True)
        watcher.start()
        began = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                run(store, server, ["cu", "ce", "la"], parallel=1)
        finally:
            signal.signal(signal.SIGINT, previous)
        watcher.join()
        asked = {r.path.split("/")[3] for r in server.requests if r.path.count("/") >= 4}
    assert time.monotonic() - began < 10  # the transfer stopped, not the ~20 s of the file
    assert asked == {"cu"}  # ce and la were never begun
    assert list(store.list_objects("ce/")) == list(store.list_objects("la/")) == []
    assert all(store.head(lock_key(f"{s}/")) is None for s in ("cu", "ce", "la"))


def test_the_survey_check_and_the_run_together_keep_the_politeness_cap(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    # rq sync --survey checks the names (the root listing) with a client of its own, then the
    # run's client starts: its first request must still wait out the check's interval.
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.job import SurveySet, check_surveys

    rps = 4.0
    check_surveys(
        SurveySet(["pr"], tree_server.root_url),
        SyncOptions(contact=CONTACT, retry=FAST, max_rps=rps),
    )
    run(store, tree_server, ["pr"], max_rps=rps).raise_for_errors()
    times = sorted(r.at for r in tree_server.requests)
    assert len(times) == 1 + 1 + 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.9 / rps, gaps
