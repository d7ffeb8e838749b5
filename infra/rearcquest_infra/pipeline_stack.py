"""The data pipeline: two buckets, a daily sync Lambda, S3 -> SQS -> a report Lambda.

::

    EventBridge rule (daily) --> ScheduledFunction --(sync-bls)--------> BLS bucket   pr/*
      | (not delivered)            | (failed after retries)                  .rearcquest/
      v                            v                    --(fetch-population)-> population bucket
    ScheduledFailures <------------+                                         | ObjectCreated
                                                                             v (population key)
                                     ReportFunction <-- ReportQueue --(5 failures)--> ReportDLQ

Beside the pipeline, for queries: a Glue database with the tables ``rq tables`` writes under
``tables/`` of the BLS bucket, and an Athena workgroup (its own results bucket, a scan limit) with
the reports as named queries; :mod:`rearcquest.data.athena` defines both.

Failures cannot pass unnoticed: every alarm (the run failed, did not run for 26 hours, a failure
record or a dead letter waits) notifies the stack's SNS topic, mailed to ``alarmEmail``.

Each function has its own role and log group, and may touch only its own objects: no ``*``
action, no ``*`` resource, no managed policies. The S3 notification is the bucket's own
CloudFormation property rather than CDK's ``add_event_notification``, which deploys a helper
Lambda allowed ``s3:PutBucketNotification`` on every bucket; to avoid a dependency cycle between
the bucket and the queue policy, bucket names are known before deployment (given, or derived
from the stack name, account and region).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import (
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from rearcquest.config import HANDOVER_MARGIN
from rearcquest.data.athena import (
    PARQUET_INPUT,
    PARQUET_OUTPUT,
    PARQUET_SERDE,
    GlueTable,
    glue_tables,
    named_queries,
)
from rearcquest.layout import POPULATION_TABLE, TABLES_PREFIX, lock_key, releases_key, state_key
from rearcquest_infra.settings import InfraSettings

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
SCHEDULED_HANDLER = "rearcquest.lambdas.scheduled_handler"
REPORT_HANDLER = "rearcquest.lambdas.report_handler"
INDEX_HANDLER = "rearcquest.lambdas.index_handler"
WORK_HANDLER = "rearcquest.lambdas.work_handler"
# A worker syncs one survey (or one big file): Lambda's longest run.
WORK_TIMEOUT = Duration.minutes(15)
# The worker hands its transfers over HANDOVER_MARGIN seconds before its end: a timeout not well
# above that margin would hand every message over without moving a byte, into the DLQ.
if WORK_TIMEOUT.to_seconds() < 3 * HANDOVER_MARGIN:
    raise ValueError(
        f"WORK_TIMEOUT ({WORK_TIMEOUT.to_seconds()} s) must be at least three times the "
        f"worker's handover margin ({HANDOVER_MARGIN} s)"
    )
# One message per invocation: each is a whole survey, and its failure must not retry others.
WORK_BATCH_SIZE = 1
# The first sync of pr/ is ~5 MB at BLS's polite one request a second; later runs are a listing.
SCHEDULED_TIMEOUT = Duration.minutes(10)
REPORT_TIMEOUT = Duration.minutes(2)
# AWS advises a queue visibility timeout of at least six times the consumer's timeout, so that
# a message is not handed to a second invocation while Lambda still retries the first batch.
VISIBILITY_FACTOR = 6
# Five receives ride out a throttled or briefly failing report function before the DLQ.
MAX_RECEIVE_COUNT = 5
REPORT_BATCH_SIZE = 10
# Polars wants memory; Lambda gives CPU in proportion to memory, too. Building the tables of a
# 1.08 GiB data file (26.9 million rows) peaked at 438 MiB RSS (docs/aws.md). The daily, report
# and index functions; the worker has its own setting below.
MEMORY_MB = 1024
# The worker (one survey, or one big file, a message) has its own memory and /tmp, set from
# benchmarks/README.md:
# - memory: the streamed tables build holds ~300 MB whatever the file's size ("tables", peak
#   memory by file size: 269 MB at 161 MB of text, 303 MB at 1,614 MB), and the sync alone
#   73-111 MB of RSS ("lambda", before issue 21). 1,024 MB is over three times the build's peak,
#   and it buys the CPU share the "lambda" run measured as enough (0.58 vCPU: `ch`'s 674 MB
#   message used 9-11 s of CPU in 43-150 s; the source's bandwidth, not the CPU, set the time).
#   The same run at the inventory's real sizes after issue 21 (benchmarks/lambda/run.py, which
#   reads this value) is not recorded yet: its peaks would be what lowers this; until then it
#   stays what it was.
# - /tmp: the worker writes nothing there. The streamed build's peak temporary disk is 0 MB at
#   every size measured ("tables": 161 to 1,614 MB of text; before, the copy of the text needed
#   its whole size, which is why this was 4,096 MB, room for a 3.5 GB file, and why `cs`'s
#   6,072 MB file ran out of it), and the sync streams to S3 with no temporary file ("sync-bls",
#   big: 8.2 kB written for 2 GiB). So Lambda's free 512 MB, the least it gives; the function's
#   /tmp is still at least tmpStorageMb.
WORK_MEMORY_MB = 1024
WORK_TMP_STORAGE_MB = 512
# One sync at a time (the S3 lease guards the mirror too; this also bounds what a runaway costs).
SCHEDULED_CONCURRENCY = 1
# The public index has no authentication: at most this many run at once, whoever calls it.
INDEX_CONCURRENCY = 5
INDEX_TIMEOUT = Duration.seconds(30)
# Lambda retries a failed asynchronous run this often before its on-failure destination.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)
# The daily run is late when no invocation happened for this long (a day plus slack).
NOT_RUN_HOURS = 26
# Incomplete multipart uploads are aborted this many days after they began, so that abandoned ones
# (a killed sync, a worker stopped at its timeout) never cost storage for ever. Other buckets: a
# day, as nothing resumes there. The mirror: three days, because a transfer cut mid-file resumes
# from its upload's completed parts on a later run, and the runs are a day apart: S3 applies the
# rule at the first midnight UTC past the age, so one day could abort an upload hours before the
# next daily run resumes it, while three leave two daily runs (or their retries) to resume it.
ABORT_UPLOADS_DAYS = 1
MIRROR_ABORT_UPLOADS_DAYS = 3
# Athena's query results are copies of what the tables hold: gone after a week.
ATHENA_RESULTS_DAYS = 7
ATHENA_RESULTS_PREFIX = "results/"
ATHENA_ENGINE = "Athena engine version 3"
# What a person (or role) needs to run the workgroup's queries and read their results.
ATHENA_QUERY_ACTIONS = [
    "athena:BatchGetNamedQuery",
    "athena:BatchGetQueryExecution",
    "athena:GetNamedQuery",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:GetWorkGroup",
    "athena:ListNamedQueries",
    "athena:ListQueryExecutions",
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
]
ATHENA_CATALOG_ACTIONS = [
    "athena:GetDataCatalog",
    "athena:GetDatabase",
    "athena:GetTableMetadata",
    "athena:ListDatabases",
    "athena:ListTableMetadata",
]
GLUE_READ_ACTIONS = [
    "glue:GetDatabase",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:GetTable",
    "glue:GetTables",
]

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


class PipelineStack(Stack):
    """The rearcquest pipeline; every parameter comes from :class:`InfraSettings`.

    Attributes:
        bls_bucket: the versioned BLS mirror bucket.
        population_bucket: the bucket that holds the population JSON.
        queue: receives the population key's ``ObjectCreated`` events.
        dead_letter_queue: where messages go after ``MAX_RECEIVE_COUNT`` failed reports.
        scheduled_function: runs the sync and the fetch every day.
        report_function: logs the reports for each message of ``queue``.
        index_function: the public index page, when ``settings.public_index`` is on.
        failure_queue: records of daily runs that failed (Lambda's on-failure destination) or
            that EventBridge could not deliver (the rule target's dead-letter queue).
        alarm_topic: the SNS topic every alarm notifies.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: InfraSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self._log_groups: dict[str, logs.LogGroup] = {}
        if not settings.bundle_path.is_dir():
            raise FileNotFoundError(
                f"Lambda bundle {settings.bundle_path} not found; build it with "
                "scripts/build-lambda-bundle (or pass -c bundlePath=DIR)"
            )
        # Default names are unique per stack, account and region, and known before deployment.
        stem = settings.stack_name.lower()
        bls_name = settings.bls_bucket_name or f"{stem}-bls-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        population_name = (
            settings.population_bucket_name or f"{stem}-population-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        )
        bls_arn = self._bls_arn = f"arn:{Aws.PARTITION}:s3:::{bls_name}"
        population_arn = f"arn:{Aws.PARTITION}:s3:::{population_name}"
        prefix, key = settings.bls_prefix, settings.population_key

        self.bls_bucket = self._bucket(
            "BlsBucket",
            bls_name,
            versioned=True,
            noncurrent_days=settings.noncurrent_version_days,
            abort_uploads_days=MIRROR_ABORT_UPLOADS_DAYS,
        )
        self.population_bucket = self._bucket("PopulationBucket", population_name, versioned=False)
        code = lambda_.Code.from_asset(str(settings.bundle_path))

        # -- the tables in Glue, an Athena workgroup and the reports as its named queries -------
        self._athena(stem, bls_name, bls_arn)

        # -- the fan-out: a work queue of surveys and big files, drained by the worker ----------
        self.work_queue: sqs.Queue | None = None
        self.work_dead_letter_queue: sqs.Queue | None = None
        self.work_function: lambda_.Function | None = None
        if settings.fan_out:
            self._fan_out(code, bls_name, bls_arn)

        # -- the daily sync + fetch ------------------------------------------------------------
        self.failure_queue = sqs.Queue(
            self,
            "ScheduledFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.scheduled_function = self._function(
            "Scheduled",
            handler=SCHEDULED_HANDLER,
            code=code,
            timeout=SCHEDULED_TIMEOUT,
            description=(
                "rearcquest: mirror BLS pr/ and fetch the DataUSA population (daily)"
                if self.work_queue is None
                else "rearcquest: queue the BLS surveys' work and fetch the population (daily)"
            ),
            environment={
                "RQ_BLS_BUCKET": bls_name,
                "RQ_BLS_PREFIX": prefix,
                "RQ_POPULATION_BUCKET": population_name,
                "RQ_POPULATION_KEY": key,
                "RQ_CONTACT": settings.contact,
                # The mirror bucket is versioned: the sync checks it, so releases stay readable.
                "RQ_VINTAGES": "1",
                # A sync that changed something builds the survey's tables; the population
                # table follows the fetch (docs/tables.md).
                "RQ_TABLES": "1",
                "RQ_TABLES_PREFIX": TABLES_PREFIX,
                **self._planner_environment(),
            },
            statements=self._scheduled_statements(
                [
                    # The sync state and the lease live outside the mirror prefix, and their first
                    # read finds nothing: S3 answers that with a 404 only to a role that may list the
                    # bucket without a prefix condition (otherwise 403, and the first run fails).
                    # The bucket holds only the mirror and rq's own objects.
                    # ListBucketMultipartUploads: the uploads in progress at a file's key (a cut
                    # transfer's to resume, a killed run's to abort).
                    iam.PolicyStatement(
                        sid="ListMirrorBucket",
                        actions=["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                        resources=[bls_arn],
                    ),
                    # RQ_VINTAGES: the sync checks that the bucket keeps old versions.
                    iam.PolicyStatement(
                        sid="ReadMirrorVersioning",
                        actions=["s3:GetBucketVersioning"],
                        resources=[bls_arn],
                    ),
                    iam.PolicyStatement(
                        sid="ReadWriteMirrorObjects",
                        # AbortMultipartUpload: a failed multipart upload (files > 64 MB) is cleaned.
                        # ListMultipartUploadParts: a cut transfer resumes from the parts S3 lists.
                        # The old state object inside the prefix (read, migrated, deleted) is one of
                        # these keys too.
                        actions=[
                            "s3:GetObject",
                            "s3:PutObject",
                            "s3:DeleteObject",
                            "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts",
                        ],
                        resources=[f"{bls_arn}/{prefix}*"],
                    ),
                    # The sync state, the lease and the release log of this mirror, exactly;
                    # conditional writes (If-None-Match, If-Match) need nothing more than PutObject.
                    iam.PolicyStatement(
                        sid="ReadWriteSyncStateAndLease",
                        actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        resources=[
                            f"{bls_arn}/{state_key(prefix)}",
                            f"{bls_arn}/{lock_key(prefix)}",
                            f"{bls_arn}/{releases_key(prefix)}",
                        ],
                    ),
                    # fetch-population HEADs the key before writing it; without ListBucket S3 answers
                    # 403 rather than 404 for the first, absent object. A prefix condition does not
                    # count for that check, and this bucket holds nothing else: list it whole.
                    iam.PolicyStatement(
                        sid="ListPopulationBucket",
                        actions=["s3:ListBucket"],
                        resources=[population_arn],
                    ),
                    iam.PolicyStatement(
                        sid="ReadWritePopulationObject",
                        actions=["s3:GetObject", "s3:PutObject"],
                        resources=[f"{population_arn}/{key}"],
                    ),
                    # The tables of the mirror and the population table, with their manifests;
                    # a partition whose data file left the mirror is deleted.
                    iam.PolicyStatement(
                        sid="ReadWriteTables",
                        actions=[
                            "s3:GetObject",
                            "s3:PutObject",
                            "s3:DeleteObject",
                            "s3:AbortMultipartUpload",
                        ],
                        resources=[f"{bls_arn}/{TABLES_PREFIX}*"],
                    ),
                ]
            ),
            reserved_concurrent_executions=SCHEDULED_CONCURRENCY,
            ephemeral_storage_size=Size.mebibytes(settings.tmp_storage_mb),
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
        )
        rule = events.Rule(
            self,
            "DailySchedule",
            description="rearcquest: run the BLS sync and the population fetch",
            schedule=events.Schedule.expression(settings.schedule),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.scheduled_function,
                retry_attempts=2,
                max_event_age=Duration.hours(2),
                dead_letter_queue=self.failure_queue,
            )
        )

        # -- population JSON lands -> SQS -> reports ----------------------------------------------
        self.dead_letter_queue = sqs.Queue(
            self,
            "ReportDLQ",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        # SQS-managed encryption: S3 cannot send to a queue encrypted with the AWS-managed KMS key.
        self.queue = sqs.Queue(
            self,
            "ReportQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_FACTOR * REPORT_TIMEOUT.to_seconds()),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="PopulationBucketNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": population_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        self._notify_on_key(self.population_bucket, key, self.queue)

        self.report_function = self._function(
            "Report",
            handler=REPORT_HANDLER,
            code=code,
            timeout=REPORT_TIMEOUT,
            description="rearcquest: log the reports when the population JSON changes",
            environment={
                "RQ_BLS_BUCKET": bls_name,
                "RQ_BLS_PREFIX": prefix,
                "RQ_POPULATION_BUCKET": population_name,
                "RQ_POPULATION_KEY": key,
            },
            statements=[
                iam.PolicyStatement(
                    sid="ReadReportInputs",
                    actions=["s3:GetObject"],
                    resources=[f"{bls_arn}/{settings.bls_data_key}", f"{population_arn}/{key}"],
                ),
            ],
        )
        self.report_function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=REPORT_BATCH_SIZE,
                report_batch_item_failures=True,
                # Two reports at a time at most: they all read the same two objects.
                max_concurrency=2,
            )
        )

        # -- optional public index page --------------------------------------------------------
        self.index_function: lambda_.Function | None = None
        if settings.public_index:
            self.index_function = self._public_index(code, bls_name, bls_arn, prefix)

        self.alarm_topic = self._alarms()
        for name, value, description in (
            ("BlsBucketName", self.bls_bucket.bucket_name, "bucket of the BLS mirror"),
            ("PopulationBucketName", self.population_bucket.bucket_name, "population bucket"),
            ("ReportQueueUrl", self.queue.queue_url, "queue fed by the population key"),
            ("ReportDeadLetterQueueUrl", self.dead_letter_queue.queue_url, "failed reports"),
            ("ScheduledFailureQueueUrl", self.failure_queue.queue_url, "failed daily runs"),
            ("AlarmTopicArn", self.alarm_topic.topic_arn, "every alarm notifies this topic"),
            ("ScheduledFunctionName", self.scheduled_function.function_name, "daily sync"),
            ("ReportFunctionName", self.report_function.function_name, "report logger"),
            ("ScheduledLogGroupName", self._log_groups["Scheduled"].log_group_name, "sync logs"),
            ("ReportLogGroupName", self._log_groups["Report"].log_group_name, "report logs"),
        ):
            CfnOutput(self, name, value=value, description=description)

    def _athena(self, stem: str, bls_name: str, bls_arn: str) -> None:
        """The Glue database and tables over ``tables/`` of the mirror bucket, an Athena workgroup
        with its own results bucket and scan limit, the reports as its named queries, and the
        managed policy a person or role attaches to query them.

        The table definitions and the SQL come from :mod:`rearcquest.data.athena`, which the tests
        also run with DuckDB over the Parquet that ``rq tables`` writes.
        """
        settings = self.settings
        results_name = f"{stem}-athena-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        results_arn = f"arn:{Aws.PARTITION}:s3:::{results_name}"
        self.athena_results_bucket = self._bucket(
            "AthenaResultsBucket", results_name, versioned=False, expire_days=ATHENA_RESULTS_DAYS
        )
        database = settings.database_name
        self.glue_database = glue.CfnDatabase(
            self,
            "GlueDatabase",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database,
                description="rearcquest: the query-ready tables of the BLS mirror (rq tables)",
            ),
        )
        self.glue_tables: dict[str, glue.CfnTable] = {}
        for table in glue_tables(bls_name, settings.surveys):
            cfn = self._glue_table(database, table)
            cfn.add_dependency(self.glue_database)
            self.glue_tables[table.name] = cfn
        self.workgroup = athena.CfnWorkGroup(
            self,
            "AthenaWorkGroup",
            name=settings.stack_name,
            description="rearcquest: queries over the tables of the BLS mirror",
            state="ENABLED",
            # The named queries are the stack's own: deleting the stack deletes them with it.
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                # A client cannot send results elsewhere, unencrypted, or lift the scan limit.
                enforce_work_group_configuration=True,
                bytes_scanned_cutoff_per_query=settings.athena_scan_limit_mb * 1024 * 1024,
                publish_cloud_watch_metrics_enabled=True,
                requester_pays_enabled=False,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ATHENA_ENGINE
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                    expected_bucket_owner=Aws.ACCOUNT_ID,
                ),
            ),
        )
        self.workgroup.node.add_dependency(self.athena_results_bucket)
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for query in named_queries():
            cfn_query = athena.CfnNamedQuery(
                self,
                f"Query{query.name.title().replace('_', '')}",
                name=query.name,
                description=query.description,
                database=database,
                query_string=query.sql,
                work_group=self.workgroup.ref,
            )
            cfn_query.add_dependency(self.workgroup)
            cfn_query.add_dependency(self.glue_database)
            self.named_queries[query.name] = cfn_query

        region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
        glue_arn = f"arn:{partition}:glue:{region}:{account}"
        self.query_policy = iam.ManagedPolicy(
            self,
            "AthenaQueryPolicy",
            managed_policy_name=f"{settings.stack_name}AthenaQuery",
            description=(
                "rearcquest: run the Athena workgroup's queries over the tables and read their "
                "results; attach it to the people and roles that query"
            ),
            statements=[
                iam.PolicyStatement(
                    sid="RunQueriesInTheWorkGroup",
                    actions=ATHENA_QUERY_ACTIONS,
                    resources=[
                        f"arn:{partition}:athena:{region}:{account}:workgroup/{self.workgroup.name}"
                    ],
                ),
                # The query editor browses the catalog through Athena's own API.
                iam.PolicyStatement(
                    sid="BrowseTheCatalog",
                    actions=ATHENA_CATALOG_ACTIONS,
                    resources=[
                        f"arn:{partition}:athena:{region}:{account}:datacatalog/AwsDataCatalog"
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadTheTableDefinitions",
                    actions=GLUE_READ_ACTIONS,
                    resources=[
                        f"{glue_arn}:catalog",
                        f"{glue_arn}:database/{database}",
                        f"{glue_arn}:table/{database}/*",
                    ],
                ),
                # Athena reads the Parquet with the caller's credentials: the tables, nothing
                # else of the mirror.
                iam.PolicyStatement(
                    sid="ListTheTables",
                    actions=["s3:ListBucket"],
                    resources=[bls_arn],
                    conditions={"StringLike": {"s3:prefix": f"{TABLES_PREFIX}*"}},
                ),
                iam.PolicyStatement(
                    sid="ReadTheTables",
                    actions=["s3:GetObject"],
                    resources=[f"{bls_arn}/{TABLES_PREFIX}*"],
                ),
                iam.PolicyStatement(
                    sid="WriteAndReadQueryResults",
                    actions=[
                        "s3:AbortMultipartUpload",
                        "s3:GetObject",
                        "s3:ListMultipartUploadParts",
                        "s3:PutObject",
                    ],
                    resources=[f"{results_arn}/{ATHENA_RESULTS_PREFIX}*"],
                ),
                iam.PolicyStatement(
                    sid="ListQueryResults",
                    actions=[
                        "s3:GetBucketLocation",
                        "s3:ListBucket",
                        "s3:ListBucketMultipartUploads",
                    ],
                    resources=[results_arn],
                ),
            ],
        )
        for name, value, description in (
            ("GlueDatabaseName", database, "Glue database of the tables"),
            ("AthenaWorkGroupName", self.workgroup.name, "Athena workgroup (named queries)"),
            ("AthenaResultsBucketName", self.athena_results_bucket.bucket_name, "query results"),
            ("AthenaQueryPolicyArn", self.query_policy.managed_policy_arn, "attach to query"),
        ):
            CfnOutput(self, name, value=value, description=description)

    def _glue_table(self, database: str, table: GlueTable) -> glue.CfnTable:
        """One external Parquet table of the Glue database."""

        def columns(pairs: tuple[tuple[str, str], ...]) -> list[glue.CfnTable.ColumnProperty]:
            return [glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in pairs]

        return glue.CfnTable(
            self,
            "GlueTable" + "".join(part.title() for part in table.name.split("_")),
            catalog_id=Aws.ACCOUNT_ID,
            database_name=database,
            table_input=glue.CfnTable.TableInputProperty(
                name=table.name,
                description=table.description,
                table_type="EXTERNAL_TABLE",
                parameters={"EXTERNAL": "TRUE", **table.parameters},
                partition_keys=columns(table.partition_keys) or None,
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=columns(table.columns),
                    location=table.location,
                    input_format=PARQUET_INPUT,
                    output_format=PARQUET_OUTPUT,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET_SERDE),
                ),
            ),
        )

    def _planner_environment(self) -> dict[str, str]:
        """The scheduled function's fan-out variables: where to queue what (none without it)."""
        if self.work_queue is None:
            return {}
        return {
            "RQ_WORK_QUEUE_URL": self.work_queue.queue_url,
            "RQ_SURVEYS": ",".join(self.settings.surveys),
        }

    def _scheduled_statements(
        self, statements: list[iam.PolicyStatement]
    ) -> list[iam.PolicyStatement]:
        """The scheduled function's statements; with the fan-out it plans instead of syncing,
        so it may send to the work queue and no longer touches the mirror."""
        if self.work_queue is None:
            return statements
        mirror = {
            "ReadMirrorVersioning",
            "ReadWriteMirrorObjects",
            "ReadWriteSyncStateAndLease",
            "ReadWriteTables",
        }
        return [s for s in statements if s.sid not in mirror] + [
            iam.PolicyStatement(
                sid="SendWork",
                actions=["sqs:SendMessage"],
                resources=[self.work_queue.queue_arn],
            ),
            # The workers build the surveys' tables; this function the population table only
            # (ListMirrorBucket stays: its absent manifest must read as 404, not 403).
            iam.PolicyStatement(
                sid="ReadWritePopulationTable",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[f"{self._bls_arn}/{TABLES_PREFIX}{POPULATION_TABLE}/*"],
            ),
        ]

    def _fan_out(self, code: lambda_.Code, bls_name: str, bls_arn: str) -> None:
        """The work queue, its DLQ and the worker, allowed only its surveys' prefixes.

        Politeness: the event source's maximum concurrency times each worker's ``RQ_MAX_RPS``
        is ``settings.total_rps``, the budget for every request to BLS at once.
        """
        settings = self.settings
        self.work_dead_letter_queue = sqs.Queue(
            self,
            "WorkDLQ",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.work_queue = sqs.Queue(
            self,
            "WorkQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_FACTOR * WORK_TIMEOUT.to_seconds()),
            retention_period=Duration.days(4),
            # AWS advises at least five receives before a Lambda consumer's DLQ; a message whose
            # survey lease is held also comes back after the visibility timeout.
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.work_dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        prefixes = settings.survey_prefixes
        environment = {
            "RQ_BLS_BUCKET": bls_name,
            "RQ_CONTACT": settings.contact,
            "RQ_MAX_RPS": f"{settings.worker_rps:g}",
            "RQ_VINTAGES": "1",
            "RQ_TABLES": "1",
            "RQ_TABLES_PREFIX": TABLES_PREFIX,
            # A worker whose time runs out sends its work on here as a continuation message.
            "RQ_WORK_QUEUE_URL": self.work_queue.queue_url,
        }
        catalog: list[iam.PolicyStatement] = []
        if prefixes is None:
            # Every survey of the root: its prefixes are unknown until the root is listed, so
            # the worker may write the whole mirror bucket, which holds only the mirrors and
            # rq's own state and locks.
            objects = [f"{bls_arn}/*"]
            # Nor can the stack declare those surveys' Glue tables: the worker creates each
            # survey's two tables when they are missing, and never changes an existing one.
            database = settings.database_name
            environment["RQ_GLUE_DATABASE"] = database
            glue_arn = f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}"
            catalog.append(
                iam.PolicyStatement(
                    sid="RegisterSurveyTables",
                    actions=["glue:GetDatabase", "glue:GetTable", "glue:CreateTable"],
                    resources=[
                        f"{glue_arn}:catalog",
                        f"{glue_arn}:database/{database}",
                        f"{glue_arn}:table/{database}/*",
                    ],
                )
            )
        else:
            objects = [f"{bls_arn}/{p}*" for p in prefixes]
            objects += [f"{bls_arn}/{state_key(p)}" for p in prefixes]
            objects += [f"{bls_arn}/{lock_key(p)}" for p in prefixes]
            objects += [f"{bls_arn}/{releases_key(p)}" for p in prefixes]
            objects += [f"{bls_arn}/{TABLES_PREFIX}{p}*" for p in prefixes]
        self.work_function = self._function(
            "Work",
            handler=WORK_HANDLER,
            code=code,
            timeout=WORK_TIMEOUT,
            memory_mb=WORK_MEMORY_MB,
            description="rearcquest: sync the BLS survey (or big file) each work message names",
            environment=environment,
            statements=[
                # The first read of a survey's state and lease finds nothing: S3 answers 404 only
                # to a role that may list the bucket (otherwise 403).
                # The uploads in progress at a file's key: a cut transfer's to resume, a killed
                # run's to abort.
                iam.PolicyStatement(
                    sid="ListMirrorBucket",
                    actions=["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    resources=[bls_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadMirrorVersioning",
                    actions=["s3:GetBucketVersioning"],
                    resources=[bls_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadWriteSurveyMirrorsStateAndLeases",
                    actions=[
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        # A cut transfer resumes from the parts S3 lists (ListParts).
                        "s3:ListMultipartUploadParts",
                    ],
                    resources=objects,
                ),
                # The continuation message of a worker whose time ran out.
                iam.PolicyStatement(
                    sid="SendContinuations",
                    actions=["sqs:SendMessage"],
                    resources=[self.work_queue.queue_arn],
                ),
                *catalog,
            ],
            ephemeral_storage_size=Size.mebibytes(
                max(settings.tmp_storage_mb, WORK_TMP_STORAGE_MB)
            ),
        )
        self.work_function.add_event_source(
            event_sources.SqsEventSource(
                self.work_queue,
                batch_size=WORK_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=settings.work_concurrency,
            )
        )
        CfnOutput(self, "WorkQueueUrl", value=self.work_queue.queue_url, description="work")
        CfnOutput(
            self,
            "WorkDeadLetterQueueUrl",
            value=self.work_dead_letter_queue.queue_url,
            description="work messages that failed five times",
        )

    def _bucket(
        self,
        construct_id: str,
        name: str,
        *,
        versioned: bool,
        noncurrent_days: int | None = None,
        expire_days: int | None = None,
        abort_uploads_days: int = ABORT_UPLOADS_DAYS,
    ) -> s3.Bucket:
        lifecycle = [
            s3.LifecycleRule(
                abort_incomplete_multipart_upload_after=Duration.days(abort_uploads_days)
            )
        ]
        if expire_days is not None:
            lifecycle.append(s3.LifecycleRule(expiration=Duration.days(expire_days)))
        if versioned and noncurrent_days is not None:
            # Old versions are the mirror's past releases (rq releases, analyze --as-of): kept
            # unless the deployment sets noncurrentVersionDays (see docs/vintages.md, costs).
            lifecycle.append(
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(noncurrent_days))
            )
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=versioned,
            lifecycle_rules=lifecycle,
            # The data outlives the stack: `cdk destroy` leaves both buckets (see docs/aws.md).
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _notify_on_key(self, bucket: s3.Bucket, key: str, queue: sqs.Queue) -> None:
        """Send ``ObjectCreated`` events of exactly ``key`` to ``queue`` (no helper Lambda)."""
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(
                    event="s3:ObjectCreated:*",
                    queue=queue.queue_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            # S3 filters by prefix and suffix only: the whole key as both is
                            # the closest to an exact match ("x.json.bak" would not pass).
                            rules=[
                                s3.CfnBucket.FilterRuleProperty(name="prefix", value=key),
                                s3.CfnBucket.FilterRuleProperty(
                                    name="suffix", value=key.rsplit("/", 1)[-1]
                                ),
                            ]
                        )
                    ),
                )
            ]
        )
        # S3 checks that it may send to the queue when the configuration is set.
        policy = queue.node.try_find_child("Policy")
        assert policy is not None
        cfn_bucket.node.add_dependency(policy)

    def _function(
        self,
        name: str,
        *,
        handler: str,
        code: lambda_.Code,
        timeout: Duration,
        description: str,
        environment: dict[str, str],
        statements: list[iam.PolicyStatement],
        memory_mb: int = MEMORY_MB,
        **options: Any,
    ) -> lambda_.Function:
        """A function with its own log group and a role allowed ``statements`` and its logs.

        ``options`` go to :class:`aws_cdk.aws_lambda.Function` as they are.
        """
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=_RETENTION[self.settings.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        self._log_groups[name] = log_group
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (least privilege)",
        )
        # Instead of AWSLambdaBasicExecutionRole, whose logs actions apply to every log group.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        for statement in statements:
            role.add_to_policy(statement)
        return lambda_.Function(
            self,
            f"{name}Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            role=role,
            timeout=timeout,
            memory_size=memory_mb,
            description=description,
            environment=environment,
            log_group=log_group,
            **options,
        )

    def _public_index(
        self, code: lambda_.Code, bls_name: str, bls_arn: str, prefix: str
    ) -> lambda_.Function:
        """A public, read-only index of the mirror behind a Lambda function URL."""
        function = self._function(
            "Index",
            handler=INDEX_HANDLER,
            code=code,
            timeout=INDEX_TIMEOUT,
            description="rearcquest: public read-only index of the BLS mirror",
            environment={"RQ_BLS_BUCKET": bls_name, "RQ_BLS_PREFIX": prefix},
            statements=[
                iam.PolicyStatement(
                    sid="ListMirrorPrefixOnly",
                    actions=["s3:ListBucket"],
                    resources=[bls_arn],
                    conditions={"StringLike": {"s3:prefix": f"{prefix}*"}},
                ),
                iam.PolicyStatement(
                    sid="ReadMirrorObjects",
                    actions=["s3:GetObject"],
                    resources=[f"{bls_arn}/{prefix}*"],
                ),
            ],
            # No authentication: the cap bounds the bill (and the load on S3) whoever calls it.
            reserved_concurrent_executions=INDEX_CONCURRENCY,
        )
        url = function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        CfnOutput(self, "IndexUrl", value=url.url, description="public index of the mirror")
        return function

    def _alarms(self) -> sns.Topic:
        """Alarms that each notify one SNS topic, mailed to ``alarm_email`` when it is set.

        Returns:
            The topic.
        """
        topic = sns.Topic(self, "AlarmTopic", display_name="rearcquest alarms", enforce_ssl=True)
        if self.settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(self.settings.alarm_email))
        action = cloudwatch_actions.SnsAction(topic)
        alarms = [
            self.scheduled_function.metric_errors(period=Duration.days(1)).create_alarm(
                self,
                "ScheduledErrors",
                alarm_description="the daily sync/fetch failed",
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            # An hour per period: CloudWatch allows at most a day of periods shorter than one.
            # No invocation at all leaves no data point, which is the very case to catch.
            self.scheduled_function.metric_invocations(
                period=Duration.hours(1), statistic="Sum"
            ).create_alarm(
                self,
                "ScheduledNotRun",
                alarm_description=f"the daily sync/fetch did not run for {NOT_RUN_HOURS} hours",
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=NOT_RUN_HOURS,
                datapoints_to_alarm=NOT_RUN_HOURS,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            ),
            self.failure_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5)
            ).create_alarm(
                self,
                "ScheduledFailureRecords",
                alarm_description=(
                    "a daily run failed after its retries, or EventBridge could not start it; "
                    "the record waits in the ScheduledFailures queue"
                ),
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5)
            ).create_alarm(
                self,
                "DeadLetters",
                alarm_description=(
                    f"reports failed {MAX_RECEIVE_COUNT} times; messages wait in the DLQ"
                ),
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]
        if self.work_dead_letter_queue is not None:
            alarms.append(
                self.work_dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5)
                ).create_alarm(
                    self,
                    "WorkDeadLetters",
                    alarm_description=(
                        f"a survey's sync failed {MAX_RECEIVE_COUNT} times; its work message "
                        "waits in the WorkDLQ"
                    ),
                    threshold=1,
                    evaluation_periods=1,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        for alarm in alarms:
            alarm.add_alarm_action(action)
        return topic
