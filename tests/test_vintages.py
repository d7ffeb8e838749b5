"""Vintages: the four real pr releases synced in order into a versioned bucket, read back.

The module-scoped fixture syncs once per S3 server (moto in-process, and SeaweedFS, a real one; the
BLS-like server on 127.0.0.1); the tests read releases, reports as of each release and the
revisions between them, and check them against what the release files themselves say, computed
here without rearcquest.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from conftest import DATAUSA, release
from rearcquest.aws.storage import S3Access
from rearcquest.data import vintages
from rearcquest.data.analytics import ReportInputs, analyze, to_json_doc
from rearcquest.errors import ConfigError, DataError
from rearcquest.layout import releases_key, state_key
from rearcquest.records.releases import load_releases
from rearcquest.records.state import SyncState
from vintage_helpers import (
    BUCKET,
    DATA,
    STAMPS,
    VINTAGES,
    data_file,
    logged_releases,
    synced_mirror,
)


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def mirror(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """moto, and SeaweedFS: a real S3 server's version ids, delete markers and listings."""
    endpoint = request.getfixturevalue("seaweedfs") if request.param == "seaweedfs" else None
    yield from synced_mirror(endpoint)


def _files(vintage: str) -> dict[str, bytes]:
    return {name: f.data for name, f in release(vintage).items()}


def test_four_releases_are_logged_newest_first(mirror: dict[str, Any]) -> None:
    listed = vintages.list_releases(
        bucket=BUCKET, prefix="pr/", s3=S3Access(client=mirror["client"])
    )
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
    expected = analyze(ReportInputs(bls=local, population=population), s3=S3Access())
    got = vintages.analyze_at(
        ReportInputs(bls=f"s3://{BUCKET}/pr/{DATA}", population=str(population), as_of=vintage),
        s3=S3Access(client=mirror["client"]),
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
        s3=S3Access(client=mirror["client"]),
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
    result = vintages.revisions(bucket=BUCKET, prefix="pr/", s3=S3Access(client=mirror["client"]))
    assert (result.from_release, result.to_release) == (STAMPS[2], STAMPS[3])
    only = vintages.revisions(
        bucket=BUCKET, prefix="pr/", s3=S3Access(client=mirror["client"]), series="PRS30*"
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
            from_release=spec, bucket=BUCKET, prefix="pr/", s3=S3Access(client=mirror["client"])
        )


def test_release_log_is_json_as_documented(mirror: dict[str, Any]) -> None:
    doc = json.loads(mirror["store"].get_bytes(releases_key("pr/")))
    assert doc["version"] == 1 and doc["prefix"] == "pr/"
    assert [r["release"] for r in doc["releases"]] == STAMPS
    assert set(doc["releases"][0]) == {"release", "synced_at", "changed", "removed", "files"}


# -- malformed and extreme releases (issue 19) ---------------------------------------------------

OLD, NEW = "2026-01-01 08:30", "2026-02-01 08:30"


def _compare(store: Any, old: bytes, new: bytes) -> vintages.Revisions:
    logged_releases(store, [(OLD, {DATA: old}), (NEW, {DATA: new})])
    return vintages.revisions(
        from_release=OLD,
        to_release=NEW,
        bucket=store.bucket,
        prefix="pr/",
        s3=S3Access(client=store.client),
    )


@pytest.mark.parametrize("which", ["older", "newer"])
def test_revisions_refuse_a_release_with_duplicate_keys(store: Any, which: str) -> None:
    """A key repeated N times in both releases once made N x N "revised" rows (5,000 copies:
    25 million rows, 5.7 GB); a file with a repeated key is malformed and is refused."""
    clean = [("PRS1", 2020, "Q01", "1.0"), ("PRS1", 2020, "Q02", "2.0")]
    repeated = [("PRS2", 2021, "Q03", f"{i}.5") for i in range(300)] + [
        ("PRS0", 2019, "Q01", "7")
    ] * 2
    dirty = data_file(*clean, *repeated)
    both = {"older": (dirty, data_file(*clean, *repeated[:1])), "newer": (data_file(*clean), dirty)}
    stamp = OLD if which == "older" else NEW
    with pytest.raises(DataError) as raised:
        _compare(store, *both[which])
    message = str(raised.value)
    assert message.startswith(f"s3://{store.bucket}/pr/{DATA} as of {stamp}: 2 observation key(s)")
    assert "PRS0 2019 Q01 (2 rows), PRS2 2021 Q03 (300 rows);" in message
    assert "malformed" in message


def test_duplicated_keys_are_found_by_their_keys_not_their_hashes() -> None:
    rows = pl.DataFrame(
        {
            "series_id": ["A", "A", "B", "A", "B"],
            "year": [2020, 2020, 2020, 2021, 2020],
            "period": ["Q01", "Q01", "Q01", "Q01", "Q02"],
        }
    ).lazy()
    assert vintages.duplicated_keys(rows).rows() == [("A", 2020, "Q01", 2)]
    assert vintages.duplicated_keys(rows.unique()).height == 0
    with pytest.raises(DataError, match=r"the newer rows: 1 observation key\(s\) appear more"):
        vintages.diff_observations(rows.unique(), rows)


WIDE = "999999999999999.999"  # the widest DECIMAL(18,3)


def test_revisions_of_the_widest_values_are_exact(store: Any) -> None:
    """Both releases at the edges of DECIMAL(18,3): the change needs 16 digits before the point
    and once stopped the comparison with a Polars traceback."""
    old = data_file(
        ("PRS1", 2020, "Q01", f"-{WIDE}"),
        ("PRS1", 2020, "Q02", WIDE),
        ("PRS2", 2020, "Q01", "0.001"),
        ("PRS2", 2020, "Q02", "123456789012345.6"),
    )
    new = data_file(
        ("PRS1", 2020, "Q01", WIDE),
        ("PRS1", 2020, "Q02", f"-{WIDE}"),
        ("PRS2", 2020, "Q01", f"-{WIDE}"),
        ("PRS2", 2020, "Q02", "-123456789012345"),
    )
    doc = vintages.revisions_doc(_compare(store, old, new))
    changes = {(r["series_id"], r["period"]): r["change"] for r in doc["revised"]}
    assert changes == {
        ("PRS1", "Q01"): Decimal("1999999999999999.998"),
        ("PRS1", "Q02"): Decimal("-1999999999999999.998"),
        ("PRS2", "Q01"): Decimal("-1000000000000000.000"),
        ("PRS2", "Q02"): Decimal("-246913578024690.6"),
    }
    largest = {s["series_id"]: s["largest_change"] for s in doc["summary"]}
    assert largest == {
        "PRS1": Decimal("1999999999999999.998"),
        "PRS2": Decimal("-1000000000000000"),
    }


@pytest.mark.parametrize("which", ["older", "newer"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1e20", "is not a decimal number with at most 3 decimals"),
        ("123456789012345678.5", "does not fit DECIMAL(18,3)"),
        ("1.1234567890123", "is not a decimal number with at most 3 decimals"),
    ],
    ids=["exponent", "too-many-digits", "too-many-decimals"],
)
def test_revisions_name_a_value_wider_than_decimal_18_3(
    store: Any, which: str, value: str, why: str
) -> None:
    good = data_file(("PRS1", 2020, "Q01", "1.0"), ("PRS1", 2020, "Q02", "2.0"))
    wide = data_file(("PRS1", 2020, "Q01", "1.0"), ("PRS1", 2020, "Q02", value))
    old, new = (wide, wide) if which == "older" else (good, wide)
    stamp = OLD if which == "older" else NEW
    with pytest.raises(DataError) as raised:
        _compare(store, old, new)
    assert str(raised.value) == (
        f"s3://{store.bucket}/pr/{DATA} as of {stamp} line 3: value {value!r} {why}"
        + (" (at most 15 digits before the point)" if "fit" in why else "")
    )


def test_diff_of_random_wide_values_is_exact() -> None:
    """Random values over the whole DECIMAL(18,3) range, 0 to 3 decimals: every change equals
    the exact difference, with the larger of the two values' decimals."""
    rng = random.Random(19)

    def value() -> str:
        decimals = rng.randint(0, 3)
        digits = rng.randint(1, 15)
        whole = rng.randrange(10**digits)
        text = f"{whole}" + (f".{rng.randrange(10**decimals):0{decimals}d}" if decimals else "")
        # BLS prints no negative zero ("-0.0"); Polars reads it as 0, and prints it "0.0".
        return rng.choice(["", "-"]) + text if Decimal(text) else text

    pairs = [(value(), value()) for _ in range(2000)]
    frames = []
    for side in (0, 1):
        texts = [pair[side] for pair in pairs]
        frames.append(
            pl.DataFrame(
                {
                    "series_id": [f"S{i}" for i in range(len(pairs))],
                    "year": [2020] * len(pairs),
                    "period": ["Q01"] * len(pairs),
                    "value": pl.Series(texts).cast(pl.Decimal(18, 3)),
                    "decimals": [len(t.partition(".")[2]) for t in texts],
                },
                schema_overrides={"decimals": pl.Int8},
            )
        )
    revised, _, _, _ = vintages.diff_observations(*frames)
    got = {r[0]: (r[3], r[4], r[5]) for r in revised.rows()}
    for i, (old, new) in enumerate(pairs):
        if Decimal(old) == Decimal(new):
            assert f"S{i}" not in got
            continue
        places = max(len(old.partition(".")[2]), len(new.partition(".")[2]))
        change = (Decimal(new) - Decimal(old)).quantize(Decimal(1).scaleb(-places))
        assert got[f"S{i}"] == (old, new, f"{change:f}"), (old, new)


def test_diff_files_fuzz_gives_the_exact_diff_or_a_data_error(tmp_path: Path) -> None:
    """Random small releases: keys from a small space (so some repeat), values of every width
    and some that are not numbers. Either the comparison equals one computed here from the
    text, or a DataError comes out: never another exception."""
    rng = random.Random(1919)
    values = ["1", "-0.5", "2.25", "999999999999999.999", "-999999999999999.999", "0.001"]
    values += ["1e20", "12345678901234567", "1.2345", "x", ""]
    outcomes = {"compared": 0, "refused": 0}
    for case in range(150):
        texts: list[dict[tuple[str, int, str], str]] = []
        paths = []
        for side in ("old", "new"):
            rows = [
                (
                    f"S{rng.randint(1, 4)}",
                    rng.choice([2020, 2021]),
                    rng.choice(["Q01", "Q02"]),
                    rng.choice(values) if rng.random() < 0.2 else rng.choice(values[:6]),
                )
                for _ in range(rng.randint(0, 12))
            ]
            path = tmp_path / f"{case}-{side}"
            path.write_bytes(data_file(*rows))
            paths.append(path)
            texts.append({(s, y, p): v for s, y, p, v in rows})
        try:
            revised, added, removed, _ = vintages.diff_files(paths[0], paths[1])
        except DataError:
            outcomes["refused"] += 1
            continue
        outcomes["compared"] += 1
        old, new = ({k: Decimal(v) for k, v in t.items()} for t in texts)
        got = {(r[0], r[1], r[2]): Decimal(r[5]) for r in revised.rows()}
        assert got == {k: new[k] - old[k] for k in old.keys() & new.keys() if old[k] != new[k]}
        assert {(r[0], r[1], r[2]) for r in added.rows()} == new.keys() - old.keys()
        assert {(r[0], r[1], r[2]) for r in removed.rows()} == old.keys() - new.keys()
    assert min(outcomes.values()) > 10, outcomes  # both paths are taken
