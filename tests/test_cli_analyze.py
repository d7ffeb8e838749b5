"""`rq analyze` end to end: every output format, the report files, S3 defaults and exit codes."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import BLS_RELEASES, DATAUSA
from hostile_helpers import SECTOR, SERIES, assert_no_raw_controls, hostile_survey
from rearcquest._text import visible
from rearcquest.cli import app
from rearcquest.data.analytics import read_population

runner = CliRunner()
LATEST = BLS_RELEASES / "2026-08-06" / "pr.data.0.Current"
ACS5 = DATAUSA / "old-api-acs5-2013-2022-compact.json"
ACS1 = DATAUSA / "tesseract-acs1-2013-2023-raw.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rq(*args: str) -> Any:
    return runner.invoke(app, ["analyze", *args])


def local(*args: str, population: Path = ACS5) -> Any:
    return rq("--bls", str(LATEST), "--population", str(population), *args)


def test_json_all_reports_has_the_documented_shape(shared_data: Path) -> None:
    result = local("--format", "json", "--include-annual")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["population", "best_year", "series_population"]
    assert doc["population"] == {
        "from_year": 2013,
        "to_year": 2018,
        "years": [2013, 2014, 2015, 2016, 2017, 2018],
        "missing_years": [],  # as in the CSV (issue 22): the range's years the data lacks
        "mean": 317437383.0,
        "std": pytest.approx(4257089.54, abs=0.005),
    }
    assert len(doc["best_year"]) == 282
    # The series text decoded from pr.series beside the data file comes last.
    assert list(doc["best_year"][0]) == ["series_id", "year", "value", "title"]
    assert doc["series_population"][0] == {
        "series_id": "PRS30006032",
        "year": 2013,
        "period": "Q01",
        "value": 0.5,
        "population": 311536594.0,
        "title": "Manufacturing; All workers; Hours worked; % Change from previous quarter; "
        "Seasonal Adjusted",
    }


@pytest.mark.parametrize(
    ("report", "key", "rows"),
    [("best-year", "best_year", 237), ("series-population", "series_population", 10)],
)
def test_json_single_report_has_only_its_key(
    shared_data: Path, report: str, key: str, rows: int
) -> None:
    result = local("--report", report, "--format", "json", population=ACS1)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == [key]
    assert len(doc[key]) == rows


def test_json_values_carry_no_float_noise(shared_data: Path) -> None:
    result = local("--report", "best-year", "--format", "json", "--include-annual")
    assert result.exit_code == 0, result.output
    for number in json.loads(result.stdout, parse_float=Decimal)["best_year"]:
        # Every sum of values with at most three decimals has at most three decimals.
        assert -number["value"].as_tuple().exponent <= 3, number


def test_json_population_from_tesseract(shared_data: Path) -> None:
    result = local("--report", "population", "--format", "json", population=ACS1)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["population"]
    assert doc["mean"] == 322069808.0
    assert doc["std"] == pytest.approx(4158441.04, abs=0.005)


def test_csv_single_report_is_plain_csv(shared_data: Path) -> None:
    result = local("--report", "best-year", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 237
    assert rows[0] == {
        "series_id": "PRS30006011",
        "year": "2022",
        "value": "16.4",
        "title": "Manufacturing; All workers; Employment; % Change same quarter 1 year ago; Seasonal Adjusted",
    }


def test_csv_all_reports_are_sections(shared_data: Path) -> None:
    result = local("--format", "csv")
    assert result.exit_code == 0, result.output
    sections = result.stdout.split("\n\n")
    assert [s.splitlines()[0] for s in sections] == [
        "# population",
        "# best-year",
        "# series-population",
    ]
    population = list(csv.DictReader(io.StringIO(sections[0].split("\n", 1)[1])))
    assert population == [
        {
            "from_year": "2013",
            "to_year": "2018",
            "years": "2013 2014 2015 2016 2017 2018",
            "missing_years": "",
            "mean": "317437383.0",
            "std": population[0]["std"],
        }
    ]
    assert float(population[0]["std"]) == pytest.approx(4257089.54, abs=0.005)


def test_markdown(shared_data: Path) -> None:
    result = local("--format", "markdown", "--to-year", "2021", population=ACS1)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "## US population, 2013-2021" in out
    assert "| mean | 324,069,014.5 |" in out
    assert "- missing from 2013-2021: 2020 (not in the population data)" in out
    assert "## Best year of each series" in out
    assert "| PRS30006011 | 2022 | 16.4 |" in out
    assert "| PRS30006032 | 2013 | Q01 | 0.5 | 316,128,839 |" in out


def test_json_names_the_years_the_population_data_lacks(shared_data: Path) -> None:
    # ACS 1-year has no 2020: JSON says so as the CSV and Markdown do (issue 22).
    result = local(
        "--format", "json", "--report", "population", "--to-year", "2021", population=ACS1
    )
    assert result.exit_code == 0, result.output
    population = json.loads(result.stdout)["population"]
    assert population["missing_years"] == [2020]
    assert 2020 not in population["years"] and population["years"][-1] == 2021


def test_table_for_people(shared_data: Path) -> None:
    result = local("--from-year", "2018", "--to-year", "2022", population=ACS1)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "US population, 2018-2022" in out
    assert "2018-2019, 2021-2022 (4)" in out
    assert "missing from 2018-2022: 2020" in out
    assert "PRS30006011" in out
    assert "ties go to the earliest year" in out
    assert "237 series" in out


def test_all_years_keeps_years_without_population(shared_data: Path) -> None:
    result = local("--report", "series-population", "--all-years", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["series_population"]
    assert [r["year"] for r in rows] == list(range(1995, 2027))
    assert rows[0]["population"] is None


def test_other_series_and_period(shared_data: Path) -> None:
    args = ["--report", "series-population", "--series", "PRS85006092", "--period", "Q05"]
    result = local(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["series_population"]
    assert {(r["series_id"], r["period"]) for r in rows} == {("PRS85006092", "Q05")}


def test_output_dir_writes_csv_parquet_and_charts(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "reports" / "2026"
    result = local("--format", "json", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "best-year.csv",
        "best-year.parquet",
        "population.csv",
        "population.parquet",
        "population.png",
        "series-population.csv",
        "series-population.parquet",
        "series-population.png",
    ]
    assert f"wrote {out / 'population.png'}" in result.stderr
    for chart in ("population.png", "series-population.png"):
        data = (out / chart).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 10_000
    best = pl.read_parquet(out / "best-year.parquet")
    assert best.schema == {"series_id": pl.String, "year": pl.Int32, "value": pl.Decimal(18, 3)}
    assert best.height == 237
    population = pl.read_parquet(out / "population.parquet")
    assert population["years"].to_list() == [[2013, 2014, 2015, 2016, 2017, 2018]]
    assert (out / "best-year.csv").read_text().splitlines()[1] == (
        "PRS30006011,2022,16.4,Manufacturing; All workers; Employment; % Change same quarter 1 year ago; Seasonal Adjusted"
    )
    assert json.loads(result.stdout)["population"]["mean"] == 317437383.0


def test_output_dir_for_one_report_has_no_chart_it_does_not_need(
    tmp_path: Path, shared_data: Path
) -> None:
    result = local("--report", "best-year", "--format", "csv", "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-year.csv", "best-year.parquet"]


def test_output_without_matplotlib_says_how_to_install_and_writes_nothing(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "out"
    result = local("--report", "population", "--format", "json", "--output", str(out))
    assert result.exit_code == 2
    assert "pip install 'rearcquest[charts]'" in result.stderr
    assert not out.exists()


def test_defaults_read_what_sync_and_fetch_store(
    moto_server: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bls_bucket, pop_bucket = f"bls-{uuid.uuid4().hex[:8]}", f"pop-{uuid.uuid4().hex[:8]}"
    for bucket in (bls_bucket, pop_bucket):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bls_bucket, Key="pr/pr.data.0.Current", Body=LATEST.read_bytes())
    client.put_object(Bucket=pop_bucket, Key="datausa/population.json", Body=ACS5.read_bytes())
    before = {b: client.list_objects_v2(Bucket=b)["Contents"] for b in (bls_bucket, pop_bucket)}
    monkeypatch.setenv("RQ_BLS_BUCKET", bls_bucket)
    monkeypatch.setenv("RQ_POPULATION_BUCKET", pop_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    result = rq("--report", "all", "--format", "json", "--include-annual")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["population"]["mean"] == 317437383.0
    assert len(doc["best_year"]) == 282
    assert len(doc["series_population"]) == 10
    # Analysis only reads.
    after = {b: client.list_objects_v2(Bucket=b)["Contents"] for b in (bls_bucket, pop_bucket)}
    assert after == before


def test_missing_object_on_s3_is_exit_1_naming_it(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"empty-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("RQ_BLS_BUCKET", bucket)
    result = rq("--report", "best-year", "--endpoint-url", moto_server)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot read s3://{bucket}/pr/pr.data.0.Current")
    assert "no such object" in result.stderr


@pytest.mark.parametrize("hostile", [b"1e300", str(2**63).encode()], ids=["1e300", "2**63"])
@pytest.mark.parametrize("report", ["population", "series-population"])
def test_a_hostile_stored_population_is_exit_1_naming_it(
    moto_server: str, hostile: bytes, report: str
) -> None:
    # Written into the bucket by someone else: rq fetch-population refuses to store it.
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"pop-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    body = ACS1.read_bytes().replace(b"316128839.0", hostile, 1)
    client.put_object(Bucket=bucket, Key="datausa/population.json", Body=body)
    url = f"s3://{bucket}/datausa/population.json"
    result = rq(
        *("--report", report, "--bls", str(LATEST), "--population", url),
        *("--endpoint-url", moto_server),
    )
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    shown = repr(json.loads(hostile))
    assert result.stderr == (
        f"Error: {url}: row 1 (year 2013): Population {shown} is not a national population "
        "(at least 10,000,000,000); the answer is not what was asked for\n"
    )


def test_nothing_configured_is_exit_2_saying_what_to_set() -> None:
    result = rq()
    assert result.exit_code == 2
    assert "Error: no BLS file: pass --bls PATH_OR_S3_URL, or set RQ_BLS_BUCKET" in result.stderr


def test_malformed_bls_row_is_exit_1_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "pr.data.0.Current"
    bad.write_text("series_id\tyear\tperiod\tvalue\nS\t2001\tQ01\t1.0\nS\t2001\tQ02\tNaN\n")
    result = rq("--report", "best-year", "--bls", str(bad))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {bad} line 3: value 'NaN' is not a decimal number with at most 3 decimals\n"
    )
    assert result.stdout == ""


def test_bad_population_is_exit_1(tmp_path: Path, shared_data: Path) -> None:
    result = local(
        "--report", "population", population=DATAUSA / "tesseract-acs5-state-by-year-raw.json"
    )
    assert result.exit_code == 1
    assert "not national population" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-year", "2020", "--to-year", "2019"], "--from-year 2020 is after --to-year 2019"),
        (["--report", "nope"], "Invalid value for '--report'"),
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--from-year", "13"], "Invalid value for '--from-year': 13 is not in the range"),
        (["--to-year", "123456"], "Invalid value for '--to-year': 123456 is not in the range"),
        (["--from-year", "0999"], "Invalid value for '--from-year': 999 is not in the range"),
        (["--to-year", "10000"], "Invalid value for '--to-year': 10000 is not in the range"),
    ],
    ids=["years", "report", "format", "two-digit-year", "six-digit-year", "year-999", "year-10000"],
)
def test_usage_errors_exit_2(shared_data: Path, args: list[str], message: str) -> None:
    result = local(*args)
    assert result.exit_code == 2
    assert message in result.stderr


# -- one number style: every format prints the same digits -----------------------------------------


def _source_values(path: Path) -> dict[tuple[str, int, str], str]:
    """Each value of a BLS file as the file prints it, keyed by series, year and period."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return {(s.strip(), int(y), p.strip()): v.strip() for s, y, p, v, *_ in reader}


def _json_texts(stdout: str) -> Any:
    """JSON with every number kept as the text it was written as."""
    return json.loads(stdout, parse_float=str, parse_int=str)


def _markdown_rows(stdout: str) -> list[list[str]]:
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:]]


def _table_rows(stdout: str) -> list[list[str]]:
    """The body rows of rich's table: the lines between its box borders."""
    return [
        [c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if "│" in line
    ]


def _digits(cell: str) -> str:
    """Table and Markdown separate thousands for people; the digits are the same."""
    return cell.replace(",", "")


def _formats(*args: str, population: Path) -> dict[str, str]:
    outputs = {}
    for fmt in ("table", "json", "csv", "markdown"):
        result = local(*args, "--format", fmt, population=population)
        assert result.exit_code == 0, result.output
        outputs[fmt] = result.stdout
    return outputs


@pytest.mark.parametrize(
    ("years", "population", "mean", "std"),
    [
        (("2013", "2018"), ACS5, "317437383.0", "4257089.54"),
        # 330,147,067.25 rounds half to even, the same way in the table and in Markdown.
        (("2018", "2022"), ACS1, "330147067.2", "2911500.19"),
        (("2013", "2023"), DATAUSA / "old-api-acs5-2013-2023-indent2.json", "322645637.7", "6996002.34"),
    ],
    ids=["acs5", "acs1-tie", "acs5-eleven-years"],
)  # fmt: skip
def test_population_mean_and_std_are_rounded_for_people_and_exact_as_data(
    shared_data: Path, years: tuple[str, str], population: Path, mean: str, std: str
) -> None:
    args = ("--report", "population", "--from-year", years[0], "--to-year", years[1])
    out = _formats(*args, population=population)
    markdown = dict(_markdown_rows(out["markdown"]))
    table = dict(_table_rows(out["table"]))
    assert (_digits(markdown["mean"]), _digits(markdown["std (ddof=1)"])) == (mean, std)
    assert (_digits(table["mean"]), _digits(table["std (ddof=1)"])) == (mean, std)
    # JSON and CSV carry the computed values, to the last bit of the float: the mean and the
    # sample standard deviation of the populations of those years, computed here on their own.
    people = [
        int(p) for y, p in read_population(population).rows() if int(years[0]) <= y <= int(years[1])
    ]
    exact = (statistics.fmean(people), statistics.stdev(people))
    doc = json.loads(out["json"])["population"]
    (row,) = csv.DictReader(io.StringIO(out["csv"]))
    assert (doc["mean"], doc["std"]) == exact
    assert (float(row["mean"]), float(row["std"])) == exact
    assert (row["mean"], row["std"]) == (repr(exact[0]), repr(exact[1]))
    assert str(round(exact[1], 2)) == std != row["std"], "the data formats are not rounded"


def test_best_year_prints_each_sum_with_the_sources_digits_in_every_format(
    shared_data: Path,
) -> None:
    # The sum of values printed with d decimals, in Python decimals, keeps d decimals: 29.0
    # for a series printed as -7.0, 423.420 for one printed as 138.710.
    sums: dict[tuple[str, int], Decimal] = {}
    for (series, year, period), text in _source_values(LATEST).items():
        if period in ("Q01", "Q02", "Q03", "Q04"):
            sums[series, year] = sums.get((series, year), Decimal(0)) + Decimal(text)
    best: dict[str, tuple[int, Decimal]] = {}
    for (series, year), total in sorted(sums.items()):
        if series not in best or total > best[series][1]:
            best[series] = (year, total)
    expected = [[s, str(y), str(v)] for s, (y, v) in sorted(best.items())]
    assert ["PRS30006102", "2020", "29.0"] in expected
    assert ["PRS30006153", "2020", "423.420"] in expected

    out = _formats("--report", "best-year", population=ACS1)
    in_json = [
        [r["series_id"], r["year"], r["value"]] for r in _json_texts(out["json"])["best_year"]
    ]
    in_csv = [
        [r["series_id"], r["year"], r["value"]] for r in csv.DictReader(io.StringIO(out["csv"]))
    ]
    assert in_json == expected
    assert in_csv == expected
    assert [r[:3] for r in _markdown_rows(out["markdown"])] == expected
    assert [r[:3] for r in _table_rows(out["table"])] == expected
    titles = [r["title"] for r in _json_texts(out["json"])["best_year"]]
    assert (
        titles[0]
        == "Manufacturing; All workers; Employment; % Change same quarter 1 year ago; Seasonal Adjusted"
    )
    assert titles == [r["title"] for r in csv.DictReader(io.StringIO(out["csv"]))]
    assert titles == [r[3] for r in _markdown_rows(out["markdown"])]


@pytest.mark.parametrize(
    ("series", "population", "extra"),
    [
        # Printed with one decimal, 0.0, 2.0 and -21.0 among them; years without population.
        ("PRS30006032", ACS5, ("--all-years",)),
        # Printed with three: 101.900 (2019) and 102.210 (2023).
        ("PRS30006033", ACS1, ()),
    ],
    ids=["one-decimal-all-years", "three-decimals"],
)
def test_series_population_prints_values_as_the_source_and_integer_populations(
    shared_data: Path, series: str, population: Path, extra: tuple[str, ...]
) -> None:
    source = _source_values(LATEST)
    out = _formats(
        "--report", "series-population", "--series", series, *extra, population=population
    )
    in_json = [
        [r["series_id"], r["year"], r["period"], r["value"], r["population"] or ""]
        for r in _json_texts(out["json"])["series_population"]
    ]
    in_csv = [list(r.values())[:5] for r in csv.DictReader(io.StringIO(out["csv"]))]
    in_markdown = [[*r[:4], _digits(r[4])] for r in _markdown_rows(out["markdown"])]
    in_table = [[*r[:4], _digits(r[4])] for r in _table_rows(out["table"])]
    assert in_json == in_csv == in_markdown == in_table
    for series_id, year, period, value, people in in_csv:
        assert value == source[series_id, int(year), period]
        assert people == "" or people.isdigit()
    values = {r[3] for r in in_csv}
    assert {"0.0", "2.0", "-21.0"} <= values or {"101.900", "102.210"} <= values
    assert any(r[4] == "" for r in in_csv) == bool(extra)


def test_parquet_types_are_the_same_in_every_report(tmp_path: Path, shared_data: Path) -> None:
    result = local("--format", "csv", "--output", str(tmp_path), population=ACS1)
    assert result.exit_code == 0, result.output
    schemas = {
        name: pl.read_parquet_schema(tmp_path / f"{name}.parquet")
        for name in ("population", "best-year", "series-population")
    }
    assert schemas["best-year"]["value"] == pl.Decimal(18, 3)
    assert schemas["series-population"]["value"] == pl.Decimal(18, 3)
    assert schemas["series-population"]["population"] == pl.Int64
    assert schemas["population"] == {
        "from_year": pl.Int32,
        "to_year": pl.Int32,
        "years": pl.List(pl.Int32),
        "missing_years": pl.List(pl.Int32),
        "mean": pl.Float64,
        "std": pl.Float64,
    }
    # The files hold the numbers the CSV prints.
    for name in schemas:
        frame = pl.read_parquet(tmp_path / f"{name}.parquet")
        rows = list(csv.DictReader(io.StringIO((tmp_path / f"{name}.csv").read_text())))
        for column, dtype in frame.schema.items():
            if isinstance(dtype, pl.Decimal):
                assert [Decimal(r[column]) for r in rows] == frame[column].to_list(), column
            elif dtype == pl.Int64:
                assert [int(r[column]) for r in rows] == frame[column].to_list(), column
            elif dtype == pl.Float64:
                assert [float(r[column]) for r in rows] == frame[column].to_list(), column
    (population,) = pl.read_parquet(tmp_path / "population.parquet").rows(named=True)
    assert (population["mean"], population["std"]) == (322069808.0, 4158441.040908095)


def test_from_tables_and_from_files_print_the_same_reports(
    moto_server: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from rearcquest.layout import META_SHA256

    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"from-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    data = LATEST.read_bytes()
    for name in ("pr.data.0.Current", "pr.series"):
        body = (LATEST.parent / name).read_bytes()
        client.put_object(
            Bucket=bucket,
            Key=f"pr/{name}",
            Body=body,
            Metadata={META_SHA256: hashlib.sha256(body).hexdigest()},
        )
    client.put_object(Bucket=bucket, Key="datausa/population.json", Body=ACS5.read_bytes())
    monkeypatch.setenv("RQ_BLS_BUCKET", bucket)
    monkeypatch.setenv("RQ_POPULATION_BUCKET", bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    missing = rq("--from", "tables")
    assert missing.exit_code == 2
    assert missing.stderr.startswith(f"Error: no current table for s3://{bucket}/pr/pr.data")
    built = runner.invoke(app, ["tables", "--format", "json"])
    assert built.exit_code == 0, built.output
    assert data == client.get_object(Bucket=bucket, Key="pr/pr.data.0.Current")["Body"].read()
    for fmt in ("csv", "markdown", "json"):
        files = rq("--from", "files", "--format", fmt)
        tables = rq("--from", "tables", "--format", fmt)
        auto = rq("--format", fmt)
        assert files.exit_code == tables.exit_code == auto.exit_code == 0
        # The same reports; only the source they name differs.
        part = f"s3://{bucket}/tables/pr/observations/file=pr.data.0.Current/part-0.parquet"
        assert (part in tables.stdout) == (fmt == "markdown")
        assert tables.stdout == auto.stdout
        assert tables.stdout.replace(part, f"s3://{bucket}/pr/pr.data.0.Current") == files.stdout


def test_table_and_markdown_show_control_characters_as_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A series id and a series title (from the mapping files beside the data file) carrying
    escape sequences, a carriage return and a bidi override print as escapes."""
    monkeypatch.setenv("COLUMNS", "400")
    data = hostile_survey(tmp_path)
    for fmt in ("table", "markdown"):
        result = rq("--report", "best-year", "--bls", str(data), "--format", fmt)
        assert result.exit_code == 0, result.output
        assert_no_raw_controls(result.stdout)
        assert visible(SERIES) in result.stdout and visible(SECTOR) in result.stdout


def test_a_disk_without_room_for_the_download_is_exit_1_saying_so(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    from rearcquest.aws import storage

    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"bls-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="pr/pr.data.0.Current", Body=LATEST.read_bytes())
    monkeypatch.setenv("RQ_BLS_BUCKET", bucket)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # A TMPDIR with 1 MB free; the file is 1.6 MB.
    monkeypatch.setattr(storage, "free_bytes", lambda directory: 1_000_000)
    result = rq(
        "--report",
        "best-year",
        "--bls",
        f"s3://{bucket}/pr/pr.data.0.Current",
        "--endpoint-url",
        moto_server,
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: no space left in {tmp_path}/rq-")
    assert "-analyze-" in result.stderr.splitlines()[0]  # rq's own folder, named for the run
    assert f": need ~2 MB, have 1 MB (to download s3://{bucket}/pr/pr.data.0.Current); free " in (
        result.stderr
    )
    assert "cannot read" not in result.stderr


def test_a_table_in_a_pipe_shows_every_series_title_whole(shared_data: Path) -> None:
    """Stdout is no terminal (CliRunner): rich would lay the table out in 80 columns and cut
    each title with an ellipsis; in a pipe or a file every title is whole."""
    doc = json.loads(local("--report", "best-year", "--format", "json").stdout)
    titles = [row["title"] for row in doc["best_year"]]
    result = local("--report", "best-year")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    shown = {row[3] for row in _table_rows(result.stdout)}
    assert shown == set(titles)
    assert max(titles, key=len) in result.stdout


def test_max_rows_caps_each_report_table(shared_data: Path) -> None:
    every = _table_rows(local("--report", "best-year").stdout)
    result = local("--report", "best-year", "--max-rows", "5")
    assert result.exit_code == 0, result.output
    assert _table_rows(result.stdout) == every[:5]
    assert f"{len(every) - 5:,} more rows not shown (--max-rows" in result.stdout
    # The other formats are data: every row, whatever --max-rows says.
    as_csv = local("--report", "best-year", "--format", "csv", "--max-rows", "5")
    assert len(as_csv.stdout.splitlines()) == len(every) + 1


def test_output_without_matplotlib_is_refused_before_the_reports_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charts' check comes first: a missing input is not read, no report is printed."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    missing = tmp_path / "no-such.data"
    result = rq("--bls", str(missing), "--population", str(ACS5), "--output", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: the PNG charts need matplotlib: pip install 'rearcquest[charts]'\n"
    )
    assert result.stdout == ""


def test_format_before_the_command_is_the_commands_format(shared_data: Path) -> None:
    # `rq --format json analyze ...` as `rq analyze ... --format json` (issue 22: conventions).
    inputs = ["--bls", str(LATEST), "--population", str(ACS5), "--report", "population"]
    after = runner.invoke(app, ["analyze", *inputs, "--format", "json"])
    before = runner.invoke(app, ["--format", "json", "analyze", *inputs])
    assert before.exit_code == after.exit_code == 0, before.output
    assert before.stdout == after.stdout
    assert json.loads(before.stdout)["population"]["from_year"] == 2013
