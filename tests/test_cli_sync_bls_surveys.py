"""`rq sync-bls --survey` and `rq surveys`: exit codes, output and the resulting bucket state."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from rearcquest.cli import app
from rearcquest.offline import Fault, OfflineServer
from test_surveys import HOSTILE, TREE, survey_files

runner = CliRunner()


@pytest.fixture
def tree_server() -> Iterator[OfflineServer]:
    with OfflineServer(survey_files("pr", 3), surveys=TREE) as server:
        yield server


@pytest.fixture
def bucket(moto_server: str) -> tuple[str, Any]:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"cli-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name, client


def sync(moto_server: str, bucket: str, server: OfflineServer, *extra: str) -> Any:
    args = [
        "sync-bls",
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_server,
        "--root-url",
        server.root_url,
        "--contact",
        "cli@example.com",
        "--retries",
        "2",
        *extra,
    ]
    return runner.invoke(app, args)


def keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_several_surveys_json_has_surveys_and_totals(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(
        moto_server, name, tree_server, "--survey", "pr,cu", "--survey", "ce", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(doc["surveys"]) == ["ce", "cu", "pr"]
    assert doc["surveys"]["cu"]["prefix"] == "cu/"
    assert doc["totals"]["added"] == 3 + 4 + 3
    assert doc["totals"]["errors"] == 0
    assert set(doc["totals"]) == {
        "added",
        "updated",
        "deleted",
        "unchanged",
        "errors",
        "bytes_downloaded",
        "bytes_uploaded",
    }
    mirrored = {k for k in keys(client, name) if not k.startswith(".rearcquest/")}
    assert mirrored == {f"{s}/{n}" for s in ("pr", "cu", "ce") for n in tree_server.survey_files(s)}


def test_one_survey_keeps_the_single_directory_document(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    name, _ = bucket
    result = sync(
        moto_server, name, tree_server, "--survey", "cu", "--root-prefix", "bls", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "surveys" not in doc
    assert doc["prefix"] == "bls/cu/"
    assert doc["source_url"] == tree_server.root_url + "cu/"
    assert sorted(doc["added"]) == sorted(TREE["cu"])


def test_exit_code_is_the_worst_survey_and_text_names_the_failure(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    name, client = bucket
    tree_server.faults.append(Fault("/pub/time.series/la/", status=500, times=10))
    result = sync(moto_server, name, tree_server, "--survey", "all")
    assert result.exit_code == 3, result.output
    assert "Synced 4 survey(s)" in result.stdout
    assert "la" in result.stdout and "FAILED (exit 3)" in result.stdout
    assert "Error: 1 of 4 survey(s) failed: la:" in result.stderr
    assert not any(k.startswith("la/") for k in keys(client, name))
    assert any(k.startswith("ce/") for k in keys(client, name))


@pytest.mark.parametrize(
    ("extra", "clash"),
    [
        (["--source-url", "http://127.0.0.1:9/pub/time.series/pr/"], "--source-url"),
        (["--prefix", "x/"], "--prefix"),
        (["--write-index"], "--write-index"),
    ],
    ids=["source-url", "prefix", "write-index"],
)
def test_survey_is_exclusive_with_single_directory_options(
    moto_server: str,
    bucket: tuple[str, Any],
    tree_server: OfflineServer,
    extra: list[str],
    clash: str,
) -> None:
    result = sync(moto_server, bucket[0], tree_server, "--survey", "pr,cu", *extra)
    assert result.exit_code == 2
    assert clash in result.stderr
    assert not tree_server.requests


def test_bad_survey_name_is_a_usage_error(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    result = sync(moto_server, bucket[0], tree_server, "--survey", "pr,../x")
    assert result.exit_code == 2
    assert "Error: --survey '../x' is not a survey name" in result.stderr


@pytest.mark.parametrize("survey", ["tables", "tables,cu"], ids=["alone", "with-another"])
def test_a_survey_on_rqs_own_objects_is_a_usage_error(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer, survey: str
) -> None:
    result = sync(moto_server, bucket[0], tree_server, "--survey", survey)
    assert result.exit_code == 2, result.output
    assert "survey 'tables' cannot be mirrored at 'tables/'" in result.stderr
    assert "--root-prefix" in result.stderr
    assert not tree_server.requests


def test_all_reports_the_surveys_it_skipped(moto_server: str, bucket: tuple[str, Any]) -> None:
    name, client = bucket
    with OfflineServer(survey_files("pr", 3), surveys=HOSTILE) as server:
        text = sync(moto_server, name, server, "--survey", "all", "--dry-run")
        doc = sync(moto_server, name, server, "--survey", "all", "--format", "json")
    assert text.exit_code == 0, text.output
    assert "  tables skipped: survey 'tables' cannot be mirrored" in text.stdout
    assert doc.exit_code == 0, doc.output
    skipped = json.loads(doc.stdout)["skipped"]
    assert sorted(skipped) == ["as-of", "datausa", "population", "tables"]
    assert not any(k.startswith(("tables/", "datausa/")) for k in keys(client, name))


def test_surveys_lists_counts_and_freshness(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    name, _ = bucket
    assert sync(moto_server, name, tree_server, "--survey", "cu,ce").exit_code == 0
    args = ["surveys", "--root-url", tree_server.root_url, "--contact", "cli@example.com"]
    text = runner.invoke(app, [*args, "--bucket", name, "--endpoint-url", moto_server])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["survey", "files", "size", "latest", "mirrored", "synced"]
    assert [line.split()[0] for line in lines[1:]] == ["ce", "cu", "la", "pr"]
    assert lines[2].split()[:2] == ["cu", "4"] and lines[2].split()[6] == "4"
    assert lines[3].split()[6] == "no"
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    la = next(s for s in doc["surveys"] if s["name"] == "la")
    assert la["files"] == 5 and la["mirrored"] is None
    assert la["bytes"] == sum(len(f.data) for f in TREE["la"].values())


def test_surveys_says_which_listed_surveys_are_never_mirrored() -> None:
    with OfflineServer(survey_files("pr", 3), surveys=HOSTILE) as server:
        args = ["surveys", "--root-url", server.root_url, "--contact", "cli@example.com"]
        text = runner.invoke(app, args)
        doc = runner.invoke(app, [*args, "--root-prefix", "bls", "--format", "json"])
    assert text.exit_code == 0, text.output
    notes = [line for line in text.stdout.splitlines() if "never mirrored" in line]
    assert [n.split(":")[0] for n in notes] == ["as-of", "datausa", "population", "tables"]
    assert "the population JSON is kept at 'datausa/population.json'" in notes[1]
    # Listed with their counts all the same: the inventory is what the root holds.
    assert any(line.split()[:2] == ["tables", "3"] for line in text.stdout.splitlines())
    assert doc.exit_code == 0, doc.output
    skipped = {s["name"]: s["skipped"] for s in json.loads(doc.stdout)["surveys"]}
    # Under a root prefix the population JSON is out of the way; the tables (<root>tables/) and
    # their own folders are not.
    assert sorted(k for k, v in skipped.items() if v) == ["as-of", "population", "tables"]


def test_surveys_exits_1_when_a_survey_listing_fails(tree_server: OfflineServer) -> None:
    tree_server.faults.append(Fault("/pub/time.series/ce/", status=404, times=10))
    result = runner.invoke(
        app, ["surveys", "--root-url", tree_server.root_url, "--contact", "cli@example.com"]
    )
    assert result.exit_code == 1
    assert "Error: the listing of 1 survey(s) failed: ce" in result.stderr
    assert "listing failed" in result.stdout


def test_a_dry_run_of_several_surveys_says_what_would_happen(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer
) -> None:
    name, client = bucket
    text = sync(moto_server, name, tree_server, "--survey", "pr,cu,ce", "--dry-run")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == (
        f"Would sync 3 survey(s) of {tree_server.root_url} -> s3://{name}/ "
        "(dry run, nothing changed)"
    )
    assert lines[-1].startswith("  total: would add 10, update 0, delete 0, leave 0 unchanged;")
    assert "Synced" not in text.stdout and " added" not in text.stdout
    doc = json.loads(
        sync(
            moto_server, name, tree_server, "--survey", "pr,cu,ce", "--dry-run", "--format", "json"
        ).stdout
    )
    assert doc["dry_run"] is True and doc["totals"]["added"] == 10
    assert keys(client, name) == set()
    real = sync(moto_server, name, tree_server, "--survey", "pr,cu", "--format", "json")
    assert json.loads(real.stdout)["dry_run"] is False


@pytest.mark.parametrize("asked", ["prr", "cu,prr"], ids=["alone", "with-another"])
def test_a_survey_the_root_does_not_list_is_a_usage_error_naming_the_close_ones(
    moto_server: str, bucket: tuple[str, Any], tree_server: OfflineServer, asked: str
) -> None:
    name, client = bucket
    result = sync(moto_server, name, tree_server, "--survey", asked)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"Error: {tree_server.root_url} lists no survey 'prr' (close: pr); rq surveys lists them\n"
    )
    # Only the root listing was read, before any work.
    assert [r.path for r in tree_server.requests] == ["/pub/time.series/"]
    assert keys(client, name) == set()
