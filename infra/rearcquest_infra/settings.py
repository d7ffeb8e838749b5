"""Deployment parameters, read from CDK context (``cdk deploy -c key=value`` or ``cdk.json``).

Every parameter has a default except ``contact``; values are checked here, before synthesis, so a
typo fails with a message naming the context key instead of a CloudFormation rollback later. The
runtime defaults (the ``pr/`` prefix, the population key) come from :mod:`rearcquest.config`, so
the Lambdas and the CLI agree on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rearcquest.config import DEFAULT_BLS_URL, DEFAULT_POPULATION_KEY, build_user_agent
from rearcquest.data.athena import table_surveys
from rearcquest.errors import ConfigError
from rearcquest.layout import ALL, default_prefix, normalise_prefix, parse_surveys

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO / "build" / "lambda-bundle"
DEFAULT_BLS_PREFIX = default_prefix(DEFAULT_BLS_URL)
# 15:00 UTC: after BLS's 8:30 a.m. Eastern release time, whether or not daylight saving is on.
DEFAULT_SCHEDULE = "cron(0 15 * * ? *)"
DEFAULT_LOG_RETENTION_DAYS = 30
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
# The file the reports read; the report function may read it and nothing else of the mirror.
BLS_DATA_FILE = "pr.data.0.Current"
# The sync streams every body from the source into S3 with no temporary file, so the scheduled
# function needs no more than Lambda's free 512 MB of /tmp; the setting stays for other uses.
DEFAULT_TMP_STORAGE_MB = 512
TMP_STORAGE_RANGE_MB = (512, 10240)
# The fan-out's politeness budget: requests a second to BLS summed over every worker.
DEFAULT_TOTAL_RPS = 2.0
# Workers at once (Lambda's SQS event source allows 2 to 1000); each gets total/concurrency.
DEFAULT_WORK_CONCURRENCY = 2
WORK_CONCURRENCY_RANGE = (2, 1000)
# Old versions of the mirror's objects are its past releases (rq releases, rq revisions): kept
# forever unless ``noncurrentVersionDays`` sets an expiration, in days.
NONCURRENT_DAYS_RANGE = (1, 36500)
# Athena stops (and bills no more than) a query of the stack's workgroup after this many MB
# scanned; Athena's own minimum is 10 MB. 1 GB is $0.005 at $5 per TB.
DEFAULT_ATHENA_SCAN_LIMIT_MB = 1024
ATHENA_SCAN_LIMIT_RANGE_MB = (10, 1024 * 1024)
# A production deployment must tell someone when it fails: it requires ``alarmEmail``.
STAGES = ("dev", "prod")

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEDULE = re.compile(r"^(cron|rate)\(.+\)$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Short enough for "<stack>-population-<account>-<region>" to fit S3's 63 characters.
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,23}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class InfraSettings:
    """Everything the stacks need to know, already validated.

    Attributes:
        contact: e-mail or URL sent to BLS in the User-Agent (``RQ_CONTACT``).
        bundle_path: directory holding the Lambda code (built by ``scripts/build-lambda-bundle``).
        bls_bucket_name: name of the mirror bucket; ``None`` gives
            ``<stack name, lowercase>-bls-<account>-<region>``.
        bls_prefix: key prefix of the mirror, with a trailing slash.
        population_bucket_name: name of the population bucket; ``None`` gives
            ``<stack name, lowercase>-population-<account>-<region>``.
        population_key: key of the population JSON.
        schedule: EventBridge schedule expression of the daily run.
        log_retention_days: how long CloudWatch keeps the functions' logs.
        public_index: whether to deploy the public, read-only index page (a Lambda function URL).
        alarm_email: where alarms are mailed; required when ``stage`` is ``prod``. Without it the
            alarms still notify the stack's SNS topic, for other subscribers.
        stage: ``dev`` or ``prod``; ``prod`` refuses to synthesize without ``alarm_email``.
        tmp_storage_mb: the scheduled function's ``/tmp`` size (512 to 10240 MB).
        github_repo: ``owner/name`` allowed to deploy through OIDC; ``None`` skips that stack.
        github_create_provider: create the account's GitHub OIDC provider (off when it exists).
        stack_name: name of the pipeline stack.
        surveys: the BLS surveys the fan-out mirrors (``-c surveys=pr,cu`` or ``all``), each
            to ``<survey>/``; default ``pr``.
        fan_out: deploy the work queue, its DLQ and the worker function; the scheduled function
            then plans the surveys onto the queue instead of syncing ``pr/`` itself.
        total_rps: the politeness budget, requests a second to BLS over every worker together.
        work_concurrency: the work queue's maximum concurrency (workers at once); each worker's
            rate is ``total_rps / work_concurrency``.
        noncurrent_version_days: delete old versions of the mirror's objects (past releases)
            this many days after they are replaced; ``None`` (the default) keeps them.
        athena_scan_limit_mb: the Athena workgroup cancels a query that scans more than this
            (10 MB to 1 TB; default 1024).
    """

    contact: str
    bundle_path: Path = DEFAULT_BUNDLE
    bls_bucket_name: str | None = None
    bls_prefix: str = DEFAULT_BLS_PREFIX
    population_bucket_name: str | None = None
    population_key: str = DEFAULT_POPULATION_KEY
    schedule: str = DEFAULT_SCHEDULE
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    public_index: bool = False
    alarm_email: str | None = None
    stage: str = "dev"
    tmp_storage_mb: int = DEFAULT_TMP_STORAGE_MB
    github_repo: str | None = None
    github_create_provider: bool = True
    stack_name: str = "Rearcquest"
    surveys: tuple[str, ...] = ("pr",)
    fan_out: bool = False
    total_rps: float = DEFAULT_TOTAL_RPS
    work_concurrency: int = DEFAULT_WORK_CONCURRENCY
    noncurrent_version_days: int | None = None
    athena_scan_limit_mb: int = DEFAULT_ATHENA_SCAN_LIMIT_MB

    def __post_init__(self) -> None:
        _check_contact("contact", self.contact)
        try:
            if list(self.surveys) != parse_surveys([",".join(self.surveys)]):
                raise ValueError(f"context 'surveys': {','.join(self.surveys)!r} has duplicates")
        except ConfigError as exc:
            raise ValueError(f"context 'surveys': {exc}") from exc
        try:
            table_surveys(self.surveys)
        except ConfigError as exc:
            raise ValueError(f"context 'surveys': {exc}") from exc
        if not self.total_rps > 0:
            raise ValueError(f"context 'totalRps': {self.total_rps} must be above 0")
        low, high = WORK_CONCURRENCY_RANGE
        if not low <= self.work_concurrency <= high:
            raise ValueError(
                f"context 'workConcurrency': {self.work_concurrency} is not between {low} and "
                f"{high} (Lambda's limits for an SQS event source)"
            )
        if self.alarm_email is not None and "@" not in self.alarm_email:
            raise ValueError(f"context 'alarmEmail': {self.alarm_email!r} is not an e-mail address")
        if self.stage not in STAGES:
            raise ValueError(f"context 'stage': {self.stage!r} is not one of {', '.join(STAGES)}")
        if self.stage == "prod" and self.alarm_email is None:
            raise ValueError(
                "context 'alarmEmail' is required when 'stage' is prod: a failed daily run must "
                "reach someone; deploy with -c alarmEmail=ops@example.com"
            )
        low, high = TMP_STORAGE_RANGE_MB
        if not low <= self.tmp_storage_mb <= high:
            raise ValueError(
                f"context 'tmpStorageMb': {self.tmp_storage_mb} is not between {low} and {high}"
            )
        for key, name in (
            ("blsBucketName", self.bls_bucket_name),
            ("populationBucketName", self.population_bucket_name),
        ):
            if name is not None and (not _BUCKET_NAME.match(name) or ".." in name):
                raise ValueError(
                    f"context {key!r}: {name!r} is not a valid S3 bucket name "
                    "(3-63 lowercase letters, digits, '.' or '-')"
                )
        if self.bls_bucket_name is not None and self.bls_bucket_name == self.population_bucket_name:
            raise ValueError(
                "context 'populationBucketName' must differ from 'blsBucketName': the stack "
                "creates both buckets"
            )
        if not _is_prefix(self.bls_prefix):
            raise ValueError(
                f"context 'blsPrefix': {self.bls_prefix!r} must be a relative prefix ending in '/'"
            )
        key = self.population_key
        if not key or key.startswith("/") or key.endswith("/") or ".." in key.split("/"):
            raise ValueError(f"context 'populationKey': {key!r} is not an object key")
        if not _SCHEDULE.match(self.schedule):
            raise ValueError(
                f"context 'schedule': {self.schedule!r} is not an EventBridge expression "
                "such as 'cron(0 15 * * ? *)' or 'rate(1 day)'"
            )
        if self.log_retention_days not in LOG_RETENTION_CHOICES:
            raise ValueError(
                f"context 'logRetentionDays': {self.log_retention_days} is not one of "
                f"{', '.join(map(str, LOG_RETENTION_CHOICES))}"
            )
        if self.github_repo is not None and not _GITHUB_REPO.match(self.github_repo):
            raise ValueError(f"context 'githubRepo': {self.github_repo!r} is not 'owner/name'")
        low_days, high_days = NONCURRENT_DAYS_RANGE
        days = self.noncurrent_version_days
        if days is not None and not low_days <= days <= high_days:
            raise ValueError(
                f"context 'noncurrentVersionDays': {days} is not between {low_days} and "
                f"{high_days} (leave it unset to keep every release)"
            )
        low, high = ATHENA_SCAN_LIMIT_RANGE_MB
        if not low <= self.athena_scan_limit_mb <= high:
            raise ValueError(
                f"context 'athenaScanLimitMb': {self.athena_scan_limit_mb} is not between {low} "
                f"and {high} (Athena's minimum is 10 MB)"
            )
        if not _STACK_NAME.match(self.stack_name):
            raise ValueError(
                f"context 'stackName': {self.stack_name!r} is not a stack name of at most 24 "
                "letters, digits and '-', starting with a letter"
            )

    @property
    def worker_rps(self) -> float:
        """Each worker's rate: the queue's maximum concurrency times it is ``total_rps``."""
        return self.total_rps / self.work_concurrency

    @property
    def survey_prefixes(self) -> tuple[str, ...] | None:
        """The worker's mirror prefixes (``pr/``, ``cu/``), or ``None`` for ``all`` (unknown
        before the root is listed)."""
        if self.surveys == (ALL,):
            return None
        return tuple(f"{s}/" for s in self.surveys)

    @property
    def database_name(self) -> str:
        """The Glue database: the stack name in lower case, ``-`` as ``_`` (Athena's rules)."""
        return self.stack_name.lower().replace("-", "_")

    @property
    def bls_data_key(self) -> str:
        """Key of the BLS data file the reports read."""
        return f"{self.bls_prefix}{BLS_DATA_FILE}"

    @classmethod
    def from_context(cls, get: Callable[[str], Any], *, base: Path | None = None) -> InfraSettings:
        """Build the settings from CDK context values.

        Args:
            get: looks a context key up (``app.node.try_get_context``); ``None`` when unset.
            base: directory a relative ``bundlePath`` is resolved against (default: the repo).

        Returns:
            The validated settings.

        Raises:
            ValueError: a value is missing or malformed; the message names the context key.
        """

        def text(key: str) -> str | None:
            value = get(key)
            if value is None:
                return None
            value = str(value).strip()
            return value or None

        contact = text("contact")
        if contact is None:
            raise ValueError(
                "context 'contact' is required: BLS refuses requests without a contact; "
                "deploy with -c contact=you@example.com"
            )
        bundle = text("bundlePath")
        bundle_path = DEFAULT_BUNDLE if bundle is None else (base or REPO) / bundle
        retention = text("logRetentionDays")
        try:
            retention_days = DEFAULT_LOG_RETENTION_DAYS if retention is None else int(retention)
        except ValueError as exc:
            raise ValueError(f"context 'logRetentionDays': {retention!r} is not a number") from exc
        tmp = text("tmpStorageMb")
        try:
            tmp_storage_mb = DEFAULT_TMP_STORAGE_MB if tmp is None else int(tmp)
        except ValueError as exc:
            raise ValueError(f"context 'tmpStorageMb': {tmp!r} is not a number") from exc
        noncurrent = text("noncurrentVersionDays")
        try:
            noncurrent_days = None if noncurrent is None else int(noncurrent)
        except ValueError as exc:
            raise ValueError(
                f"context 'noncurrentVersionDays': {noncurrent!r} is not a number"
            ) from exc
        scan = text("athenaScanLimitMb")
        try:
            scan_limit_mb = DEFAULT_ATHENA_SCAN_LIMIT_MB if scan is None else int(scan)
        except ValueError as exc:
            raise ValueError(f"context 'athenaScanLimitMb': {scan!r} is not a number") from exc
        prefix = get("blsPrefix")
        try:
            surveys = tuple(parse_surveys([text("surveys") or "pr"]))
        except ConfigError as exc:
            raise ValueError(f"context 'surveys': {exc}") from exc
        rps, concurrency = text("totalRps"), text("workConcurrency")
        try:
            total_rps = DEFAULT_TOTAL_RPS if rps is None else float(rps)
        except ValueError as exc:
            raise ValueError(f"context 'totalRps': {rps!r} is not a number") from exc
        try:
            work_concurrency = DEFAULT_WORK_CONCURRENCY if concurrency is None else int(concurrency)
        except ValueError as exc:
            raise ValueError(f"context 'workConcurrency': {concurrency!r} is not a number") from exc
        return cls(
            contact=contact,
            bundle_path=bundle_path.resolve(),
            bls_bucket_name=text("blsBucketName"),
            bls_prefix=DEFAULT_BLS_PREFIX if prefix is None else str(prefix).strip(),
            population_bucket_name=text("populationBucketName"),
            population_key=text("populationKey") or DEFAULT_POPULATION_KEY,
            schedule=text("schedule") or DEFAULT_SCHEDULE,
            log_retention_days=retention_days,
            public_index=_flag("publicIndex", get("publicIndex"), default=False),
            alarm_email=text("alarmEmail"),
            stage=(text("stage") or "dev").lower(),
            tmp_storage_mb=tmp_storage_mb,
            github_repo=text("githubRepo"),
            github_create_provider=_flag(
                "githubCreateOidcProvider", get("githubCreateOidcProvider"), default=True
            ),
            stack_name=text("stackName") or "Rearcquest",
            surveys=surveys,
            fan_out=_flag("fanOut", get("fanOut"), default=False),
            total_rps=total_rps,
            work_concurrency=work_concurrency,
            noncurrent_version_days=noncurrent_days,
            athena_scan_limit_mb=scan_limit_mb,
        )


def _check_contact(key: str, contact: str) -> None:
    try:
        build_user_agent(contact)
    except ConfigError as exc:
        raise ValueError(f"context {key!r}: {exc}") from exc


def _is_prefix(prefix: str) -> bool:
    """A non-empty relative prefix with exactly one trailing slash, as the mirror writes it."""
    try:
        return bool(prefix) and normalise_prefix(prefix) == prefix
    except ConfigError:
        return False


def _flag(key: str, value: Any, *, default: bool) -> bool:
    """Read a boolean: ``-c key=true`` arrives as a string, cdk.json may hold a real bool."""
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"context {key!r}: {value!r} is not true or false")
