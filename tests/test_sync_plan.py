"""The pure planner: every decision and its reason, no I/O."""

from __future__ import annotations

import pytest

from rearcquest.aws.storage import ObjectInfo
from rearcquest.config import DeleteLimit
from rearcquest.mirror.sync import STATE_NAME, plan_sync
from rearcquest.records.state import FileState, SyncState
from rearcquest.sources.bls import RemoteFile

P = "pr/"


def remote(
    name: str, size: int | None = 10, modified: str | None = "2024-06-06 08:30"
) -> RemoteFile:
    return RemoteFile(name, f"https://x.test/pr/{name}", size, modified)


def obj(name: str, size: int = 10, etag: str = "e1") -> tuple[str, ObjectInfo]:
    return P + name, ObjectInfo(P + name, size, etag)


def known(size: int = 10, modified: str = "2024-06-06 08:30", etag: str = "e1") -> FileState:
    return FileState(size, modified, "Thu, 06 Jun 2024 12:30:00 GMT", "sha-old", etag)


def plan_of(remote_files, state_files, stored, **kw):  # type: ignore[no-untyped-def]
    plan = plan_sync(remote_files, SyncState("u", state_files), dict(stored), prefix=P, **kw)
    return {a.name: a for a in plan.actions}


def test_new_file_is_added() -> None:
    actions = plan_of([remote("a")], {}, [])
    assert actions["a"].kind == "add"
    assert actions["a"].reason == "new file"
    assert actions["a"].if_modified_since is None


def test_same_size_and_date_needs_no_request() -> None:
    actions = plan_of([remote("a")], {"a": known()}, [obj("a")])
    assert actions["a"].kind == "unchanged"


@pytest.mark.parametrize(
    ("listed", "expected_reason"),
    [
        (remote("a", modified="2025-01-01 09:00"), "listed 2024-06-06 08:30 -> 2025-01-01 09:00"),
        (remote("a", size=11), "size 10 -> 11"),
        (remote("a", size=None), "the listing gives no exact size or date"),
    ],
    ids=["date", "size", "no-size"],
)
def test_changed_listing_means_conditional_get(listed: RemoteFile, expected_reason: str) -> None:
    action = plan_of([listed], {"a": known()}, [obj("a")])["a"]
    assert action.kind == "update"
    assert action.reason == expected_reason
    assert action.if_modified_since == "Thu, 06 Jun 2024 12:30:00 GMT"
    assert action.known_sha256 == "sha-old"


def test_object_changed_out_of_band_is_fetched_unconditionally() -> None:
    action = plan_of([remote("a")], {"a": known()}, [obj("a", etag="tampered")])["a"]
    assert action.kind == "update"
    assert action.reason == "stored copy changed out of band"
    assert action.if_modified_since is None
    assert action.known_sha256 is None


def test_object_removed_out_of_band_is_added_back() -> None:
    action = plan_of([remote("a")], {"a": known()}, [])["a"]
    assert (action.kind, action.reason) == ("add", "missing from the bucket")


def test_unknown_stored_object_is_refetched() -> None:
    action = plan_of([remote("a")], {}, [obj("a")])["a"]
    assert (action.kind, action.if_modified_since) == ("update", None)


def test_removed_file_is_deleted_but_not_state_or_subfolders() -> None:
    stored = [obj("gone"), obj(STATE_NAME), obj("sub/x")]
    actions = plan_of([remote("a")], {}, stored)
    assert actions["gone"].kind == "delete"
    assert STATE_NAME not in actions
    assert "sub/x" not in actions


def test_no_delete_keeps_everything() -> None:
    assert "gone" not in plan_of([remote("a")], {}, [obj("gone")], delete=False)


def test_excluded_files_are_never_fetched_nor_deleted() -> None:
    actions = plan_of([remote("a.txt"), remote("b.bin")], {}, [obj("old.bin")], exclude=["*.bin"])
    assert set(actions) == {"a.txt"}


def test_include_selects() -> None:
    actions = plan_of(
        [remote("pr.data.0.Current"), remote("pr.txt")], {}, [], include=["pr.data.*"]
    )
    assert set(actions) == {"pr.data.0.Current"}


def test_plan_is_sorted_and_pure() -> None:
    files = [remote("c"), remote("a"), remote("b")]
    first = plan_sync(files, SyncState("u"), {}, prefix=P)
    second = plan_sync(files, SyncState("u"), {}, prefix=P)
    assert first == second
    assert [a.name for a in first.actions] == ["a", "b", "c"]


def test_state_of_files_gone_everywhere_is_forgotten_others_kept() -> None:
    state = {"gone": known(), "kept.bin": known(), "a": known()}
    plan = plan_sync(
        [remote("a")], SyncState("u", state), dict([obj("a")]), prefix=P, exclude=["*.bin"]
    )
    assert plan.forget == ("gone",)


def mirror_of(n: int) -> list[tuple[str, ObjectInfo]]:
    return [obj(f"f{i:02d}") for i in range(n)]


def guard_of(listed: int, stored: int, **kw):  # type: ignore[no-untyped-def]
    remote_files = [remote(f"f{i:02d}") for i in range(listed)]
    return plan_sync(remote_files, SyncState("u"), dict(mirror_of(stored)), prefix=P, **kw)


def test_default_guard_protects_a_mirror_whose_listing_shrank() -> None:
    plan = guard_of(1, 12)
    assert plan.delete_guard is not None
    assert "would delete 11 objects of the 12 mirrored" in plan.delete_guard
    assert "--max-delete" in plan.delete_guard
    assert len(plan.of("delete")) == 11  # still planned, so --dry-run shows them


@pytest.mark.parametrize(
    ("listed", "stored", "limit", "trips"),
    [
        (6, 12, None, False),
        (5, 12, None, True),
        (1, 2, None, True),
        (12, 12, None, False),
        (1, 12, DeleteLimit.parse("100%"), False),
        (1, 12, DeleteLimit.parse("11"), False),
        (9, 12, DeleteLimit.parse("2"), True),
        (9, 12, DeleteLimit.parse("25%"), False),
        (8, 12, DeleteLimit.parse("25%"), True),
    ],
    ids=["half", "over-half", "one-left", "none", "100%", "count-11", "count-2", "25%-ok", "25%"],
)
def test_guard_is_decided_by_the_planner(
    listed: int, stored: int, limit: DeleteLimit | None, trips: bool
) -> None:
    assert (guard_of(listed, stored, max_delete=limit).delete_guard is not None) is trips


def test_guard_ignores_what_is_not_mirrored_and_no_delete_never_trips() -> None:
    # rq's own objects, the index page and sub-folders are not mirrored files: they neither count
    # nor are deleted.
    stored = dict([*mirror_of(4), obj(STATE_NAME), obj("index.html"), obj("sub/x")])
    plan = plan_sync(
        [remote(f"f{i:02d}") for i in range(2)],
        SyncState("u"),
        stored,
        prefix=P,
        keep=["index.html"],
    )
    assert [a.name for a in plan.of("delete")] == ["f02", "f03"]
    assert plan.delete_guard is None  # 2 of 4 is half
    assert guard_of(1, 12, delete=False).delete_guard is None


@pytest.mark.parametrize(
    ("prefix", "name", "keep"),
    [
        ("pr/", STATE_NAME, ()),
        ("", STATE_NAME, ()),
        ("pr/", "index.html", ("index.html",)),
    ],
    ids=["legacy-state", "legacy-state-at-root", "index-page"],
)
def test_listed_file_named_like_rqs_own_objects_is_skipped(
    prefix: str, name: str, keep: tuple[str, ...]
) -> None:
    plan = plan_sync([remote(name), remote("a")], SyncState("u"), {}, prefix=prefix, keep=keep)
    actions = {a.name: a for a in plan.actions}
    assert actions[name].kind == "skip"
    assert "one rq uses for its own objects" in actions[name].reason
    assert [a.name for a in plan.transfers] == ["a"]
