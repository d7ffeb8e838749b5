"""``rq tables`` against moto's S3 server: what it writes, prints and exits with."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from conftest import DATAUSA, break_survey_build, release
from rearcquest.cli import app
from rearcquest.layout import META_SHA256

runner = CliRunner()
POPULATION = (DATAUSA / "tesseract-acs1-2013-2023-raw.json").read_bytes()


def rq(*args: str) -> Any:
    return runner.invoke(app, ["tables", *args])


@pytest.fixture
def mirror(moto_server: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A bucket holding the mirrored 2024-06-06 release; RQ_BLS_BUCKET and the endpoint set."""
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"tables-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for name, served in release("2024-06-06").items():
        client.put_object(
            Bucket=bucket,
            Key=f"pr/{name}",
            Body=served.data,
            Metadata={META_SHA256: hashlib.sha256(served.data).hexdigest()},
        )
    monkeypatch.setenv("RQ_BLS_BUCKET", bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    client.bucket = bucket
    return client


def keys(client: Any, prefix: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=client.bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_builds_then_skips_and_says_so_in_json(mirror: Any) -> None:
    mirror.put_object(Bucket=mirror.bucket, Key="datausa/population.json", Body=POPULATION)
    first = rq("--format", "json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert (doc["built"], doc["unchanged"], doc["failed"]) == (4, 0, 0)
    assert doc["warnings"] == []
    assert {t["table"] for t in doc["tables"]} == {"observations", "series", "population"}
    assert keys(mirror, "tables/") == [
        "tables/population/_manifest.json",
        "tables/population/population.parquet",
        "tables/pr/_manifest.json",
        "tables/pr/observations/file=pr.data.0.Current/part-0.parquet",
        "tables/pr/observations/file=pr.data.1.AllData/part-0.parquet",
        "tables/pr/series/series.parquet",
    ]
    again = json.loads(rq("--format", "json").stdout)
    assert (again["built"], again["unchanged"]) == (0, 4)


def test_text_output_lists_each_table_and_the_population_warning(mirror: Any) -> None:
    result = rq("--tables-prefix", "parquet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"built     s3://{mirror.bucket}/parquet/pr/observations/file=pr.data.0.Current/"
        "part-0.parquet (35817 rows)"
    )
    assert lines[-1] == (
        f"warning: s3://{mirror.bucket}/datausa/population.json does not exist: "
        "no population table (rq fetch-population)"
    )


def test_population_from_another_bucket(mirror: Any) -> None:
    mirror.create_bucket(Bucket=mirror.bucket + "-pop")
    mirror.put_object(Bucket=mirror.bucket + "-pop", Key="p.json", Body=POPULATION)
    result = rq("--population", f"s3://{mirror.bucket}-pop/p.json", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "tables/population/population.parquet" in keys(mirror, "tables/population/")


def test_a_malformed_data_file_is_exit_1_and_the_rest_is_built(mirror: Any) -> None:
    bad = b"series_id\tyear\tperiod\tvalue\nPRS1\t2001\tQ01\t1.0\nPRS1\t2001\tQ02\tNaN\n"
    mirror.put_object(Bucket=mirror.bucket, Key="pr/pr.data.2.Bad", Body=bad)
    result = rq()
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: 1 table(s) not built: s3://{mirror.bucket}/pr/pr.data.2.Bad: "
        f"s3://{mirror.bucket}/pr/pr.data.2.Bad line 3: "
        "value 'NaN' is not a decimal number with at most 3 decimals\n"
    )
    built = keys(mirror, "tables/pr/observations/")
    assert built == [
        "tables/pr/observations/file=pr.data.0.Current/part-0.parquet",
        "tables/pr/observations/file=pr.data.1.AllData/part-0.parquet",
    ]


@pytest.mark.parametrize("hostile", [b"1e300", str(2**63).encode()], ids=["1e300", "2**63"])
def test_a_hostile_stored_population_fails_its_table_alone(mirror: Any, hostile: bytes) -> None:
    # Written into the bucket by someone else: rq fetch-population refuses to store it.
    body = POPULATION.replace(b"316128839.0", hostile, 1)
    mirror.put_object(Bucket=mirror.bucket, Key="datausa/population.json", Body=body)
    result = rq()
    assert result.exit_code == 1, result.output
    url = f"s3://{mirror.bucket}/datausa/population.json"
    assert result.stderr == (
        f"Error: 1 table(s) not built: {url}: {url}: row 1 (year 2013): Population "
        f"{json.loads(hostile)!r} is not a national population (at least 10,000,000,000); "
        "the answer is not what was asked for\n"
    )
    assert keys(mirror, "tables/population/") == []
    assert "tables/pr/series/series.parquet" in keys(mirror, "tables/pr/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--survey", "xx"), "holds no xx.series: is 'xx' a mirrored survey?"),
        (("--population", "/tmp/p.json"), "--population '/tmp/p.json' is not an s3://bucket/key"),
        (("--tables-prefix", ""), "--tables-prefix must not be empty"),
        # The rule of every prefix rq takes (--prefix, --root-prefix): no leading slash, no '..'.
        (("--tables-prefix", "/"), "prefix '/' must be relative and must not contain '..'"),
        (("--tables-prefix", "../x"), "prefix '../x' must be relative and must not contain '..'"),
    ],
    ids=["unknown-survey", "local-population", "empty-prefix", "root-slash", "dotdot"],
)
def test_usage_errors_are_exit_2(mirror: Any, args: tuple[str, ...], message: str) -> None:
    result = rq(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert keys(mirror, "tables/") == []


def test_all_finds_every_mirrored_survey(mirror: Any) -> None:
    mirror.put_object(Bucket=mirror.bucket, Key="zz/zz.series", Body=b"series_id\nZZ1\n")
    result = rq("--survey", "all", "--format", "json")
    assert result.exit_code == 0, result.output
    assert {t["survey"] for t in json.loads(result.stdout)["tables"]} == {"pr", "zz"}


def test_no_bucket_is_exit_2_saying_what_to_set() -> None:
    result = rq()
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no bucket given: pass --bucket or set the RQ_")


def test_a_root_prefix_for_tables_sql_and_analyze(mirror: Any) -> None:
    """Mirrors under <root prefix><survey>/ (rq sync-bls --root-prefix): --root-prefix finds
    them, and their tables go to <root prefix>tables/, where rq sql and rq analyze look."""
    for name, served in release("2024-06-06").items():
        mirror.put_object(
            Bucket=mirror.bucket,
            Key=f"mirrors/pr/{name}",
            Body=served.data,
            Metadata={META_SHA256: hashlib.sha256(served.data).hexdigest()},
        )
    built = rq("--root-prefix", "mirrors/", "--format", "json")
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["tables_prefix"] == "mirrors/tables/"
    series = "mirrors/tables/pr/series/series.parquet"
    assert keys(mirror, series) == [series]
    assert keys(mirror, "tables/") == []  # the mirror at the bucket root got no tables
    answer = runner.invoke(
        app,
        [
            "sql",
            "SELECT COUNT(*) AS n FROM pr_series",
            "--root-prefix",
            "mirrors/",
            "--format",
            "json",
        ],
    )
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout) == [{"n": 282}]
    analyzed = runner.invoke(
        app,
        [
            "analyze",
            "--report",
            "best-year",
            "--from",
            "tables",
            "--root-prefix",
            "mirrors/",
            "--format",
            "json",
        ],
    )
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.stdout)["best_year"]
    # Without it, the tables of the root mirror are looked for, and there are none.
    missing = runner.invoke(app, ["analyze", "--report", "best-year", "--from", "tables"])
    assert missing.exit_code == 2
    assert "no current table for s3://" in missing.output


def test_a_survey_another_run_holds_fails_alone_with_exit_5(mirror: Any) -> None:
    """rq tables builds each survey under its mirror's lease, the one rq sync-bls takes."""
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.layout import lock_key
    from rearcquest.records.lease import Lease

    mirror.put_object(Bucket=mirror.bucket, Key="zz/zz.series", Body=b"series_id\nZZ1\n")
    store = ObjectStore(mirror, mirror.bucket)
    with Lease(store, lock_key("pr/"), holder="other-host:42:sync").acquire():
        held = rq("--survey", "all", "--format", "json")
        assert held.exit_code == 5, held.output
        doc = json.loads(held.stdout)
        (refused,) = [t for t in doc["tables"] if t["survey"] == "pr"]
        assert refused["status"] == "failed" and "other-host:42:sync" in refused["error"]
        assert keys(mirror, "tables/pr/") == []  # nothing of pr touched while it was held
        assert keys(mirror, "tables/zz/series/") == ["tables/zz/series/series.parquet"]
        unlocked = rq("--survey", "pr", "--no-lock", "--format", "json")
        assert unlocked.exit_code == 0, unlocked.output
    after = rq("--survey", "pr", "--format", "json")
    assert after.exit_code == 0, after.output
    assert keys(mirror, lock_key("pr/")) == []  # released after the build


def glue_client() -> Any:
    import os

    return boto3.client(
        "glue", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1"
    )


def test_glue_database_gets_what_was_built_and_keeps_what_it_had(
    mirror: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    glue = glue_client()
    database = f"rq_{uuid.uuid4().hex[:8]}"
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(
        DatabaseName=database, TableInput={"Name": "pr_series", "Description": "mine"}
    )
    mirror.put_object(Bucket=mirror.bucket, Key="datausa/population.json", Body=POPULATION)
    first = rq("--glue-database", database, "--format", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["glue"] == {
        "database": database,
        "created": ["population", "pr_observations"],
        "skipped": {},
    }
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert sorted(tables) == ["population", "pr_observations", "pr_series"]
    assert tables["pr_series"]["Description"] == "mine"
    observations = tables["pr_observations"]
    assert observations["StorageDescriptor"]["Location"] == (
        f"s3://{mirror.bucket}/tables/pr/observations/"
    )
    assert observations["Parameters"]["projection.file.type"] == "injected"
    assert tables["population"]["StorageDescriptor"]["Location"] == (
        f"s3://{mirror.bucket}/tables/population/"
    )
    # Nothing to build, nothing to create; the database may come from the environment.
    monkeypatch.setenv("RQ_GLUE_DATABASE", database)
    again = rq()
    assert again.exit_code == 0, again.output
    assert (
        again.stdout.splitlines()[-1] == f"Glue database {database}: every table was already there"
    )


def test_a_missing_glue_database_is_exit_1_before_anything_is_built(mirror: Any) -> None:
    result = rq("--glue-database", "no_such_database")
    assert result.exit_code == 1
    assert "Error: the Glue database 'no_such_database' does not exist" in result.stderr
    assert keys(mirror, "tables/") == []


class _Refusing:
    """A Glue client that may read but not create (a role without glue:CreateTable)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def create_table(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
        raise ClientError(error, "CreateTable")


def test_a_glue_refusal_after_the_build_keeps_the_tables_and_fails(mirror: Any) -> None:
    from rearcquest.aws.storage import ObjectStore, make_s3_client
    from rearcquest.config import Settings
    from rearcquest.data.tables import TablesOptions
    from rearcquest.errors import StorageError
    from rearcquest.jobs.pipeline import build_tables_registered

    glue = glue_client()
    database = f"rq_{uuid.uuid4().hex[:8]}"
    glue.create_database(DatabaseInput={"Name": database})
    run = build_tables_registered(
        ObjectStore(make_s3_client(), mirror.bucket),
        TablesOptions(survey="pr", glue_database=database),
        settings=Settings.from_env(),
        glue_client=_Refusing(glue),
    )
    assert "AccessDeniedException" in (run.glue_error or "")
    assert run.to_dict()["glue"] == {"database": database, "error": run.glue_error}
    with pytest.raises(StorageError, match="the tables were built but not registered in Glue"):
        run.raise_for_errors()
    assert "tables/pr/series/series.parquet" in keys(mirror, "tables/")
    assert glue.get_tables(DatabaseName=database)["TableList"] == []


def test_a_survey_not_in_the_bucket_is_exit_2_with_nothing_written(mirror: Any) -> None:
    """Every survey named is checked before any is built (docs/tables.md)."""
    result = rq("--survey", "pr,zz,yy", "--format", "json")
    assert result.exit_code == 2, result.output
    assert "holds no zz.series: is 'zz' a mirrored survey?" in result.stderr
    assert "holds no yy.series" in result.stderr
    assert "nothing was built" in result.stderr
    assert result.stdout == ""
    assert keys(mirror, "tables/") == []
    assert keys(mirror, "pr/") == sorted(f"pr/{name}" for name in release("2024-06-06"))


def test_one_surveys_unexpected_failure_is_exit_1_with_the_others_summary(
    mirror: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.put_object(Bucket=mirror.bucket, Key="zz/zz.series", Body=b"series_id\nZZ1\n")
    break_survey_build(monkeypatch, "pr", RuntimeError("boom"))
    result = rq("--survey", "pr,zz", "--format", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["failed"] == 1
    assert {(t["survey"], t["status"]) for t in doc["tables"]} == {
        ("pr", "failed"),
        ("zz", "built"),
    }
    assert result.stderr.splitlines()[-1] == (
        f"Error: 1 table(s) not built: s3://{mirror.bucket}/pr/: unexpected error "
        "(RuntimeError: boom); please report it"
    )


def test_rq_tables_rebuilds_a_partition_overwritten_under_a_current_manifest(mirror: Any) -> None:
    assert rq().exit_code == 0
    part = "tables/pr/observations/file=pr.data.0.Current/part-0.parquet"
    mirror.put_object(Bucket=mirror.bucket, Key=part, Body=b"PAR1 other bytes")
    result = rq("--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {t["key"]: t["status"] for t in doc["tables"]}[part] == "built"
    analyzed = runner.invoke(app, ["analyze", "--report", "best-year", "--from", "tables"])
    assert analyzed.exit_code == 0, analyzed.output
