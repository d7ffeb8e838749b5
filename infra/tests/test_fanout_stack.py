"""The fan-out part of the pipeline stack: work queue, its DLQ, the worker's role and concurrency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Template

from rearcquest.layout import lock_key, releases_key, state_key
from rearcquest_infra import pipeline_stack
from rearcquest_infra.pipeline_stack import MAX_RECEIVE_COUNT, WORK_HANDLER
from rearcquest_infra.settings import InfraSettings

from .cfn_helpers import CONTACT, Templates, as_list, one, render, resources, role_statements

S3 = "arn:${AWS::Partition}:s3:::"
BLS = "rearcquest-bls-${AWS::AccountId}-${AWS::Region}"


@pytest.fixture(scope="session")
def fanout_template(synth: Callable[[dict[str, str]], Templates]) -> Template:
    return synth(
        {"fanOut": "true", "surveys": "pr,cu,ce", "totalRps": "3", "workConcurrency": "3"}
    )["Rearcquest"]


@pytest.fixture(scope="session")
def all_template(synth: Callable[[dict[str, str]], Templates]) -> Template:
    return synth({"fanOut": "true", "surveys": "all"})["Rearcquest"]


def _env(template: Template, prefix: str) -> dict[str, Any]:
    _, function = one(template.to_json(), "AWS::Lambda::Function", prefix)
    env: dict[str, Any] = render(function["Properties"]["Environment"]["Variables"])
    return env


def test_no_fan_out_by_default(default_template: Template) -> None:
    queues = resources(default_template.to_json(), "AWS::SQS::Queue")
    assert not [name for name in queues if name.startswith("Work")]
    assert "RQ_WORK_QUEUE_URL" not in _env(default_template, "ScheduledFunction")


def test_work_queue_has_a_dlq_after_five_receives(fanout_template: Template) -> None:
    template = fanout_template.to_json()
    dlq_id, _ = one(template, "AWS::SQS::Queue", "WorkDLQ")
    _, queue = one(template, "AWS::SQS::Queue", "WorkQueue")
    props = queue["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    assert MAX_RECEIVE_COUNT == 5
    # Six times the worker's 15 minutes: a message is not handed out while a worker still runs.
    assert props["VisibilityTimeout"] == 6 * 15 * 60
    _, function = one(template, "AWS::Lambda::Function", "WorkFunction")
    assert function["Properties"]["Timeout"] == 15 * 60
    assert function["Properties"]["Handler"] == WORK_HANDLER
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    (dead,) = [a for name, a in alarms.items() if name.startswith("WorkDeadLetters")]
    assert dead["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    ]


def test_worker_concurrency_times_its_rate_is_the_politeness_budget(
    fanout_template: Template,
) -> None:
    template = fanout_template.to_json()
    queue_id, _ = one(template, "AWS::SQS::Queue", "WorkQueue")
    worker_id, _ = one(template, "AWS::Lambda::Function", "WorkFunction")
    fanout_template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
            "FunctionName": {"Ref": worker_id},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": 1,
            "ScalingConfig": {"MaximumConcurrency": 3},
        },
    )
    env = _env(fanout_template, "WorkFunction")
    assert float(env["RQ_MAX_RPS"]) * 3 == 3.0
    assert env["RQ_BLS_BUCKET"] == BLS
    assert env["RQ_CONTACT"] == CONTACT


def test_worker_role_only_its_survey_prefixes_state_locks_and_releases(
    fanout_template: Template,
) -> None:
    statements = role_statements(fanout_template.to_json(), "WorkRole")
    objects = statements["ReadWriteSurveyMirrorsStateAndLeases"]
    expected = []
    for prefix in ("pr/", "cu/", "ce/"):
        expected += [
            f"{S3}{BLS}/{prefix}*",
            f"{S3}{BLS}/{state_key(prefix)}",
            f"{S3}{BLS}/{lock_key(prefix)}",
            f"{S3}{BLS}/{releases_key(prefix)}",
            f"{S3}{BLS}/tables/{prefix}*",
        ]
    assert objects["Resource"] == sorted(expected)
    assert statements["ListMirrorBucket"]["Resource"] == f"{S3}{BLS}"
    everything = [r for s in statements.values() for r in as_list(s["Resource"])]
    assert "*" not in everything
    assert not any("population" in r for r in everything)
    actions = {a for s in statements.values() for a in as_list(s["Action"])}
    assert not any(a.endswith("*") for a in actions)


def test_with_all_surveys_the_worker_may_write_the_mirror_bucket(all_template: Template) -> None:
    statements = role_statements(all_template.to_json(), "WorkRole")
    assert statements["ReadWriteSurveyMirrorsStateAndLeases"]["Resource"] == f"{S3}{BLS}/*"
    assert _env(all_template, "ScheduledFunction")["RQ_SURVEYS"] == "all"


def test_with_all_surveys_the_worker_registers_their_glue_tables(all_template: Template) -> None:
    # The stack cannot declare the tables of surveys it learns only from the root listing.
    assert _env(all_template, "WorkFunction")["RQ_GLUE_DATABASE"] == "rearcquest"
    statement = role_statements(all_template.to_json(), "WorkRole")["RegisterSurveyTables"]
    assert sorted(as_list(statement["Action"])) == [
        "glue:CreateTable",
        "glue:GetDatabase",
        "glue:GetTable",
    ]
    glue = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"
    assert sorted(as_list(statement["Resource"])) == [
        f"{glue}catalog",
        f"{glue}database/rearcquest",
        f"{glue}table/rearcquest/*",
    ]


def test_with_named_surveys_the_stack_declares_every_glue_table(
    fanout_template: Template,
) -> None:
    assert "RQ_GLUE_DATABASE" not in _env(fanout_template, "WorkFunction")
    assert "RegisterSurveyTables" not in role_statements(fanout_template.to_json(), "WorkRole")


def test_scheduled_function_plans_and_no_longer_writes_the_mirror(
    fanout_template: Template,
) -> None:
    template = fanout_template.to_json()
    queue_id, _ = one(template, "AWS::SQS::Queue", "WorkQueue")
    env = _env(fanout_template, "ScheduledFunction")
    assert env["RQ_WORK_QUEUE_URL"] == "${" + queue_id + "}"
    assert env["RQ_SURVEYS"] == "pr,cu,ce"
    statements = role_statements(template, "ScheduledRole")
    assert statements["SendWork"]["Action"] == "sqs:SendMessage"
    assert statements["SendWork"]["Resource"] == "${" + queue_id + ".Arn}"
    assert not {"ReadWriteMirrorObjects", "ReadWriteSyncStateAndLease", "ReadWriteTables"} & set(
        statements
    )
    # It builds the population table only (the workers build the surveys' tables); listing the
    # bucket makes its first, absent manifest a 404 rather than a 403.
    assert statements["ReadWritePopulationTable"]["Resource"] == f"{S3}{BLS}/tables/population/*"
    assert statements["ListMirrorBucket"]["Resource"] == f"{S3}{BLS}"


def test_the_worker_builds_tables_with_its_own_memory_and_tmp(fanout_template: Template) -> None:
    env = _env(fanout_template, "WorkFunction")
    assert env["RQ_TABLES"] == "1"
    assert env["RQ_TABLES_PREFIX"] == "tables/"
    doc = fanout_template.to_json()
    _, worker = one(doc, "AWS::Lambda::Function", "WorkFunction")
    _, scheduled = one(doc, "AWS::Lambda::Function", "ScheduledFunction")
    # The streamed build holds ~300 MB whatever the file's size and writes nothing to /tmp
    # (benchmarks/README.md): the worker's own 1,024 MB, and Lambda's free 512 MB of /tmp, not the
    # 4,096 MB the copy of the text on disk needed.
    assert pipeline_stack.WORK_MEMORY_MB == 1024
    assert worker["Properties"]["MemorySize"] == pipeline_stack.WORK_MEMORY_MB
    assert worker["Properties"]["EphemeralStorage"] == {"Size": 512}
    assert scheduled["Properties"]["MemorySize"] == pipeline_stack.MEMORY_MB


def test_the_worker_memory_is_its_own_setting(
    monkeypatch: pytest.MonkeyPatch, synth: Callable[[dict[str, str]], Templates]
) -> None:
    monkeypatch.setattr(pipeline_stack, "WORK_MEMORY_MB", 2048)
    doc = synth({"fanOut": "true"})["Rearcquest"].to_json()
    _, worker = one(doc, "AWS::Lambda::Function", "WorkFunction")
    _, scheduled = one(doc, "AWS::Lambda::Function", "ScheduledFunction")
    assert worker["Properties"]["MemorySize"] == 2048
    assert scheduled["Properties"]["MemorySize"] == pipeline_stack.MEMORY_MB == 1024


def test_tmp_storage_mb_raises_the_worker_tmp_too(
    synth: Callable[[dict[str, str]], Templates],
) -> None:
    doc = synth({"fanOut": "true", "tmpStorageMb": "2048"})["Rearcquest"].to_json()
    _, worker = one(doc, "AWS::Lambda::Function", "WorkFunction")
    assert worker["Properties"]["EphemeralStorage"] == {"Size": 2048}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"surveys": "pr,../x"}, "'surveys'"),
        ({"workConcurrency": "1"}, "'workConcurrency'"),
        ({"workConcurrency": "many"}, "'workConcurrency'"),
        ({"totalRps": "0"}, "'totalRps'"),
        ({"totalRps": "fast"}, "'totalRps'"),
        ({"fanOut": "maybe"}, "'fanOut'"),
    ],
    ids=["bad-survey", "concurrency-1", "concurrency-nan", "rps-0", "rps-nan", "fan-out-flag"],
)
def test_fan_out_settings_are_checked(context: dict[str, str], message: str) -> None:
    values = {"contact": CONTACT, **context}
    with pytest.raises(ValueError, match=message):
        InfraSettings.from_context(values.get)


def test_surveys_default_to_pr() -> None:
    settings = InfraSettings.from_context({"contact": CONTACT}.get)
    assert settings.surveys == ("pr",)
    assert settings.survey_prefixes == ("pr/",)
    assert settings.worker_rps == 1.0
    assert not settings.fan_out


def test_the_worker_may_resume_uploads_and_send_its_continuations(
    fanout_template: Template,
) -> None:
    statements = role_statements(fanout_template.to_json(), "WorkRole")
    assert (
        "s3:ListMultipartUploadParts"
        in statements["ReadWriteSurveyMirrorsStateAndLeases"]["Action"]
    )
    assert "s3:ListBucketMultipartUploads" in statements["ListMirrorBucket"]["Action"]
    send = statements["SendContinuations"]
    assert send["Action"] == "sqs:SendMessage"
    (queue, _) = one(fanout_template.to_json(), "AWS::SQS::Queue", "WorkQueue")
    assert render(send["Resource"]) == render({"Fn::GetAtt": [queue, "Arn"]})
    assert "RQ_WORK_QUEUE_URL" in _env(fanout_template, "WorkFunction")


def test_the_worker_timeout_leaves_room_beyond_its_handover_margin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker whose whole timeout is its handover margin hands every message over at once,
    # without progress, into the DLQ (seen in the rehearsal with a scaled-down clock): the stack
    # refuses to synthesise one.
    import importlib

    from rearcquest import config
    from rearcquest_infra import pipeline_stack

    assert pipeline_stack.WORK_TIMEOUT.to_seconds() >= 3 * config.HANDOVER_MARGIN
    monkeypatch.setattr(config, "HANDOVER_MARGIN", pipeline_stack.WORK_TIMEOUT.to_seconds() / 2)
    try:
        with pytest.raises(ValueError, match="three times the worker's handover margin"):
            importlib.reload(pipeline_stack)
    finally:
        monkeypatch.undo()
        importlib.reload(pipeline_stack)
