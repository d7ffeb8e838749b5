"""Vintages: the four real pr releases synced in order into a versioned bucket, read back.

The module-scoped fixture syncs once per S3 server (moto in-process, and SeaweedFS, a real one; the
BLS-like server on 127.0.0.1); the tests read releases, reports as of each release and the
revisions between them, and check them against what the release files themselves say, computed
here without rearcquest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import DATAUSA, release
from rearcquest import vintages
from rearcquest.analytics import analyze
from rearcquest.errors import ConfigError
from rearcquest.layout import releases_key, state_key
from rearcquest.releases import load_releases
from rearcquest.render import to_json_doc
from rearcquest.sync import SyncState
from vintage_helpers import BUCKET, DATA, STAMPS, VINTAGES, synced_mirror


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def mirror(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """moto, and SeaweedFS: a real S3 server's version ids, delete markers and listings."""
    endpoint = request.getfixturevalue("seaweedfs") if request.param == "seaweedfs" else None
    yield from synced_mirror(endpoint)


def _files(vintage: str) -> dict[str, bytes]:
    return {name: f.data for name, f in release(vintage).items()}


def test_four_releases_are_logged_newest_first(mirror: dict[str, Any]) -> None:
    listed = vintages.list_releases(bucket=BUCKET, prefix="pr/", s3_client=mirror["client"])
    assert [r.release for r in listed] == STAMPS[::-1]
    for rel, vintage in zip(reversed(listed), VINTAGES, strict=True):
        files = _files(vintage)
        assert {n: f.sha256 for n, f in rel.files.items()} == {
            n: hashlib.sha256(b).hexdigest() for n, b in files.items()
        }
        # Every version id still reads the release's bytes.
        for name, entry in rel.files.items():
            assert entry.version_id
            got = mirror["store"].get_bytes("pr/" + name, version_id=entry.version_id)
            assert got == files[name], (vintage, name)
    first, *later = reversed(listed)
    assert len(first.changed) == 12
    previous = _files(VINTAGES[0])
    for rel, vintage in zip(later, VINTAGES[1:], strict=True):
        files = _files(vintage)
        assert list(rel.changed) == sorted(n for n in files if files[n] != previous[n])
        assert DATA in rel.changed and "pr.class" not in rel.changed
        previous = files


def test_unchanged_files_keep_the_version_of_their_release(mirror: dict[str, Any]) -> None:
    log = load_releases(mirror["store"], "pr/")
    first, second = log.releases[0], log.releases[1]
    # pr.contacts is never re-listed: the same object, the same version in every release.
    assert second.files["pr.contacts"].version_id == first.files["pr.contacts"].version_id
    # pr.class keeps its bytes but is re-stamped: its metadata refresh is a new version.
    assert second.files["pr.class"].sha256 == first.files["pr.class"].sha256
    assert "pr.class" not in second.changed
    assert second.files[DATA].version_id != first.files[DATA].version_id
    assert log.key == releases_key("pr/") == ".rearcquest/releases/pr.json"


def test_state_carries_version_ids(mirror: dict[str, Any]) -> None:
    body = mirror["store"].get_bytes(state_key("pr/"))
    state = SyncState.from_json(body)
    latest = load_releases(mirror["store"], "pr/").releases[-1]
    assert {n: f.version_id for n, f in state.files.items()} == {
        n: f.version_id for n, f in latest.files.items()
    }


@pytest.mark.parametrize("index", range(4), ids=VINTAGES)
def test_as_of_each_release_gives_its_reports(
    mirror: dict[str, Any], index: int, tmp_path: Path
) -> None:
    vintage = VINTAGES[index]
    population = DATAUSA / "old-api-acs5-2013-2022-compact.json"
    local = tmp_path / DATA
    local.write_bytes(_files(vintage)[DATA])
    expected = analyze(bls=local, population=population)
    got = vintages.analyze_as_of(
        vintage,
        bls=f"s3://{BUCKET}/pr/{DATA}",
        population=str(population),
        s3_client=mirror["client"],
    )
    assert got.release == STAMPS[index]
    assert f"as of release {STAMPS[index]}" in str(got.bls_source)
    doc = to_json_doc(got)
    assert doc.pop("release") == STAMPS[index]
    assert doc == to_json_doc(expected)


def _observations(data: bytes) -> dict[tuple[str, int, str], Decimal]:
    """The file's observations, parsed here without rearcquest."""
    lines = data.decode().splitlines()
    header = [h.strip() for h in lines[0].split("\t")]
    out = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = dict(zip(header, (c.strip() for c in line.split("\t")), strict=False))
        out[(cells["series_id"], int(cells["year"]), cells["period"])] = Decimal(cells["value"])
    return out


@pytest.mark.parametrize("index", range(1, 4), ids=VINTAGES[1:])
def test_revisions_equal_an_independent_diff(mirror: dict[str, Any], index: int) -> None:
    old = _observations(_files(VINTAGES[index - 1])[DATA])
    new = _observations(_files(VINTAGES[index])[DATA])
    result = vintages.revisions(
        from_release=VINTAGES[index - 1],
        to_release=STAMPS[index],
        bucket=BUCKET,
        prefix="pr/",
        s3_client=mirror["client"],
    )
    doc = vintages.revisions_doc(result)
    assert (doc["from"], doc["to"], doc["file"]) == (STAMPS[index - 1], STAMPS[index], DATA)
    revised = {
        (r["series_id"], r["year"], r["period"]): (r["old"], r["new"], r["change"])
        for r in doc["revised"]
    }
    assert revised == {
        k: (old[k], new[k], new[k] - old[k]) for k in old.keys() & new.keys() if old[k] != new[k]
    }
    assert revised, "BLS revises earlier quarters in every release"
    added = {(r["series_id"], r["year"], r["period"]): r["value"] for r in doc["added"]}
    assert added == {k: new[k] for k in new.keys() - old.keys()}
    removed = {(r["series_id"], r["year"], r["period"]): r["value"] for r in doc["removed"]}
    assert removed == {k: old[k] for k in old.keys() - new.keys()}
    by_series = {s["series_id"]: s for s in doc["summary"]}
    assert sum(s["revised"] for s in by_series.values()) == len(revised)
    assert sum(s["added"] for s in by_series.values()) == len(added)
    for series, summary in by_series.items():
        changes = [c for (s, _, _), (_, _, c) in revised.items() if s == series]
        if changes:
            assert summary["largest_change"] == max(changes, key=abs)


def test_revisions_default_to_previous_and_latest(mirror: dict[str, Any]) -> None:
    result = vintages.revisions(bucket=BUCKET, prefix="pr/", s3_client=mirror["client"])
    assert (result.from_release, result.to_release) == (STAMPS[2], STAMPS[3])
    only = vintages.revisions(
        bucket=BUCKET, prefix="pr/", s3_client=mirror["client"], series="PRS30*"
    )
    assert only.revised.height and set(only.revised["series_id"].str.slice(0, 5)) == {"PRS30"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("2020-01-01", f"no release on or before 2020-01-01; the first logged is {STAMPS[0]}"),
        ("June", "'June' is not a release"),
    ],
    ids=["too-early", "not-a-date"],
)
def test_unknown_release_is_a_config_error(mirror: dict[str, Any], spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        vintages.revisions(
            from_release=spec, bucket=BUCKET, prefix="pr/", s3_client=mirror["client"]
        )


def test_release_log_is_json_as_documented(mirror: dict[str, Any]) -> None:
    doc = json.loads(mirror["store"].get_bytes(releases_key("pr/")))
    assert doc["version"] == 1 and doc["prefix"] == "pr/"
    assert [r["release"] for r in doc["releases"]] == STAMPS
    assert set(doc["releases"][0]) == {"release", "synced_at", "changed", "removed", "files"}
