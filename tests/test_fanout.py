"""The AWS fan-out on moto S3 and SQS: planner, work queue, workers draining it, DLQ."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from conftest import FAST, break_survey_build
from event_helpers import message as event_message
from rearcquest import lambdas
from rearcquest.aws.queues import Queue
from rearcquest.aws.storage import ObjectStore
from rearcquest.config import FanoutSettings, Settings
from rearcquest.errors import ConfigError, DataError
from rearcquest.jobs.events import current_message_id
from rearcquest.jobs.fanout import WorkMessage, plan_work, process_work_batch
from rearcquest.layout import (
    LOCK_PREFIX,
    lock_key,
    manifest_key,
    observations_key,
    parse_surveys,
    series_key,
    state_key,
)
from rearcquest.localaws import drain_queue
from rearcquest.offline import Fault, OfflineServer, ServedFile, add_datausa_routes
from rearcquest.records import lease as lease_module
from rearcquest.records.lease import Lease
from rearcquest.sources._http import HttpClient
from test_surveys import HOSTILE, TREE, survey_files

BIG = 2_000  # bytes: the tests' "too big for one invocation's share"
CONTACT = "fanout@example.com"


def with_big_file(survey: str, name: str, size: int = 5_000) -> dict[str, ServedFile]:
    files = dict(TREE[survey])
    files[name] = ServedFile(name, b"0123456789" * (size // 10), datetime(2026, 8, 6, 8, 30))
    return files


@pytest.fixture
def tree_server() -> Iterator[OfflineServer]:
    surveys = {**TREE, "cu": with_big_file("cu", "cu.data.1.AllItems")}
    with OfflineServer(survey_files("pr", 3), surveys=surveys) as server:
        yield server


@pytest.fixture
def aws(lambda_aws: tuple[Any, Any]) -> tuple[Any, Any]:
    return lambda_aws


def work_queue(sqs: Any) -> tuple[str, str]:
    """The work queue and its DLQ, as the stack makes them (maxReceiveCount 5); visibility 0 so
    a failed message comes back at once in the test."""
    dlq = sqs.create_queue(QueueName="rq-work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="rq-work",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return url, dlq


def env(monkeypatch: pytest.MonkeyPatch, server: OfflineServer, queue: str, surveys: str) -> None:
    urls = add_datausa_routes(server)
    for name, value in {
        "RQ_BLS_BUCKET": "rq-bls",
        "RQ_POPULATION_BUCKET": "rq-population",
        "RQ_POPULATION_URL": urls["tesseract"],
        "RQ_CONTACT": CONTACT,
        "RQ_WORK_QUEUE_URL": queue,
        "RQ_SURVEYS": surveys,
        "RQ_BLS_ROOT_URL": server.root_url,
        "RQ_BIG_FILE_BYTES": str(BIG),
    }.items():
        monkeypatch.setenv(name, value)


def worker(event: dict[str, Any]) -> dict[str, Any]:
    return lambdas.work_handler(event, None)


def mirror(s3: Any, prefix: str) -> dict[str, bytes]:
    store = ObjectStore(s3, "rq-bls")
    return {o.key[len(prefix) :]: store.get_bytes(o.key) for o in store.list_objects(prefix)}


def served(server: OfflineServer, survey: str) -> dict[str, bytes]:
    return {n: f.data for n, f in server.survey_files(survey).items()}


def queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_scheduled_plans_the_queue_and_workers_mirror_every_survey(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs = aws
    url, dlq = work_queue(sqs)
    env(monkeypatch, tree_server, url, "all")
    before = len(tree_server.requests)
    result = lambdas.scheduled_handler({}, None)
    plan = result["sync"]["summary"]
    assert plan["surveys"] == ["ce", "cu", "la", "pr"]
    assert plan["file_messages"] == ["cu/cu.data.1.AllItems"]
    assert plan["queued"] == 5
    # The planner reads listings only: the root and one per survey, never a file.
    planner = [r.path for r in tree_server.requests[before:] if r.path.startswith("/pub/")]
    assert sorted(planner) == sorted(
        ["/pub/time.series/"] + [f"/pub/time.series/{s}/" for s in plan["surveys"]]
    )
    assert s3.head_object(Bucket="rq-population", Key="datausa/population.json")
    assert not mirror(s3, "cu/")  # the scheduled function synced nothing itself

    responses = drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert queue_depth(sqs, url) == 0 and queue_depth(sqs, dlq) == 0
    # The mirror, compared file by file with the source.
    for survey in ("ce", "cu", "la", "pr"):
        assert mirror(s3, f"{survey}/") == served(tree_server, survey), survey
    state = json.loads(s3.get_object(Bucket="rq-bls", Key=state_key("cu/"))["Body"].read())
    assert sorted(state["files"]) == sorted(served(tree_server, "cu"))
    # The big file was fetched by its own message only: once.
    big = [r for r in tree_server.requests if r.path.endswith("/cu.data.1.AllItems")]
    assert len(big) == 1

    # The next day nothing changed: the workers make one listing request each, no file request.
    lambdas.scheduled_handler({}, None)
    before = len(tree_server.requests)
    drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert all(r.path.endswith("/") for r in tree_server.requests[before:])


def test_a_held_survey_lease_fails_its_messages_until_released(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs = aws
    url, dlq = work_queue(sqs)
    env(monkeypatch, tree_server, url, "cu,ce")
    lambdas.scheduled_handler({}, None)
    store = ObjectStore(s3, "rq-bls")
    with Lease(store, lock_key("cu/"), holder="a long survey message").acquire():
        responses = drain_queue(Queue(sqs, url), worker, batch_size=10)
    assert [len(r["batchItemFailures"]) for r in responses] == [2]  # cu and its big file
    assert mirror(s3, "ce/") == served(tree_server, "ce")
    assert not mirror(s3, "cu/")
    # SQS hands the two back after the visibility timeout; the lease is free now.
    responses = drain_queue(Queue(sqs, url), worker, batch_size=10)
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert mirror(s3, "cu/") == served(tree_server, "cu")
    assert queue_depth(sqs, url) == 0 and queue_depth(sqs, dlq) == 0


@pytest.mark.parametrize("outcome", ["done", "file-failed", "tables-failed", "tables-bug"])
def test_a_message_releases_the_survey_lease_however_it_ends(
    aws: tuple[Any, Any],
    tree_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    s3, sqs = aws
    url, _ = work_queue(sqs)
    env(monkeypatch, tree_server, url, "ce")
    lambdas.scheduled_handler({}, None)
    if outcome.startswith("tables"):
        monkeypatch.setenv("RQ_TABLES", "1")  # built under the survey's lease
    if outcome == "file-failed":
        tree_server.faults.append(Fault("/pub/time.series/ce/ce.data.*", status=404, times=1000))
    elif outcome == "tables-failed":
        break_survey_build(monkeypatch, "ce", DataError("ce.data.0.Current: not a BLS file"))
    elif outcome == "tables-bug":
        break_survey_build(monkeypatch, "ce", RuntimeError("a bug"))
    taken: list[str] = []
    won = lease_module.Lease._won

    def record(lease: Lease, etag: str, expires: datetime) -> None:
        taken.append(lease.key)
        won(lease, etag, expires)

    monkeypatch.setattr(lease_module.Lease, "_won", record)
    (response,) = drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert len(response["batchItemFailures"]) == (0 if outcome == "done" else 1)
    assert taken == [lock_key("ce/")]  # the message held the survey's lease...
    assert s3.list_objects_v2(Bucket="rq-bls", Prefix=LOCK_PREFIX)["KeyCount"] == 0  # ...no more


def test_a_message_failing_five_times_goes_to_the_dlq(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs = aws
    url, dlq = work_queue(sqs)
    env(monkeypatch, tree_server, url, "ce,la")
    lambdas.scheduled_handler({}, None)
    tree_server.faults.append(Fault("/pub/time.series/la/", status=404, times=1000))
    for _ in range(6):
        drain_queue(Queue(sqs, url), worker, batch_size=10)
    assert queue_depth(sqs, url) == 0
    (dead,) = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert WorkMessage.from_json(dead["Body"]).survey == "la"
    assert mirror(s3, "ce/") == served(tree_server, "ce")


def test_a_big_file_that_left_the_listing_is_deleted_by_the_survey_message(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs = aws
    url, _ = work_queue(sqs)
    env(monkeypatch, tree_server, url, "cu")
    lambdas.scheduled_handler({}, None)
    drain_queue(Queue(sqs, url), worker, batch_size=1)
    files = with_big_file("cu", "cu.data.2.Summaries")  # AllItems gone, another big one came
    tree_server.set_survey("cu", files)
    lambdas.scheduled_handler({}, None)
    drain_queue(Queue(sqs, url), worker, batch_size=1)
    assert mirror(s3, "cu/") == served(tree_server, "cu")
    assert "cu.data.1.AllItems" not in mirror(s3, "cu/")


def test_plan_work_gives_a_failed_listing_its_message(tree_server: OfflineServer) -> None:
    tree_server.faults.append(Fault("/pub/time.series/la/", status=500, times=10))
    with HttpClient(user_agent=f"rq {CONTACT}", retry=FAST) as http:
        plan = plan_work(
            http, surveys=["la", "cu"], root_url=tree_server.root_url, big_file_bytes=BIG
        )
    assert [(m.survey, m.file, m.exclude) for m in plan.messages] == [
        ("la", None, ()),
        ("cu", None, ("cu.data.1.AllItems",)),
        ("cu", "cu.data.1.AllItems", ()),
    ]
    assert "500" in plan.listing_errors["la"]


def test_plan_work_skips_listed_surveys_on_rqs_own_objects() -> None:
    with OfflineServer(survey_files("pr", 3), surveys=HOSTILE) as server:
        with HttpClient(user_agent=f"rq {CONTACT}") as http:
            plan = plan_work(
                http,
                surveys=["all"],
                root_url=server.root_url,
                big_file_bytes=BIG,
                tables_prefix="tables/",
                population_key="datausa/population.json",
            )
        listed = {r.path for r in server.requests}
    assert {m.survey for m in plan.messages} == {"ce", "cu", "la", "pr"}
    assert sorted(plan.skipped) == ["as-of", "datausa", "population", "tables"]
    assert plan.to_dict()["skipped"] == plan.skipped
    assert "/pub/time.series/tables/" not in listed


def test_a_worker_refuses_a_message_for_rqs_own_objects(
    store: ObjectStore, tree_server: OfflineServer
) -> None:
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.fanout import run_work
    from rearcquest.jobs.job import AfterSync, SurveySet

    with (
        HttpClient(user_agent=f"rq {CONTACT}") as http,
        pytest.raises(ConfigError, match="survey 'cu' cannot be mirrored"),
    ):
        run_work(
            WorkMessage("cu"),
            store=store,
            http=http,
            surveys=SurveySet((), tree_server.root_url),
            options=SyncOptions(),
            after=AfterSync(tables_prefix="cu/tables/"),
        )
    assert tree_server.requests == []
    assert not list(store.list_objects(""))


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"file": "x"}',
        '{"survey": "../x"}',
        '{"survey": "all"}',
        '{"survey": "cu", "file": "a/b"}',
        '{"survey": "cu", "exclude": "x"}',
        '{"survey": "cu", "source": "http://elsewhere/"}',
        '{"survey": "cu", "file": "pr.data.0.Current"}',
        '{"survey": "cu", "file": "cu.data\\\\..\\\\x"}',
        '{"survey": "cu", "exclude": ["../cu.x"]}',
        '{"survey": " cu"}',
        '{"survey": "%s"}' % ("c" * 300),
        '{"survey": "cu", "file": "cu.%s"}' % ("x" * 300),
        '{"survey": "cu\\n"}',
    ],
    ids=[
        "not-json",
        "not-object",
        "no-survey",
        "bad-survey",
        "all",
        "file-path",
        "exclude-str",
        "unknown-key",
        "file-of-another-survey",
        "file-backslash",
        "exclude-path",
        "survey-padded",
        "survey-too-long",
        "file-too-long",
        "survey-newline",
    ],
)
def test_bad_work_messages_fail_alone(body: str) -> None:
    ran: list[WorkMessage] = []
    event = {
        "Records": [
            {"messageId": "bad", "body": body},
            {"messageId": "good", "body": WorkMessage("pr").to_json()},
        ]
    }
    assert process_work_batch(event, run=ran.append) == {
        "batchItemFailures": [{"itemIdentifier": "bad"}]
    }
    assert ran == [WorkMessage("pr")]


def test_work_message_round_trips() -> None:
    message = WorkMessage("cu", "cu.data.1.AllItems", ("cu.x",), "http://h/pub/time.series/", "")
    assert WorkMessage.from_json(message.to_json()) == message
    assert WorkMessage.from_json(WorkMessage("cu").to_json()) == WorkMessage("cu")


def test_plan_work_names_surveys_and_files_not_roots(tree_server: OfflineServer) -> None:
    # A big file not named <survey>.* would be refused in a message of its own: it stays in
    # the survey's message.
    files = with_big_file("cu", "cu.data.1.AllItems")
    files["README"] = ServedFile("README", b"x" * 5_000, datetime(2026, 8, 6, 8, 30))
    tree_server.set_survey("cu", files)
    with HttpClient(user_agent=f"rq {CONTACT}") as http:
        plan = plan_work(
            http,
            surveys=["cu"],
            root_url=tree_server.root_url,
            root_prefix="bls/",
            big_file_bytes=BIG,
        )
    assert [(m.survey, m.file, m.exclude) for m in plan.messages] == [
        ("cu", None, ("cu.data.1.AllItems",)),
        ("cu", "cu.data.1.AllItems", ()),
    ]
    for message in plan.messages:
        assert set(json.loads(message.to_json())) == {"survey", "file", "exclude"}


def seed_real_pr(s3: Any) -> dict[str, bytes]:
    """The real mirror the worker must never touch: ``pr/`` at the bucket root."""
    s3.put_object(Bucket="rq-bls", Key="pr/pr.class", Body=b"the real pr.class")
    return mirror(s3, "pr/")


@pytest.mark.parametrize(
    "named",
    [
        {"root_url": "elsewhere"},
        {"root_prefix": ""},
        {"root_url": "elsewhere", "root_prefix": ""},
        {"root_prefix": "other/"},
    ],
    ids=["other-host", "bucket-root-prefix", "both", "other-prefix"],
)
def test_a_message_naming_another_root_fails_alone(
    aws: tuple[Any, Any],
    tree_server: OfflineServer,
    monkeypatch: pytest.MonkeyPatch,
    named: dict[str, str],
) -> None:
    s3, _ = aws
    env(monkeypatch, tree_server, "", "pr")
    monkeypatch.delenv("RQ_WORK_QUEUE_URL")
    monkeypatch.setenv("RQ_BLS_ROOT_PREFIX", "bls/")
    real_pr = seed_real_pr(s3)
    with OfflineServer(survey_files("pr", 3), surveys=TREE) as other:
        if named.get("root_url") == "elsewhere":
            named = {**named, "root_url": other.root_url}
        bad = json.dumps({"survey": "pr", "file": None, "exclude": [], **named})
        event = {
            "Records": [
                {"messageId": "bad", "body": bad},
                {"messageId": "good", "body": WorkMessage("ce").to_json()},
            ]
        }
        assert worker(event) == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
        assert other.requests == []
    assert tree_server.requests_under("/pub/time.series/pr/") == []
    assert mirror(s3, "bls/ce/") == served(tree_server, "ce")
    assert mirror(s3, "pr/") == real_pr
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="rq-bls").get("Contents", [])}
    assert {k for k in keys if not k.startswith(("bls/ce/", ".rearcquest/"))} == {"pr/pr.class"}
    # No state, lease or release log of a pr mirror either: only ce's.
    assert all("/bls/ce" in k for k in keys if k.startswith(".rearcquest/")), keys


def test_a_message_of_an_earlier_planner_repeating_the_roots_is_run(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, _ = aws
    env(monkeypatch, tree_server, "", "ce")
    monkeypatch.delenv("RQ_WORK_QUEUE_URL")
    monkeypatch.setenv("RQ_BLS_ROOT_PREFIX", "bls")
    # What the planner of the previous version wrote (still queued during a deploy).
    body = json.dumps(
        {
            "survey": "ce",
            "file": None,
            "exclude": [],
            "root_url": tree_server.root_url.rstrip("/"),
            "root_prefix": "bls/",
        }
    )
    assert worker({"Records": [{"messageId": "old", "body": body}]}) == {"batchItemFailures": []}
    assert mirror(s3, "bls/ce/") == served(tree_server, "ce")


def test_a_refused_message_logs_why(
    store: ObjectStore, tree_server: OfflineServer, caplog: pytest.LogCaptureFixture
) -> None:
    from rearcquest.jobs.pipeline import run_work_batch

    bodies = {
        "elsewhere": json.dumps({"survey": "ce", "root_url": "http://127.0.0.1:9/pub/"}),
        "unknown": json.dumps({"survey": "ce", "bucket": "other"}),
    }
    event = {"Records": [{"messageId": k, "body": b} for k, b in bodies.items()]}
    with caplog.at_level("ERROR", logger="rearcquest"):
        response = run_work_batch(
            event,
            Settings(bls_bucket=store.bucket, contact=CONTACT),
            root_url=tree_server.root_url,
            root_prefix="bls/",
            s3_client=store.client,
        )
    assert response == {"batchItemFailures": [{"itemIdentifier": k} for k in bodies]}
    text = caplog.text
    assert "names root_url 'http://127.0.0.1:9/pub/' but this worker mirrors" in text
    assert "RQ_BLS_ROOT_URL" in text
    assert "unknown keys ['bucket']" in text
    assert "Traceback" not in text
    assert tree_server.requests == [] and not list(store.list_objects(""))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RQ_BIG_FILE_BYTES": "lots"}, "RQ_BIG_FILE_BYTES"),
        ({"RQ_BIG_FILE_BYTES": "0"}, "at least 1"),
        ({"RQ_SURVEYS": "pr,../x"}, "not a survey name"),
    ],
    ids=["not-a-number", "zero", "bad-survey"],
)
def test_fanout_settings_refuse_bad_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FanoutSettings.from_env(environ)


def test_fanout_settings_default_to_pr_without_a_queue() -> None:
    assert FanoutSettings.from_env({}) == FanoutSettings(None, ("pr",))


def test_worker_needs_the_bls_bucket(s3_client: Any) -> None:
    from rearcquest.jobs.pipeline import run_work_batch

    with pytest.raises(ConfigError, match="RQ_BLS_BUCKET"):
        run_work_batch({"Records": []}, Settings(), s3_client=s3_client)


def test_worker_json_log_lines_carry_the_survey_and_message_id(
    aws: tuple[Any, Any], tree_server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import logging

    from rearcquest.logjson import JsonFormatter

    _, sqs = aws
    url, _ = work_queue(sqs)
    env(monkeypatch, tree_server, url, "ce")
    monkeypatch.setenv("RQ_LOG_LEVEL", "DEBUG")
    lambdas.scheduled_handler({}, None)
    (handler,) = [
        h
        for h in logging.getLogger("rearcquest").handlers
        if isinstance(h.formatter, JsonFormatter) and isinstance(h, logging.StreamHandler)
    ]
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    try:
        drain_queue(Queue(sqs, url), worker, batch_size=1)
    finally:
        handler.setStream(old)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    # Lines of library modules that know nothing of surveys (the lease) carry it too.
    modules = {line["logger"] for line in lines if line.get("survey") == "ce"}
    assert {"rearcquest.jobs.fanout", "rearcquest.records.lease"} <= modules, lines
    done = next(line for line in lines if line["message"] == "work done")
    assert done["message_id"] and done["added"] == 3


def fuzz_valid_message() -> dict[str, Any]:
    return {
        "survey": "cu",
        "file": "cu.data.1.AllItems",
        "exclude": ["cu.data.2.Summaries"],
        "root_url": "https://download.bls.gov/pub/time.series/",
        "root_prefix": "",
    }


def test_fuzz_work_message_bodies_parse_or_raise_value_error() -> None:
    import random

    from fuzz_helpers import random_body

    rng = random.Random(19)
    refusals: list[str] = []
    for case in range(2000):
        body = random_body(rng, fuzz_valid_message())
        text = body.decode("latin-1") if isinstance(body, bytes) else body
        try:
            message = WorkMessage.from_json(text)
        except ValueError as exc:
            refusals.append(str(exc))
            continue
        # What parses is a work message the worker may run: one plain survey, its own files.
        assert parse_surveys([message.survey]) == [message.survey] != ["all"], case
        for name in (message.file, *message.exclude):
            assert name is None or (name.startswith(message.survey + ".") and "/" not in name)
        assert message.root_url is None or isinstance(message.root_url, str), case
        assert message.root_prefix is None or isinstance(message.root_prefix, str), case
    assert refusals and max(map(len, refusals)) < 1000  # a huge value is not echoed whole


def test_fuzz_work_batches_fail_bad_records_alone(caplog: pytest.LogCaptureFixture) -> None:
    """Random SQS records: each bad one is a batch item failure (or dropped, without a message
    id) with one short logged reason and no traceback; every good one runs."""
    import random

    from fuzz_helpers import random_body, random_json

    rng = random.Random(1919)
    for case in range(200):
        records: list[Any] = []
        for index in range(10):
            kind = rng.randrange(6)
            if kind == 0:
                records.append(random_json(rng))
            elif kind == 1:
                records.append({"messageId": random_json(rng), "body": "{}"})
            elif kind == 2:
                records.append({"messageId": f"m{index}", "body": random_json(rng)})
            elif kind == 3:
                records.append({"messageId": f"m{index}", "body": WorkMessage("pr").to_json()})
            else:
                body = random_body(rng, fuzz_valid_message())
                text = body.decode("latin-1") if isinstance(body, bytes) else body
                records.append({"messageId": f"m{index}", "body": text})
        ran: list[WorkMessage] = []
        caplog.clear()
        with caplog.at_level("ERROR", logger="rearcquest.jobs.fanout"):
            response = process_work_batch({"Records": records}, run=ran.append)
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        ids = [r.get("messageId") for r in records if isinstance(r, dict)]
        assert set(failed) <= {i for i in ids if isinstance(i, str)}, case
        assert len(ran) + len(failed) <= len(records), case
        assert all(isinstance(m, WorkMessage) for m in ran), case
        assert WorkMessage("pr") in ran or not any(
            isinstance(r, dict) and r.get("body") == WorkMessage("pr").to_json() for r in records
        )
        for record in caplog.records:
            assert record.exc_info is None, (case, record.getMessage()[:200])
            assert len(record.getMessage()) < 1000, case


# -- the worker hands over before Lambda stops it -----------------------------------------------

PART = 512 * 1024
HUGE = "cu.data.1.AllItems"


class LambdaContext:
    """A Lambda context whose remaining time runs out after ``calls`` questions: the worker asks
    before each transfer and after each chunk (256 KiB) it moves, so a context of ``n`` calls
    lives for about ``n - 1`` chunks of a file; then only the handover margin is left."""

    def __init__(self, calls: int) -> None:
        from rearcquest.config import HANDOVER_MARGIN

        self.calls = calls
        self.margin_ms = int(HANDOVER_MARGIN * 1000)
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        self.calls -= 1
        return self.margin_ms + 60_000 if self.calls >= 0 else self.margin_ms - 1


@pytest.fixture
def huge_file_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OfflineServer, bytes]]:
    """The tree with a survey file of several parts (parts made small for the test)."""
    import random

    import moto.s3.models

    from rearcquest.aws import storage

    monkeypatch.setattr(storage, "PART_SIZE", PART)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", PART // 2)
    body = random.Random(21).randbytes(7 * PART + 1_234)
    files = dict(TREE["cu"])
    files[HUGE] = ServedFile(HUGE, body, datetime(2026, 8, 6, 8, 30))
    with OfflineServer(survey_files("pr", 3), surveys={**TREE, "cu": files}) as server:
        yield server, body


def test_the_worker_hands_a_file_over_through_continuations_until_it_is_done(
    aws: tuple[Any, Any],
    huge_file_server: tuple[OfflineServer, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3, sqs = aws
    server, body = huge_file_server
    url, dlq = work_queue(sqs)
    env(monkeypatch, server, url, "cu")
    lambdas.scheduled_handler({}, None)
    bodies: list[WorkMessage] = []

    leases_after: list[int] = []

    def short_lived_worker(event: dict[str, Any]) -> dict[str, Any]:
        bodies.extend(WorkMessage.from_json(r["body"]) for r in event["Records"])
        # Each invocation lives for about two parts of the big file (four chunks).
        answer = lambdas.work_handler(event, LambdaContext(5))
        # Handing over or done, the invocation leaves the survey's lease free for the next.
        leases_after.append(s3.list_objects_v2(Bucket="rq-bls", Prefix=LOCK_PREFIX)["KeyCount"])
        return answer

    for _ in range(10):
        drain_queue(Queue(sqs, url), short_lived_worker, batch_size=1)
        if queue_depth(sqs, url) == 0:
            break
    continued = [m for m in bodies if m.file == HUGE and m.continuation]
    assert len(continued) >= 2
    assert [m.continuation for m in continued] == list(range(1, len(continued) + 1))
    assert all(m.stalled == 0 for m in continued)
    assert leases_after and set(leases_after) == {0}
    assert queue_depth(sqs, url) == 0 and queue_depth(sqs, dlq) == 0
    assert mirror(s3, "cu/") == served(server, "cu")
    assert mirror(s3, "cu/")[HUGE] == body
    assert s3.list_multipart_uploads(Bucket="rq-bls").get("Uploads", []) == []
    state = json.loads(ObjectStore(s3, "rq-bls").get_bytes(state_key("cu/")))
    assert "uploads" not in state
    # Every continuation asked only for the rest of the file.
    ranged = [r for r in server.requests_under("/pub/time.series/cu/") if "range" in r.headers]
    assert len(ranged) >= len(continued) and all(r.status == 206 for r in ranged)


def test_a_file_handed_over_without_progress_three_times_goes_to_the_dlq(
    aws: tuple[Any, Any],
    huge_file_server: tuple[OfflineServer, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import logging

    s3, sqs = aws
    server, _ = huge_file_server
    url, dlq = work_queue(sqs)
    env(monkeypatch, server, url, "cu")
    lambdas.scheduled_handler({}, None)
    handler = next(h for h in logging.getLogger("rearcquest").handlers if h.formatter)
    assert isinstance(handler, logging.StreamHandler)

    def stuck_worker(event: dict[str, Any]) -> dict[str, Any]:
        # The file's invocations never get a byte in before their time runs out.
        (record,) = event["Records"]
        calls = 0 if WorkMessage.from_json(record["body"]).file else 10**9
        return lambdas.work_handler(event, LambdaContext(calls))

    buffer = io.StringIO()
    old = handler.setStream(buffer)
    try:
        for _ in range(12):
            drain_queue(Queue(sqs, url), stuck_worker, batch_size=1)
            if queue_depth(sqs, url) == 0:
                break
    finally:
        handler.setStream(old)
    assert queue_depth(sqs, url) == 0
    (dead,) = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert WorkMessage.from_json(dead["Body"]) == WorkMessage("cu", HUGE, continuation=2, stalled=2)
    failures = [
        json.loads(line)["message"]
        for line in buffer.getvalue().splitlines()
        if "work message failed" in line
    ]
    assert failures and all("3 invocations in a row ran out of time" in f for f in failures)
    # The survey's own message went through; the stuck file was never written.
    assert HUGE not in mirror(s3, "cu/")
    assert set(mirror(s3, "cu/")) == set(served(server, "cu")) - {HUGE}


@pytest.mark.parametrize(
    "extra",
    [
        {"continuation": -1},
        {"continuation": True},
        {"continuation": "1"},
        {"continuation": 10**6},
        {"stalled": 1},
        {"continuation": 1, "stalled": 2},
        {"continuation": 1, "stalled": None},
    ],
    ids=["negative", "bool", "text", "huge", "stalled-alone", "stalled-more", "null"],
)
def test_bad_continuation_fields_are_refused(extra: dict[str, Any]) -> None:
    good = {"survey": "cu", "file": HUGE, "exclude": [], "continuation": 2, "stalled": 1}
    assert WorkMessage.from_json(json.dumps(good)).continuation == 2
    doc = {"survey": "cu", "file": HUGE, "exclude": [], **extra}
    with pytest.raises(ValueError, match=r"continuation|stalled"):
        WorkMessage.from_json(json.dumps(doc))


def test_a_continuation_round_trips_and_a_planned_message_is_unchanged() -> None:
    message = WorkMessage("cu", HUGE, continuation=3, stalled=1)
    assert WorkMessage.from_json(message.to_json()) == message
    assert "continuation" not in WorkMessage("cu", HUGE).to_json()


def test_a_worker_without_a_queue_fails_a_message_whose_time_ran_out(
    aws: tuple[Any, Any],
    huge_file_server: tuple[OfflineServer, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rearcquest.jobs.pipeline import run_work_batch

    s3, _ = aws
    server, _ = huge_file_server
    event = {"Records": [{"messageId": "m1", "body": WorkMessage("cu", HUGE).to_json()}]}
    settings = Settings(bls_bucket="rq-bls", contact=CONTACT)
    response = run_work_batch(
        event,
        settings,
        root_url=server.root_url,
        s3_client=s3,
        retry=FAST,
        time_left=lambda: -1.0,
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


# -- each table build in one message -----------------------------------------------------------


def zz_files(big_rows: int = 200, salt: str = "", day: int = 6) -> dict[str, ServedFile]:
    """A survey whose data files are BLS text: a small one and one over the big-file threshold."""
    listed = datetime(2026, 8, day, 8, 30)
    header = "series_id   \tyear\tperiod\t     value\tfootnote_codes\r\n"
    rows = "".join(
        f"ZZA1        \t{2000 + n % 20}\tM{1 + n % 12:02}\t{n}.5{salt}\t\r\n"
        for n in range(big_rows)
    )
    texts = {
        "zz.series": "series_id   \tarea_code\tbegin_year\r\nZZA1        \tA1\t2001\r\n",
        "zz.area": "area_code\tarea_name\r\nA1\tNorth\r\n",
        "zz.data.0.Current": header + "ZZA1        \t2001\tM01\t       1.5\t\r\n",
        "zz.data.1.AllData": header + rows,
    }
    return {n: ServedFile(n, t.encode(), listed) for n, t in texts.items()}


def work(message_id: str, body: WorkMessage) -> dict[str, Any]:
    return worker({"Records": [event_message(message_id, body.to_json())]})


def partition_writes(s3: Any, key: str) -> list[str]:
    """Record each write of ``key``, named by the work message running then."""
    writes: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        from urllib.parse import unquote

        if unquote(str(params["url_path"])).lstrip("/").endswith(key):
            writes.append(current_message_id() or "")

    for call in ("PutObject", "CreateMultipartUpload"):
        s3.meta.events.register(f"before-call.s3.{call}", record)
    return writes


def test_a_big_files_partition_is_built_by_its_own_message_only_even_before_its_survey(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, _ = aws
    big = "zz.data.1.AllData"
    files = zz_files()
    assert len(files[big].data) > BIG > len(files["zz.data.0.Current"].data)
    with OfflineServer(survey_files("pr", 3), surveys={"zz": files}) as server:
        env(monkeypatch, server, "", "zz")
        monkeypatch.setenv("RQ_TABLES", "1")
        monkeypatch.delenv("RQ_WORK_QUEUE_URL")
        key = observations_key("tables/", "zz", big)
        writes = partition_writes(lambdas._s3_client(), key)
        store = ObjectStore(s3, "rq-bls")

        # The file message comes first: its file is synced, its table waits (no failure text
        # about a missing series file), and the message goes back to the queue.
        assert work("file-1", WorkMessage("zz", big)) == {
            "batchItemFailures": [{"itemIdentifier": "file-1"}]
        }
        assert mirror(s3, "zz/") == {big: files[big].data}
        assert store.head(key) is None
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        (deferred,) = [
            line for line in lines if line["message"].startswith("work message deferred")
        ]
        assert deferred["level"] == "WARNING"
        assert (
            f"the table of {big} waits for the first sync of survey zz (zz.series is not "
            "mirrored yet)" in deferred["message"]
        )
        assert not [line for line in lines if line["level"] == "ERROR"]

        # The survey message builds every table but the big file's.
        assert work("survey-1", WorkMessage("zz", None, (big,))) == {"batchItemFailures": []}
        assert mirror(s3, "zz/") == {n: f.data for n, f in files.items()}
        assert store.head(observations_key("tables/", "zz", "zz.data.0.Current")) is not None
        assert store.head(series_key("tables/", "zz")) is not None
        assert writes == []

        # The file message again: its partition, by it alone.
        assert work("file-2", WorkMessage("zz", big)) == {"batchItemFailures": []}
        assert writes == ["file-2"]
        assert pl.read_parquet(io.BytesIO(store.get_bytes(key))).height == 200
        manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
        assert sorted(manifest["files"]) == ["zz.data.0.Current", big]
        assert manifest["complete"] is True

        # The next day the big file changed, and so did a small one: the survey message
        # rebuilds its own tables only, the file message the big file's partition.
        changed = zz_files(salt="0", day=7)
        changed["zz.data.0.Current"] = ServedFile(
            "zz.data.0.Current",
            files["zz.data.0.Current"].data + b"ZZA1\t2002\tM01\t2\t\r\n",
            changed[big].listed,
        )
        server.set_survey("zz", changed)
        assert work("file-3", WorkMessage("zz", big)) == {"batchItemFailures": []}
        assert work("survey-2", WorkMessage("zz", None, (big,))) == {"batchItemFailures": []}
        assert writes == ["file-2", "file-3"]
        assert mirror(s3, "zz/") == {n: f.data for n, f in changed.items()}


def test_a_big_file_whose_build_failed_is_left_to_its_message_by_the_survey_message(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, _ = aws
    big = "zz.data.1.AllData"
    files = zz_files()
    bad = files[big].data + b"ZZA1\t2001\tM01\tnot-a-number\t\r\n"
    files[big] = ServedFile(big, bad, files[big].listed)
    with OfflineServer(survey_files("pr", 3), surveys={"zz": files}) as server:
        env(monkeypatch, server, "", "zz")
        monkeypatch.setenv("RQ_TABLES", "1")
        key = observations_key("tables/", "zz", big)
        writes = partition_writes(lambdas._s3_client(), key)
        store = ObjectStore(s3, "rq-bls")
        assert work("survey-1", WorkMessage("zz", None, (big,))) == {"batchItemFailures": []}
        # The big file's table fails in its own message, which the queue hands out again.
        failed = {"batchItemFailures": [{"itemIdentifier": "file-1"}]}
        assert work("file-1", WorkMessage("zz", big)) == failed
        manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
        assert sorted(manifest["failed"]) == [big]
        assert "line 202: value 'not-a-number'" in manifest["failed"][big]
        # Its survey's message, even with a changed file of its own, leaves that table alone:
        # no build of it, no failure of its own for it, the failure kept for its message.
        changed = dict(files)
        changed["zz.data.0.Current"] = ServedFile(
            "zz.data.0.Current",
            files["zz.data.0.Current"].data + b"ZZA1\t2002\tM01\t2\t\r\n",
            datetime(2026, 8, 7, 8, 30),
        )
        server.set_survey("zz", changed)
        assert work("survey-2", WorkMessage("zz", None, (big,))) == {"batchItemFailures": []}
        assert writes == []
        manifest = json.loads(store.get_bytes(manifest_key("tables/", "zz")))
        assert sorted(manifest["failed"]) == [big]
        assert manifest["files"]["zz.data.0.Current"]["rows"] == 2
        # A day when nothing changed: the survey's own tables are current, nothing is built.
        assert work("survey-3", WorkMessage("zz", None, (big,))) == {"batchItemFailures": []}
        assert writes == []
