"""The narrow CloudFormation execution policy (infra/cfn-exec-policy.json) that docs/aws.md
bootstraps with instead of AdministratorAccess: it covers every resource the stacks create,
and nothing it allows is unscoped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .cfn_helpers import INFRA, REPO, Templates, as_list

POLICY = INFRA / "cfn-exec-policy.json"
# The IAM service prefix of each CloudFormation resource namespace the stacks use. A new
# resource type fails the test below until the policy (and this table) covers it.
SERVICES = {
    "S3": "s3",
    "SQS": "sqs",
    "SNS": "sns",
    "Lambda": "lambda",
    "IAM": "iam",
    "Logs": "logs",
    "Events": "events",
    "CloudWatch": "cloudwatch",
    "Glue": "glue",
    "Athena": "athena",
}
# CDK's own bookkeeping resource: no AWS API behind it.
NO_PERMISSION = {"AWS::CDK::Metadata"}


def _statements() -> list[dict[str, Any]]:
    doc = json.loads(POLICY.read_text())
    assert doc["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = doc["Statement"]
    return statements


def _allowed_services() -> set[str]:
    return {
        action.split(":", 1)[0]
        for s in _statements()
        if s["Effect"] == "Allow"
        for action in as_list(s["Action"])
    }


@pytest.mark.parametrize("fixture", ["default_templates", "full_templates"])
def test_policy_covers_every_resource_type(request: pytest.FixtureRequest, fixture: str) -> None:
    templates: Templates = request.getfixturevalue(fixture)
    allowed = _allowed_services()
    for name, template in templates.items():
        types = {r["Type"] for r in template.to_json()["Resources"].values()} - NO_PERMISSION
        for type_ in types:
            namespace = type_.split("::")[1]
            assert namespace in SERVICES, f"{name}: {type_} is new; extend {POLICY.name}"
            assert SERVICES[namespace] in allowed, f"{name}: {type_} not allowed"


def test_policy_is_scoped_to_the_projects_resources() -> None:
    for statement in _statements():
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert not action.startswith("*"), statement["Sid"]
            # Attaching managed policies would let a template grant AdministratorAccess.
            assert action not in ("iam:AttachRolePolicy", "iam:*"), statement["Sid"]
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                # Only actions that name no resource ARN, and then only under a condition.
                assert "Condition" in statement, statement["Sid"]
            else:
                assert resource.startswith("arn:aws:"), statement["Sid"]
    (pass_role,) = [s for s in _statements() if "iam:PassRole" in as_list(s["Action"])]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }


def test_docs_bootstrap_with_the_policy() -> None:
    docs = (REPO / "docs" / "aws.md").read_text()
    assert "infra/cfn-exec-policy.json" in docs
    assert "--cloudformation-execution-policies" in docs
    assert "policy/RearcquestCfnExec" in docs


def test_policy_cannot_rewrite_itself() -> None:
    """The stack creates one customer managed policy (Athena queries); the policy lets
    CloudFormation write that one, never a new version of RearcquestCfnExec itself."""
    from fnmatch import fnmatchcase

    own = "arn:aws:iam::123456789012:policy/RearcquestCfnExec"
    query = "arn:aws:iam::123456789012:policy/RearcquestAthenaQuery"
    writes = [
        s
        for s in _statements()
        if {"iam:CreatePolicyVersion", "iam:CreatePolicy"} & set(as_list(s["Action"]))
    ]
    assert writes
    for statement in writes:
        patterns = as_list(statement["Resource"])
        assert not any(fnmatchcase(own, p) for p in patterns), statement["Sid"]
        assert any(fnmatchcase(query, p) for p in patterns), statement["Sid"]
