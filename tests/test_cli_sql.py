"""``rq sql``: Polars SQL over the tables, local or in S3 (moto's server), in every format."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from conftest import DATAUSA, release
from hostile_helpers import SECTOR, SERIES, assert_no_raw_controls, hostile_survey
from rearcquest._text import visible
from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.cli import app
from rearcquest.data.tables import build_local_tables, build_tables

runner = CliRunner()
# The columns of pr_series, in order.
COLUMNS = [
    "series_id",
    "sector_code",
    "sector_name",
    "class_code",
    "class_text",
    "measure_code",
    "measure_text",
    "duration_code",
    "duration_text",
    "seasonal",
    "seasonal_text",
    "base_year",
    "footnote_codes",
    "begin_year",
    "begin_period",
    "end_year",
    "end_period",
    "title",
]
JOIN = (
    "SELECT o.year, o.value, p.population FROM pr_observations o "
    "JOIN population p ON o.year = p.year WHERE o.file = 'pr.data.0.Current' "
    "AND o.series_id = 'PRS30006032' AND o.period = 'Q01' AND o.year BETWEEN 2017 AND 2018 "
    "ORDER BY o.year"
)


def rq(*args: str) -> Any:
    return runner.invoke(app, ["sql", *args])


_BUILT: dict[str, str] = {}


@pytest.fixture
def tables_bucket(moto_server: str) -> str:
    """A bucket with the 2026-08-06 release mirrored and its tables built, made once (queries
    only read it); yields its name. Function-scoped so that it runs with the isolated env."""
    if moto_server in _BUILT:
        return _BUILT[moto_server]
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"sql-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    store = ObjectStore(make_s3_client(endpoint_url=moto_server), bucket)
    for name, served in release("2026-08-06").items():
        store.put_bytes(f"pr/{name}", served.data)
    store.put_bytes(
        "datausa/population.json", (DATAUSA / "tesseract-acs1-2013-2023-raw.json").read_bytes()
    )
    build_tables(store, population_object="datausa/population.json")
    _BUILT[moto_server] = bucket
    return bucket


@pytest.fixture
def env(moto_server: str, tables_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RQ_BLS_BUCKET", tables_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return tables_bucket


def test_a_join_as_csv_from_the_default_location(env: str) -> None:
    result = rq(JOIN, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "year,value,population\n2017,0.900,325719178\n2018,0.500,327167439\n"


def test_json_keeps_the_decimal_digits(env: str) -> None:
    result = rq(JOIN, "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"value": 0.900' in result.stdout
    assert json.loads(result.stdout) == [
        {"year": 2017, "value": 0.9, "population": 325719178},
        {"year": 2018, "value": 0.5, "population": 327167439},
    ]


def test_markdown_and_table(env: str) -> None:
    markdown = rq(JOIN, "--format", "markdown")
    assert markdown.stdout.splitlines()[:3] == [
        "| year | value | population |",
        "|---:|---:|---:|",
        "| 2017 | 0.900 | 325719178 |",
    ]
    table = rq("SELECT series_id, title FROM pr_series WHERE series_id = 'PRS30006032'")
    assert table.exit_code == 0, table.output
    assert "Manufacturing; All workers; Hours worked" in table.stdout


def test_a_named_query_over_a_local_directory(env: str, tmp_path: Path) -> None:
    client = boto3.client("s3")
    for item in client.list_objects_v2(Bucket=env, Prefix="tables/")["Contents"]:
        path = tmp_path / item["Key"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(client.get_object(Bucket=env, Key=item["Key"])["Body"].read())
    result = rq(
        "--named", "series_population", "--tables", str(tmp_path / "tables"), "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "series_id,year,period,value,population"
    assert "PRS30006032,2018,Q01,0.500,327167439" in lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error: give either a QUERY or --named NAME\n"),
        (("SELECT 1", "--named", "best_year"), "Error: give either a QUERY or --named NAME\n"),
        (("--named", "nope"), "Error: no query 'nope'; choose from population, best_year"),
        (("SELECT * FROM nowhere",), "Error: the query failed: relation 'nowhere' was not found"),
    ],
    ids=["nothing", "both", "unknown-name", "unknown-table"],
)
def test_usage_errors_are_exit_2(env: str, args: tuple[str, ...], message: str) -> None:
    result = rq(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def test_no_location_and_no_bucket_is_exit_2() -> None:
    result = rq("SELECT 1")
    assert result.exit_code == 2
    assert result.stderr == ("Error: no tables: pass --tables DIR_OR_S3_URL or set RQ_BLS_BUCKET\n")


# -- only queries run (issue 19) -------------------------------------------------------------------

PART = "tables/pr/observations/file=pr.data.0.Current/part-0.parquet"


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("COPY population TO '{target}'", "COPY"),
        ("copy (SELECT * FROM population) to '{target}' (FORMAT parquet)", "COPY"),
        ("/* a query */ COPY population TO '{target}'", "COPY"),
        ("SELECT 1 /*...*/;COPY population TO '{target}'", "COPY"),
        ("SELECT 1; SELECT 2", "more than one statement"),
        ("SELECT * FROM read_csv('{secret}')", "table function read_csv"),
        ("SELECT * FROM \"read_csv\"('{secret}')", "table function read_csv"),
        ("SELECT * FROM '{secret}'", "the file name '{secret}' as a table"),
    ],
    ids=["copy", "copy-query", "copy-after-comment", "copy-after-select", "two-queries",
         "read-csv", "quoted",
         "file-as-table"],
)  # fmt: skip
def test_a_query_that_writes_or_reads_files_is_refused_with_exit_2(
    env: str, tmp_path: Path, query: str, refused: str
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    target = tmp_path / "out.parquet"
    text = query.format(target=target, secret=secret)
    result = rq(text)
    assert result.exit_code == 2, result.output
    reason = refused.format(secret=secret)
    assert result.stderr == f"Error: rq sql runs queries only: {reason} is not allowed\n"
    assert "hunter2" not in result.stdout
    assert not target.exists()


def test_copy_to_a_table_in_s3_is_refused_and_the_table_stays(env: str) -> None:
    """Before: the partition was overwritten, and rq analyze trusted it as current."""
    client = boto3.client("s3")
    before = client.head_object(Bucket=env, Key=PART)
    poisoned = "SELECT series_id, year, period, 999.0 AS value FROM pr_observations"
    result = rq(f"COPY ({poisoned}) TO 's3://{env}/{PART}' (FORMAT parquet)")
    assert result.exit_code == 2
    assert result.stderr == "Error: rq sql runs queries only: COPY is not allowed\n"
    after = client.head_object(Bucket=env, Key=PART)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])


def test_a_url_in_a_table_function_is_refused(env: str, bls_server: Any) -> None:
    url = f"{bls_server.bls_url}pr.series"
    result = rq(f"SELECT * FROM read_csv('{url}')")
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: rq sql runs queries only: table function read_csv is not allowed\n"
    )
    assert bls_server.requests == []


def test_table_shows_control_characters_and_markup_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell or a column name from the tables is data: its controls are shown as escapes and
    rich markup in it is text (an unmatched ``[/x]`` once raised a rich MarkupError)."""
    monkeypatch.setenv("COLUMNS", "400")
    hostile_survey(tmp_path / "files")
    build_local_tables(tmp_path / "files", "pr", tmp_path / "tables")
    query = "SELECT series_id, title, '[/x] [bold]b' AS \"[red]c\x1b[0m\" FROM pr_series"
    result = rq(query, "--tables", str(tmp_path / "tables"))
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.stdout)
    for shown in (visible(SERIES), visible(SECTOR), "[/x] [bold]b", "[red]c\\x1b[0m"):
        assert shown in result.stdout, shown
    markdown = rq(query, "--tables", str(tmp_path / "tables"), "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert_no_raw_controls(markdown.stdout)
    assert f"| {visible(SERIES)} | {visible(SECTOR)} | [/x] [bold]b |" in markdown.stdout


def test_a_wide_result_in_a_pipe_is_whole(env: str) -> None:
    """Stdout is no terminal (CliRunner): every column of pr_series and every title whole, where
    rich squeezed 18 columns into 80 and cut them to ``…``."""
    query = "SELECT * FROM pr_series ORDER BY series_id"
    rows = list(csv.DictReader(io.StringIO(rq(query, "--format", "csv").stdout)))
    result = rq(query)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [[c.strip() for c in line.split("│")[1:-1]] for line in lines] == [
        list(row.values()) for row in rows
    ]


def test_a_wide_result_in_a_terminal_names_the_columns_left_out(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.output import _console

    monkeypatch.setattr(_console, "_on_terminal", lambda console: True)
    monkeypatch.setenv("COLUMNS", "100")
    result = rq("SELECT * FROM pr_series ORDER BY series_id LIMIT 3")
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 100 for line in table)
    header = [c.strip() for c in table[1].split("┃")[1:-1]]
    assert header[0] == "series_id" and 1 < len(header) < 18
    note = " ".join(result.stdout.split())
    left_out = ", ".join(COLUMNS[len(header) :])
    assert f"{18 - len(header)} columns not shown: {left_out} (" in note
    assert "PRS30006011" in result.stdout


def test_max_rows_caps_the_table_only(env: str) -> None:
    query = "SELECT series_id FROM pr_series ORDER BY series_id"
    every = rq(query, "--format", "csv").stdout.splitlines()[1:]
    result = rq(query, "--max-rows", "2")
    assert result.exit_code == 0, result.output
    cells = [line.strip("│ ") for line in result.stdout.splitlines() if line.startswith("│")]
    assert cells == every[:2]
    assert f"{len(every) - 2:,} more rows not shown (--max-rows" in result.stdout
    assert rq(query, "--format", "csv", "--max-rows", "2").stdout.splitlines()[1:] == every
