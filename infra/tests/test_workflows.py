"""The GitHub Actions workflows: valid (actionlint), tested before deploy, OIDC and no keys."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from .cfn_helpers import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def _load(name: str) -> dict[Any, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(doc, dict)
    return doc


def _actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    assert Path(found).exists(), "actionlint not installed: pip install -e '.[infra]'"
    return found


def test_actionlint_passes() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= {"ci.yml", "deploy.yml", "release.yml"}
    result = subprocess.run(
        [_actionlint(), "-no-color", *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_runs_the_same_tests_as_ci() -> None:
    # A deploy must not ship on a weaker check than a pull request gets.
    ci_test, deploy_test = _load("ci.yml")["jobs"]["test"], _load("deploy.yml")["jobs"]["test"]
    assert deploy_test == ci_test
    assert "bash .ci/run" in [s.get("run") for s in ci_test["steps"]]


def test_every_variable_the_deploy_reads_is_documented() -> None:
    deploy = (WORKFLOWS / "deploy.yml").read_text()
    job = deploy[deploy.index("\n  deploy:\n") :]
    read = set(re.findall(r"\bvars\.([A-Z0-9_]+)", job))
    assert read >= {"AWS_DEPLOY_ROLE_ARN", "AWS_REGION", "RQ_CONTACT", "RQ_ALARM_EMAIL"}
    aws_docs = (REPO / "docs" / "aws.md").read_text()
    header = deploy[: deploy.index("\nname:")]
    for name in sorted(read):
        assert f"`{name}`" in aws_docs, f"docs/aws.md does not document the variable {name}"
        assert name in header, f"deploy.yml's set-up comment does not name {name}"


def test_no_stored_aws_keys_anywhere() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


def test_deploy_uses_oidc_after_the_tests() -> None:
    deploy = _load("deploy.yml")
    jobs = deploy["jobs"]
    job = jobs["deploy"]
    assert job["needs"] == "test"
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    # With an environment the OIDC subject names it instead of the branch, and the deploy role
    # (trusting only ref:refs/heads/main) would refuse the token.
    assert "environment" not in job
    assert job["if"] == "github.ref == 'refs/heads/main'"
    triggers = deploy.get("on", deploy.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"]
    steps = job["steps"]
    (creds,) = [
        s
        for s in steps
        if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    assert "scripts/build-lambda-bundle" in runs
    assert "cdk deploy" in runs
    # A production deploy, which synthesis refuses without an alarm e-mail.
    assert '-c stage=prod -c "alarmEmail=$ALARM_EMAIL"' in runs
    # The bundle's byte code is compiled by the Lambda runtime's Python.
    (setup,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert "3.12" in str(setup["with"]["python-version"]).split()
    assert "bash .ci/run" in "\n".join(str(s.get("run", "")) for s in jobs["test"]["steps"])
    # The workflow-wide token may read the repository and nothing else.
    assert deploy["permissions"] == {"contents": "read"}


def test_ci_runs_the_projects_own_ci_script() -> None:
    ci = _load("ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert "bash .ci/run" in runs


def test_release_publishes_what_it_built_with_trusted_publishing_after_the_tests() -> None:
    release = _load("release.yml")
    triggers = release.get("on", release.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {"contents": "read"}
    jobs = release["jobs"]
    # A release must not ship on a weaker check than a pull request gets.
    assert jobs["test"] == _load("ci.yml")["jobs"]["test"]
    build, publish = jobs["build"], jobs["publish"]
    assert build["needs"] == "test"
    assert "permissions" not in build
    runs = "\n".join(str(s.get("run", "")) for s in build["steps"])
    assert "scripts/build-dist" in runs
    assert '"dist/rearcquest-$version.tar.gz"' in runs  # the tag is the version
    assert publish["needs"] == "build"
    # Trusted publishing: only the job that uploads may ask for an OIDC token, and no API token.
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    (upload,) = [
        s
        for s in publish["steps"]
        if str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish@")
    ]
    assert "with" not in upload or not {"password", "user"} & upload["with"].keys()
    assert not any("checkout" in str(s.get("uses", "")) for s in publish["steps"])


def test_ci_runs_the_release_build() -> None:
    ci_run = (REPO / ".ci" / "run").read_text()
    assert "\nscripts/build-dist\nbuild=$?\n" in ci_run
    assert '[ "$build" -eq 0 ]' in ci_run
    build_dist = (REPO / "scripts" / "build-dist").read_text()
    assert '"$python" -m build --outdir dist .' in build_dist
    assert '"$python" -m twine check --strict dist/*' in build_dist
