"""Tables after syncs: ``rq sync-bls --tables``, ``rq run``/the scheduled Lambda and the fan-out
worker build a survey's tables when its sync changed something, and only then.

The source is the BLS-like server on 127.0.0.1 serving the real ``pr`` release and a second
survey ``zz`` with its own code files; S3 is moto (in process, or its server for the CLI).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import release
from rearcquest import lambdas
from rearcquest.aws.storage import ObjectStore
from rearcquest.cli import app
from rearcquest.config import RetryPolicy, Settings
from rearcquest.errors import ConfigError, RqError
from rearcquest.jobs.job import AfterSync
from rearcquest.jobs.pipeline import run_pipeline
from rearcquest.layout import manifest_key, observations_key, population_key, series_key
from rearcquest.offline import OfflineServer, ServedFile, add_datausa_routes
from sync_helpers import run_job, run_jobs
from test_tables import ZZ

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02, max_retry_after=0.02)
CONTACT = "tables@example.com"
ZZ_DATA = "zz.data.0.Current"
MALFORMED = ZZ["zz.data.0.Current"] + "ZZA1        \tyear?\tM03\t1\t\r\n"


def zz_files(day: int = 6, **changes: str) -> dict[str, ServedFile]:
    texts = {**ZZ, **changes}
    return {
        name: ServedFile(name, text.encode(), datetime(2026, 8, day, 8, 30))
        for name, text in texts.items()
    }


@pytest.fixture
def server() -> Iterator[OfflineServer]:
    """``pr/`` (the real 2025-09-04 release) and ``zz/`` under one root."""
    with OfflineServer(release("2025-09-04"), surveys={"zz": zz_files()}) as served:
        yield served


def sync_both(store: ObjectStore, server: OfflineServer, **options: Any) -> Any:
    return run_jobs(
        store, ["pr", "zz"], server.root_url, tables=True, contact=CONTACT, retry=FAST, **options
    )


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {t["table"]: t["status"] for t in doc["tables"]}


def test_a_changed_survey_rebuilds_and_an_unchanged_one_does_not(
    store: ObjectStore, server: OfflineServer
) -> None:
    first = sync_both(store, server)
    assert first.exit_code == 0, first.to_dict()
    for survey in ("pr", "zz"):
        doc = first.surveys[survey].result.tables  # type: ignore[union-attr]
        assert doc["skipped"] is None and doc["failed"] == 0 and doc["built"] >= 2, doc
        assert store.head(series_key("tables/", survey)) is not None
    assert store.head(observations_key("tables/", "zz", ZZ_DATA)) is not None
    manifests = {s: store.get_bytes(manifest_key("tables/", s)) for s in ("pr", "zz")}

    # Nothing changed at the source: no table is rebuilt, not even the manifests.
    second = sync_both(store, server)
    assert second.exit_code == 0
    for survey in ("pr", "zz"):
        doc = second.surveys[survey].result.tables  # type: ignore[union-attr]
        assert doc["skipped"] == "the sync changed nothing and the tables are current"
        assert store.get_bytes(manifest_key("tables/", survey)) == manifests[survey]

    # zz's data file changes: its partition alone is rebuilt; pr stays as it was.
    extra = "ZZC9        \t2003\tM01\t       7.0\t\r\n"
    server.set_survey("zz", zz_files(day=7, **{ZZ_DATA: ZZ[ZZ_DATA] + extra}))
    third = sync_both(store, server)
    assert third.exit_code == 0, third.to_dict()
    zz = third.surveys["zz"].result.tables  # type: ignore[union-attr]
    assert zz["reason"] == "the sync changed 1 file(s)"
    assert statuses(zz) == {"observations": "built", "series": "unchanged"}
    assert third.surveys["pr"].result.tables["skipped"]  # type: ignore[union-attr]
    assert store.get_bytes(manifest_key("tables/", "pr")) == manifests["pr"]
    part = pl.read_parquet(io.BytesIO(store.get_bytes(observations_key("tables/", "zz", ZZ_DATA))))
    assert part.height == 5


def test_a_survey_whose_tables_fail_fails_alone_and_is_retried(
    store: ObjectStore, server: OfflineServer
) -> None:
    server.set_survey("zz", zz_files(**{ZZ_DATA: MALFORMED}))
    first = sync_both(store, server)
    zz, pr = first.surveys["zz"], first.surveys["pr"]
    assert pr.error is None and pr.result.tables["built"] > 0  # type: ignore[union-attr]
    assert zz.exit_code == 1
    assert "the files were synced but not their tables" in str(zz.error)
    assert f"s3://{store.bucket}/zz/{ZZ_DATA}" in str(zz.error)
    # The mirror is synced; the failed partition was never written, the series was.
    assert store.head(f"zz/{ZZ_DATA}") is not None
    assert store.head(observations_key("tables/", "zz", ZZ_DATA)) is None
    assert store.head(series_key("tables/", "zz")) is not None
    with pytest.raises(RqError, match=r"1 of 2 survey\(s\) failed: zz: ") as raised:
        first.raise_for_errors()
    assert raised.value.exit_code == 1

    # The next run syncs nothing new, yet retries zz's tables (they failed), not pr's.
    second = sync_both(store, server)
    assert (
        second.surveys["zz"]
        .result.tables["reason"]
        .startswith(  # type: ignore[union-attr]
            "the last build failed: zz.data.0.Current"
        )
    )
    assert second.surveys["zz"].exit_code == 1
    assert second.surveys["pr"].result.tables["skipped"]  # type: ignore[union-attr]

    # Fixed at the source: built, and the survey is fine again.
    server.set_survey("zz", zz_files(day=8))
    third = sync_both(store, server)
    assert third.exit_code == 0, third.to_dict()
    assert store.head(observations_key("tables/", "zz", ZZ_DATA)) is not None


def test_a_root_prefix_puts_the_tables_beside_the_mirrors(
    store: ObjectStore, server: OfflineServer
) -> None:
    result = sync_both(store, server, root_prefix="mirrors/")
    assert result.exit_code == 0, result.to_dict()
    assert store.head(series_key("mirrors/tables/", "zz")) is not None
    assert store.head(series_key("tables/", "zz")) is None


def test_a_dry_run_builds_nothing(store: ObjectStore, server: OfflineServer) -> None:
    result = sync_both(store, server, dry_run=True)
    assert result.surveys["pr"].result.tables is None  # type: ignore[union-attr]
    assert not list(store.list_objects("tables/"))


def test_the_job_of_one_directory_with_the_index_page(
    store: ObjectStore, server: OfflineServer
) -> None:
    result = run_job(
        store,
        AfterSync(index=True, tables=True),
        index_key="index.html",
        source_url=server.bls_url,
        prefix="pr/",
        contact=CONTACT,
        retry=FAST,
    )
    assert result.index_written == "index.html"
    assert result.tables is not None and result.tables["built"] == 3  # 2 data files + series
    assert result.to_dict()["tables_error"] is None


def test_tables_of_a_mirror_at_the_bucket_root_are_refused_before_any_sync(
    store: ObjectStore, server: OfflineServer
) -> None:
    with pytest.raises(ConfigError, match="give it a --prefix such as pr/"):
        run_job(
            store, AfterSync(tables=True), source_url=server.bls_url, prefix="", contact=CONTACT
        )
    assert server.requests == []
    with pytest.raises(ConfigError, match="bucket root"):
        run_pipeline(
            Settings(
                bls_bucket=store.bucket, bls_prefix="", population_bucket=store.bucket, tables=True
            ),
            s3_client=store.client,
        )


# -- rq sync-bls --tables ---------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def bucket(moto_server: str) -> str:
    name = f"tables-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def cli_sync(moto_server: str, bucket: str, server: OfflineServer, *extra: str) -> Any:
    return runner.invoke(
        app,
        [
            "sync-bls",
            "--bucket",
            bucket,
            "--endpoint-url",
            moto_server,
            "--source-url",
            server.bls_url,
            "--contact",
            CONTACT,
            "--retries",
            "2",
            "--tables",
            *extra,
        ],
    )


def test_cli_sync_bls_tables_then_sql_answers_a_join(
    moto_server: str, bucket: str, server: OfflineServer
) -> None:
    first = cli_sync(moto_server, bucket, server, "--format", "json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["tables"]["built"] == 3 and doc["tables_error"] is None
    again = cli_sync(moto_server, bucket, server)
    assert again.exit_code == 0, again.output
    assert (
        f"tables    s3://{bucket}/tables/: not rebuilt (the sync changed nothing and the tables "
        "are current)" in again.stdout
    )
    answer = runner.invoke(
        app,
        [
            "sql",
            "SELECT s.title, COUNT(*) AS n FROM pr_observations o JOIN pr_series s "
            "ON o.series_id = s.series_id WHERE o.file = 'pr.data.0.Current' "
            "AND o.series_id = 'PRS30006032' GROUP BY s.title",
            "--tables",
            f"s3://{bucket}/tables/",
            "--endpoint-url",
            moto_server,
            "--format",
            "json",
        ],
    )
    assert answer.exit_code == 0, answer.output
    (row,) = json.loads(answer.stdout)
    assert row["title"].startswith("Manufacturing; All workers; Hours worked")
    assert row["n"] > 0


def test_cli_tables_failure_is_exit_1_after_the_sync(
    moto_server: str, bucket: str, server: OfflineServer
) -> None:
    files = release("2025-09-04")
    bad = files["pr.data.0.Current"].data + b"PRS30006032    \tyear?\tQ01\t1.0\t\r\n"
    server.set_files(
        {
            **files,
            "pr.data.0.Current": ServedFile(
                "pr.data.0.Current", bad, files["pr.data.0.Current"].listed
            ),
        }
    )
    result = cli_sync(moto_server, bucket, server)
    assert result.exit_code == 1
    assert "Error: the files were synced but not their tables: 1 table(s) not built: " in (
        result.output
    )
    assert "pr.data.0.Current" in result.output
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    assert client.head_object(Bucket=bucket, Key="pr/pr.data.0.Current")


def test_cli_tables_with_the_mirror_at_the_root_is_a_usage_error(
    moto_server: str, bucket: str, server: OfflineServer
) -> None:
    result = cli_sync(moto_server, bucket, server, "--prefix", "")
    assert result.exit_code == 2
    assert "give it a --prefix such as pr/" in result.output


# -- the Lambdas ------------------------------------------------------------------------------------


@pytest.fixture
def aws(lambda_aws: tuple[Any, Any]) -> Any:
    return lambda_aws[0]


def lambda_env(monkeypatch: pytest.MonkeyPatch, server: OfflineServer) -> None:
    urls = add_datausa_routes(server)
    for name, value in {
        "RQ_BLS_BUCKET": "rq-bls",
        "RQ_POPULATION_BUCKET": "rq-population",
        "RQ_BLS_URL": server.bls_url,
        "RQ_BLS_ROOT_URL": server.root_url,
        "RQ_POPULATION_URL": urls["tesseract"],
        "RQ_CONTACT": CONTACT,
        "RQ_TABLES": "1",
    }.items():
        monkeypatch.setenv(name, value)


def table(s3: Any, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(s3.get_object(Bucket="rq-bls", Key=key)["Body"].read()))


def test_scheduled_handler_builds_the_tables_and_the_population_table(
    aws: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_env(monkeypatch, server)
    summary = lambdas.scheduled_handler({}, None)
    assert summary["ok"] is True, summary
    tables = summary["tables"]
    assert tables["error"] is None
    assert tables["summary"]["survey"]["built"] == 3
    assert tables["summary"]["population"]["built"] == 1
    series = table(aws, series_key("tables/", "pr"))
    (title,) = series.filter(pl.col("series_id") == "PRS30006032")["title"].to_list()
    assert title.startswith("Manufacturing; All workers; Hours worked")
    population = table(aws, population_key("tables/"))
    assert population.schema["year"] == pl.Int16 and population.height > 5

    # The next day nothing changed: nothing rebuilt.
    again = lambdas.scheduled_handler({}, None)
    assert again["tables"]["summary"]["survey"]["skipped"]
    assert again["tables"]["summary"]["population"]["unchanged"] == 1


def test_run_registers_the_glue_tables_it_builds(
    aws: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rq run (the scheduled function without the fan-out) with RQ_GLUE_DATABASE: a cron user's
    # Athena tables, without the stack.
    lambda_env(monkeypatch, server)
    monkeypatch.setenv("RQ_GLUE_DATABASE", "bls")
    glue = boto3.client("glue", region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "bls"})
    summary = lambdas.scheduled_handler({}, None)
    assert summary["ok"] is True, summary
    tables = summary["tables"]["summary"]
    assert tables["survey"]["glue"]["created"] == ["pr_observations", "pr_series"]
    assert tables["glue"]["created"] == ["population"]
    names = sorted(t["Name"] for t in glue.get_tables(DatabaseName="bls")["TableList"])
    assert names == ["population", "pr_observations", "pr_series"]

    # Deleted behind rq's back: the next run, though nothing changed, puts it back.
    glue.delete_table(DatabaseName="bls", Name="pr_series")
    again = lambdas.scheduled_handler({}, None)
    assert again["tables"]["summary"]["survey"]["glue"]["created"] == ["pr_series"]
    assert again["tables"]["summary"]["glue"]["created"] == []


def test_scheduled_handler_fails_on_a_failed_table_after_every_step(
    aws: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_env(monkeypatch, server)
    files = release("2025-09-04")
    bad = files["pr.data.1.AllData"].data + b"PRS30006032    \t2019\tQ01\tnot-a-number!\t\r\n"
    server.set_files(
        {
            **files,
            "pr.data.1.AllData": ServedFile(
                "pr.data.1.AllData", bad, files["pr.data.1.AllData"].listed
            ),
        }
    )
    with pytest.raises(RqError, match=r"^tables failed: .*pr\.data\.1\.AllData") as raised:
        lambdas.scheduled_handler({}, None)
    assert raised.value.exit_code == 1
    # The sync and the fetch did their work; so did the other tables.
    assert aws.head_object(Bucket="rq-population", Key="datausa/population.json")
    assert aws.head_object(
        Bucket="rq-bls", Key=observations_key("tables/", "pr", "pr.data.0.Current")
    )
    assert aws.head_object(Bucket="rq-bls", Key=population_key("tables/"))


def test_fanout_workers_build_each_surveys_tables(
    aws: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.aws.queues import Queue
    from rearcquest.localaws import drain_queue
    from test_fanout import work_queue

    sqs = boto3.client("sqs", region_name="us-east-1")
    url, dlq = work_queue(sqs)
    lambda_env(monkeypatch, server)
    monkeypatch.setenv("RQ_WORK_QUEUE_URL", url)
    monkeypatch.setenv("RQ_SURVEYS", "pr,zz")
    server.set_survey("zz", zz_files(**{ZZ_DATA: MALFORMED}))
    planned = lambdas.scheduled_handler({}, None)
    assert planned["tables"]["summary"]["population"]["built"] == 1

    def worker(event: dict[str, Any]) -> dict[str, Any]:
        return lambdas.work_handler(event, None)

    responses = []
    for _ in range(7):
        responses += drain_queue(Queue(sqs, url), worker, batch_size=1)
    failed = [r for r in responses if r["batchItemFailures"]]
    # zz's message fails on its table every time it is handed out again, although its sync
    # changes nothing after the first: five receives, then the dead-letter queue.
    assert len(failed) == 5
    (dead,) = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(dead["Body"])["survey"] == "zz"
    assert aws.head_object(Bucket="rq-bls", Key=series_key("tables/", "pr"))
    assert aws.head_object(Bucket="rq-bls", Key=f"zz/{ZZ_DATA}")
    with pytest.raises(aws.exceptions.ClientError):
        aws.head_object(Bucket="rq-bls", Key=observations_key("tables/", "zz", ZZ_DATA))

    # Fixed at the source: the next day's worker builds it.
    server.set_survey("zz", zz_files(day=9))
    lambdas.scheduled_handler({}, None)
    assert all(
        r == {"batchItemFailures": []} for r in drain_queue(Queue(sqs, url), worker, batch_size=1)
    )
    assert table(aws, observations_key("tables/", "zz", ZZ_DATA)).height == 4


def test_fanout_workers_register_the_glue_tables_of_surveys_the_stack_cannot_know(
    aws: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.aws.queues import Queue
    from rearcquest.localaws import drain_queue
    from test_fanout import work_queue

    sqs = boto3.client("sqs", region_name="us-east-1")
    glue = boto3.client("glue", region_name="us-east-1")
    url, dlq = work_queue(sqs)
    lambda_env(monkeypatch, server)
    monkeypatch.setenv("RQ_WORK_QUEUE_URL", url)
    monkeypatch.setenv("RQ_SURVEYS", "all")
    monkeypatch.setenv("RQ_GLUE_DATABASE", "rq_tables")

    def worker(event: dict[str, Any]) -> dict[str, Any]:
        return lambdas.work_handler(event, None)

    # The database is missing: the tables are built, but every message fails (and is retried)
    # until it can register them.
    lambdas.scheduled_handler({}, None)
    responses = []
    for _ in range(12):  # each round stops at a failed message
        responses += drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert sum(1 for r in responses if r["batchItemFailures"]) == 2 * 5
    assert len(sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]) == 2
    assert aws.head_object(Bucket="rq-bls", Key=series_key("tables/", "zz"))

    # The stack made the database and declared pr's tables; the next day's workers add zz's,
    # though nothing changed, and leave the stack's as they are.
    glue.create_database(DatabaseInput={"Name": "rq_tables"})
    glue.create_table(
        DatabaseName="rq_tables",
        TableInput={"Name": "pr_observations", "Description": "declared by the stack"},
    )
    lambdas.scheduled_handler({}, None)
    responses = drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert all(r == {"batchItemFailures": []} for r in responses)
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="rq_tables")["TableList"]}
    assert sorted(tables) == ["pr_observations", "pr_series", "zz_observations", "zz_series"]
    assert tables["pr_observations"]["Description"] == "declared by the stack"
    zz = tables["zz_observations"]
    assert zz["StorageDescriptor"]["Location"] == "s3://rq-bls/tables/zz/observations/"
    assert [k["Name"] for k in zz["PartitionKeys"]] == ["file"]
    assert zz["Parameters"]["projection.file.type"] == "injected"
    assert zz["Parameters"]["storage.location.template"] == (
        "s3://rq-bls/tables/zz/observations/file=${file}/"
    )
    assert tables["zz_series"]["StorageDescriptor"]["Location"] == "s3://rq-bls/tables/zz/series/"


def test_one_surveys_unexpected_tables_failure_never_stops_the_others(
    store: ObjectStore, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rearcquest.data import tables
    from rearcquest.jobs import job

    build = tables.build_tables

    def buggy(store_: ObjectStore, *, surveys: list[str], **options: Any) -> Any:
        if surveys == ["pr"]:
            raise RuntimeError("boom")
        return build(store_, surveys=surveys, **options)

    monkeypatch.setattr(job, "build_tables", buggy)  # what the survey's job calls
    result = sync_both(store, server)
    pr, zz = result.surveys["pr"], result.surveys["zz"]
    # pr's files are synced and its summary kept; its tables failed, alone.
    assert pr.exit_code == 1
    assert pr.error == (
        "the files were synced but not their tables: unexpected error (RuntimeError: boom); "
        "please report it"
    )
    assert pr.result is not None and len(pr.result.sync.added) > 0
    assert store.head("pr/pr.series") is not None
    assert zz.error is None, zz.error
    assert store.head(series_key("tables/", "zz")) is not None
    # The next run retries pr's tables (the build never finished) and they are built.
    monkeypatch.undo()
    again = sync_both(store, server)
    assert again.exit_code == 0, again.to_dict()
    assert store.head(series_key("tables/", "pr")) is not None
