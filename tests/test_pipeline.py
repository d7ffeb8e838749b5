"""The scheduled job (`rq run`, the scheduled Lambda): sync then fetch, failures isolated."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from conftest import FAST, release
from rearcquest.cli import app
from rearcquest.config import Settings
from rearcquest.errors import ConfigError, RqError
from rearcquest.jobs.pipeline import run_pipeline
from rearcquest.offline import Fault, OfflineServer, ServedFile, add_datausa_routes

runner = CliRunner()


@pytest.fixture
def buckets(moto_server: str) -> tuple[str, str, Any]:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bls, pop = f"bls-{uuid.uuid4().hex[:10]}", f"pop-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bls)
    client.create_bucket(Bucket=pop)
    return bls, pop, client


def settings(server: OfflineServer, urls: dict[str, str], bls: str, pop: str) -> Settings:
    return Settings(
        bls_bucket=bls,
        population_bucket=pop,
        bls_url=server.bls_url,
        population_url=urls["tesseract"],
        contact="job@example.com",
    )


def cron_env(
    monkeypatch: pytest.MonkeyPatch, buckets: tuple[str, str, Any], server: OfflineServer, s3: str
) -> None:
    """The environment of a cron job: buckets, sources (old DataUSA API), contact, endpoint."""
    bls, pop, _ = buckets
    urls = add_datausa_routes(server)
    for name, value in {
        "RQ_BLS_BUCKET": bls,
        "RQ_POPULATION_BUCKET": pop,
        "RQ_BLS_URL": server.bls_url,
        "RQ_POPULATION_URL": urls["legacy"],
        "RQ_CONTACT": "cron@example.com",
        "AWS_ENDPOINT_URL": s3,
    }.items():
        monkeypatch.setenv(name, value)


def test_both_steps_run_and_report(
    buckets: tuple[str, str, Any], bls_server: OfflineServer
) -> None:
    bls, pop, client = buckets
    urls = add_datausa_routes(bls_server)
    result = run_pipeline(settings(bls_server, urls, bls, pop), s3_client=client, retry=FAST)
    assert result.ok
    assert result.sync.summary is not None and len(result.sync.summary["added"]) == 12
    assert result.population.summary is not None and result.population.summary["written"] is True
    body = client.get_object(Bucket=pop, Key="datausa/population.json")["Body"].read()
    assert json.loads(body)["data"][0]["Nation"] == "United States"
    result.raise_for_errors()


def test_failed_sync_does_not_prevent_fetch(
    buckets: tuple[str, str, Any], bls_server: OfflineServer
) -> None:
    bls, pop, client = buckets
    urls = add_datausa_routes(bls_server)
    bls_server.faults.append(Fault(bls_server.directory, status=403))
    result = run_pipeline(settings(bls_server, urls, bls, pop), s3_client=client, retry=FAST)
    assert not result.ok
    assert result.sync.error is not None and "403" in result.sync.error
    assert result.population.summary is not None and result.population.summary["written"]
    with pytest.raises(RqError, match="sync-bls failed") as info:
        result.raise_for_errors()
    assert info.value.exit_code == 3


def test_missing_buckets_are_refused(s3_client: Any) -> None:
    with pytest.raises(ConfigError, match="RQ_BLS_BUCKET"):
        run_pipeline(Settings(), s3_client=s3_client)


def test_rq_run_from_environment(
    buckets: tuple[str, str, Any],
    bls_server: OfflineServer,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bls, _, client = buckets
    cron_env(monkeypatch, buckets, bls_server, moto_server)
    result = runner.invoke(app, ["run", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["population"]["summary"]["shape"] == "datausa-legacy"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bls)["Contents"]}
    assert "pr/pr.data.0.Current" in keys
    again = runner.invoke(app, ["run"])
    assert again.exit_code == 0
    assert again.stdout == "sync-bls: ok\nfetch-population: ok\n"


def test_rq_run_exit_code_is_the_worst_step(
    buckets: tuple[str, str, Any], bls_server: OfflineServer, moto_server: str
) -> None:
    bls, pop, _ = buckets
    bls_server.add_route(
        "/tesseract/data.jsonrecords", b"<html>oops</html>", content_type="text/html"
    )
    result = runner.invoke(
        app,
        [
            "run",
            "--bls-bucket",
            bls,
            "--population-bucket",
            pop,
            "--contact",
            "c@example.com",
            "--endpoint-url",
            moto_server,
        ],
        env={
            "RQ_BLS_URL": bls_server.bls_url,
            "RQ_POPULATION_URL": bls_server.url + "/tesseract/data.jsonrecords",
        },
    )
    assert result.exit_code == 1
    assert "fetch-population failed" in result.stderr
    assert "sync-bls: ok" in result.stdout


def test_rq_run_with_reports(
    buckets: tuple[str, str, Any],
    bls_server: OfflineServer,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cron_env(monkeypatch, buckets, bls_server, moto_server)
    result = runner.invoke(app, ["run", "--reports", "--format", "json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]["summary"]
    # The old API's ACS 5-year figures, the seed's published ones.
    assert reports["population"]["mean"] == pytest.approx(317437383.0)
    assert reports["population"]["std"] == pytest.approx(4257089.54, abs=0.01)
    assert len(reports["best_year"]) == 237
    # The same digits as rq analyze --format json writes (423.420, not the float 423.42).
    analyzed = runner.invoke(app, ["analyze", "--format", "json"])
    assert analyzed.exit_code == 0, analyzed.output
    written = _numbers_as_written(result.stdout, "best_year")
    assert written == _numbers_as_written(analyzed.stdout, "best_year")
    assert any(v.endswith("0") and v != str(float(v)) for v in written)
    text = runner.invoke(app, ["run", "--reports"])
    assert text.exit_code == 0
    assert text.stdout.startswith("sync-bls: ok\nfetch-population: ok\nanalyze: ok\n")
    assert "317,437,383.0" in text.stdout


def _numbers_as_written(doc: str, report: str) -> list[str]:
    """The report's values as the JSON text writes them (json.loads would make them floats)."""
    rows = json.loads(doc, parse_float=str)
    if "reports" in rows:
        rows = rows["reports"]["summary"]
    values = [row["value"] for row in rows[report]]
    assert values and all(isinstance(v, str) for v in values)
    return values


def test_reports_still_run_on_what_is_stored_when_the_sync_failed(
    buckets: tuple[str, str, Any], bls_server: OfflineServer
) -> None:
    bls, pop, client = buckets
    urls = add_datausa_routes(bls_server)
    run_pipeline(settings(bls_server, urls, bls, pop), s3_client=client, retry=FAST)
    bls_server.faults.append(Fault(bls_server.directory, status=403))
    result = run_pipeline(
        settings(bls_server, urls, bls, pop), s3_client=client, retry=FAST, reports=True
    )
    assert result.sync.error is not None and "403" in result.sync.error
    assert result.reports is not None and result.reports.error is None
    assert result.reports.summary is not None and len(result.reports.summary["best_year"]) == 237
    assert not result.ok
    with pytest.raises(RqError, match="sync-bls failed") as info:
        result.raise_for_errors()
    assert info.value.exit_code == 3


def test_rq_run_exit_code_agrees_with_ok_when_only_the_reports_fail(
    buckets: tuple[str, str, Any],
    bls_server: OfflineServer,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rearcquest.data.analytics
    from rearcquest.errors import DataError

    def broken(*_: Any, **__: Any) -> Any:
        raise DataError("pr.data.0.Current: line 7: not a number")

    cron_env(monkeypatch, buckets, bls_server, moto_server)
    monkeypatch.setattr(rearcquest.data.analytics, "analyze", broken)
    result = runner.invoke(app, ["run", "--reports", "--format", "json"])
    doc = json.loads(result.stdout)
    assert (doc["ok"], result.exit_code) == (False, 1)
    assert doc["reports"]["error"] == "pr.data.0.Current: line 7: not a number"
    assert "analyze failed: pr.data.0.Current" in result.stderr


def test_rq_run_a_file_failing_mid_stream_fails_one_file_and_the_fetch_still_runs(
    buckets: tuple[str, str, Any],
    bls_server: OfflineServer,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rearcquest.aws.storage import ObjectWriter
    from rearcquest.errors import StorageError

    real_complete = ObjectWriter.complete

    def refuse_alldata(self: ObjectWriter, **kw: Any) -> str:
        if self.key.endswith("pr.data.1.AllData"):
            self.abort()
            raise StorageError(f"cannot write {self.store.url(self.key)}: S3 answered SlowDown")
        return real_complete(self, **kw)

    cron_env(monkeypatch, buckets, bls_server, moto_server)
    monkeypatch.setattr(ObjectWriter, "complete", refuse_alldata)
    result = runner.invoke(app, ["run", "--format", "json"])
    doc = json.loads(result.stdout)
    assert (doc["ok"], result.exit_code) == (False, 1)
    assert [e["name"] for e in doc["sync"]["summary"]["errors"]] == ["pr.data.1.AllData"]
    assert "1 file(s) failed: pr.data.1.AllData" in doc["sync"]["error"]
    assert "SlowDown" in doc["sync"]["summary"]["errors"][0]["message"]
    assert len(doc["sync"]["summary"]["added"]) == 11
    assert doc["population"]["error"] is None and doc["population"]["summary"]["written"]


# -- rq sync-bls's options: the request the command line builds --


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["--source-url", "http://127.0.0.1:9/pr/"], "--source-url/RQ_BLS_URL"),
        (["--prefix", ""], "--prefix/RQ_BLS_PREFIX"),
        (["--state-key", "s.json", "--write-index"], "--state-key, --write-index"),
    ],
    ids=["source-url", "empty-prefix", "state-key-and-index"],
)
def test_sync_request_refuses_single_directory_options_with_surveys(
    args: list[str], refused: str
) -> None:
    # Refused before a store or a client is made: nothing listens on the endpoint.
    result = runner.invoke(
        app,
        [
            "sync-bls",
            "--bucket",
            "b",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--survey",
            "pr,cu",
            *args,
        ],
    )
    assert result.exit_code == ConfigError.exit_code
    assert "cannot be combined with " + refused in result.stderr
    assert "--survey" in result.stderr


def test_one_survey_is_its_own_directory() -> None:
    from rearcquest.config import RetryPolicy, SyncOptions
    from rearcquest.jobs.job import SurveySet, one_or_many

    options = SyncOptions(transfers=2, retry=RetryPolicy(attempts=7))
    one, many = one_or_many(options, SurveySet(["cu"], "http://h/ts", "m", parallel=3))
    assert many is None
    assert (one.source_url, one.prefix) == ("http://h/ts/cu/", "m/cu/")
    assert (one.transfers, one.retry) == (2, RetryPolicy(attempts=7))


def test_several_surveys_or_all_are_run_as_surveys() -> None:
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.job import SurveySet, one_or_many
    from rearcquest.layout import parse_surveys

    root = "http://h/ts/"
    options = SyncOptions(dry_run=True)
    asked = SurveySet(parse_surveys(["pr,cu", "pr"]), root)
    assert one_or_many(options, asked) == (options, asked)
    assert list(asked.names) == ["pr", "cu"]
    everything = SurveySet(parse_surveys(["pr", "ALL"]), root)
    assert one_or_many(options, everything) == (options, everything)
    with pytest.raises(ConfigError, match="cannot be mirrored"):  # onto the tables
        one_or_many(options, SurveySet(["tables"], root))


def test_settings_with_options_keeps_what_was_not_given() -> None:
    base = Settings(bls_bucket="env-bls", contact="env@example.com")
    changed = base.with_options(bls_bucket="cli-bls", contact=None)
    assert (changed.bls_bucket, changed.contact) == ("cli-bls", "env@example.com")


def _tree(survey: str, count: int) -> dict[str, ServedFile]:
    listed = datetime(2026, 8, 6, 8, 30)
    names = [f"{survey}.series"] + [f"{survey}.data.{i}.Current" for i in range(count - 1)]
    return {n: ServedFile(n, f"{n}\tvalue\n".encode() * 20, listed) for n in names}


@pytest.mark.parametrize(
    ("surveys", "mirrored"),
    [(["cu,ce"], ["ce/", "cu/"]), (["all"], ["ce/", "cu/", "pr/"]), (["cu"], ["cu/"])],
    ids=["two", "all", "one"],
)
def test_rq_run_syncs_the_surveys_asked_for(
    monkeypatch: pytest.MonkeyPatch,
    buckets: tuple[str, str, Any],
    moto_server: str,
    surveys: list[str],
    mirrored: list[str],
) -> None:
    tree = {"cu": _tree("cu", 3), "ce": _tree("ce", 2)}
    with OfflineServer(_tree("pr", 2), surveys=tree) as server:
        cron_env(monkeypatch, buckets, server, moto_server)
        args = ["run", "--root-url", server.root_url, "--root-prefix", "bls", "--format", "json"]
        for value in surveys:
            args += ["--survey", value]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
    _, _, client = buckets
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=buckets[0])["Contents"]]
    assert sorted({k.split("/")[1] + "/" for k in keys if k.startswith("bls/")}) == mirrored
    sync = doc["sync"]["summary"]
    if len(mirrored) == 1:  # one survey: the single-directory summary
        assert sync["prefix"] == "bls/cu/" and len(sync["added"]) == 3
    else:
        assert sorted(sync["surveys"]) == [p.rstrip("/") for p in mirrored]
        files = {"cu/": 3, "ce/": 2, "pr/": 2}
        assert sync["totals"]["added"] == sum(files[p] for p in mirrored)
    assert doc["population"]["error"] is None


def test_rq_run_reports_read_pr_under_the_root_prefix(
    monkeypatch: pytest.MonkeyPatch, buckets: tuple[str, str, Any], moto_server: str
) -> None:
    pr = release("2026-08-06")
    with OfflineServer(pr, surveys={"cu": _tree("cu", 2)}) as server:
        cron_env(monkeypatch, buckets, server, moto_server)
        args = ["run", "--survey", "pr,cu", "--root-url", server.root_url]
        result = runner.invoke(
            app, [*args, "--root-prefix", "bls", "--reports", "--format", "json"]
        )
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert reports["error"] is None
    assert len(reports["summary"]["best_year"]) == 237  # the real release, read from bls/pr/
    _, _, client = buckets
    assert "Contents" not in client.list_objects_v2(Bucket=buckets[0], Prefix="pr/")


def test_rq_run_refuses_surveys_with_a_bls_prefix(
    monkeypatch: pytest.MonkeyPatch, buckets: tuple[str, str, Any], bls_server: OfflineServer
) -> None:
    cron_env(monkeypatch, buckets, bls_server, "http://127.0.0.1:9")
    monkeypatch.setenv("RQ_BLS_PREFIX", "mirror/")
    result = runner.invoke(app, ["run", "--survey", "pr"])
    assert result.exit_code == 2  # a configuration error, before any request
    assert "RQ_BLS_PREFIX cannot be combined with --survey" in result.output


BROKEN_STEPS = [
    ("rearcquest.jobs.job.syncing", "sync-bls"),  # where the jobs call them
    ("rearcquest.jobs.pipeline.fetch_population", "fetch-population"),
    ("rearcquest.jobs.pipeline.build_population_table", "tables"),
]


@pytest.mark.parametrize(("target", "step"), BROKEN_STEPS, ids=[step for _, step in BROKEN_STEPS])
def test_rq_run_runs_every_step_whatever_an_earlier_one_raised(
    buckets: tuple[str, str, Any],
    bls_server: OfflineServer,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    step: str,
) -> None:
    bls, pop, client = buckets
    cron_env(monkeypatch, buckets, bls_server, moto_server)
    monkeypatch.setenv("RQ_TABLES", "1")

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(target, bug)
    result = runner.invoke(app, ["run", "--reports", "--format", "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)  # the summary still prints
    assert doc["ok"] is False
    errors = {
        "sync-bls": doc["sync"]["error"],
        "fetch-population": doc["population"]["error"],
        "tables": doc["tables"]["error"],
    }
    assert errors[step] == "unexpected error (RuntimeError: boom); please report it"
    # Every later step ran: the population was fetched, its table built, the reports computed.
    if step != "fetch-population":
        assert client.head_object(Bucket=pop, Key="datausa/population.json")
        assert errors["fetch-population"] is None
    if step == "sync-bls":
        assert client.head_object(Bucket=bls, Key="tables/population/population.parquet")
    if step == "fetch-population":  # the tables step ran, and found no answer to build from
        warnings = doc["tables"]["summary"]["population"]["warnings"]
        assert "does not exist: no population table" in warnings[0]
    # The reports ran too: on what is stored (nothing to read when the sync or fetch failed).
    assert doc["reports"]["summary"] is not None or doc["reports"]["error"] is not None
    if step == "tables":
        assert doc["reports"]["error"] is None
    assert f"{step} failed: unexpected error (RuntimeError: boom)" in result.stderr
