"""`rq releases`, `rq revisions`, `rq analyze --as-of` and `rq sync-bls --vintages` end to end."""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import DATAUSA, release
from hostile_helpers import assert_no_raw_controls
from rearcquest.aws.storage import ObjectStore
from rearcquest.cli import app
from rearcquest.errors import DataError
from rearcquest.offline import OfflineServer
from vintage_helpers import (
    BUCKET,
    DATA,
    SLUGS,
    STAMPS,
    VINTAGES,
    data_file,
    logged_releases,
    put_release_files,
    synced_mirror,
    write_release_log,
)

runner = CliRunner()
POPULATION = DATAUSA / "old-api-acs5-2013-2022-compact.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mirror() -> Iterator[dict[str, Any]]:
    yield from synced_mirror()


def rq(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_releases_json_lists_four_newest_first(mirror: dict[str, Any]) -> None:
    result = rq("releases", "--bucket", BUCKET, "--survey", "pr", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["release"] for r in doc] == STAMPS[::-1]
    assert set(doc[0]) == {"release", "synced_at", "changed", "removed", "files"}
    entry = doc[0]["files"]["pr.data.0.Current"]
    assert set(entry) == {"sha256", "version_id"} and entry["version_id"]
    assert "pr.data.0.Current" in doc[0]["changed"]


def test_releases_table_names_each_release(
    mirror: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RQ_BLS_BUCKET", BUCKET)
    result = rq("releases")
    assert result.exit_code == 0, result.output
    for stamp in STAMPS:
        assert stamp in result.stdout
    assert "pr.data.0.Current" in result.stdout


def test_revisions_json_numbers_are_exact(mirror: dict[str, Any]) -> None:
    result = rq("revisions", "--bucket", BUCKET, "--from", "2025-06-05", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout, parse_float=Decimal)
    assert (doc["from"], doc["to"], doc["file"]) == (STAMPS[1], STAMPS[3], "pr.data.0.Current")
    assert doc["revised"]
    for row in doc["revised"]:
        assert set(row) == {"series_id", "year", "period", "old", "new", "change"}
        assert row["new"] - row["old"] == row["change"]
    # Digits as BLS prints them, never binary-float noise.
    assert all(len(str(r["old"]).partition(".")[2]) <= 3 for r in doc["revised"])


def test_revisions_csv_and_markdown(mirror: dict[str, Any]) -> None:
    as_csv = rq("revisions", "--bucket", BUCKET, "--series", "PRS30*", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows and {r["kind"] for r in rows} <= {"revised", "added", "removed"}
    assert all(r["series_id"].startswith("PRS30") for r in rows)
    md = rq("revisions", "--bucket", BUCKET, "--format", "markdown")
    assert md.exit_code == 0, md.output
    assert f"release {STAMPS[2]} -> {STAMPS[3]}" in md.stdout
    assert "| series_id | revised | added | removed | largest_change |" in md.stdout


def test_revisions_output_writes_csv_and_chart(mirror: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "rev"
    # The PRS30 series only: the same files and chart, without rendering every revision of the
    # file as a rich table (~10,000 rows, 4 s).
    result = rq("revisions", "--bucket", BUCKET, "--series", "PRS30*", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "largest-revisions.png",
        "revisions.csv",
        "summary.csv",
    ]
    assert (out / "largest-revisions.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "wrote" in result.stderr


def test_revisions_unknown_release_exits_2(mirror: dict[str, Any]) -> None:
    result = rq("revisions", "--bucket", BUCKET, "--from", "2001-01-01")
    assert result.exit_code == 2
    assert "no release on or before 2001-01-01" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--report", "best-year", "--bls", f"s3://{BUCKET}/pr/pr.data.0.Current"],
        ["revisions", "--bucket", BUCKET, "--from"],
        ["revisions", "--bucket", BUCKET, "--to"],
        ["sql", "SELECT 1 AS one"],
        ["tables"],
    ],
    ids=["analyze", "revisions-from", "revisions-to", "sql", "tables"],
)
@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("2025-02-30", "day is out of range for month"),
        ("2025-13-45", "month must be in 1..12"),
        ("2025-01-01 25:61", "hour must be in 0..23"),
    ],
    ids=["feb-30", "month-13", "hour-25"],
)
def test_a_date_not_on_the_calendar_exits_2_naming_it(
    mirror: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    spec: str,
    why: str,
) -> None:
    monkeypatch.setenv("RQ_BLS_BUCKET", BUCKET)
    # --from and --to take the date themselves; the other commands take it as --as-of.
    dated = [*args, spec] if args[-1] in ("--from", "--to") else [*args, "--as-of", spec]
    result = rq(*dated)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"Error: {spec!r} is not a real date ({why}): give YYYY-MM-DD, a release stamp "
        "'YYYY-MM-DD HH:MM', 'previous' or 'latest' (see rq releases)"
    )


def test_analyze_as_of_names_the_release(mirror: dict[str, Any]) -> None:
    result = rq(
        "analyze",
        "--as-of",
        "2025-09-30",
        "--bls",
        f"s3://{BUCKET}/pr/pr.data.0.Current",
        "--population",
        str(POPULATION),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["release"] == STAMPS[2]
    assert f"as of release {STAMPS[2]}" in result.stderr
    table = rq(
        "analyze",
        "--as-of",
        STAMPS[0],
        "--report",
        "best-year",
        "--bls",
        f"s3://{BUCKET}/pr/pr.data.0.Current",
    )
    assert table.exit_code == 0, table.output
    assert f"as of release {STAMPS[0]}" in " ".join(table.stdout.split())


def test_sync_vintages_needs_a_versioned_bucket(
    store: ObjectStore, bls_server: OfflineServer
) -> None:
    result = rq(
        "sync-bls",
        "--bucket",
        store.bucket,
        "--source-url",
        bls_server.bls_url,
        "--contact",
        "t@example.com",
        "--vintages",
    )
    assert result.exit_code == 2
    assert "does not keep old versions (versioning is not enabled)" in result.stderr
    assert "aws s3api put-bucket-versioning --bucket test-bucket" in result.stderr
    assert list(store.list_objects()) == []
    assert bls_server.requests == []


def _value(vintage: str, series: str, year: int, period: str) -> Decimal:
    from conftest import release

    for line in release(vintage)["pr.data.0.Current"].data.decode().splitlines()[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if cells[:3] == [series, str(year), period]:
            return Decimal(cells[3])
    raise AssertionError("no such observation")


@pytest.mark.parametrize("vintage", ["2025-09-04", "2026-08-06"])
def test_sql_as_of_queries_the_release(
    mirror: dict[str, Any], vintage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RQ_BLS_BUCKET", BUCKET)
    query = (
        "SELECT value FROM pr_observations WHERE file = 'pr.data.0.Current' "
        "AND series_id = 'PRS30006032' AND year = 2025 AND period = 'Q01'"
    )
    result = rq("sql", query, "--as-of", vintage, "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout, parse_float=Decimal)
    assert row["value"] == _value(vintage, "PRS30006032", 2025, "Q01")
    assert f"as of release {STAMPS[VINTAGES.index(vintage)]}" in result.stderr


def test_tables_as_of_writes_the_release_tables_beside_the_others(
    mirror: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RQ_BLS_BUCKET", BUCKET)
    result = rq("tables", "--as-of", "2025-06-30", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    base = f"s3://{BUCKET}/tables/as-of/{SLUGS[1]}/pr/"
    assert doc["release"] == STAMPS[1]
    assert f"{base}series/series.parquet" in doc["written"]
    assert f"{base}observations/file=pr.data.0.Current/part-0.parquet" in doc["written"]
    # rq sql reads S3 with Polars' own reader, which in-process moto cannot answer: the
    # release's tables are queried from a copy (tests/test_tables.py reads S3 in place).
    store, prefix = mirror["store"], f"tables/as-of/{SLUGS[1]}/"
    for info in store.list_objects(prefix):
        path = tmp_path / info.key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get_bytes(info.key))
    count = rq(
        "sql",
        "SELECT COUNT(*) AS n FROM pr_observations WHERE file = 'pr.data.0.Current'",
        "--tables",
        str(tmp_path),
        "--format",
        "json",
    )
    assert count.exit_code == 0, count.output
    from conftest import release

    text = release("2025-06-05")["pr.data.0.Current"].data.decode().splitlines()
    assert json.loads(count.stdout) == [{"n": sum(1 for line in text[1:] if line.strip())}]


# -- names from storage are data, never paths (issue 19) --


@pytest.fixture
def versioned(store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ObjectStore:
    """The moto bucket, versioned, as RQ_BLS_BUCKET; temporary folders under tmp_path/tmp."""
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    monkeypatch.setenv("RQ_BLS_BUCKET", store.bucket)
    (tmp_path / "tmp").mkdir()
    # rq's temporary folders are tmp_path/tmp/rq-...: '../../x' from one is tmp_path/x.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return store


def _as_of(command: str) -> list[str]:
    if command == "sql":
        return [
            "sql",
            "--as-of",
            "latest",
            "SELECT COUNT(*) AS n FROM pr_series",
            "--format",
            "json",
        ]
    return ["tables", "--as-of", "latest", "--format", "json"]


BAD_NAMES = {
    "absolute": "{tmp}/abs-target",
    "dot-dot": "../../x",
    "nested": "a/b",
    "parent": "..",
    "nul": "x\0y",
}


@pytest.mark.parametrize("command", ["tables", "sql"])
@pytest.mark.parametrize("bad", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_a_tampered_release_log_writes_nothing_outside(
    versioned: ObjectStore, tmp_path: Path, command: str, bad: str
) -> None:
    files = put_release_files(versioned.client, versioned.bucket, "pr/", "2025-06-05")
    name = bad.format(tmp=tmp_path)
    write_release_log(
        versioned.client,
        versioned.bucket,
        "pr/",
        [(STAMPS[1], {**files, name: files["pr.series"]})],
    )
    result = rq(*_as_of(command))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # an rq error, not a traceback
    assert "is not a release log" in result.stderr
    assert "is not a file name" in result.stderr
    # Nothing beside rq's temporary folders: not the absolute target, not '../../x'.
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"]
    assert [info.key for info in versioned.list_objects("tables/")] == []


@pytest.mark.parametrize("command", ["sql", "tables", "analyze", "revisions"])
def test_a_version_whose_bytes_are_not_the_logged_ones_fails(
    versioned: ObjectStore, command: str
) -> None:
    files = put_release_files(versioned.client, versioned.bucket, "pr/", "2025-06-05")
    # The log's sha256 of the data file is another file's: that version is not the release's.
    data = files["pr.data.0.Current"]
    tampered = {**files, "pr.data.0.Current": {**data, "sha256": files["pr.txt"]["sha256"]}}
    write_release_log(versioned.client, versioned.bucket, "pr/", [(STAMPS[1], tampered)])
    args = {
        "sql": _as_of("sql"),
        "tables": _as_of("tables"),
        "analyze": ["analyze", "--as-of", "latest", "--report", "best-year"],
        "revisions": ["revisions", "--from", "latest", "--to", "latest"],
    }[command]
    result = rq(*args)
    assert result.exit_code == 1, result.output
    assert (
        f"s3://{versioned.bucket}/pr/pr.data.0.Current (version {data['version_id']}) is not the "
        f"file of release {STAMPS[1]}: its sha256 is {data['sha256']}, the release log records "
        f"{files['pr.txt']['sha256']}" in " ".join(result.stderr.split())
    )
    assert result.stdout == ""
    assert [info.key for info in versioned.list_objects("tables/")] == []


def test_as_of_tables_are_each_release_s_own_folder_cleared_first(
    versioned: ObjectStore,
) -> None:
    client, bucket = versioned.client, versioned.bucket
    june = put_release_files(client, bucket, "pr/", "2025-06-05")
    september = put_release_files(client, bucket, "pr/", "2025-09-04")
    write_release_log(client, bucket, "pr/", [(STAMPS[1], june), (STAMPS[2], september)])
    june_base, september_base = f"tables/as-of/{SLUGS[1]}/", f"tables/as-of/{SLUGS[2]}/"
    # What an interrupted earlier build of the June release left behind.
    stale = f"{june_base}pr/observations/file=pr.data.9.Stale/part-0.parquet"
    versioned.put_bytes(stale, b"not the release's")

    def build(spec: str) -> list[str]:
        result = rq("tables", "--as-of", spec, "--format", "json")
        assert result.exit_code == 0, result.output
        return sorted(json.loads(result.stdout)["written"])

    written_june = build("2025-06-30")
    june_objects = {i.key: i.etag for i in versioned.list_objects(june_base)}
    written_september = build("2025-09-30")
    assert sorted(versioned.url(k) for k in june_objects) == written_june
    assert stale not in june_objects
    # The September build wrote only its own folder; the June one is as it was.
    assert {i.key: i.etag for i in versioned.list_objects(june_base)} == june_objects
    assert sorted(versioned.url(i.key) for i in versioned.list_objects(september_base)) == (
        written_september
    )
    series = "pr/series/series.parquet"
    assert versioned.get_bytes(june_base + series) != versioned.get_bytes(september_base + series)


@pytest.mark.parametrize("command", ["analyze", "sql", "tables"])
def test_as_of_honours_the_root_prefix(versioned: ObjectStore, command: str) -> None:
    client, bucket = versioned.client, versioned.bucket
    files = put_release_files(client, bucket, "bls/pr/", "2025-06-05")
    write_release_log(client, bucket, "bls/pr/", [(STAMPS[1], files)])
    args = {
        "analyze": ["analyze", "--report", "best-year", "--format", "json"],
        "sql": ["sql", "SELECT COUNT(*) AS n FROM pr_series", "--format", "json"],
        "tables": ["tables", "--format", "json"],
    }[command]
    result = rq(*args, "--as-of", "latest", "--root-prefix", "bls/")
    assert result.exit_code == 0, result.output
    assert f"{STAMPS[1]}" in result.output
    if command == "analyze":
        assert json.loads(result.stdout)["release"] == STAMPS[1]
        assert f"s3://{bucket}/bls/pr/pr.data.0.Current as of release" in result.stderr
    elif command == "tables":
        base = f"s3://{bucket}/bls/tables/as-of/{SLUGS[1]}/pr/"
        assert f"{base}series/series.parquet" in json.loads(result.stdout)["written"]
    else:
        (row,) = json.loads(result.stdout)
        series = release("2025-06-05")["pr.series"].data.decode().splitlines()
        assert row["n"] == sum(1 for line in series[1:] if line.strip())


@pytest.mark.parametrize(
    "bad", ["{tmp}/abs-target", "../x", "..", "x\0y"], ids=["absolute", "dot-dot", "parent", "nul"]
)
def test_the_second_wall_stops_a_name_the_log_check_missed(
    versioned: ObjectStore, tmp_path: Path, bad: str
) -> None:
    from rearcquest.data import vintages
    from rearcquest.records.releases import Release, ReleaseFile

    files = put_release_files(versioned.client, versioned.bucket, "pr/", "2025-06-05")
    name = bad.format(tmp=tmp_path)
    entry = ReleaseFile(files["pr.txt"]["sha256"], files["pr.txt"]["version_id"])
    made = Release(STAMPS[1], "x", files={name: entry})  # built in code, never parsed
    folder = tmp_path / "tmp" / "folder"
    folder.mkdir()
    with pytest.raises(DataError, match=r"is not a file inside .*; nothing was written"):
        vintages._download_release_file(versioned, "pr/", made, name, folder)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder", "tmp"]


# -- hostile releases (issue 19) -----------------------------------------------------------------

OLD_STAMP, NEW_STAMP = "2026-01-01 08:30\x1b[31m", "2026-02-01 08:30\u202e"


def _hostile_bucket(client: Any, bucket: str, releases: list[tuple[str, dict[str, None]]]) -> str:
    """Two releases whose data files carry control characters in series ids and periods, with
    the stamps and the extra (unstored) file names given."""
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
        old = data_file(("PRS\x1b[31mRED", 2020, "Q01", "1.0"), ("PRS1", 2020, "Q\r01", "2.0"))
        new = data_file(
            ("PRS\x1b[31mRED", 2020, "Q01", "1.5"),
            ("PRS1", 2020, "Q\r01", "2.5"),
            ("PRS2\x07\u202e", 2021, "Q01", "3"),
        )
        files = [{DATA: old, **releases[0][1]}, {DATA: new, **releases[1][1]}]
        logged_releases(
            ObjectStore(client, bucket),
            [(stamp, data) for (stamp, _), data in zip(releases, files, strict=True)],
        )
    return bucket


@pytest.fixture
def hostile_log(mirror: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket (in the module's moto) whose release log carries control characters in stamps
    and file names; rich tables as wide as they need (no wrapped cells)."""
    monkeypatch.setenv("COLUMNS", "400")
    return _hostile_bucket(
        mirror["client"],
        "hostile-log-bucket",
        [
            (OLD_STAMP, {"pr.\x1b]0;pwned\x07txt": None}),
            (NEW_STAMP, {"pr.\x1b[2J\x00\n\x9bseries": None}),
        ],
    )


@pytest.fixture
def hostile_cells(mirror: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket whose release log is clean and whose data files carry control characters."""
    monkeypatch.setenv("COLUMNS", "400")
    return _hostile_bucket(
        mirror["client"], "hostile-cells-bucket", [(STAMPS[0], {}), (STAMPS[1], {})]
    )


@pytest.mark.parametrize("command", ["releases", "revisions"])
def test_a_log_with_control_characters_is_refused_and_shown_escaped(
    hostile_log: str, command: str
) -> None:
    """Stamps and names with control characters are no release log rq wrote: refused, and the
    error line shows them as escapes, never raw."""
    result = rq(command, "--bucket", hostile_log)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert_no_raw_controls(result.stderr)
    assert "is not a release log" in result.stderr
    assert "2026-01-01 08:30\\x1b[31m" in result.stderr


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_revisions_show_control_characters_as_escapes(hostile_cells: str, fmt: str) -> None:
    result = rq("revisions", "--bucket", hostile_cells, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.stdout)
    for escaped in ("PRS\\x1b[31mRED", "Q\\x0d01", "PRS2\\x07\\u202e"):
        assert escaped in result.stdout, escaped


def test_revisions_csv_keeps_the_values(hostile_cells: str) -> None:
    """CSV is for programs: the cells are the file's, not escaped."""
    result = rq("revisions", "--bucket", hostile_cells, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "added,PRS2\x07\u202e,2021,Q01,,3," in result.stdout
    assert "revised,PRS1,2020,Q\r01,2.0,2.5,0.5" in result.stdout


def test_revisions_of_a_file_with_duplicate_keys_exit_1_naming_them(
    mirror: dict[str, Any],
) -> None:
    client = mirror["client"]
    client.create_bucket(Bucket="duplicates-bucket")
    # A series id with a terminal title sequence and a carriage return: shown escaped.
    rows = [("PRS\x1b]0;t\x07\r1", 2020, "Q01", f"{i}.0") for i in range(200)]
    logged_releases(
        ObjectStore(client, "duplicates-bucket"),
        [(STAMPS[0], {DATA: data_file(*rows)}), (STAMPS[1], {DATA: data_file(*rows)})],
    )
    result = rq("revisions", "--bucket", "duplicates-bucket")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: s3://duplicates-bucket/pr/{DATA} as of {STAMPS[0]}: 1 observation key(s) "
        "appear more than once (series_id year period): PRS\\x1b]0;t\\x07\\x0d1 2020 Q01 (200 "
        "rows); a BLS data file has one row per series, year and period, so this file is "
        "malformed and its revisions cannot be computed\n"
    )


def _body_rows(text: str) -> list[list[str]]:
    """The body rows of one rich table: the cells between its vertical borders."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]


def test_releases_in_a_pipe_list_every_changed_file_whole(mirror: dict[str, Any]) -> None:
    """Stdout is no terminal (CliRunner): the changed files of a release are not cut to fit
    80 columns."""
    doc = json.loads(rq("releases", "--bucket", BUCKET, "--format", "json").stdout)
    result = rq("releases", "--bucket", BUCKET)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for entry in doc:
        assert ", ".join(entry["changed"]) in result.stdout


def test_revisions_table_shows_the_summary_and_the_largest_revisions(
    mirror: dict[str, Any],
) -> None:
    as_csv = rq("revisions", "--bucket", BUCKET, "--format", "csv")
    revised = [r for r in csv.DictReader(io.StringIO(as_csv.stdout)) if r["kind"] == "revised"]
    largest = sorted(revised, key=lambda r: -abs(Decimal(r["change"])))[:20]
    result = rq("revisions", "--bucket", BUCKET)
    assert result.exit_code == 0, result.output
    summary, _, values = result.stdout.partition("The 20 largest revisions, pr.data.0.Current")
    assert values, result.stdout
    rows = _body_rows(values)
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        (r["series_id"], r["year"], r["period"], r["change"]) for r in largest
    ]
    assert f"{len(revised) - 20:,} more revised values: --all lists every one" in values
    assert "Revisions per series" in summary
    assert len(result.stdout.splitlines()) < len(revised) // 10


def test_revisions_all_lists_every_revised_value(mirror: dict[str, Any]) -> None:
    as_csv = rq("revisions", "--bucket", BUCKET, "--series", "PRS30*", "--format", "csv")
    revised = [r for r in csv.DictReader(io.StringIO(as_csv.stdout)) if r["kind"] == "revised"]
    result = rq("revisions", "--bucket", BUCKET, "--series", "PRS30*", "--all")
    assert result.exit_code == 0, result.output
    _, _, values = result.stdout.partition("Revised values, pr.data.0.Current")
    assert len(_body_rows(values)) == len(revised) > 20
    assert "more revised values" not in result.stdout


def test_revisions_max_rows_caps_each_table(mirror: dict[str, Any]) -> None:
    result = rq("revisions", "--bucket", BUCKET, "--max-rows", "3")
    assert result.exit_code == 0, result.output
    summary, _, values = result.stdout.partition("The 20 largest revisions")
    assert len(_body_rows(summary)) == len(_body_rows(values)) == 3
    assert "17 more rows not shown (--max-rows" in values
    assert "more rows not shown (--max-rows" in summary


def test_revisions_output_without_matplotlib_is_refused_before_the_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = rq("revisions", "--bucket", "no-such-bucket", "--output", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: the PNG charts need matplotlib: pip install 'rearcquest[charts]'\n"
    )
    assert result.stdout == "" and not (tmp_path / "o").exists()


def test_releases_in_a_narrow_terminal_wrap_the_changed_files(
    mirror: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last column that does not fit whole is wrapped, not left out."""
    from rearcquest.output import _console

    monkeypatch.setattr(_console, "_on_terminal", lambda console: True)
    monkeypatch.setenv("COLUMNS", "80")
    result = rq("releases", "--bucket", BUCKET)
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "release",
        "synced_at",
        "files",
        "changed",
    ]
    assert "not shown" not in result.stdout
