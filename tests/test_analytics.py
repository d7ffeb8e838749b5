"""The reports on the real BLS and DataUSA files, and on constructed edge cases."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest

from conftest import BLS_RELEASES, DATA, DATAUSA, load_script
from rearcquest.aws.storage import S3Access
from rearcquest.config import Settings
from rearcquest.data.analytics import (
    Analysis,
    MalformedRowError,
    ReportInputs,
    analyze,
    best_year,
    bls_value,
    collect,
    default_locations,
    population_stats,
    read_population,
    scan_bls,
    series_population,
    to_json_doc,
)
from rearcquest.data.analytics import _bls_reports as _bls_reports
from rearcquest.data.vintages import analyze_at
from rearcquest.errors import ConfigError, DataError, StorageError
from rearcquest.output import render

REPO = Path(__file__).resolve().parents[1]
LATEST = BLS_RELEASES / "2026-08-06" / "pr.data.0.Current"
VINTAGES = DATA / "bls" / "pr.data.0.Current"
ALL_BLS_FILES = sorted(BLS_RELEASES.glob("*/pr.data.0.Current")) + sorted(VINTAGES.iterdir())
ACS5 = DATAUSA / "old-api-acs5-2013-2022-compact.json"
ACS1 = DATAUSA / "tesseract-acs1-2013-2023-raw.json"
HEADER = "series_id        \tyear\tperiod\t       value\tfootnote_codes"


def bls_file(tmp_path: Path, rows: list[str], *, header: str = HEADER, eol: str = "\r\n") -> Path:
    """Write a BLS-format file; each row is ``series year period value [footnote]``."""
    lines = [header]
    for row in rows:
        cells = row.split()
        if len(cells) == 4:
            cells.append("")
        series, year, period, value, note = cells
        lines.append(f"{series:<17}\t{year}\t{period}\t{value:>12}\t{note}")
    path = tmp_path / "pr.data.0.Current"
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


def oracle_best_year(path: Path, *, include_annual: bool) -> list[tuple[str, int, Decimal]]:
    """An independent best-year: the csv module and Python decimals, no Polars."""
    periods = {"Q01", "Q02", "Q03", "Q04"} | ({"Q05"} if include_annual else set())
    sums: dict[tuple[str, int], Decimal] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        for series, year, period, value, *_ in reader:
            if period.strip() in periods:
                key = (series.strip(), int(year))
                sums[key] = sums.get(key, Decimal(0)) + Decimal(value.strip())
    best: dict[str, tuple[int, Decimal]] = {}
    for (series, year), total in sorted(sums.items()):
        if series not in best or total > best[series][1]:
            best[series] = (year, total)
    return [(s, y, v) for s, (y, v) in sorted(best.items())]


# -- the figures from the real files -------------------------------------------------------------


def test_population_acs5_matches_the_seed_published_figures(shared_data: Path) -> None:
    stats = population_stats(read_population(ACS5), from_year=2013, to_year=2018)
    assert stats.years == (2013, 2014, 2015, 2016, 2017, 2018)
    assert stats.missing_years == ()
    assert stats.mean == 317437383.0
    assert stats.std == pytest.approx(4257089.54, abs=0.005)
    assert round(stats.std or 0) == 4257090  # printed as 4257090.0 by the seed


@pytest.mark.parametrize(
    "name",
    ["tesseract-acs1-2013-2023-raw.json", *(f"tesseract-acs1-resaved-{c}.json" for c in "abcd")],
)
def test_population_acs1_tesseract_figures(shared_data: Path, name: str) -> None:
    stats = population_stats(read_population(DATAUSA / name))
    assert stats.mean == 322069808.0
    assert stats.std == pytest.approx(4158441.04, abs=0.005)


@pytest.mark.parametrize(
    "name",
    [
        "old-api-acs5-2013-2022-compact.json",
        "old-api-acs5-2013-2022-indent4.json",
        "old-api-acs5-2013-2023-indent2.json",
    ],
)
def test_both_population_shapes_read_to_the_same_frame_shape(shared_data: Path, name: str) -> None:
    legacy = read_population(DATAUSA / name)
    tesseract = read_population(ACS1)
    # Tesseract writes populations as floats, the old API as integers: both read as integers.
    assert legacy.schema == tesseract.schema == {"year": pl.Int32, "population": pl.Int64}
    assert legacy["year"].is_sorted()
    assert legacy.filter(pl.col("year") == 2013)["population"].item() == 311536594
    assert tesseract.filter(pl.col("year") == 2013)["population"].item() == 316128839


def test_population_missing_year_is_reported(shared_data: Path) -> None:
    stats = population_stats(read_population(ACS1), from_year=2018, to_year=2022)
    assert stats.years == (2018, 2019, 2021, 2022)
    assert stats.missing_years == (2020,)
    assert stats.mean == pytest.approx((327167439 + 328239523 + 331893745 + 333287562) / 4)


def test_population_single_year_has_no_std_and_empty_range_is_an_error(shared_data: Path) -> None:
    frame = read_population(ACS1)
    single = population_stats(frame, from_year=2020, to_year=2021)
    assert single.years == (2021,)
    assert single.std is None
    with pytest.raises(DataError, match=r"no year from 1990 to 1999 \(it has 2013-2023\)"):
        population_stats(frame, from_year=1990, to_year=1999)
    with pytest.raises(ConfigError, match="after"):
        population_stats(frame, from_year=2019, to_year=2018)


def test_the_state_answer_is_refused(shared_data: Path) -> None:
    with pytest.raises(DataError, match="not national population"):
        read_population(DATAUSA / "tesseract-acs5-state-by-year-raw.json")


@pytest.mark.parametrize("path", ALL_BLS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_best_year_row_counts_on_every_real_release(shared_data: Path, path: Path) -> None:
    rows = scan_bls(path)
    quarters, with_annual, everything = collect(
        best_year(rows), best_year(rows, include_annual=True), rows
    )
    # 282 series; 45 of them have annual (Q05) rows only.
    assert with_annual.height == 282
    assert quarters.height == 237
    assert everything["series_id"].n_unique() == 282
    assert everything.schema["value"] == pl.Decimal(18, 3)
    assert everything.schema["year"] == pl.Int32


@pytest.mark.parametrize("include_annual", [False, True], ids=["quarters", "with-annual"])
def test_best_year_equals_an_independent_decimal_computation(
    shared_data: Path, include_annual: bool
) -> None:
    (got,) = collect(best_year(scan_bls(LATEST), include_annual=include_annual))
    assert got.rows() == oracle_best_year(LATEST, include_annual=include_annual)


def test_crlf_and_lf_files_give_the_same_frame(shared_data: Path) -> None:
    crlf, lf = collect(scan_bls(VINTAGES / "2025-03-crlf"), scan_bls(VINTAGES / "2025-03-lf"))
    assert b"\r\n" in (VINTAGES / "2025-03-crlf").read_bytes()[:200]
    assert crlf.equals(lf)
    assert crlf["series_id"].str.contains(" ").sum() == 0
    assert crlf["footnote_codes"].drop_nulls().unique().to_list() == ["R"]


def test_series_population_on_real_files(shared_data: Path) -> None:
    rows, population = scan_bls(LATEST), read_population(ACS1)
    inner, every = collect(
        series_population(rows, population),
        series_population(rows, population, all_years=True),
    )
    assert inner["year"].to_list() == [*range(2013, 2020), *range(2021, 2024)]
    assert inner.columns == ["series_id", "year", "period", "value", "population"]
    assert set(inner["period"]) == {"Q01"}
    assert inner.filter(pl.col("year") == 2013).row(0) == (
        "PRS30006032",
        2013,
        "Q01",
        Decimal("0.5"),
        316128839,
    )
    assert every.height == 32  # 1995-2026
    assert every.filter(pl.col("year") == 2020)["population"].item() is None
    assert every["population"].null_count() == every.height - inner.height


# -- constructed cases ---------------------------------------------------------------------------


def test_sums_are_exact_decimals(tmp_path: Path) -> None:
    quarters = ["7.1", "7.1", "7.1", "7.2"]
    assert sum(float(v) for v in quarters) != 28.5  # the float sum is noisy
    path = bls_file(
        tmp_path,
        [f"PRS1 2020 Q0{i} {v}" for i, v in enumerate(quarters, 1)]
        + ["PRS2 2020 Q01 0.1", "PRS2 2020 Q02 0.2", "PRS2 2021 Q01 0.3"],
    )
    (got,) = collect(best_year(scan_bls(path)))
    assert got.rows() == [("PRS1", 2020, Decimal("28.5")), ("PRS2", 2020, Decimal("0.3"))]
    analysis = Analysis(reports=("best-year",), best_year=got)
    text = render.to_json(analysis)
    assert '"value": 28.5' in text
    assert "28.500000000000004" not in text
    assert json.loads(text)["best_year"][1]["value"] == 0.3
    assert render.report_csv(analysis, "best-year").splitlines()[1] == "PRS1,2020,28.5"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["S 2001 Q01 1.0", "S 2002 Q01 1.0"], 2001),
        (["S 2002 Q01 1.0", "S 2001 Q01 1.0"], 2001),
        (["S 2003 Q01 -1.5", "S 2001 Q01 -1.5", "S 2002 Q01 -2.0"], 2001),
        (["S 2001 Q01 0.5", "S 2001 Q02 0.5", "S 2002 Q01 1.000", "S 2003 Q01 0.999"], 2001),
        (["S 2001 Q01 2", "S 2002 Q01 1.5", "S 2002 Q02 0.5", "S 2003 Q01 2.001"], 2003),
    ],
    ids=["equal", "equal-later-first", "negative", "split-quarters", "thousandth-wins"],
)
def test_ties_go_to_the_earliest_year(tmp_path: Path, rows: list[str], expected: int) -> None:
    (got,) = collect(best_year(scan_bls(bls_file(tmp_path, rows))))
    assert got["year"].to_list() == [expected]


def test_annual_rows_only_count_with_include_annual(tmp_path: Path) -> None:
    path = bls_file(
        tmp_path,
        [
            "Q 2001 Q01 1.0",
            "Q 2001 Q05 9.0",
            "Q 2002 Q01 2.0",
            "Q 2002 Q05 1.0",
            "ANNUAL 2001 Q05 3.0",
        ],
    )
    quarters, annual = collect(
        best_year(scan_bls(path)), best_year(scan_bls(path), include_annual=True)
    )
    assert quarters.rows() == [("Q", 2002, Decimal("2"))]
    assert annual.rows() == [("ANNUAL", 2001, Decimal("3")), ("Q", 2001, Decimal("10"))]


@pytest.mark.parametrize("eol", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_padding_and_line_endings_are_trimmed(tmp_path: Path, eol: str) -> None:
    header = "  series_id  \t year \tperiod   \t   value\t footnote_codes "
    body = [
        "   PRS1          \t  2001 \t  Q01 \t      -0.250  \t  R  ",
        "PRS1\t2001\tQ02\t1\t",
        "",  # a blank line is skipped
        "PRS1\t2002\tQ01\t.5".replace(".5", "0.5"),
    ]
    path = tmp_path / "padded"
    path.write_bytes((eol.join([header, *body]) + eol).encode())
    (rows,) = collect(scan_bls(path))
    assert rows.columns == ["series_id", "year", "period", "value", "decimals", "footnote_codes"]
    assert rows.rows() == [
        ("PRS1", 2001, "Q01", Decimal("-0.25"), 3, "R"),
        ("PRS1", 2001, "Q02", Decimal("1"), 0, None),
        ("PRS1", 2002, "Q01", Decimal("0.5"), 1, None),
    ]


def test_a_file_without_footnotes_and_with_extra_columns_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "narrow"
    path.write_text("extra\tvalue\tperiod\tyear\tseries_id\nx\t1.5\tQ01\t2001\tS\n")
    (rows,) = collect(scan_bls(path))
    assert rows.columns == ["series_id", "year", "period", "value", "decimals"]
    assert rows.row(0) == ("S", 2001, "Q01", Decimal("1.5"), 1)


BAD_ROWS = [
    ("S\t20x1\tQ01\t1.0\t", "line 3: year '20x1' is not a four-digit year"),
    ("S\t\tQ01\t1.0\t", "line 3: no year"),
    ("S\t2001\tQ01\tabc\t", "line 3: value 'abc' is not a decimal number with at most 3 decimals"),
    ("S\t2001\tQ01\t1.2345\t", "line 3: value '1.2345' is not a decimal number"),
    ("S\t2001\tQ01\t1,5\t", "line 3: value '1,5' is not a decimal"),
    ("S\t2001\tQ01\t  \t", "line 3: no value"),
    ("S\t2001\t   \t1.0\t", "line 3: no period"),
    ("    \t2001\tQ01\t1.0\t", "line 3: no series_id"),
    ("S\t2001\tQ01", "line 3: no value"),
    ("S\t2001\tQ01\t1.0\t\tX", "line 3: 6 fields, the header has 5"),
    ('S\t2001\tQ01\t"1.0"\t', "line 3: value '\"1.0\"'"),
]


@pytest.mark.parametrize(
    ("row", "message"),
    BAD_ROWS,
    ids=[
        "year-text",
        "year-empty",
        "value-text",
        "value-4-decimals",
        "value-comma",
        "value-blank",
        "period-blank",
        "series-blank",
        "too-few-fields",
        "too-many-fields",
        "quoted",
    ],
)
def test_a_malformed_row_names_the_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "pr.data.0.Current"
    good = "S\t2000\tQ01\t1.0\t"
    path.write_text(f"{HEADER}\n{good}\n{row}\n{good}\n")
    with pytest.raises(DataError) as caught:
        collect(best_year(scan_bls(path, source="s3://b/pr/x")), bls=path, source="s3://b/pr/x")
    assert str(caught.value).startswith("s3://b/pr/x line 3: ")
    assert message in str(caught.value)


def test_collecting_without_collect_still_raises_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text(f"{HEADER}\nS\t2000\tQ01\t1.0\t\nS\t2000\tQ02\t1.0.0\t\n")
    with pytest.raises(MalformedRowError, match=r"f: malformed row: value '1\.0\.0' is not"):
        scan_bls(path).collect()


def test_year_outside_four_digits_is_malformed(tmp_path: Path) -> None:
    path = bls_file(tmp_path, ["S 2001 Q01 1.0", "S 0999 Q01 1.0"])
    with pytest.raises(DataError, match=r"line 3: year '0999' is not a four-digit year"):
        collect(scan_bls(path))


def test_unvalidated_scan_leaves_malformed_rows_out(tmp_path: Path) -> None:
    path = bls_file(tmp_path, ["S 2001 Q01 1.0", "T 2001 Q01 oops", "S 2002 Q01 2.5"])
    with pytest.raises(DataError, match="line 3"):
        collect(scan_bls(path))
    (rows,) = collect(scan_bls(path, validate=False))
    assert rows["value"].to_list() == [Decimal("1"), Decimal("2.5")]


def test_reports_collected_together_share_one_pass(tmp_path: Path, shared_data: Path) -> None:
    population = read_population(ACS1)
    frames = [
        best_year(scan_bls(LATEST)),
        series_population(scan_bls(LATEST, validate=False), population),
    ]
    plan = pl.explain_all(frames)
    assert plan.count("Csv SCAN") == 1
    assert plan.count("CACHE") == 2
    best, rows = collect(*frames)
    assert (best.height, rows.height) == (237, 10)
    # A malformed row stops the shared pass, whichever report would have seen it.
    bad = bls_file(tmp_path, ["PRS30006032 2013 Q01 1.0", "X 2001 Q01 oops"])
    with pytest.raises(DataError, match="line 3: value 'oops'"):
        collect(
            best_year(scan_bls(bad)), series_population(scan_bls(bad, validate=False), population)
        )


def test_blank_lines_in_a_big_file_are_skipped(tmp_path: Path) -> None:
    lines = [HEADER] + [f"S{i % 7}\t{2000 + i % 20}\tQ01\t1.5\t" for i in range(200_000)]
    for at in (5, 100_001, 150_000):
        lines[at] = "   " if at == 5 else ""
    path = tmp_path / "blanks"
    path.write_text("\n".join(lines) + "\n\n")
    (count,) = collect(scan_bls(path).select(pl.len()))
    assert count.item() == 200_000 - 3


def test_bytes_that_are_not_utf8_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(f"{HEADER}\nS\t2000\tQ01\t1.0\t\n".encode() + b"S\xe9\t2000\tQ02\t1.0\t\n")
    with pytest.raises(DataError, match=r"latin1 line 3: not UTF-8 text"):
        collect(scan_bls(path), bls=path)


def test_a_bad_row_deep_in_a_big_file_names_its_line(tmp_path: Path) -> None:
    # Far more rows than one streaming batch, so the line number must survive batching.
    lines = [HEADER] + [
        f"S{i % 97}\t{1995 + i % 30}\tQ0{1 + i % 4}\t{i % 1000}.5\t" for i in range(300_000)
    ]
    lines[271_828] = "S\t2001\tQ01\tn/a\t"
    path = tmp_path / "big"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"big line 271829: value 'n/a'"):
        collect(best_year(scan_bls(path)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1: no header"),
        (b"series_id\tyear\tperiod\n", "line 1: missing column value"),
        (b"a,b,c\n1,2,3\n", "line 1: missing column series_id, year, period, value"),
        (b"series_id\tyear\tyear\tperiod\tvalue\n", "line 1: column year appears twice"),
    ],
    ids=["empty", "no-value", "csv", "duplicate"],
)
def test_a_bad_header_is_an_error_on_line_1(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        scan_bls(path)


def test_a_missing_local_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        scan_bls(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no such file"):
        read_population(tmp_path / "nope.json")


# -- analyze(): inputs and defaults ----------------------------------------------------------------


def test_analyze_local_files_all_reports(shared_data: Path) -> None:
    result = analyze(ReportInputs(bls=LATEST, population=ACS5, include_annual=True), s3=S3Access())
    assert result.reports == ("population", "best-year", "series-population")
    assert result.population is not None
    assert result.population.mean == 317437383.0
    assert result.best_year is not None
    assert result.best_year.height == 282
    assert result.series_population is not None
    assert result.series_population["year"].to_list() == list(range(2013, 2023))
    assert result.population_by_year is not None


def test_analyze_reads_only_what_the_reports_need(tmp_path: Path, shared_data: Path) -> None:
    only_population = analyze(
        ReportInputs(reports=["population"], population=ACS1, bls=tmp_path / "absent"),
        s3=S3Access(),
    )
    assert only_population.best_year is None
    assert only_population.bls_source is None
    only_best = analyze(
        ReportInputs(reports=["best-year"], bls=LATEST, population=tmp_path / "absent"),
        s3=S3Access(),
    )
    assert only_best.population is None
    assert only_best.population_source is None


def test_analyze_refuses_unknown_reports_reversed_years_and_unknown_series(
    shared_data: Path,
) -> None:
    with pytest.raises(ConfigError, match="unknown report nope"):
        analyze(ReportInputs(reports=["nope"], bls=LATEST, population=ACS1), s3=S3Access())
    with pytest.raises(ConfigError, match="no report chosen"):
        analyze(ReportInputs(reports=[], bls=LATEST, population=ACS1), s3=S3Access())
    with pytest.raises(ConfigError, match="--from-year 2019 is after --to-year 2018"):
        analyze(ReportInputs(from_year=2019, bls=LATEST, population=ACS1), s3=S3Access())
    with pytest.raises(DataError, match="series 'PRS99999999' has no Q01 row"):
        analyze(
            ReportInputs(
                reports=["series-population"], series_id="PRS99999999", bls=LATEST, population=ACS1
            ),
            s3=S3Access(),
        )


def test_series_with_no_population_overlap_is_empty_not_an_error(
    tmp_path: Path, shared_data: Path
) -> None:
    rows = [
        {"Nation ID": "01000US", "Nation": "United States", "Year": year, "Population": 2.5e8}
        for year in (1980, 1981)
    ]
    doc = {"columns": ["Nation ID", "Nation", "Year", "Population"], "data": rows}
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    inner = analyze(
        ReportInputs(reports=["series-population"], bls=LATEST, population=old), s3=S3Access()
    )
    assert inner.series_population is not None
    assert inner.series_population.height == 0
    every = analyze(
        ReportInputs(reports=["series-population"], bls=LATEST, population=old, all_years=True),
        s3=S3Access(),
    )
    assert every.series_population is not None
    assert every.series_population.height == 32
    assert every.series_population["population"].null_count() == 32


def test_default_locations_follow_the_other_commands() -> None:
    settings = Settings(bls_bucket="bls-mirror", population_bucket="pop")
    assert default_locations(settings) == (
        "s3://bls-mirror/pr/pr.data.0.Current",
        "s3://pop/datausa/population.json",
    )
    custom = Settings(
        bls_bucket="b", bls_prefix="mirror/pr", population_bucket="p", population_key="k.json"
    )
    assert default_locations(custom) == ("s3://b/mirror/pr/pr.data.0.Current", "s3://p/k.json")
    assert default_locations(Settings()) == (None, None)


def test_analyze_without_inputs_or_buckets_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="RQ_BLS_BUCKET"):
        analyze(ReportInputs(reports=["best-year"]), s3=S3Access())
    with pytest.raises(ConfigError, match="RQ_POPULATION_BUCKET"):
        analyze(ReportInputs(reports=["population"]), s3=S3Access())


@pytest.mark.parametrize(
    "url", ["s3://", "s3://bucket", "s3://bucket/", "s3:///key", "s3://b/dir/"]
)
def test_a_bad_s3_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="not an s3://bucket/key URL"):
        analyze(ReportInputs(reports=["population"], population=url), s3=S3Access())


def _upload(client: Any, bucket: str) -> None:
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="pr/pr.data.0.Current", Body=LATEST.read_bytes())
    client.put_object(Bucket=bucket, Key="datausa/population.json", Body=ACS5.read_bytes())


def test_analyze_reads_s3_through_the_storage_layer_on_moto(
    moto_server: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    _upload(client, "analyze-moto")
    monkeypatch.setenv("RQ_BLS_BUCKET", "analyze-moto")
    monkeypatch.setenv("RQ_POPULATION_BUCKET", "analyze-moto")
    remote = analyze(
        ReportInputs(include_annual=True),
        settings=Settings.from_env(),
        s3=S3Access(endpoint_url=moto_server),
    )
    local = analyze(ReportInputs(bls=LATEST, population=ACS5, include_annual=True), s3=S3Access())
    assert remote.bls_source == "s3://analyze-moto/pr/pr.data.0.Current"
    assert remote.population == local.population
    assert remote.best_year is not None
    assert remote.best_year.equals(local.best_year)
    assert remote.series_population is not None
    assert remote.series_population.equals(local.series_population)


def test_s3_errors_name_the_object(moto_server: str, shared_data: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.create_bucket(Bucket="analyze-empty")
    client.put_object(
        Bucket="analyze-empty", Key="bad", Body=b"series_id\tyear\tperiod\tvalue\nS\t2001\tQ01\tx\n"
    )
    with pytest.raises(
        StorageError, match=r"s3://analyze-empty/pr/pr\.data\.0\.Current: no such object"
    ):
        analyze(
            ReportInputs(reports=["best-year"], bls="s3://analyze-empty/pr/pr.data.0.Current"),
            s3=S3Access(endpoint_url=moto_server),
        )
    with pytest.raises(DataError, match=r"^s3://analyze-empty/bad line 2: value 'x'"):
        analyze(
            ReportInputs(reports=["best-year"], bls="s3://analyze-empty/bad"),
            s3=S3Access(endpoint_url=moto_server),
        )
    with pytest.raises(StorageError, match="does not exist"):
        analyze(
            ReportInputs(reports=["population"], population="s3://no-such-bucket-here/p.json"),
            s3=S3Access(endpoint_url=moto_server),
        )


@pytest.mark.integration
def test_analyze_reads_s3_on_seaweedfs(seaweed_bucket: tuple[str, str], shared_data: Path) -> None:
    endpoint, bucket = seaweed_bucket
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="pr/pr.data.0.Current", Body=LATEST.read_bytes())
    client.put_object(Bucket=bucket, Key="datausa/population.json", Body=ACS1.read_bytes())
    result = analyze(
        ReportInputs(
            bls=f"s3://{bucket}/pr/pr.data.0.Current",
            population=f"s3://{bucket}/datausa/population.json",
        ),
        s3=S3Access(client=client),
    )
    assert result.population is not None
    assert result.population.mean == 322069808.0
    assert result.best_year is not None
    assert result.best_year.height == 237


# -- the benchmark generator -----------------------------------------------------------------------


def test_the_benchmark_generator_writes_a_valid_bigger_file(
    tmp_path: Path, shared_data: Path
) -> None:
    generate = load_script(REPO / "benchmarks/analyze/generate.py", "bench_analyze_generate")
    out = tmp_path / "x3"
    rows = generate.generate(out, 3, source=LATEST, variants=2)
    assert rows == 3 * 38412
    assert out.stat().st_size == pytest.approx(3 * LATEST.stat().st_size, rel=0.001)
    frame, best, original = collect(
        scan_bls(out), best_year(scan_bls(out)), best_year(scan_bls(LATEST))
    )
    assert frame.height == rows
    assert best.height == 3 * 237
    # Copy 0 keeps the real values; copy 1 is shifted by 0.1 per row, exactly.
    first = best.filter(pl.col("series_id").str.ends_with("0000"))
    assert first["value"].to_list() == original["value"].to_list()
    second = best.filter(pl.col("series_id") == "PRS300060320001")["value"].item()
    base = original.filter(pl.col("series_id") == "PRS30006032")["value"].item()
    assert second == base + Decimal("0.4")


def test_render_round_trip_of_csv(shared_data: Path) -> None:
    result = analyze(
        ReportInputs(bls=LATEST, population=ACS5, reports=["series-population"]), s3=S3Access()
    )
    rows = list(csv.DictReader(io.StringIO(render.to_csv(result))))
    assert rows[0] == {
        "series_id": "PRS30006032",
        "year": "2013",
        "period": "Q01",
        "value": "0.5",
        "population": "311536594",
    }


# -- one number style ------------------------------------------------------------------------------


def test_decimals_are_what_the_file_prints(tmp_path: Path) -> None:
    path = bls_file(
        tmp_path,
        [
            "PCT 2001 Q01 -7.0",
            "PCT 2001 Q02 2.5",
            "INDEX 2001 Q01 138.710",
            "INDEX 2001 Q02 100.000",
            "WHOLE 2001 Q01 12",
            "MIXED 2001 Q01 1.5",
            "MIXED 2001 Q02 1.25",
        ],
    )
    rows, best, series = collect(
        scan_bls(path),
        best_year(scan_bls(path), decimals=True),
        series_population(
            scan_bls(path), read_population(ACS1), series_id="INDEX", all_years=True, decimals=True
        ),
    )
    assert rows["decimals"].to_list() == [1, 1, 3, 3, 0, 1, 2]
    # A sum is printed with the most decimals of its values.
    assert best.rows() == [
        ("INDEX", 2001, Decimal("238.71"), 3),
        ("MIXED", 2001, Decimal("2.75"), 2),
        ("PCT", 2001, Decimal("-4.5"), 1),
        ("WHOLE", 2001, Decimal("12"), 0),
    ]
    assert series.columns == ["series_id", "year", "period", "value", "decimals", "population"]
    assert series.rows() == [("INDEX", 2001, "Q01", Decimal("138.71"), 3, None)]
    # Without asking, the reports have their documented columns only.
    (plain,) = collect(best_year(scan_bls(path)))
    assert plain.columns == ["series_id", "year", "value"]


def test_real_series_print_one_or_three_decimals(shared_data: Path) -> None:
    (decimals,) = collect(scan_bls(LATEST).group_by("series_id").agg(pl.col("decimals").max()))
    counts = dict(decimals.group_by("decimals").len().iter_rows())
    assert counts == {1: 188, 3: 94}  # percent changes and indexes


def test_best_year_sums_keep_the_value_type(shared_data: Path) -> None:
    (best,) = collect(best_year(scan_bls(LATEST), include_annual=True))
    # Polars widens a decimal sum to Decimal(38, 3); the report keeps the values' type.
    assert best.schema["value"] == pl.Decimal(18, 3)


def test_analyze_prints_values_with_the_sources_digits(tmp_path: Path, shared_data: Path) -> None:
    bls = bls_file(
        tmp_path,
        [
            "PCT 2013 Q01 -7.0",
            "PCT 2013 Q02 2.0",
            "PCT 2014 Q01 -21.0",
            "INDEX 2013 Q01 138.710",
            "INDEX 2013 Q02 100.090",
            "INDEX 2014 Q01 96.500",
        ],
    )
    result = analyze(
        ReportInputs(
            reports=["best-year", "series-population"], bls=bls, population=ACS1, series_id="INDEX"
        ),
        s3=S3Access(),
    )
    assert result.value_decimals == {"INDEX": 3, "PCT": 1}
    table = {t.name: t.rows for t in render.tables(result)}
    assert table["best-year"] == [("INDEX", "2013", "238.800"), ("PCT", "2013", "-5.0")]
    assert table["series-population"] == [
        ("INDEX", "2013", "Q01", "138.710", "316,128,839"),
        ("INDEX", "2014", "Q01", "96.500", "318,857,056"),
    ]
    text = render.to_json(result)
    assert '"value": 238.800' in text and '"value": -5.0' in text and '"value": 96.500' in text
    assert '"population": 316128839\n' in text
    assert "PCT,2013,-5.0" in render.to_csv(result)
    assert "| INDEX | 2014 | Q01 | 96.500 | 318,857,056 |" in render.to_markdown(result)


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (Decimal("-7.000"), 1, "-7.0"),
        (Decimal("138.710"), 3, "138.710"),
        (Decimal("12.000"), 0, "12"),
        (Decimal("28.500"), None, "28.5"),
        (Decimal("2.000"), None, "2.0"),
        (Decimal("100.000"), None, "100.0"),
        (Decimal("0.000"), None, "0.0"),
        (Decimal("0.125"), None, "0.125"),
        (Decimal("-7.000"), None, "-7.0"),
        (Decimal("138.710"), None, "138.71"),
        (Decimal("2"), 2, "2.00"),
    ],
    ids=[
        "one",
        "three",
        "none",
        "unknown",
        "unknown-whole",
        "unknown-hundred",
        "zero",
        "thousandth",
        "unknown-negative",
        "unknown-trailing-zero",
        "padded",
    ],
)
def test_bls_value_has_the_sources_digits(value: Decimal, decimals: int | None, text: str) -> None:
    assert str(bls_value(value, decimals)) == text


def test_to_json_writes_the_digits_and_reads_back_as_to_json_doc(shared_data: Path) -> None:
    result = analyze(ReportInputs(bls=LATEST, population=ACS1, all_years=True), s3=S3Access())
    text = render.to_json(result)
    assert json.loads(text) == to_json_doc(result)
    # The same layout as json.dumps: only the digits of decimals differ (423.420, not 423.42).
    as_floats = re.sub(r"-?[0-9]+\.[0-9]+", lambda m: repr(float(m[0])), text)
    assert as_floats == json.dumps(to_json_doc(result), indent=2)
    assert '"value": 423.420' in text
    assert '"population": null' in text


def test_to_json_doc_is_json_ready_with_integer_populations(shared_data: Path) -> None:
    doc = to_json_doc(analyze(ReportInputs(bls=LATEST, population=ACS1), s3=S3Access()))
    assert json.loads(json.dumps(doc)) == doc
    assert doc["population"] == {
        "from_year": 2013,
        "to_year": 2018,
        "years": [2013, 2014, 2015, 2016, 2017, 2018],
        "missing_years": [],
        "mean": 322069808.0,
        "std": 4158441.040908095,
    }
    assert {type(r["population"]) for r in doc["series_population"]} == {int}
    assert {type(r["value"]) for r in doc["best_year"]} == {float}


@pytest.mark.parametrize(
    ("populations", "mean", "std"),
    [
        ((100, 101), "100.5", "0.71"),
        ((100, 101, 101, 101), "100.8", "0.50"),  # 100.75: a tie, to even
        ((101, 101, 102, 102), "101.5", "0.58"),
        ((7,), "7.0", None),
    ],
    ids=["half", "tie-to-even", "trailing-zero-kept", "single-year"],
)
def test_mean_and_std_are_rounded_once_for_people(
    populations: tuple[int, ...], mean: str, std: str | None
) -> None:
    frame = pl.DataFrame(
        {"year": range(2001, 2001 + len(populations)), "population": populations},
        schema={"year": pl.Int32, "population": pl.Int64},
    )
    stats = population_stats(frame, from_year=2001, to_year=2000 + len(populations))
    assert str(stats.rounded_mean) == mean
    assert (None if stats.rounded_std is None else str(stats.rounded_std)) == std
    analysis = Analysis(reports=("population",), population=stats)
    shown = dict(render.tables(analysis)[0].rows)
    assert (shown["mean"], shown["std (ddof=1)"]) == (mean, std or "n/a (one year)")
    # The data formats are not rounded.
    assert stats.to_dict()["mean"] == statistics.fmean(populations) == stats.mean
    (row,) = csv.DictReader(io.StringIO(render.to_csv(analysis)))
    assert (row["mean"], row["std"] or None) == (repr(stats.mean), stats.std and repr(stats.std))


def test_a_fractional_population_is_a_data_error(tmp_path: Path) -> None:
    doc = {
        "columns": ["Nation ID", "Nation", "Year", "Population"],
        "data": [
            {"Nation ID": "01000US", "Nation": "United States", "Year": 2013, "Population": 3.5e8},
            {"Nation ID": "01000US", "Nation": "United States", "Year": 2014, "Population": 1.5},
        ],
    }
    path = tmp_path / "population.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        DataError, match=r"row 2 \(year 2014\): Population 1.5 is not a whole number"
    ):
        read_population(path)


def test_bls_reports_of_analyze_share_one_pass(shared_data: Path) -> None:
    population = read_population(ACS1)
    for chosen in (("best-year",), ("series-population",), ("best-year", "series-population")):
        frames = _bls_reports(
            LATEST,
            str(LATEST),
            chosen,
            population=population,
            include_annual=False,
            series_id="PRS30006032",
            period="Q01",
        )
        plan = pl.explain_all(frames)
        assert plan.count("Csv SCAN") == 1, chosen
        assert plan.count("OPAQUE_PYTHON") == 1, chosen  # every row is checked once


def test_reports_on_local_files_make_no_s3_client(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rq analyze on local paths never pays for botocore: its S3Access makes no client unused.
    from rearcquest.aws import storage

    monkeypatch.setattr(storage, "make_s3_client", lambda **kw: pytest.fail("a client was made"))
    s3 = S3Access(endpoint_url="http://127.0.0.1:9")
    result = analyze_at(ReportInputs(bls=LATEST, population=ACS1, include_annual=True), s3=s3)
    assert result.reports == ("population", "best-year", "series-population")
