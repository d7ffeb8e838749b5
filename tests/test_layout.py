"""The bucket layout: rq's own keys, outside every mirror, one per mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from rearcquest.errors import DataError
from rearcquest.layout import (
    LEGACY_STATE_NAME,
    is_reserved,
    lock_key,
    name_problem,
    path_inside,
    plain_name,
    shown_name,
    state_key,
)


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


# -- names from storage are data, never paths (issue 19) --

NOT_NAMES = {
    "absolute": "/etc/passwd",
    "dot-dot-path": "../../x",
    "nested": "a/b",
    "backslash": "a\\b",
    "parent": "..",
    "dot": ".",
    "empty": "",
    "nul": "a\0b",
    "newline": "a\nb",
    "escape": "a\x1bb",
    "delete": "a\x7fb",
    "c1-control": "a\x85b",
    "too-long": "x" * 256,
    "too-long-utf8": "é" * 128,
    "lone-surrogate": "a\ud800",
    "not-a-string": 5,
}


@pytest.mark.parametrize("name", list(NOT_NAMES.values()), ids=list(NOT_NAMES))
def test_a_name_that_could_be_a_path_is_no_file_name(name: object) -> None:
    assert not plain_name(name)
    assert name_problem(name)  # says why


@pytest.mark.parametrize(
    "name", ["pr.data.0.Current", "pr.series", "..x", "x..", "a b", "é" * 127, "x" * 255]
)
def test_plain_file_names(name: str) -> None:
    assert plain_name(name)
    assert name_problem(name) is None


def test_a_refused_name_is_shown_short() -> None:
    assert len(shown_name("../" * 10_000)) < 100


def test_a_local_path_is_proven_inside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path)
    for name in ("../x", str(tmp_path / "x"), "link/x", "", ".", "a\0b"):
        with pytest.raises(DataError, match="nothing was written"):
            path_inside(tmp_path / "in", name)
    assert path_inside(tmp_path / "in", "pr/series/s.parquet") == (
        (tmp_path / "in" / "pr" / "series" / "s.parquet").resolve()
    )
