"""Deployment parameters from CDK context: defaults, parsing, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rearcquest_infra.settings import DEFAULT_BUNDLE, DEFAULT_SCHEDULE, InfraSettings

from .cfn_helpers import REPO


def _from(context: dict[str, Any], base: Path | None = None) -> InfraSettings:
    return InfraSettings.from_context(context.get, base=base)


def test_defaults_match_the_cli() -> None:
    settings = _from({"contact": "me@example.com"})
    assert settings.contact == "me@example.com"
    assert settings.bls_prefix == "pr/"
    assert settings.population_key == "datausa/population.json"
    assert settings.bls_data_key == "pr/pr.data.0.Current"
    assert settings.schedule == DEFAULT_SCHEDULE == "cron(0 15 * * ? *)"
    assert settings.bundle_path == DEFAULT_BUNDLE == REPO / "build" / "lambda-bundle"
    assert settings.bls_bucket_name is None
    assert settings.population_bucket_name is None
    assert settings.log_retention_days == 30
    assert settings.public_index is False
    assert settings.alarm_email is None
    assert settings.stage == "dev"
    assert settings.tmp_storage_mb == 512
    assert settings.github_repo is None
    assert settings.github_create_provider is True
    assert settings.stack_name == "Rearcquest"


def test_the_data_file_is_the_one_the_reports_read() -> None:
    from rearcquest.config import BLS_FILE

    assert _from({"contact": "a@b.c"}).bls_data_key == f"pr/{BLS_FILE}"


def test_every_parameter_is_read(tmp_path: Path) -> None:
    settings = _from(
        {
            "contact": " https://example.com/contact ",
            "bundlePath": "bundle",
            "blsBucketName": "my.bls-mirror",
            "blsPrefix": "bls/pr/",
            "populationBucketName": "my-population",
            "populationKey": "pop/us.json",
            "schedule": "rate(12 hours)",
            "logRetentionDays": "14",
            "publicIndex": "yes",
            "alarmEmail": "ops@example.com",
            "stage": "prod",
            "tmpStorageMb": "2048",
            "githubRepo": "acme/rearcquest",
            "githubCreateOidcProvider": "false",
            "stackName": "RqStaging",
        },
        base=tmp_path,
    )
    assert settings == InfraSettings(
        contact="https://example.com/contact",
        bundle_path=tmp_path / "bundle",
        bls_bucket_name="my.bls-mirror",
        bls_prefix="bls/pr/",
        population_bucket_name="my-population",
        population_key="pop/us.json",
        schedule="rate(12 hours)",
        log_retention_days=14,
        public_index=True,
        alarm_email="ops@example.com",
        stage="prod",
        tmp_storage_mb=2048,
        github_repo="acme/rearcquest",
        github_create_provider=False,
        stack_name="RqStaging",
    )


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("on", True), ("0", False)])
def test_flags_accept_json_booleans_and_strings(value: object, expected: bool) -> None:
    assert _from({"contact": "a@b.c", "publicIndex": value}).public_index is expected


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({}, "'contact' is required"),
        ({"contact": "  "}, "'contact' is required"),
        ({"contact": "nobody"}, "'contact'.*not an e-mail address or URL"),
        ({"blsBucketName": "Upper_Case"}, "'blsBucketName'.*valid S3 bucket name"),
        ({"populationBucketName": "ab"}, "'populationBucketName'"),
        ({"populationBucketName": "a..b"}, "'populationBucketName'"),
        (
            {"blsBucketName": "same-name", "populationBucketName": "same-name"},
            "'populationBucketName' must differ",
        ),
        ({"blsPrefix": "pr"}, "'blsPrefix'"),
        ({"blsPrefix": "/pr/"}, "'blsPrefix'"),
        ({"blsPrefix": ""}, "'blsPrefix'"),
        ({"populationKey": "/abs.json"}, "'populationKey'"),
        ({"populationKey": "dir/"}, "'populationKey'"),
        ({"schedule": "daily"}, "'schedule'.*EventBridge"),
        ({"logRetentionDays": "31"}, "'logRetentionDays'.*not one of"),
        ({"logRetentionDays": "a month"}, "'logRetentionDays'.*not a number"),
        ({"publicIndex": "maybe"}, "'publicIndex'.*true or false"),
        ({"alarmEmail": "ops"}, "'alarmEmail'"),
        ({"stage": "prod"}, "'alarmEmail' is required when 'stage' is prod"),
        ({"stage": "production"}, "'stage'.*not one of dev, prod"),
        ({"tmpStorageMb": "256"}, "'tmpStorageMb'.*between 512 and 10240"),
        ({"tmpStorageMb": "20480"}, "'tmpStorageMb'.*between 512 and 10240"),
        ({"tmpStorageMb": "10 GB"}, "'tmpStorageMb'.*not a number"),
        ({"githubRepo": "just-a-name"}, "'githubRepo'.*owner/name"),
        ({"stackName": "1stack"}, "'stackName'"),
        ({"stackName": "R" * 25}, "'stackName'.*at most 24"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v) or "empty",
)
def test_bad_values_name_their_context_key(context: dict[str, Any], message: str) -> None:
    if context and "contact" not in context:
        context = {"contact": "me@example.com", **context}
    with pytest.raises(ValueError, match=message):
        _from(context)


def test_old_versions_are_kept_unless_noncurrent_version_days_is_set() -> None:
    assert _from({"contact": "a@b.c"}).noncurrent_version_days is None
    days = _from({"contact": "a@b.c", "noncurrentVersionDays": " 365 "}).noncurrent_version_days
    assert days == 365


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "between 1 and 36500"), ("a year", "not a number")],
    ids=["zero", "words"],
)
def test_bad_noncurrent_version_days_name_the_key(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"'noncurrentVersionDays'.*{message}"):
        _from({"contact": "a@b.c", "noncurrentVersionDays": value})
