"""rearcquest.data.tables: building the Parquet tables from a mirror in (moto) S3, and querying them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import resource
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import botocore.exceptions
import polars as pl
import pytest

from conftest import DATAUSA, break_survey_build, release
from rearcquest.aws.storage import ObjectStore, S3Access
from rearcquest.data.analytics import ReportInputs, sink_parquet
from rearcquest.data.tables import (
    TableScope,
    build_local_tables,
    build_tables,
    decode_series,
    find_surveys,
    observations_query,
    read_tsv,
    run_sql,
    tables_need_build,
)
from rearcquest.data.vintages import analyze_at
from rearcquest.errors import ConfigError, DataError, StorageError
from rearcquest.layout import (
    META_SHA256,
    manifest_key,
    observations_key,
    population_key,
    series_key,
)

VINTAGES = ("2024-06-06", "2025-06-05", "2025-09-04", "2026-08-06")
POPULATION = "datausa/population.json"

# A second survey with its own code files: zz.area decodes area_code, zz.item decodes item (no
# _code suffix in the series file), and nothing decodes unit_code.
ZZ = {
    "zz.series": (
        "series_id   \tarea_code\titem\tunit_code\tfootnote_codes\tbegin_year\r\n"
        "ZZA1        \tA1\tX\tu\t\t2001\r\n"
        "ZZB2        \tB2\tY\tu\t\t2002\r\n"
        "ZZC9        \tC9\tX\tv\t\t2003\r\n"
    ),
    "zz.area": "area_code\tarea_name\tdisplay_level\r\nA1\tNorth\t0\r\nB2\tSouth\t0\r\n",
    "zz.item": "Item_code\tItem_text\r\nX\tWidgets\r\nY\tGadgets, large\r\n",
    "zz.footnote": "footnote_code\tfootnote_text\r\nP\tpreliminary\r\n",
    "zz.txt": "The ZZ survey\r\n",
    "zz.data.0.Current": (
        "series_id   \tyear\tperiod\t     value\tfootnote_codes\r\n"
        "ZZA1        \t2001\tM01\t       1.5\t\r\n"
        "ZZA1        \t2001\tM02\t         -\tP\r\n"
        "ZZB2        \t2002\tM01\t   -12.250\t\r\n"
        "ZZB2        \t2002\tM02\t      (NA)\t\r\n"
    ),
}


def put_file(store: Any, key: str, data: bytes) -> None:
    """Store a mirrored file the way rq sync-bls does: with its sha256 as metadata."""
    store.put_bytes(key, data, metadata={META_SHA256: hashlib.sha256(data).hexdigest()})


def mirror(store: Any, files: dict[str, bytes], prefix: str) -> None:
    for name, data in files.items():
        put_file(store, prefix + name, data)


def mirror_release(store: Any, vintage: str, prefix: str = "pr/") -> None:
    mirror(store, {name: f.data for name, f in release(vintage).items()}, prefix)


def mirror_zz(store: Any, **changes: str) -> None:
    mirror(store, {n: t.encode() for n, t in {**ZZ, **changes}.items()}, "zz/")


def put_population(store: Any) -> None:
    body = (DATAUSA / "tesseract-acs1-2013-2023-raw.json").read_bytes()
    store.put_bytes(POPULATION, body)


def parquet(store: Any, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.get_bytes(key)))


def statuses(result: Any) -> dict[str, str]:
    return {b.key: b.status for b in result.builds}


# -- decoding ------------------------------------------------------------------------------------


def test_decode_series_names_each_code_and_warns_once_per_undecoded_column() -> None:
    series = read_tsv(ZZ["zz.series"].encode(), source="zz.series")
    mappings = {
        n: read_tsv(ZZ[n].encode(), source=n) for n in ("zz.area", "zz.item", "zz.footnote")
    }
    decoded, warnings = decode_series(series, mappings)
    assert decoded.columns == [
        "series_id",
        "area_code",
        "area_name",
        "item",
        "item_text",
        "unit_code",
        "footnote_codes",
        "begin_year",
        "title",
    ]
    assert decoded.rows() == [
        ("ZZA1", "A1", "North", "X", "Widgets", "u", None, "2001", "North; Widgets"),
        ("ZZB2", "B2", "South", "Y", "Gadgets, large", "u", None, "2002", "South; Gadgets, large"),
        ("ZZC9", "C9", None, "X", "Widgets", "v", None, "2003", "Widgets"),
    ]
    assert warnings == ["no mapping file decodes unit_code: it stays a code"]


def test_read_tsv_rejects_a_file_that_is_not_text() -> None:
    with pytest.raises(DataError, match=r"^zz\.area: cannot be read"):
        read_tsv(b"a_code\tb\n\xff\xfe\x00\tx\ty\tz\n", source="zz.area")


# -- building from the real releases -------------------------------------------------------------


@pytest.mark.parametrize("vintage", VINTAGES, ids=VINTAGES)
def test_builds_every_table_of_a_real_release(store: Any, vintage: str) -> None:
    mirror_release(store, vintage)
    put_population(store)
    result = build_tables(store, population_object=POPULATION)
    assert result.failed == []
    files = release(vintage)
    for name in ("pr.data.0.Current", "pr.data.1.AllData"):
        key = observations_key("tables/", "pr", name)
        table = parquet(store, key)
        lines = [line for line in files[name].data.decode().splitlines()[1:] if line.strip()]
        assert table.height == len(lines)
        assert table.schema == pl.Schema(
            {
                "series_id": pl.String,
                "year": pl.Int16,
                "period": pl.String,
                "value": pl.Decimal(18, 3),
                "decimals": pl.Int8,
                "value_text": pl.String,
                "footnote_codes": pl.String,
            }
        )
        first = lines[0].split("\t")
        assert table.row(0) == (
            first[0].strip(),
            int(first[1]),
            first[2].strip(),
            Decimal(first[3].strip()),
            len(first[3].strip().partition(".")[2]),
            None,  # a number: its text is not kept
            first[4].strip() or None,
        )
    manifest = json.loads(store.get_bytes(manifest_key("tables/", "pr")))
    current = files["pr.data.0.Current"].data
    assert manifest["files"]["pr.data.0.Current"]["sha256"] == hashlib.sha256(current).hexdigest()
    series = parquet(store, series_key("tables/", "pr"))
    assert series.height == len(files["pr.series"].data.decode().splitlines()) - 1
    population = parquet(store, population_key("tables/"))
    assert population.schema == pl.Schema(
        {"year": pl.Int16, "population": pl.Int64, "source": pl.String}
    )
    assert population.row(0) == (2013, 316128839, "s3://test-bucket/" + POPULATION)


def test_decoded_series_reads_as_its_sector_and_measure(store: Any) -> None:
    mirror_release(store, "2026-08-06")
    build_tables(store)
    series = parquet(store, series_key("tables/", "pr")).filter(
        pl.col("series_id") == "PRS30006032"
    )
    row = series.row(0, named=True)
    assert row["sector_code"] == "3000"
    assert row["sector_name"] == "Manufacturing"
    assert row["measure_code"] == "03"
    assert row["measure_text"] == "Hours worked"
    assert row["seasonal"] == "S"
    assert row["seasonal_text"] == "Seasonal Adjusted"
    assert row["title"] == (
        "Manufacturing; All workers; Hours worked; % Change from previous quarter; "
        "Seasonal Adjusted"
    )


def test_second_survey_keeps_non_numbers_and_undecoded_codes(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mirror_zz(store)
    with caplog.at_level(logging.WARNING, logger="rearcquest.data.tables"):
        result = build_tables(store, surveys=["zz"])
    assert result.warnings == [
        "s3://test-bucket/zz/zz.series: no mapping file decodes unit_code: it stays a code"
    ]
    assert [r.message for r in caplog.records] == result.warnings
    table = parquet(store, observations_key("tables/", "zz", "zz.data.0.Current"))
    assert table.rows() == [
        ("ZZA1", 2001, "M01", Decimal("1.500"), 1, None, None),
        ("ZZA1", 2001, "M02", None, 0, "-", "P"),
        ("ZZB2", 2002, "M01", Decimal("-12.250"), 3, None, None),
        ("ZZB2", 2002, "M02", None, 0, "(NA)", None),
    ]
    series = parquet(store, series_key("tables/", "zz"))
    assert series["area_name"].to_list() == ["North", "South", None]
    assert series["unit_code"].to_list() == ["u", "u", "v"]


def test_find_surveys_and_all(store: Any) -> None:
    mirror_release(store, "2024-06-06")
    mirror_zz(store)
    store.put_bytes("notes/readme.txt", b"x")
    assert find_surveys(store) == ["pr", "zz"]
    result = build_tables(store, surveys=None)
    assert {b.survey for b in result.builds} == {"pr", "zz"}


def test_a_survey_that_is_not_mirrored_is_a_config_error(store: Any) -> None:
    with pytest.raises(ConfigError, match=r"s3://test-bucket/xx/ holds no xx\.series"):
        build_tables(store, surveys=["xx"])


@pytest.mark.parametrize(
    "options",
    [
        {"tables_prefix": "../x"},
        {"tables_prefix": "out/../../x/"},
        {"tables_prefix": "/x"},
        {"root_prefix": "../mirrors"},
        {"root_prefix": "/mirrors/"},
    ],
    ids=["tables-dotdot", "tables-inner-dotdot", "tables-slash", "root-dotdot", "root-slash"],
)
def test_a_prefix_that_leaves_its_folder_is_refused_before_anything_is_written(
    store: Any, options: dict[str, str]
) -> None:
    # The same rule as every other prefix rq takes (config.normalise_prefix), not a quiet rewrite.
    mirror_zz(store)
    before = sorted(info.key for info in store.list_objects())
    with pytest.raises(ConfigError, match=r"must be relative and must not contain '\.\.'"):
        build_tables(store, surveys=["zz"], **options)
    assert sorted(info.key for info in store.list_objects()) == before


@pytest.mark.parametrize("location", ["s3://test-bucket/../x/", "s3://test-bucket//tables/"])
def test_run_sql_refuses_a_location_that_leaves_its_folder(store: Any, location: str) -> None:
    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    with pytest.raises(ConfigError, match=r"must be relative and must not contain '\.\.'"):
        run_sql(
            "SELECT COUNT(*) FROM zz_observations",
            location=location,
            s3=S3Access(client=store.client),
        )


def test_a_prefix_without_its_slash_names_the_same_tables(store: Any) -> None:
    mirror_zz(store)
    first = build_tables(store, surveys=["zz"], tables_prefix=" out ")
    assert first.tables_prefix == "out/"
    again = build_tables(store, surveys=["zz"], tables_prefix="out/")
    assert {b.status for b in again.builds} == {"unchanged"}


# -- rebuilding only what changed ----------------------------------------------------------------


def test_a_changed_data_file_rebuilds_only_its_partition(store: Any) -> None:
    mirror_release(store, "2025-06-05")
    first = build_tables(store)
    assert set(statuses(first).values()) == {"built"}
    again = build_tables(store)
    assert set(statuses(again).values()) == {"unchanged"}
    current = release("2025-09-04")["pr.data.0.Current"].data
    put_file(store, "pr/pr.data.0.Current", current)
    third = build_tables(store)
    assert statuses(third) == {
        observations_key("tables/", "pr", "pr.data.0.Current"): "built",
        observations_key("tables/", "pr", "pr.data.1.AllData"): "unchanged",
        series_key("tables/", "pr"): "unchanged",
    }
    table = parquet(store, observations_key("tables/", "pr", "pr.data.0.Current"))
    assert table.height == len(current.decode().splitlines()) - 1


def test_a_changed_mapping_file_rebuilds_the_series(store: Any) -> None:
    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    mirror_zz(store, **{"zz.area": "area_code\tarea_name\r\nA1\tNorth\r\nC9\tWest\r\n"})
    result = build_tables(store, surveys=["zz"])
    assert statuses(result)[series_key("tables/", "zz")] == "built"
    assert parquet(store, series_key("tables/", "zz"))["area_name"].to_list() == [
        "North",
        None,
        "West",
    ]


def test_a_removed_data_file_removes_its_partition(store: Any) -> None:
    mirror_zz(store, **{"zz.data.1.Extra": ZZ["zz.data.0.Current"]})
    build_tables(store, surveys=["zz"])
    extra = observations_key("tables/", "zz", "zz.data.1.Extra")
    assert store.head(extra) is not None
    store.delete_many(["zz/zz.data.1.Extra"])
    result = build_tables(store, surveys=["zz"])
    assert statuses(result)[extra] == "removed"
    assert store.head(extra) is None
    assert (
        "zz.data.1.Extra" not in json.loads(store.get_bytes(manifest_key("tables/", "zz")))["files"]
    )


def test_removed_data_files_go_in_one_delete_and_one_manifest_write(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    extras = [f"zz.data.{n}.Extra" for n in (1, 2, 3)]
    mirror_zz(store, **dict.fromkeys(extras, ZZ["zz.data.0.Current"]))
    build_tables(store, surveys=["zz"])
    store.delete_many([f"zz/{name}" for name in extras])
    manifest = manifest_key("tables/", "zz")
    writes: list[str] = []
    deletes: list[list[str]] = []
    put_bytes, delete_many = store.put_bytes, store.delete_many

    def counted_put(key: str, data: bytes, **kw: Any) -> str:
        writes.append(key)
        return put_bytes(key, data, **kw)  # type: ignore[no-any-return]

    def counted_delete(keys: Any) -> Any:
        deletes.append(list(keys))
        return delete_many(keys)

    monkeypatch.setattr(store, "put_bytes", counted_put)
    monkeypatch.setattr(store, "delete_many", counted_delete)
    result = build_tables(store, surveys=["zz"])
    removed = [observations_key("tables/", "zz", name) for name in extras]
    assert [statuses(result)[key] for key in removed] == ["removed"] * 3
    assert all(store.head(key) is None for key in removed)
    assert deletes == [removed]
    # One write when the removals start (the manifest without them), one at the end: the same
    # document was written again after each partition.
    assert writes.count(manifest) == 2


BAD_ROWS = [
    ("ZZA1\t2001\tM01\t1234567890123456.5\t", "line 4: value '1234567890123456.5' does not fit"),
    ("ZZA1\t2001\tM01\t1.2345\t", "line 4: value '1.2345' is not a decimal number"),
    ("ZZA1\t2001\tM01\tNaN\t", "line 4: value 'NaN' is not a decimal number"),
    ("ZZA1\tyear\tM01\t1.5\t", "line 4: year 'year' is not a four-digit year"),
    ("ZZA1\t2001\tM01\t1.5\t\tx\ty", "line 4: 7 fields, the header has 5"),
]


@pytest.mark.parametrize(
    ("line", "message"),
    BAD_ROWS,
    ids=["too-large", "too-precise", "nan", "bad-year", "too-many-fields"],
)
def test_a_malformed_row_fails_its_file_and_writes_nothing(
    store: Any, line: str, message: str
) -> None:
    good = ZZ["zz.data.0.Current"]
    bad = good.replace("ZZB2        \t2002\tM01\t   -12.250\t", line)
    mirror_zz(store, **{"zz.data.1.Bad": bad})
    result = build_tables(store, surveys=["zz"])
    (failed,) = result.failed
    assert failed.key == observations_key("tables/", "zz", "zz.data.1.Bad")
    assert failed.error is not None
    assert failed.error.startswith("s3://test-bucket/zz/zz.data.1.Bad " + message)
    assert store.head(failed.key) is None
    # The other tables are still built; the result raises once for the failure.
    assert store.head(observations_key("tables/", "zz", "zz.data.0.Current")) is not None
    with pytest.raises(DataError, match=r"1 table\(s\) not built: s3://test-bucket/zz/zz\.data"):
        result.raise_for_errors()


def test_a_failed_rebuild_keeps_the_previous_partition(store: Any) -> None:
    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    key = observations_key("tables/", "zz", "zz.data.0.Current")
    before = store.get_bytes(key)
    mirror_zz(store, **{"zz.data.0.Current": ZZ["zz.data.0.Current"] + "ZZA1\t20x1\tM01\t1\t\r\n"})
    result = build_tables(store, surveys=["zz"])
    assert [b.key for b in result.failed] == [key]
    assert store.get_bytes(key) == before
    # Still recorded as the old file's partition, so the next build tries again.
    again = build_tables(store, surveys=["zz"])
    assert [b.key for b in again.failed] == [key]


def test_population_is_rebuilt_only_when_the_answer_changes(store: Any, tmp_path: Path) -> None:
    mirror_zz(store)
    put_population(store)
    build_tables(store, surveys=["zz"], population_object=POPULATION)
    again = build_tables(store, surveys=["zz"], population_object=POPULATION)
    assert statuses(again)[population_key("tables/")] == "unchanged"
    store.put_bytes(POPULATION, (DATAUSA / "old-api-acs5-2013-2023-indent2.json").read_bytes())
    third = build_tables(store, surveys=["zz"], population_object=POPULATION)
    assert statuses(third)[population_key("tables/")] == "built"


def test_a_missing_population_answer_is_a_warning(store: Any) -> None:
    mirror_zz(store)
    result = build_tables(store, surveys=["zz"], population_object=POPULATION)
    assert result.warnings[-1] == (
        f"s3://test-bucket/{POPULATION} does not exist: no population table (rq fetch-population)"
    )


# -- analyze from the tables ---------------------------------------------------------------------


def analyze_from(store: Any, source: str, **options: Any) -> Any:
    inputs = ReportInputs(
        source=source,  # type: ignore[arg-type]
        bls="s3://test-bucket/pr/pr.data.0.Current",
        population=f"s3://test-bucket/{POPULATION}",
        **options,
    )
    return analyze_at(inputs, s3=S3Access(client=store.client))


@pytest.mark.parametrize("vintage", VINTAGES, ids=VINTAGES)
@pytest.mark.parametrize("include_annual", [False, True], ids=["quarters", "annual"])
def test_analyze_from_tables_equals_analyze_from_files(
    store: Any, vintage: str, include_annual: bool
) -> None:
    mirror_release(store, vintage)
    put_population(store)
    build_tables(store)
    files = analyze_from(store, "files", include_annual=include_annual, all_years=True)
    tables = analyze_from(store, "tables", include_annual=include_annual, all_years=True)
    assert files.bls_source == "s3://test-bucket/pr/pr.data.0.Current"
    assert tables.bls_source == "s3://test-bucket/" + observations_key(
        "tables/", "pr", "pr.data.0.Current"
    )
    assert tables.best_year.equals(files.best_year)
    assert tables.series_population.equals(files.series_population)
    assert tables.value_decimals == files.value_decimals
    assert tables.population == files.population
    assert files.best_year.height > 100
    # Titles from the series table, and from decoding the mirrored text files: the same.
    assert tables.titles == files.titles
    assert set(files.titles) == set(files.best_year["series_id"]) | {"PRS30006032"}
    assert files.titles["PRS30006032"].startswith("Manufacturing; All workers; Hours worked")


def test_analyze_auto_reads_the_tables_only_while_they_are_current(store: Any) -> None:
    mirror_release(store, "2025-06-05")
    put_population(store)
    assert analyze_from(store, "auto").bls_source.endswith("pr.data.0.Current")
    build_tables(store)
    part = "s3://test-bucket/" + observations_key("tables/", "pr", "pr.data.0.Current")
    assert analyze_from(store, "auto").bls_source == part
    # A newer file in the mirror: the table is stale until rq tables runs again.
    put_file(store, "pr/pr.data.0.Current", release("2025-09-04")["pr.data.0.Current"].data)
    stale = analyze_from(store, "auto")
    assert stale.bls_source == "s3://test-bucket/pr/pr.data.0.Current"
    with pytest.raises(ConfigError, match=r"no current table for s3://test-bucket/pr/pr\.data"):
        analyze_from(store, "tables")
    build_tables(store)
    assert analyze_from(store, "auto").best_year.equals(stale.best_year)


def test_analyze_without_a_series_file_has_no_titles(store: Any) -> None:
    current = release("2024-06-06")["pr.data.0.Current"].data
    put_file(store, "pr/pr.data.0.Current", current)
    put_population(store)
    assert analyze_from(store, "files").titles == {}


def test_analyze_from_local_files_decodes_the_series_beside_them(shared_data: Path) -> None:
    folder = shared_data / "bls" / "pr" / "2024-06-06"
    analysis = analyze_at(
        ReportInputs(bls=folder / "pr.data.0.Current", reports=["best-year"]), s3=S3Access()
    )
    assert analysis.titles["PRS30006011"] == (
        "Manufacturing; All workers; Employment; % Change same quarter 1 year ago; "
        "Seasonal Adjusted"
    )


def test_analyze_from_tables_needs_an_s3_mirror(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--from tables reads the tables beside an S3 mirror"):
        analyze_at(
            ReportInputs(
                source="tables", bls=tmp_path / "pr.data.0.Current", reports=["best-year"]
            ),
            s3=S3Access(),
        )


# -- SQL -----------------------------------------------------------------------------------------


@pytest.fixture
def built(moto_server: str) -> Any:
    """The 2026-08-06 release and the population, mirrored in a fresh bucket of moto's server
    (Polars' own S3 reader must reach it: in-process moto only answers botocore), with their
    tables built."""
    import uuid

    from rearcquest.aws.storage import ObjectStore, make_s3_client

    store = ObjectStore(make_s3_client(endpoint_url=moto_server), f"sql-{uuid.uuid4().hex[:8]}")
    store.create_bucket()
    mirror_release(store, "2026-08-06")
    put_population(store)
    build_tables(store, population_object=POPULATION)
    return store


def test_sql_answers_a_join_over_s3(built: Any) -> None:
    from rearcquest.data.tables import run_sql

    answer = run_sql(
        "SELECT s.title, o.year, o.value, p.population FROM pr_observations o "
        "JOIN pr_series s ON o.series_id = s.series_id "
        "JOIN population p ON o.year = p.year "
        "WHERE o.file = 'pr.data.0.Current' AND o.series_id = 'PRS30006032' "
        "AND o.period = 'Q01' AND o.year = 2018",
        location=built.url("tables/"),
        s3=S3Access(client=built.client),
    )
    assert answer.rows() == [
        (
            "Manufacturing; All workers; Hours worked; % Change from previous quarter; "
            "Seasonal Adjusted",
            2018,
            Decimal("0.500"),
            327167439,
        )
    ]


def download(store: Any, target: Path) -> Path:
    for info in store.list_objects("tables/"):
        path = target / info.key[len("tables/") :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get_bytes(info.key))
    return target


def test_sql_over_a_local_directory_sees_every_partition(built: Any, tmp_path: Path) -> None:
    from rearcquest.data.tables import run_sql

    answer = run_sql(
        "SELECT file, COUNT(*) AS n FROM pr_observations GROUP BY file ORDER BY file",
        location=str(download(built, tmp_path)),
        s3=S3Access(),
    )
    files = release("2026-08-06")
    assert answer.rows() == [
        (name, len(files[name].data.splitlines()) - 1)
        for name in ("pr.data.0.Current", "pr.data.1.AllData")
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM nowhere", r"the query failed: .*nowhere.*\(tables: population, pr_obs"),
        ("SELEC 1", r"the query failed"),
    ],
    ids=["unknown-table", "syntax"],
)
def test_a_bad_query_is_a_config_error(built: Any, query: str, message: str) -> None:
    from rearcquest.data.tables import run_sql

    with pytest.raises(ConfigError, match=message):
        run_sql(query, location=built.url("tables/"), s3=S3Access(client=built.client))


def test_sql_without_tables_says_how_to_build_them(tmp_path: Path) -> None:
    from rearcquest.data.tables import run_sql

    with pytest.raises(ConfigError, match=r"no tables at .* \(build them with rq tables\)"):
        run_sql("SELECT 1", location=str(tmp_path), s3=S3Access())


# -- the named queries -----------------------------------------------------------------------------


def test_named_query_rejects_an_unknown_name() -> None:
    from rearcquest.data.tables import named_query

    with pytest.raises(ConfigError, match="no query 'nope'; choose from population, best_year"):
        named_query("nope")


def test_analyze_auto_reads_the_text_when_the_tables_cannot_be_checked(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    mirror_release(store, "2024-06-06")
    put_population(store)
    build_tables(store)
    manifest = manifest_key("tables/", "pr")

    def deny(params: dict[str, Any], **_: Any) -> Any:
        # S3 answers 403 for the manifest, as a bucket policy that hides tables/ would.
        if str(params.get("url_path", "")).endswith("/" + manifest):
            denied = {"Code": "AccessDenied", "Message": "Access Denied"}
            return SimpleNamespace(status_code=403, headers={}), {
                "Error": denied,
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
        return None

    store.client.meta.events.register("before-call.s3.HeadObject", deny)
    store.client.meta.events.register("before-call.s3.GetObject", deny)
    with caplog.at_level(logging.WARNING, logger="rearcquest.data.tables"):
        analysis = analyze_at(
            ReportInputs(bls="s3://test-bucket/pr/pr.data.0.Current", reports=["best-year"]),
            s3=S3Access(client=store.client),
        )
    assert analysis.bls_source == "s3://test-bucket/pr/pr.data.0.Current"
    assert "cannot check the tables" in caplog.records[0].message
    assert "access denied" in caplog.records[0].message
    with pytest.raises(StorageError, match="access denied"):
        analyze_at(
            ReportInputs(
                source="tables", bls="s3://test-bucket/pr/pr.data.0.Current", reports=["best-year"]
            ),
            s3=S3Access(client=store.client),
        )


def test_each_table_goes_up_in_one_put_before_its_manifest(store: Any) -> None:
    mirror_zz(store)
    writes: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        from urllib.parse import unquote

        # Virtual-hosted style: the path is the key, percent-encoded.
        writes.append(unquote(str(params["url_path"])).lstrip("/"))

    store.client.meta.events.register("before-call.s3.PutObject", record)
    store.client.meta.events.register("before-call.s3.CreateMultipartUpload", record)
    build_tables(store, surveys=["zz"])
    part = observations_key("tables/", "zz", "zz.data.0.Current")
    manifest = manifest_key("tables/", "zz")
    assert writes.count(part) == 1
    assert writes.count(series_key("tables/", "zz")) == 1
    # Nothing else is written under the partition's folder (no temporary objects).
    assert [w for w in writes if w.startswith(part.rsplit("/", 1)[0])] == [part]
    # The manifest first says a build is under way, then records the part right after it.
    assert writes[0] == manifest
    assert writes[writes.index(part) + 1] == manifest
    assert writes[-1] == manifest


def test_a_build_killed_midway_or_failed_is_found_by_tables_need_build(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.data import tables
    from rearcquest.data.tables import tables_need_build

    mirror_zz(store)
    assert tables_need_build(store, "zz", tables_prefix="tables/") == "no tables yet"
    build_tables(store, surveys=["zz"])
    assert tables_need_build(store, "zz", tables_prefix="tables/") is None

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    # A changed data file whose build is killed: the manifest says so.
    mirror_zz(store, **{"zz.data.0.Current": ZZ["zz.data.0.Current"] + "ZZA1 \t2001\tM03\t1\t\r\n"})
    monkeypatch.setattr(tables, "_build_observations", killed)
    with pytest.raises(KeyboardInterrupt):
        build_tables(store, surveys=["zz"])
    assert tables_need_build(store, "zz", tables_prefix="tables/") == (
        "the last build did not finish"
    )
    monkeypatch.undo()
    # A malformed file fails its partition: recorded until a build succeeds.
    mirror_zz(store, **{"zz.data.0.Current": ZZ["zz.data.0.Current"] + "ZZA1\tyear?\r\n"})
    assert build_tables(store, surveys=["zz"]).failed
    assert tables_need_build(store, "zz", tables_prefix="tables/") == (
        "the last build failed: zz.data.0.Current"
    )
    mirror_zz(store)
    assert not build_tables(store, surveys=["zz"]).failed
    assert tables_need_build(store, "zz", tables_prefix="tables/") is None


def test_sql_reads_the_tables_in_place_without_a_local_copy(
    built: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    from rearcquest.data.tables import run_sql

    # Any temporary file would land here: the query must leave it empty.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    answer = run_sql(
        "SELECT COUNT(*) AS n FROM pr_observations WHERE file = 'pr.data.0.Current'",
        location=built.url("tables/"),
        s3=S3Access(client=built.client),
    )
    assert answer.item() == len(release("2026-08-06")["pr.data.0.Current"].data.splitlines()) - 1
    assert list(tmp_path.iterdir()) == []


def test_sql_over_seaweedfs_answers_a_join(seaweed_bucket: tuple[str, str]) -> None:
    from rearcquest.aws.storage import ObjectStore, make_s3_client
    from rearcquest.data.tables import run_sql

    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    mirror_release(store, "2026-08-06")
    put_population(store)
    build_tables(store, population_object=POPULATION)
    answer = run_sql(
        "SELECT o.year, o.value, p.population FROM pr_observations o "
        "JOIN population p ON o.year = p.year WHERE o.file = 'pr.data.0.Current' "
        "AND o.series_id = 'PRS30006032' AND o.period = 'Q01' AND o.year = 2018",
        location=f"s3://{bucket}/tables/",
        s3=S3Access(endpoint_url=endpoint),
    )
    assert answer.rows() == [(2018, Decimal("0.500"), 327167439)]


def test_sql_on_an_object_gone_since_the_listing_is_a_storage_error(
    built: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.data.tables import run_sql

    # A partition deleted between the listing and the read (a concurrent rebuild removing a
    # data file): the reader's 404 becomes a StorageError naming the location, exit code 1.
    listed = list(built.list_objects("tables/"))
    gone = observations_key("tables/", "pr", "pr.data.0.Current")
    built.delete(gone)
    # run_sql lists through a store of its own (the S3Access's), so the class is patched.
    monkeypatch.setattr(ObjectStore, "list_objects", lambda self, prefix="": iter(listed))
    with pytest.raises(StorageError, match=r"cannot read the tables at s3://sql-.*/tables/: .*"):
        run_sql(
            "SELECT COUNT(*) FROM pr_observations",
            location=built.url("tables/"),
            s3=S3Access(client=built.client),
        )


def test_tables_of_an_older_format_are_rebuilt_and_not_current_meanwhile(store: Any) -> None:
    from rearcquest.data.tables import current_partition, tables_need_build

    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    key = manifest_key("tables/", "zz")
    old = json.loads(store.get_bytes(key))
    old["format"] = 1  # value_text on every row, no decimals column
    store.put_bytes(key, json.dumps(old).encode())
    assert current_partition(store, "zz/zz.data.0.Current", tables_prefix="tables/") is None
    assert tables_need_build(store, "zz", tables_prefix="tables/") == (
        "the tables are of another format"
    )
    assert statuses(build_tables(store, surveys=["zz"])) == {
        observations_key("tables/", "zz", "zz.data.0.Current"): "built",
        series_key("tables/", "zz"): "built",
    }
    assert current_partition(store, "zz/zz.data.0.Current", tables_prefix="tables/")


# -- data file names that look like patterns (issue 19) --------------------------------------------

ODD_NAMES = (
    "zz.data.1.A[1]",
    "zz.data.2.*",
    "zz.data.3.a=b",
    "zz.data.4.%41",
    "zz.data.5.tab\there",
)
COUNT_BY_FILE = "SELECT file, count(*) AS n FROM zz_observations GROUP BY file ORDER BY file"


def odd_files() -> dict[str, str]:
    """The zz survey with data files named like globs, hive pairs and escapes: each holds the
    header and 1 to 3 rows of zz.data.0.Current."""
    lines = ZZ["zz.data.0.Current"].splitlines(keepends=True)
    files = {name: "".join(lines[: 2 + i % 3]) for i, name in enumerate(ODD_NAMES)}
    return {**ZZ, **files}


ODD_COUNTS = [
    ("zz.data.0.Current", 4),
    *sorted((name, 1 + i % 3) for i, name in enumerate(ODD_NAMES)),
]


def test_odd_data_file_names_keep_their_rows_and_names_in_s3(moto_server: str) -> None:
    import uuid

    from rearcquest.aws.storage import ObjectStore, make_s3_client
    from rearcquest.data.tables import run_sql

    store = ObjectStore(make_s3_client(endpoint_url=moto_server), f"odd-{uuid.uuid4().hex[:8]}")
    store.create_bucket()
    mirror(store, {n: t.encode() for n, t in odd_files().items()}, "zz/")
    result = build_tables(store, surveys=["zz"])
    assert not result.failed
    answer = run_sql(COUNT_BY_FILE, location=store.url("tables/"), s3=S3Access(client=store.client))
    # A tab is a control character: a key holding one is no file of the mirror (names from the
    # bucket are plain names), so it is neither built nor read, never mislabelled.
    assert answer.rows() == [row for row in ODD_COUNTS if "\t" not in row[0]]


def test_odd_data_file_names_keep_their_rows_and_names_locally(tmp_path: Path) -> None:
    from rearcquest.data.tables import build_local_tables, run_sql

    source = tmp_path / "zz"
    source.mkdir()
    for name, text in odd_files().items():
        (source / name).write_text(text)
    build_local_tables(source, "zz", tmp_path / "tables")
    answer = run_sql(COUNT_BY_FILE, location=str(tmp_path / "tables"), s3=S3Access())
    assert answer.rows() == ODD_COUNTS
    columns = run_sql(
        "SELECT * FROM zz_observations LIMIT 1", location=str(tmp_path / "tables"), s3=S3Access()
    )
    assert columns.columns[-1] == "file"


# -- trusting what is verified, never wedging (issue 19) -----------------------------------------


@pytest.fixture
def server_store(moto_server: str) -> Any:
    """A fresh bucket on moto's server, so ``rq sql`` (Polars' own S3 reader) reaches it."""
    import uuid

    from rearcquest.aws.storage import ObjectStore, make_s3_client

    store = ObjectStore(make_s3_client(endpoint_url=moto_server), f"t19-{uuid.uuid4().hex[:8]}")
    store.create_bucket()
    return store


@pytest.mark.parametrize(
    "metadata",
    [{}, {META_SHA256: "f" * 64}],
    ids=["no-metadata", "other-sha256"],
)
def test_a_partition_overwritten_under_a_current_manifest_is_not_used_and_is_rebuilt(
    store: Any, metadata: dict[str, str]
) -> None:
    from rearcquest.data.tables import current_partition

    mirror_release(store, "2025-06-05")
    put_population(store)
    build_tables(store)
    manifest = store.get_bytes(manifest_key("tables/", "pr"))
    current = observations_key("tables/", "pr", "pr.data.0.Current")
    # Other bytes under the current partition's key (a hostile writer, a half-finished build):
    # the AllData partition, whose rows differ; the manifest still says current.
    other = store.get_bytes(observations_key("tables/", "pr", "pr.data.1.AllData"))
    store.put_bytes(current, other, metadata=metadata)
    store.put_bytes(series_key("tables/", "pr"), b"not parquet", metadata=metadata)
    assert store.get_bytes(manifest_key("tables/", "pr")) == manifest
    assert current_partition(store, "pr/pr.data.0.Current", tables_prefix="tables/") is None
    assert analyze_from(store, "auto").bls_source == "s3://test-bucket/pr/pr.data.0.Current"
    with pytest.raises(ConfigError, match="no current table"):
        analyze_from(store, "tables")
    again = build_tables(store)
    assert statuses(again)[current] == "built"
    assert statuses(again)[series_key("tables/", "pr")] == "built"
    assert statuses(again)[observations_key("tables/", "pr", "pr.data.1.AllData")] == "unchanged"
    assert analyze_from(store, "auto").bls_source == "s3://test-bucket/" + current


def _kill_between_upload_and_manifest(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the manifest write that would record ``name``'s new partition be killed."""
    from rearcquest.data import tables

    write = tables._write_manifest

    def killed(store: Any, key: str, doc: Any) -> None:
        if name in doc.get("files", {}):
            raise KeyboardInterrupt
        write(store, key, doc)

    monkeypatch.setattr(tables, "_write_manifest", killed)


ORPHAN_CASES = ["force", "new-format", "unreadable-manifest", "killed-before-manifest"]


@pytest.mark.parametrize("case", ORPHAN_CASES, ids=ORPHAN_CASES)
def test_an_orphan_partition_is_removed_whatever_the_manifest_says(
    server_store: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from rearcquest.data.tables import run_sql

    store = server_store
    extra = observations_key("tables/", "zz", "zz.data.1.Extra")
    mkey = manifest_key("tables/", "zz")
    if case == "killed-before-manifest":
        mirror_zz(store)
        build_tables(store, surveys=["zz"])
        mirror_zz(store, **{"zz.data.1.Extra": ZZ["zz.data.0.Current"]})
        _kill_between_upload_and_manifest(monkeypatch, "zz.data.1.Extra")
        with pytest.raises(KeyboardInterrupt):
            build_tables(store, surveys=["zz"])
        monkeypatch.undo()
        assert "zz.data.1.Extra" not in json.loads(store.get_bytes(mkey))["files"]
    else:
        mirror_zz(store, **{"zz.data.1.Extra": ZZ["zz.data.0.Current"]})
        build_tables(store, surveys=["zz"])
    assert store.head(extra) is not None
    # The data file leaves the mirror; its partition is an orphan.
    store.delete_many(["zz/zz.data.1.Extra"])
    force = case == "force"
    if case == "new-format":
        doc = json.loads(store.get_bytes(mkey))
        store.put_bytes(mkey, json.dumps({**doc, "format": 99, "files": {}}).encode())
    elif case == "unreadable-manifest":
        store.put_bytes(mkey, b"\x00not a manifest")
    result = build_tables(store, surveys=["zz"], force=force)
    assert statuses(result)[extra] == "removed"
    assert store.head(extra) is None
    assert result.failed == []
    files = run_sql(
        "SELECT DISTINCT file FROM zz_observations",
        location=store.url("tables/"),
        s3=S3Access(client=store.client),
    )
    assert files["file"].to_list() == ["zz.data.0.Current"]


def _random_json(rng: Any, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(10**6), 10**6)
    if kind == "float":
        return rng.uniform(-1e9, 1e9)
    if kind == "str":
        return rng.choice(["", "zz.data.0.Current", "a" * rng.randint(0, 300), "\u00e9\x00"])
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["format", "files", "series", "complete", "failed", "sha256", "rows", "inputs",
            "warnings", "zz.data.0.Current", "zz.series", "key", "source"]  # fmt: skip
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _mutated_manifest(rng: Any, good: dict[str, Any]) -> bytes:
    """A manifest an attacker, a disk or a future rq could have left: bytes or shapes."""
    choice = rng.randrange(6)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if choice == 1:
        return json.dumps(_random_json(rng)).encode()
    if choice == 2:
        return b"[" * rng.randint(1, 100_000)  # nested past Python's recursion limit
    doc = json.loads(json.dumps(good))
    # Replace one value somewhere in the real document's shape.
    target = doc
    path = rng.choice(
        [("format",), ("files",), ("series",), ("failed",), ("complete",),
         ("files", "zz.data.0.Current"), ("files", "zz.data.0.Current", "sha256"),
         ("files", "zz.data.0.Current", "rows"), ("series", "inputs"),
         ("series", "inputs", "zz.series"), ("series", "warnings"), ("series", "rows")]
    )  # fmt: skip
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = _random_json(rng)
    return json.dumps(doc).encode()


def test_a_manifest_of_any_bytes_or_shape_is_rebuilt_with_one_warning(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    from rearcquest.data.tables import _read_manifest, current_partition, tables_need_build
    from rearcquest.errors import RqError

    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    mkey = manifest_key("tables/", "zz")
    good = json.loads(store.get_bytes(mkey))
    rng = random.Random(19)
    # Each shape check whose absence this loop can see (a TypeError or AttributeError on a
    # bad shape) fails it by case 34; 200 cases (20 whole builds) keep a wide margin.
    for case in range(200):
        body = _mutated_manifest(rng, good)
        store.put_bytes(mkey, body)
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger="rearcquest.data.tables"):
                doc = _read_manifest(store, mkey)
                current_partition(store, "zz/zz.data.0.Current", tables_prefix="tables/")
                tables_need_build(store, "zz", tables_prefix="tables/")
                if case % 10 == 0:  # a whole build on every tenth: it runs and mends the manifest
                    caplog.clear()
                    result = build_tables(store, surveys=["zz"])
                    assert result.failed == [], (case, body[:200])
                    assert tables_need_build(store, "zz", tables_prefix="tables/") is None
        except RqError:
            raise AssertionError(f"case {case}: {body[:200]!r}") from None
        if doc == {} and case % 10 == 0:
            warned = [r for r in caplog.records if "is not a manifest rq wrote" in r.message]
            assert len(warned) == 1, (case, body[:200])
    # Too large to be a manifest: one warning, rebuilt.
    store.put_bytes(mkey, b" " * (8 * 1024 * 1024 + 1))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rearcquest.data.tables"):
        result = build_tables(store, surveys=["zz"])
    assert result.failed == []
    assert [r.message for r in caplog.records if "larger than" in r.message] == [
        f"s3://test-bucket/{mkey} is not a manifest rq wrote (larger than 8388608 bytes): "
        "its tables are rebuilt"
    ]


def test_a_huge_cell_makes_a_short_error_and_a_small_manifest(store: Any) -> None:
    huge = "9" * 3_000_000
    bad = ZZ["zz.data.0.Current"] + f"ZZA1\t2001\tM03\t{huge}\t\r\n"
    mirror_zz(store, **{"zz.data.0.Current": bad})
    result = build_tables(store, surveys=["zz"])
    (failed,) = result.failed
    assert failed.error is not None
    assert "line 6: value '99999999" in failed.error
    assert "... (3000000 characters)" in failed.error
    assert len(failed.error) < 400
    assert len(store.get_bytes(manifest_key("tables/", "zz"))) < 10_000
    # Mended, the next build (forced or not) goes through.
    mirror_zz(store)
    assert build_tables(store, surveys=["zz"], force=True).failed == []


HEADER_CASES = [
    (
        "zz.series",
        "series_id\tarea_code\t series_id \r\nZZA1\tA1\tZZA1\r\n",
        r"zz/zz\.series line 1: column 'series_id' appears twice",
    ),
    (
        "zz.area",
        "area_code\tarea_name\tarea_name \r\nA1\tNorth\tN\r\n",
        r"zz/zz\.area line 1: column 'area_name' appears twice",
    ),
    (
        "zz.series",
        ZZ["zz.series"].replace("begin_year", "title"),
        r"zz/zz\.series line 1: a column is named title",
    ),
    (
        "zz.series",
        ZZ["zz.series"].replace("\r\n", "\r"),
        r"zz/zz\.series: its lines end in a bare carriage return",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    HEADER_CASES,
    ids=["series-duplicate", "mapping-duplicate", "series-title", "series-cr-only"],
)
def test_a_bad_header_fails_the_series_table_naming_the_file(
    store: Any, caplog: pytest.LogCaptureFixture, name: str, text: str, message: str
) -> None:
    mirror_zz(store, **{name: text})
    result = build_tables(store, surveys=["zz"])
    (failed,) = result.failed
    assert failed.key == series_key("tables/", "zz")
    assert failed.error is not None
    assert re.match(r"s3://test-bucket/" + message, failed.error), failed.error
    assert store.head(observations_key("tables/", "zz", "zz.data.0.Current")) is not None


def test_a_data_file_with_bare_carriage_returns_fails_naming_the_file(store: Any) -> None:
    cr_only = ZZ["zz.data.0.Current"].replace("\r\n", "\r")
    mirror_zz(store, **{"zz.data.0.Current": cr_only})
    (failed,) = build_tables(store, surveys=["zz"]).failed
    assert failed.error == (
        "s3://test-bucket/zz/zz.data.0.Current line 1: its lines end in a bare carriage return "
        "(old Mac text); BLS files end them in LF or CRLF"
    )


def test_a_mapping_text_column_named_title_is_renamed() -> None:
    series = read_tsv(ZZ["zz.series"].encode(), source="zz.series")
    area = read_tsv(b"area_code\ttitle\r\nA1\tNorth\r\n", source="zz.area")
    decoded, _ = decode_series(series, {"zz.area": area})
    assert decoded.columns[:3] == ["series_id", "area_code", "area_title"]
    assert decoded["title"].to_list()[0] == "North"


def test_a_duplicated_header_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"^x\.series line 1: column 'a' appears twice"):
        read_tsv(b"a\t a\nb\tc\n", source="x.series")


def test_reports_come_out_without_titles_when_they_cannot_be_decoded(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mirror_release(store, "2025-06-05")
    put_population(store)
    build_tables(store)
    # The series file and its table are both broken: the reports stand, without titles.
    series = release("2025-06-05")["pr.series"].data.decode()
    put_file(store, "pr/pr.series", series.replace("series_id", "title", 1).encode())
    store.put_bytes(series_key("tables/", "pr"), b"PAR1 broken")
    with caplog.at_level(logging.WARNING, logger="rearcquest.data.tables"):
        files = analyze_from(store, "files")
        tables = analyze_from(store, "tables")
    assert files.titles == {} and tables.titles == {}
    assert files.best_year.height > 100
    assert tables.best_year.equals(files.best_year)
    assert sum("no series titles" in r.message for r in caplog.records) == 2


def test_one_surveys_failure_of_any_kind_never_stops_the_others(
    store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mirror_release(store, "2024-06-06")
    mirror_zz(store)
    put_population(store)
    break_survey_build(monkeypatch, "pr", RuntimeError("boom"))
    with caplog.at_level(logging.ERROR, logger="rearcquest.data.tables"):
        result = build_tables(store, surveys=["pr", "zz"], population_object=POPULATION)
    (failed,) = result.failed
    assert (failed.survey, failed.table) == ("pr", "*")
    assert failed.error == "unexpected error (RuntimeError: boom); please report it"
    assert caplog.records[0].exc_info is not None  # logged with its traceback
    assert statuses(result)[series_key("tables/", "zz")] == "built"
    assert statuses(result)[population_key("tables/")] == "built"
    with pytest.raises(DataError, match=r"1 table\(s\) not built: .*RuntimeError: boom"):
        result.raise_for_errors()
    break_survey_build(
        monkeypatch, "zz", StorageError("cannot list s3://test-bucket/zz/: access denied")
    )
    result = build_tables(store, surveys=["pr", "zz"])
    assert [(b.survey, b.error) for b in result.failed] == [
        ("zz", "cannot list s3://test-bucket/zz/: access denied")
    ]
    assert statuses(result)[series_key("tables/", "pr")] == "built"


def test_random_headers_decode_or_fail_with_a_data_error() -> None:
    import random

    rng = random.Random(1919)
    names = ["series_id", " series_id", "title", "area_code", "area_name", "item", "Item_code",
             "Item_text", "x", "", "title ", "area_title"]  # fmt: skip
    endings = ["\n", "\r\n", "\r"]

    def text(columns: list[str], rows: int) -> bytes:
        end = rng.choice(endings)
        lines = ["\t".join(columns)] + [
            "\t".join(rng.choice(["A1", "X", "", "B2"]) for _ in columns) for _ in range(rows)
        ]
        return (end.join(lines) + end).encode()

    for case in range(500):
        series_columns = ["series_id", *rng.sample(names, rng.randint(0, 4))]
        mapping_columns = rng.sample(names, rng.randint(1, 4))
        try:
            series = read_tsv(text(series_columns, 3), source="zz.series")
            mapping = read_tsv(text(mapping_columns, 2), source="zz.area")
            decoded, _ = decode_series(series, {"zz.area": mapping})
        except DataError:
            continue
        except Exception as exc:
            raise AssertionError(f"case {case}: {series_columns} {mapping_columns}") from exc
        assert decoded.columns[-1] == "title"
        assert len(set(decoded.columns)) == len(decoded.columns)


# -- names from storage are data, never paths (issue 19) --


def test_a_mirror_key_that_is_no_file_name_is_no_data_file(store: Any) -> None:
    mirror_zz(store)
    # Keys are data: a key whose name is longer than any file name is no file of the mirror, so
    # it never becomes part of a table's key.
    long = "zz.data.9." + "x" * 300
    store.put_bytes(f"zz/{long}", store.get_bytes("zz/zz.data.0.Current"))
    result = build_tables(store, surveys=["zz"])
    assert result.failed == []
    assert observations_key("tables/", "zz", long) not in statuses(result)
    assert observations_key("tables/", "zz", "zz.data.0.Current") in statuses(result)


def test_a_bucket_folder_that_is_no_name_is_no_survey(store: Any) -> None:
    mirror_zz(store)
    # Keys are data: a '..' folder holding '...series' (its ".series") is not a survey.
    store.put_bytes("../...series", b"series_id\r\n")
    store.put_bytes("a\x1bb/a\x1bb.series", b"series_id\r\n")
    assert find_surveys(store) == ["zz"]


@pytest.mark.parametrize(
    "bad", ["../../x", "..", "a\x00b", "x" * 300], ids=["dot-dot", "parent", "nul", "long"]
)
def test_a_manifest_naming_a_path_never_reaches_a_key(store: Any, bad: str) -> None:
    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    mkey = manifest_key("tables/", "zz")
    doc = json.loads(store.get_bytes(mkey))
    doc["files"][bad] = {"sha256": "a" * 64, "rows": 1}
    store.put_bytes(mkey, json.dumps(doc).encode())
    target = observations_key("tables/", "zz", bad)
    # An object at the key the bad name would make (but NUL, which S3 listings cannot carry).
    other = "\x00" not in bad
    if other:
        store.put_bytes(target, b"someone else's object")
    result = build_tables(store, surveys=["zz"])
    assert result.failed == []
    assert target not in statuses(result)
    if other:  # neither removed for the manifest's name nor as an orphan of the listing
        assert store.get_bytes(target) == b"someone else's object"
    assert bad not in json.loads(store.get_bytes(mkey))["files"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"series_id\tarea_code\nZZA1\tA1\nZZB2\tB2\textra\tfields\n", "cannot be read"),
        (b"series_id\tarea_code\nZZA1\tA1\n" * 1000 + b"ZZ\xff\xfe\tA1\n", "cannot be read"),
        (b"area_code\titem\nA1\tX\n", "line 1: no series_id column"),
    ],
    ids=["too-many-fields", "not-utf8-late", "no-series-id"],
)
def test_malformed_series_file_fails_its_table_naming_it(
    store: Any, tmp_path: Path, body: bytes, reason: str
) -> None:
    """The series file is decoded as it streams into Parquet: a line that cannot be read, found
    only then, still fails the series table with a DataError naming the file (S3 and local)."""
    mirror_zz(store)
    store.put_bytes("zz/zz.series", body)  # after the mirror: the bytes themselves
    result = build_tables(store, surveys=["zz"])
    (failed,) = result.failed
    assert failed.table == "series"
    assert failed.error.startswith(
        f"s3://test-bucket/zz/zz.series{':' if 'line' not in reason else ''}"
    )
    assert reason in failed.error
    assert not store.head("tables/zz/series/series.parquet")
    (tmp_path / "zz.series").write_bytes(body)
    with pytest.raises(DataError, match=reason):
        build_local_tables(tmp_path, "zz", tmp_path / "tables")


# -- builds from a stream of the mirrored object ---------------------------------------------------


@contextmanager
def capped_files(limit: int) -> Iterator[None]:
    """No file this process writes may grow past ``limit`` bytes (RLIMIT_FSIZE; a write past it
    fails with EFBIG): what a ``/tmp`` smaller than the data file does to a copy of it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_tables_of_a_file_larger_than_the_temporary_disk_build_with_the_disk_capped(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = release("2026-08-06")
    mirror_release(store, "2026-08-06")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("TMPDIR", str(temporary))
    cap = 256 * 1024
    assert len(files["pr.data.1.AllData"].data) > 10 * cap
    with capped_files(cap):
        result = build_tables(store, surveys=["pr"])
    assert result.failed == []
    assert sorted(statuses(result).values()) == ["built"] * 3
    assert list(temporary.iterdir()) == []  # nothing was written there, not even for a moment
    for name in ("pr.data.0.Current", "pr.data.1.AllData"):
        local = tmp_path / name
        local.write_bytes(files[name].data)
        built = parquet(store, observations_key("tables/", "pr", name))
        assert built.equals(observations_query(local).collect()), name
    assert parquet(store, series_key("tables/", "pr")).height == 282


def few_pieces(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Make a build read its data file in pieces of about ``size`` bytes, in small reads."""
    from rearcquest.data import tables

    monkeypatch.setattr(tables, "_PIECE_BYTES", size)
    monkeypatch.setattr(tables, "_READ_BYTES", 97)


@pytest.mark.parametrize("size", [1, 300, 4096, 10**9], ids=["line", "300B", "4KB", "whole"])
def test_a_file_built_in_pieces_holds_every_row_the_whole_file_gives(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    text = release("2025-09-04")["pr.data.0.Current"].data[:40_000]
    text = text[: text.rfind(b"\n") + 1] + ZZ["zz.data.0.Current"].split("\r\n", 1)[1].encode()
    text += b"PRS30006011\t2001\tQ01\t  7.0\t"  # a last line without its line end
    mirror(
        store,
        {"pr.data.0.Current": text, "pr.series": release("2025-09-04")["pr.series"].data},
        "pr/",
    )
    few_pieces(monkeypatch, size)
    result = build_tables(store, surveys=["pr"])
    assert result.failed == []
    local = tmp_path / "pr.data.0.Current"
    local.write_bytes(text)
    expected = observations_query(local).collect()
    built = parquet(store, observations_key("tables/", "pr", "pr.data.0.Current"))
    assert built.schema == expected.schema
    assert built.equals(expected)
    (entry,) = [b for b in result.builds if b.table == "observations"]
    assert entry.rows == expected.height
    assert built.filter(pl.col("value").is_null())["value_text"].to_list() == ["-", "(NA)"]


DEEP_BAD_ROWS = [
    ("ZZA1\t2001\tM01\t1.2345\t", "line 803: value '1.2345' is not a decimal number"),
    ("ZZA1\tyear\tM01\t1.5\t", "line 803: year 'year' is not a four-digit year"),
    ("ZZA1\t2001\tM01\t1.5\t\tx\ty", "line 803: 7 fields, the header has 5"),
    ("ZZA1\t2001\tM01\t\xff\t", "line 803: not UTF-8 text"),
]


@pytest.mark.parametrize(
    ("line", "message"),
    DEEP_BAD_ROWS,
    ids=["too-precise", "bad-year", "too-many-fields", "not-utf8"],
)
def test_a_malformed_row_in_a_later_piece_names_its_line_in_the_file(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, message: str
) -> None:
    header = "series_id   \tyear\tperiod\t     value\tfootnote_codes\r\n"
    good = "".join(
        f"ZZA1        \t{2000 + n % 20}\tM{1 + n % 12:02}\t{n}.5\t\r\n" for n in range(400)
    )
    body = (header + good + "\r\n" + good + line + "\r\n" + good).encode("latin-1")
    mirror_zz(store)
    mirror(store, {"zz.data.1.Big": body}, "zz/")
    few_pieces(monkeypatch, 1000)
    result = build_tables(store, surveys=["zz"])
    (failed,) = result.failed
    assert failed.error is not None
    assert failed.error.startswith("s3://test-bucket/zz/zz.data.1.Big " + message)
    assert store.head(failed.key) is None
    assert store.client.list_multipart_uploads(Bucket="test-bucket").get("Uploads", []) == []
    # The same line as the build of the whole file names.
    local = tmp_path / "zz.data.1.Big"
    local.write_bytes(body)
    with pytest.raises(DataError, match=re.escape(f"{local} {message}")):
        sink_parquet(observations_query(local), tmp_path / "out.parquet", bls=local)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "line 1: no header"),
        (b"series_id\tyear\tperiod\r\n", "line 1: missing column value"),
        (b"\r\n\r\n", "line 1: no header"),
    ],
    ids=["empty", "no-value-column", "blank"],
)
def test_a_data_file_without_its_header_fails_as_before(
    store: Any, monkeypatch: pytest.MonkeyPatch, body: bytes, message: str
) -> None:
    mirror_zz(store)
    mirror(store, {"zz.data.1.Odd": body}, "zz/")
    few_pieces(monkeypatch, 10)
    (failed,) = build_tables(store, surveys=["zz"]).failed
    assert failed.error is not None
    assert failed.error.startswith("s3://test-bucket/zz/zz.data.1.Odd " + message)


def test_a_header_only_file_is_an_empty_partition_with_the_full_schema(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror_zz(store)
    mirror(store, {"zz.data.1.Empty": b"series_id\tyear\tperiod\tvalue\r\n"}, "zz/")
    few_pieces(monkeypatch, 10)
    result = build_tables(store, surveys=["zz"])
    assert result.failed == []
    built = parquet(store, observations_key("tables/", "zz", "zz.data.1.Empty"))
    assert built.height == 0
    assert built.columns == [
        "series_id",
        "year",
        "period",
        "value",
        "decimals",
        "value_text",
        "footnote_codes",
    ]


@pytest.mark.parametrize("refused", ["PutObject", "UploadPart"], ids=["one-put", "a-part"])
def test_a_failed_upload_of_a_streamed_partition_leaves_no_upload_and_names_s3(
    store: Any, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    from rearcquest.aws import storage

    if refused == "UploadPart":
        # Parts of 16 KiB: the partition goes up in parts while Polars is still writing it.
        monkeypatch.setattr(storage, "PART_SIZE", 16 * 1024)
    mirror_release(store, "2026-08-06")

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if "part-0.parquet" in str(params["url_path"]):
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"}}, refused
            )

    store.client.meta.events.register(f"before-call.s3.{refused}", refuse)
    with capped_files(256 * 1024):  # and on the way to failing, nothing goes to disk
        result = build_tables(store, surveys=["pr"])
    errors = {b.key: b.error or "" for b in result.failed}
    key = observations_key("tables/", "pr", "pr.data.0.Current")
    assert errors[key].startswith(f"cannot write s3://test-bucket/{key}: access denied")
    assert store.head(key) is None
    assert store.client.list_multipart_uploads(Bucket="test-bucket").get("Uploads", []) == []


# -- one build per table: the fan-out's scopes -----------------------------------------------------


def test_a_scoped_build_owns_its_tables_and_keeps_the_others_entries_and_failures(
    store: Any,
) -> None:
    bad = ZZ["zz.data.0.Current"] + "ZZA1\t2001\tM03\tx\t\r\n"
    mirror_zz(store, **{"zz.data.1.Big": bad})
    big = TableScope(only="zz.data.1.Big")
    rest = TableScope(leave=frozenset({"zz.data.1.Big"}))
    survey = build_tables(store, surveys=["zz"], scope=rest)
    assert sorted(b.key.split("/")[-2] for b in survey.builds if b.table == "observations") == [
        "file=zz.data.0.Current"
    ]
    assert tables_need_build(store, "zz", tables_prefix="tables/", scope=rest) is None
    # The file's own build: its partition alone; it fails, and its failure is recorded.
    (failed,) = build_tables(store, surveys=["zz"], scope=big).builds
    assert (failed.key, failed.status) == (
        observations_key("tables/", "zz", "zz.data.1.Big"),
        "failed",
    )
    manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
    assert sorted(manifest["files"]) == ["zz.data.0.Current"]
    assert manifest["series"]["rows"] == 3
    assert sorted(manifest["failed"]) == ["zz.data.1.Big"]
    # The failure is the file's message's to retry, not the survey message's.
    assert tables_need_build(store, "zz", tables_prefix="tables/", scope=rest) is None
    assert tables_need_build(store, "zz", tables_prefix="tables/", scope=big) == (
        "the last build failed: zz.data.1.Big"
    )
    assert tables_need_build(store, "zz", tables_prefix="tables/") == (
        "the last build failed: zz.data.1.Big"
    )
    again = build_tables(store, surveys=["zz"], scope=rest)
    assert {b.status for b in again.builds} == {"unchanged"}
    manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
    assert sorted(manifest["failed"]) == ["zz.data.1.Big"]
    # Fixed at the source: the file's message builds it and the survey's tables are complete.
    mirror_zz(store, **{"zz.data.1.Big": ZZ["zz.data.0.Current"]})
    (built,) = build_tables(store, surveys=["zz"], scope=big).builds
    assert built.status == "built"
    manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
    assert (manifest["failed"], manifest["complete"]) == ({}, True)
    assert sorted(manifest["files"]) == ["zz.data.0.Current", "zz.data.1.Big"]


def _random_bls_text(rng: Any) -> tuple[bytes, bool]:
    """A small BLS-like data file: padded cells, LF or CRLF, blank lines, non-numbers, maybe
    one malformed line and maybe no final line end; and whether it holds a malformed line."""
    end = rng.choice(["\n", "\r\n"])
    lines = ["series_id   \tyear\tperiod\t     value\tfootnote_codes"]
    bad = False
    for _ in range(rng.randrange(0, 60)):
        kind = rng.random()
        if kind < 0.05:
            lines.append("")
        elif kind < 0.08 and not bad:
            bad = True
            lines.append(
                rng.choice(["ZZA1\t2001\tM01\t1.2345\t", "ZZA1\tyr\tM01\t1\t", "a\tb\tc\td\te\tf"])
            )
        else:
            value = rng.choice(
                ["-", "(NA)", f"{rng.randrange(-999, 999)}.{rng.randrange(0, 99)}", "7"]
            )
            lines.append(
                f"ZZ{rng.randrange(9)}   \t{rng.randrange(1990, 2030)}\tM{rng.randrange(1, 13):02}\t{value:>10}\t{rng.choice(['', 'P'])}"
            )
    text = end.join(lines) + (end if rng.random() < 0.8 else "")
    return text.encode(), bad


def _outcome(read: Any) -> tuple[Any, str | None]:
    """What ``read()`` gives: its frame, or the message of its DataError."""
    try:
        return read(), None
    except DataError as exc:
        return None, str(exc)


def test_fuzz_a_file_in_pieces_of_any_size_reads_as_the_whole_file(tmp_path: Path) -> None:
    import random

    from rearcquest.data import tables
    from rearcquest.data.analytics import collect

    rng = random.Random(2121)
    for case in range(150):
        text, bad = _random_bls_text(rng)
        local = tmp_path / f"case{case}"
        local.write_bytes(text)
        size = rng.choice([1, 7, 50, 200, 10**6])
        cut = rng.randrange(1, 64)
        chunks = [text[i : i + cut] for i in range(0, len(text), cut)]
        counted: list[int] = []
        whole, whole_error = _outcome(
            lambda local=local: collect(
                observations_query(local, source="f"), bls=local, source="f"
            )[0]
        )

        def pieces(chunks: list[bytes] = chunks, counted: list[int] = counted) -> Any:
            schema, frames = tables._observation_frames(chunks, "f", counted)
            return pl.concat([pl.DataFrame(schema=schema), *frames], how="vertical")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tables, "_PIECE_BYTES", size)
            got, error = _outcome(pieces)
        # The same rows, or the same error naming the same line of the file.
        assert error == whole_error, case
        assert (error is not None) == bad, case
        if whole is not None:
            assert got.equals(whole), case
            assert sum(counted) == whole.height, case
