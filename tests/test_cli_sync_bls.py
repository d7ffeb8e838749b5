"""`rq sync-bls` end to end: exit codes, output and the resulting bucket state."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from rearcquest.cli import app
from rearcquest.layout import lock_key, releases_key, state_key
from rearcquest.offline import Fault, OfflineServer
from sync_helpers import before_each_upload, sync_dir

runner = CliRunner()


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
        "--source-url",
        server.bls_url,
        "--contact",
        "cli@example.com",
        "--retries",
        "2",
        *extra,
    ]
    return runner.invoke(app, args)


def keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_json_summary_and_bucket_state(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in (
        "added",
        "updated",
        "deleted",
        "unchanged",
        "errors",
        "bytes_downloaded",
        "bytes_uploaded",
        "dry_run",
    ):
        assert key in doc
    assert len(doc["added"]) == 12 and doc["errors"] == [] and doc["dry_run"] is False
    assert keys(client, name) == {f"pr/{n}" for n in bls_server.files} | {
        state_key("pr/"),
        releases_key("pr/"),
    }


def test_text_summary_and_noop(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, _ = bucket
    assert sync(moto_server, name, bls_server).exit_code == 0
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == 0
    assert "unchanged   12" in result.stdout
    assert "1 request(s) to the source" in result.stdout


def test_dry_run_prints_plan_with_reasons(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--dry-run")
    assert result.exit_code == 0
    assert "dry run, nothing changed" in result.stdout
    assert "add       pr.class" in result.stdout and "new file" in result.stdout
    assert keys(client, name) == set()


def test_env_vars_configure_the_command(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, client = bucket
    monkeypatch.setenv("RQ_BLS_BUCKET", name)
    monkeypatch.setenv("RQ_CONTACT", "env@example.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("RQ_BLS_URL", bls_server.bls_url)
    result = runner.invoke(app, ["sync-bls", "--prefix", "", "--include", "pr.c*"])
    assert result.exit_code == 0, result.output
    assert keys(client, name) == {"pr.class", "pr.contacts", state_key(""), releases_key("")}
    assert all("env@example.com" in r.user_agent for r in bls_server.requests)


def test_missing_contact_for_bls_gov_exits_2_without_request(moto_server: str) -> None:
    result = runner.invoke(app, ["sync-bls", "--bucket", "x", "--endpoint-url", moto_server])
    assert result.exit_code == 2
    assert "Error: BLS answers 403" in result.stderr
    assert "--contact" in result.stderr


def test_missing_bucket_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sync-bls", "--contact", "a@b.c"])
    assert result.exit_code == 2
    assert "--bucket" in result.stderr


def test_no_such_bucket_exits_1(moto_server: str, bls_server: OfflineServer) -> None:
    result = sync(moto_server, "does-not-exist-bucket", bls_server)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        (Fault("/pub/time.series/pr/", status=403), 3, "403 Forbidden"),
        (Fault("/pub/time.series/pr/", status=500, times=9), 3, "HTTP 500"),
        (Fault("/pub/time.series/pr/", status=200, body=b"<html>oops"), 3, "listing"),
        (Fault("*/pr.series", status=500, times=9), 1, "1 file(s) failed: pr.series"),
    ],
    ids=["forbidden", "unreachable", "garbled", "one-file"],
)
def test_fault_exit_codes(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    fault: Fault,
    code: int,
    message: str,
) -> None:
    name, _ = bucket
    bls_server.faults.append(fault)
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")


def test_delete_guard_exit_4(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    assert sync(moto_server, name, bls_server).exit_code == 0
    bls_server.set_files({"pr.txt": bls_server.files["pr.txt"]})
    result = sync(moto_server, name, bls_server, "--max-delete", "2", "--format", "json")
    assert result.exit_code == 4
    assert json.loads(result.stdout)["deleted"] == []
    assert "--max-delete" in result.stderr
    assert len(keys(client, name)) == 14  # 12 files, the state and the release log


def shrink_to_one(moto_server: str, name: str, server: OfflineServer) -> None:
    assert sync(moto_server, name, server).exit_code == 0
    server.set_files({"pr.txt": server.files["pr.txt"]})


def test_default_guard_protects_the_default_mirror(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    shrink_to_one(moto_server, name, bls_server)
    before = {k: client.head_object(Bucket=name, Key=k)["ETag"] for k in keys(client, name)}
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == 4, result.output
    assert "would delete 11 objects of the 12 mirrored" in result.stderr
    assert "stopped by the delete guard, nothing changed" in result.stdout
    assert "delete    pr.class" in result.stdout
    after = {k: client.head_object(Bucket=name, Key=k)["ETag"] for k in keys(client, name)}
    assert after == before  # nothing deleted, nothing written


def test_dry_run_exits_like_the_real_run_and_says_so_in_json(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, _ = bucket
    shrink_to_one(moto_server, name, bls_server)
    result = sync(moto_server, name, bls_server, "--dry-run", "--format", "json")
    assert result.exit_code == 4
    doc = json.loads(result.stdout)
    assert doc["delete_guard"] is True and doc["dry_run"] is True
    assert len(doc["deleted"]) == 11 and "would delete 11" in doc["deletes_skipped"]
    text = sync(moto_server, name, bls_server, "--dry-run")
    assert text.exit_code == 4
    assert "dry run, nothing changed" in text.stdout and "delete guard:" in text.stdout
    ok = sync(
        moto_server, name, bls_server, "--dry-run", "--max-delete", "100%", "--format", "json"
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["delete_guard"] is False


@pytest.mark.parametrize("limit", ["11", "100%", "92%"])
def test_max_delete_count_or_share_lets_the_deletes_run(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer, limit: str
) -> None:
    name, client = bucket
    shrink_to_one(moto_server, name, bls_server)
    result = sync(moto_server, name, bls_server, "--max-delete", limit)
    assert result.exit_code == 0, result.output
    assert keys(client, name) == {"pr/pr.txt", state_key("pr/"), releases_key("pr/")}


@pytest.mark.parametrize("limit", ["-1", "abc", "150%", "1.5"])
def test_bad_max_delete_exits_2_before_anything(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer, limit: str
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--max-delete", limit)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --max-delete")
    assert bls_server.requests == [] and keys(client, name) == set()


def test_state_key_option(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--state-key", "ops/state.json")
    assert result.exit_code == 0, result.output
    assert keys(client, name) == {f"pr/{n}" for n in bls_server.files} | {
        "ops/state.json",
        releases_key("pr/"),
    }
    bad = sync(moto_server, name, bls_server, "--state-key", "pr/state.json")
    assert bad.exit_code == 2 and "inside the mirror prefix" in bad.stderr


def test_a_sync_while_another_holds_the_mirror_exits_5(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    from rearcquest.aws.storage import ObjectStore, make_s3_client
    from rearcquest.records.lease import Lease

    name, client = bucket
    store = ObjectStore(make_s3_client(endpoint_url=moto_server), name)
    held = Lease(store, lock_key("pr/"), holder="cron-box:4242:feed").acquire()
    result = sync(moto_server, name, bls_server)
    assert result.exit_code == 5
    assert result.stderr.startswith("Error: another sync holds the mirror")
    assert "cron-box:4242:feed" in result.stderr and " until 20" in result.stderr
    assert bls_server.requests == []
    assert keys(client, name) == {lock_key("pr/")}
    dry = sync(moto_server, name, bls_server, "--dry-run")
    assert dry.exit_code == 0  # dry runs take no lease
    unlocked = sync(moto_server, name, bls_server, "--no-lock")
    assert unlocked.exit_code == 0, unlocked.output
    held.release()


def test_race_second_run_exits_5_then_wait_syncs_the_newest(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    import threading

    from conftest import release
    from rearcquest.aws.storage import ObjectStore, make_s3_client

    name, client = bucket
    slow_store = ObjectStore(make_s3_client(endpoint_url=moto_server), name)
    in_upload, go_on = threading.Event(), threading.Event()

    def slow_upload(key: str) -> None:
        in_upload.set()
        assert go_on.wait(timeout=60)

    before_each_upload(None, slow_store, slow_upload)
    slow_results: list[Any] = []
    slow = threading.Thread(
        target=lambda: slow_results.append(
            sync_dir(slow_store, source_url=bls_server.bls_url, contact="cron@example.com")
        )
    )
    slow.start()
    assert in_upload.wait(timeout=60)  # the slow run listed the 2024 release
    new = release("2026-08-06")
    bls_server.set_files(new)
    refused = sync(moto_server, name, bls_server)
    assert refused.exit_code == 5 and "another sync holds the mirror" in refused.stderr
    go_on.set()
    waited = sync(moto_server, name, bls_server, "--wait", "60", "--format", "json")
    slow.join(timeout=60)
    assert waited.exit_code == 0, waited.output
    # The slow run fetches some files after the source changed under it (their size no longer
    # matches its listing): it either fails them, and the waiting run adds those and updates the
    # rest, or, listing once more, moves to the new release itself (whichever the timing gives,
    # on a busy machine the second), and the waiting run finds it done.
    done = json.loads(waited.stdout)
    if not (done["added"] or done["updated"]):
        (slow_result,) = slow_results
        assert slow_result.errors == [], waited.stdout  # and it left the new release (below)
    stored = {
        k.removeprefix("pr/"): client.get_object(Bucket=name, Key=k)["Body"].read()
        for k in keys(client, name)
        if k.startswith("pr/")
    }
    assert stored == {n: f.data for n, f in new.items()}


@pytest.mark.parametrize(
    ("flags", "logged"), [([], False), (["-v"], True), (["-q"], False)], ids=["default", "-v", "-q"]
)
def test_verbosity_controls_logs_on_stderr(
    moto_server: str,
    bucket: tuple[str, Any],
    bls_server: OfflineServer,
    flags: list[str],
    logged: bool,
) -> None:
    name, _ = bucket
    bls_server.faults.append(Fault("/pub/time.series/pr/", status=503))
    args = [
        *flags,
        "sync-bls",
        "--bucket",
        name,
        "--endpoint-url",
        moto_server,
        "--source-url",
        bls_server.bls_url,
        "--contact",
        "cli@example.com",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # JSON off a terminal
    assert any("retrying" in line["message"] for line in lines) is logged


def test_a_dry_run_of_one_directory_says_what_would_happen(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, _ = bucket
    result = sync(moto_server, name, bls_server, "--dry-run")
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert first == (
        f"Would sync {bls_server.bls_url} -> s3://{name}/pr/ (dry run, nothing changed): "
        "would add 12, update 0, delete 0, leave 0 unchanged"
    )
    doc = json.loads(sync(moto_server, name, bls_server, "--dry-run", "--format", "json").stdout)
    assert doc["dry_run"] is True and len(doc["added"]) == 12


def test_wait_with_no_lock_is_refused_before_anything(
    moto_server: str, bucket: tuple[str, Any], bls_server: OfflineServer
) -> None:
    name, client = bucket
    result = sync(moto_server, name, bls_server, "--wait", "30", "--no-lock")
    assert result.exit_code == 2, result.output
    assert "--wait, --no-lock" in result.stderr
    assert "--no-lock takes none: give one of them" in " ".join(result.stderr.split())
    assert bls_server.requests == []
    assert keys(client, name) == set()
