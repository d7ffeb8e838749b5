"""The bucket layout: rq's own keys, outside every mirror, one per mirror."""

from __future__ import annotations

import pytest

from rearcquest.layout import LEGACY_STATE_NAME, is_reserved, lock_key, state_key


@pytest.mark.parametrize(
    ("prefix", "state", "lock"),
    [
        ("pr/", ".rearcquest/state/pr.json", ".rearcquest/locks/pr.json"),
        ("", ".rearcquest/state/_root.json", ".rearcquest/locks/_root.json"),
        (
            "mirrors/bls/",
            ".rearcquest/state/mirrors/bls.json",
            ".rearcquest/locks/mirrors/bls.json",
        ),
        ("_root/", ".rearcquest/state/__root.json", ".rearcquest/locks/__root.json"),
    ],
    ids=["pr", "root", "nested", "underscore"],
)
def test_keys_of_a_mirror(prefix: str, state: str, lock: str) -> None:
    assert (state_key(prefix), lock_key(prefix)) == (state, lock)
    assert is_reserved(state_key(prefix)) and is_reserved(lock_key(prefix))


def test_no_two_mirrors_share_a_state() -> None:
    prefixes = ["", "_root/", "__root/", "root/", "pr/", "pr/x/", "_pr/", "a/b/", "a/"]
    assert len({state_key(p) for p in prefixes}) == len(prefixes)


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        (".rearcquest/state/pr.json", True),
        ("pr/" + LEGACY_STATE_NAME, True),
        (LEGACY_STATE_NAME, True),
        ("pr/pr.class", False),
        (".rearcquest", False),
        ("pr/.rearcquest/x", False),
    ],
)
def test_reserved_keys(key: str, reserved: bool) -> None:
    assert is_reserved(key) is reserved
