"""The pipeline stack's synthesized template: resources, wiring, least privilege, limits."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Template

from rearcquest.layout import lock_key, releases_key, state_key
from rearcquest_infra.pipeline_stack import (
    INDEX_CONCURRENCY,
    MAX_RECEIVE_COUNT,
    REPORT_HANDLER,
    RUNTIME,
    SCHEDULED_HANDLER,
)

from .cfn_helpers import (
    CONTACT,
    REPO,
    Templates,
    as_list,
    one,
    render,
    resources,
    role_statements,
)

BLS_DEFAULT = "rearcquest-bls-${AWS::AccountId}-${AWS::Region}"
POP_DEFAULT = "rearcquest-population-${AWS::AccountId}-${AWS::Region}"
ATHENA_DEFAULT = "rearcquest-athena-${AWS::AccountId}-${AWS::Region}"
S3 = "arn:${AWS::Partition}:s3:::"


def _json(template: Template) -> Mapping[str, Any]:
    return template.to_json()


def _function(template: Template, prefix: str) -> dict[str, Any]:
    properties: dict[str, Any] = one(_json(template), "AWS::Lambda::Function", prefix)[1][
        "Properties"
    ]
    return properties


# -- buckets -------------------------------------------------------------------------------------


def test_three_private_encrypted_buckets_retained(default_template: Template) -> None:
    # The mirror, the population answer and the Athena query results.
    default_template.resource_count_is("AWS::S3::Bucket", 3)
    default_template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    )
    default_template.all_resources(
        "AWS::S3::Bucket", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )


def test_only_the_bls_mirror_is_versioned(default_template: Template) -> None:
    doc = _json(default_template)
    _, bls = one(doc, "AWS::S3::Bucket", "BlsBucket")
    _, population = one(doc, "AWS::S3::Bucket", "PopulationBucket")
    assert bls["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "VersioningConfiguration" not in population["Properties"]
    # Old versions are the mirror's past releases: kept unless noncurrentVersionDays is set.
    rules = bls["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [r for r in rules if "NoncurrentVersionExpiration" in r] == []


def test_abandoned_multipart_uploads_are_aborted_after_a_few_days(
    default_template: Template,
) -> None:
    # The mirror's uploads wait three days, for the daily runs that resume a cut transfer; the
    # other buckets' one day, as nothing resumes there.
    doc = _json(default_template)
    buckets = resources(doc, "AWS::S3::Bucket")
    assert len(buckets) == 3
    for name, bucket in buckets.items():
        rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        aborts = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
        days = 3 if name.startswith("BlsBucket") else 1
        assert aborts == [
            {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days}, "Status": "Enabled"}
        ], name


def test_default_bucket_names_are_per_account_and_region(default_template: Template) -> None:
    doc = _json(default_template)
    names = {
        render(b["Properties"]["BucketName"]) for b in resources(doc, "AWS::S3::Bucket").values()
    }
    assert names == {BLS_DEFAULT, POP_DEFAULT, ATHENA_DEFAULT}


def test_bucket_names_are_parameters(full_template: Template) -> None:
    doc = _json(full_template)
    names = sorted(
        render(b["Properties"]["BucketName"]) for b in resources(doc, "AWS::S3::Bucket").values()
    )
    # The results bucket has no name parameter: it is named after the stack.
    assert names == [
        "rq-test-bls",
        "rq-test-population",
        "rqfull-athena-${AWS::AccountId}-${AWS::Region}",
    ]


@pytest.mark.parametrize(
    "condition",
    [
        {"Bool": {"aws:SecureTransport": "false"}},
        {"NumericLessThan": {"s3:TlsVersion": 1.2}},
    ],
    ids=["tls-only", "tls-1.2"],
)
def test_bucket_policies_deny_insecure_transport(
    default_template: Template, condition: dict[str, Any]
) -> None:
    policies = resources(_json(default_template), "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        denies = [
            s
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s["Action"] == "s3:*" and s["Principal"] == {"AWS": "*"}
        ]
        assert condition in [s["Condition"] for s in denies]


# -- the daily run --------------------------------------------------------------------------------


def test_functions_runtime_architecture_handlers(default_template: Template) -> None:
    default_template.resource_count_is("AWS::Lambda::Function", 2)
    scheduled = _function(default_template, "ScheduledFunction")
    report = _function(default_template, "ReportFunction")
    assert scheduled["Handler"] == SCHEDULED_HANDLER == "rearcquest.lambdas.scheduled_handler"
    assert report["Handler"] == REPORT_HANDLER == "rearcquest.lambdas.report_handler"
    for function in (scheduled, report):
        assert function["Runtime"] == "python3.12"
        assert function["Architectures"] == ["x86_64"]
        assert function["MemorySize"] == 1024
    assert scheduled["Timeout"] == 600
    assert report["Timeout"] == 120


@pytest.mark.parametrize(
    ("fixture", "tmp_mb"),
    [("default_template", 512), ("full_template", 2048)],
    ids=["default", "parameter"],
)
def test_one_sync_at_a_time_and_tmp_as_set(
    request: pytest.FixtureRequest, fixture: str, tmp_mb: int
) -> None:
    template: Template = request.getfixturevalue(fixture)
    scheduled = _function(template, "ScheduledFunction")
    assert scheduled["ReservedConcurrentExecutions"] == 1
    # The sync streams with no temporary file: /tmp is Lambda's default unless set.
    assert scheduled["EphemeralStorage"] == {"Size": tmp_mb}
    report = _function(template, "ReportFunction")
    assert "EphemeralStorage" not in report


def test_a_failed_daily_run_leaves_a_record(default_template: Template) -> None:
    doc = _json(default_template)
    function_id, _ = one(doc, "AWS::Lambda::Function", "ScheduledFunction")
    failures_id, failures = one(doc, "AWS::SQS::Queue", "ScheduledFailures")
    assert failures["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert failures["Properties"]["SqsManagedSseEnabled"] is True
    default_template.resource_count_is("AWS::Lambda::EventInvokeConfig", 1)
    default_template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": function_id},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 6 * 3600,
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": [failures_id, "Arn"]}}
            },
        },
    )
    # Only the rule may send its undelivered events there; the function sends through its role.
    _, policy = one(doc, "AWS::SQS::QueuePolicy", "ScheduledFailuresPolicy")
    (allow,) = [
        s
        for s in render(policy["Properties"]["PolicyDocument"]["Statement"])
        if s["Effect"] == "Allow"
    ]
    rule_id, _ = one(doc, "AWS::Events::Rule", "DailySchedule")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": "${" + rule_id + ".Arn}"}}


def test_scheduled_function_environment(default_template: Template) -> None:
    env = render(_function(default_template, "ScheduledFunction")["Environment"]["Variables"])
    assert env == {
        "RQ_BLS_BUCKET": BLS_DEFAULT,
        "RQ_BLS_PREFIX": "pr/",
        "RQ_POPULATION_BUCKET": POP_DEFAULT,
        "RQ_POPULATION_KEY": "datausa/population.json",
        "RQ_CONTACT": CONTACT,
        "RQ_VINTAGES": "1",
        "RQ_TABLES": "1",
        "RQ_TABLES_PREFIX": "tables/",
    }


def test_report_function_environment_follows_parameters(full_template: Template) -> None:
    env = _function(full_template, "ReportFunction")["Environment"]["Variables"]
    assert env == {
        "RQ_BLS_BUCKET": "rq-test-bls",
        "RQ_BLS_PREFIX": "pr/",
        "RQ_POPULATION_BUCKET": "rq-test-population",
        "RQ_POPULATION_KEY": "datausa/us-population.json",
    }


@pytest.mark.parametrize(
    ("fixture", "expression"),
    [("default_template", "cron(0 15 * * ? *)"), ("full_template", "rate(1 day)")],
    ids=["default", "parameter"],
)
def test_daily_schedule_invokes_the_scheduled_function(
    request: pytest.FixtureRequest, fixture: str, expression: str
) -> None:
    template: Template = request.getfixturevalue(fixture)
    doc = _json(template)
    function_id, _ = one(doc, "AWS::Lambda::Function", "ScheduledFunction")
    _, rule = one(doc, "AWS::Events::Rule", "DailySchedule")
    assert rule["Properties"]["ScheduleExpression"] == expression
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200}
    failures_id, _ = one(doc, "AWS::SQS::Queue", "ScheduledFailures")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failures_id, "Arn"]}}
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
        },
    )


# -- population JSON -> SQS -> report ------------------------------------------------------------


def test_queue_visibility_is_six_report_timeouts_with_dlq(default_template: Template) -> None:
    doc = _json(default_template)
    dlq_id, dlq = one(doc, "AWS::SQS::Queue", "ReportDLQ")
    _, queue = one(doc, "AWS::SQS::Queue", "ReportQueue")
    report_timeout = _function(default_template, "ReportFunction")["Timeout"]
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * report_timeout
    assert queue["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    assert MAX_RECEIVE_COUNT >= 5
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for q in (queue, dlq):
        assert q["Properties"]["SqsManagedSseEnabled"] is True


def test_population_key_notifies_the_queue(default_template: Template) -> None:
    doc = _json(default_template)
    queue_id, _ = one(doc, "AWS::SQS::Queue", "ReportQueue")
    policy_id, policy = one(doc, "AWS::SQS::QueuePolicy", "ReportQueuePolicy")
    _, bucket = one(doc, "AWS::S3::Bucket", "PopulationBucket")
    (config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert config["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": "datausa/population.json"},
        {"Name": "suffix", "Value": "population.json"},
    ]
    # S3 tests the destination when the configuration is set: the policy must exist first.
    assert policy_id in bucket["DependsOn"]
    statements = render(policy["Properties"]["PolicyDocument"]["Statement"])
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == "${" + queue_id + ".Arn}"
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": S3 + POP_DEFAULT},
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
    }
    # The BLS mirror sends no notification, and no helper Lambda manages them.
    _, bls = one(doc, "AWS::S3::Bucket", "BlsBucket")
    assert "NotificationConfiguration" not in bls["Properties"]
    default_template.resource_count_is("Custom::S3BucketNotifications", 0)


def test_report_function_consumes_with_partial_batch_responses(default_template: Template) -> None:
    doc = _json(default_template)
    queue_id, _ = one(doc, "AWS::SQS::Queue", "ReportQueue")
    report_id, _ = one(doc, "AWS::Lambda::Function", "ReportFunction")
    default_template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    default_template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
            "FunctionName": {"Ref": report_id},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": 10,
            "ScalingConfig": {"MaximumConcurrency": 2},
        },
    )


def test_each_function_logs_to_its_own_group_with_retention(
    default_template: Template, full_template: Template
) -> None:
    for template, days in ((default_template, 30), (full_template, 90)):
        doc = _json(template)
        groups = resources(doc, "AWS::Logs::LogGroup")
        functions = resources(doc, "AWS::Lambda::Function")
        assert len(groups) == len(functions)
        assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {days}
        used = {f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in functions.values()}
        assert used == set(groups)


# -- least privilege -------------------------------------------------------------------------------


def test_scheduled_role_is_exactly_its_prefix_state_lease_and_key(
    default_template: Template,
) -> None:
    statements = role_statements(_json(default_template), "ScheduledRole")
    logs_id, _ = one(_json(default_template), "AWS::Logs::LogGroup", "ScheduledLogs")
    failures_id, _ = one(_json(default_template), "AWS::SQS::Queue", "ScheduledFailures")
    assert statements == {
        "WriteOwnLogs": {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "${" + logs_id + ".Arn}",
        },
        # Unconditional: the first read of the state or the lease must get a 404, not a 403.
        # The uploads at a file's key: a cut transfer's to resume, a killed run's to abort.
        "ListMirrorBucket": {
            "Sid": "ListMirrorBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": S3 + BLS_DEFAULT,
        },
        "ReadMirrorVersioning": {
            "Sid": "ReadMirrorVersioning",
            "Effect": "Allow",
            "Action": "s3:GetBucketVersioning",
            "Resource": S3 + BLS_DEFAULT,
        },
        "ReadWriteMirrorObjects": {
            "Sid": "ReadWriteMirrorObjects",
            "Effect": "Allow",
            "Action": [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            ],
            "Resource": S3 + BLS_DEFAULT + "/pr/*",
        },
        "ReadWriteSyncStateAndLease": {
            "Sid": "ReadWriteSyncStateAndLease",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [
                S3 + BLS_DEFAULT + "/" + lock_key("pr/"),
                S3 + BLS_DEFAULT + "/" + releases_key("pr/"),
                S3 + BLS_DEFAULT + "/" + state_key("pr/"),
            ],
        },
        "ListPopulationBucket": {
            "Sid": "ListPopulationBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": S3 + POP_DEFAULT,
        },
        "ReadWritePopulationObject": {
            "Sid": "ReadWritePopulationObject",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": S3 + POP_DEFAULT + "/datausa/population.json",
        },
        # The tables (rq sync-bls --tables, RQ_TABLES): built, replaced, removed with their file.
        "ReadWriteTables": {
            "Sid": "ReadWriteTables",
            "Effect": "Allow",
            "Action": [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:PutObject",
            ],
            "Resource": S3 + BLS_DEFAULT + "/tables/*",
        },
        # Lambda's on-failure destination sends with the function's role.
        "sqs:GetQueueAttributes,sqs:GetQueueUrl,sqs:SendMessage": {
            "Effect": "Allow",
            "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": "${" + failures_id + ".Arn}",
        },
    }
    # The legacy state object (pr/.rearcquest-sync-state.json, migrated then deleted) is a key
    # under pr/, which ReadWriteMirrorObjects covers; the new keys are outside the mirror.
    assert lock_key("pr/") == ".rearcquest/locks/pr.json"
    assert state_key("pr/") == ".rearcquest/state/pr.json"


def test_report_role_reads_two_objects_and_consumes_its_queue(default_template: Template) -> None:
    doc = _json(default_template)
    queue_id, _ = one(doc, "AWS::SQS::Queue", "ReportQueue")
    statements = role_statements(doc, "ReportRole")
    assert statements["ReadReportInputs"] == {
        "Sid": "ReadReportInputs",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": [
            S3 + BLS_DEFAULT + "/pr/pr.data.0.Current",
            S3 + POP_DEFAULT + "/datausa/population.json",
        ],
    }
    (sqs_key,) = [k for k, s in statements.items() if "sqs:ReceiveMessage" in as_list(s["Action"])]
    assert set(as_list(statements[sqs_key]["Action"])) == {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    assert statements[sqs_key]["Resource"] == "${" + queue_id + ".Arn}"
    assert set(statements) == {"WriteOwnLogs", "ReadReportInputs", sqs_key}


@pytest.mark.parametrize("fixture", ["default_template", "full_template"])
def test_no_wildcards_managed_policies_or_users(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    doc = _json(request.getfixturevalue(fixture))
    for name, policy in resources(doc, "AWS::IAM::Policy").items():
        for statement in render(policy["Properties"]["PolicyDocument"]["Statement"]):
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: wildcard action {action}"
            for resource in as_list(statement["Resource"]):
                assert resource != "*", f"{name}: wildcard resource"
                # An object wildcard is allowed only under a prefix, never a whole bucket.
                assert not re.search(r":s3:::[^/]+/\*$", resource), f"{name}: {resource}"
    for name, role in resources(doc, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        assert "Policies" not in role["Properties"], name
    for type_ in ("AWS::IAM::User", "AWS::IAM::AccessKey", "AWS::IAM::Group"):
        assert resources(doc, type_) == {}


# -- options -----------------------------------------------------------------------------------------


def test_public_index_is_off_by_default(default_template: Template) -> None:
    default_template.resource_count_is("AWS::Lambda::Url", 0)
    assert "IndexUrl" not in _json(default_template).get("Outputs", {})


def test_public_index_is_read_only_when_on(full_template: Template) -> None:
    doc = _json(full_template)
    index_id, index = one(doc, "AWS::Lambda::Function", "IndexFunction")
    assert index["Properties"]["Handler"] == "rearcquest.lambdas.index_handler"
    full_template.has_resource_properties(
        "AWS::Lambda::Url",
        {"AuthType": "NONE", "TargetFunctionArn": {"Fn::GetAtt": [index_id, "Arn"]}},
    )
    statements = role_statements(doc, "IndexRole")
    actions = {a for s in statements.values() for a in as_list(s["Action"])}
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", "s3:ListBucket", "s3:GetObject"}
    assert statements["ReadMirrorObjects"]["Resource"] == S3 + "rq-test-bls/pr/*"
    assert statements["ListMirrorPrefixOnly"]["Condition"] == {"StringLike": {"s3:prefix": "pr/*"}}
    assert "IndexUrl" in doc["Outputs"]
    # Unauthenticated: a cap on concurrent runs bounds what anyone can make it cost.
    assert index["Properties"]["ReservedConcurrentExecutions"] == INDEX_CONCURRENCY <= 10
    assert index["Properties"]["Timeout"] <= 30


@pytest.mark.parametrize("fixture", ["default_template", "full_template"])
def test_every_alarm_notifies_the_topic(request: pytest.FixtureRequest, fixture: str) -> None:
    template: Template = request.getfixturevalue(fixture)
    template.resource_count_is("AWS::CloudWatch::Alarm", 4)
    topic_id, _ = one(_json(template), "AWS::SNS::Topic", "AlarmTopic")
    template.all_resources_properties(
        "AWS::CloudWatch::Alarm", {"AlarmActions": [{"Ref": topic_id}]}
    )
    queues = {
        name: "${" + one(_json(template), "AWS::SQS::Queue", name)[0] + ".QueueName}"
        for name in ("ReportDLQ", "ScheduledFailures")
    }
    watched = {
        render(d["Value"])
        for alarm in resources(_json(template), "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for d in alarm["Properties"]["Dimensions"]
    }
    assert watched == set(queues.values())


def test_alarm_when_the_daily_run_did_not_run_for_26_hours(default_template: Template) -> None:
    function_id, _ = one(_json(default_template), "AWS::Lambda::Function", "ScheduledFunction")
    _, alarm = one(_json(default_template), "AWS::CloudWatch::Alarm", "ScheduledNotRun")
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        "AWS/Lambda",
        "Invocations",
        "Sum",
    )
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["Threshold"] == 1
    assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    # No invocation means no data point at all: that must count as breaching.
    assert props["TreatMissingData"] == "breaching"
    # CloudWatch's limit: at most a day of periods under an hour, at most 7 days in all.
    assert props["Period"] >= 3600


def test_alarm_email_only_when_given(default_template: Template, full_template: Template) -> None:
    default_template.resource_count_is("AWS::SNS::Subscription", 0)
    topic_id, _ = one(_json(full_template), "AWS::SNS::Topic", "AlarmTopic")
    full_template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "alerts@example.com", "TopicArn": {"Ref": topic_id}},
    )


def test_a_production_deploy_needs_an_alarm_email(
    synth: Callable[[dict[str, str]], Templates],
) -> None:
    with pytest.raises(ValueError, match="'alarmEmail' is required when 'stage' is prod"):
        synth({"stage": "prod"})


def test_outputs_name_what_the_docs_refer_to(default_template: Template) -> None:
    outputs = set(_json(default_template)["Outputs"])
    assert {
        "BlsBucketName",
        "PopulationBucketName",
        "ReportQueueUrl",
        "ReportDeadLetterQueueUrl",
        "ScheduledFailureQueueUrl",
        "AlarmTopicArn",
        "ScheduledFunctionName",
        "ReportFunctionName",
    } <= outputs
    docs = (REPO / "docs" / "aws.md").read_text()
    for output in (
        "ScheduledFunctionName",
        "ReportFunctionName",
        "ReportDeadLetterQueueUrl",
        "ScheduledFailureQueueUrl",
        "AlarmTopicArn",
    ):
        assert output in docs


def test_bundle_script_targets_the_stack_runtime() -> None:
    script = (REPO / "scripts" / "build-lambda-bundle").read_text()
    version = re.search(r"LAMBDA_PYTHON=\$\{LAMBDA_PYTHON:-([\d.]+)\}", script)
    assert version is not None
    assert RUNTIME.name == f"python{version.group(1)}"
    assert "--platform" in script
    assert "manylinux2014_x86_64" in script
    assert "--only-binary=:all:" in script


def test_noncurrent_version_days_expires_old_releases(
    synth: Callable[[dict[str, str]], Templates],
) -> None:
    doc = _json(synth({"noncurrentVersionDays": "400"})["Rearcquest"])
    _, bls = one(doc, "AWS::S3::Bucket", "BlsBucket")
    rules = bls["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [
        r["NoncurrentVersionExpiration"] for r in rules if "NoncurrentVersionExpiration" in r
    ] == [{"NoncurrentDays": 400}]
