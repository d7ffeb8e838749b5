"""Constants and helpers of the infrastructure tests: intrinsics rendered as readable strings.

Test modules import from here rather than from ``conftest``, which pytest imports by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

INFRA = Path(__file__).resolve().parents[1]
REPO = INFRA.parent
CONTACT = "ops@example.com"
# Every option set, as `cdk -c key=value` passes them: strings.
FULL_CONTEXT = {
    "blsBucketName": "rq-test-bls",
    "populationBucketName": "rq-test-population",
    "populationKey": "datausa/us-population.json",
    "schedule": "rate(1 day)",
    "logRetentionDays": "90",
    "publicIndex": "true",
    "alarmEmail": "alerts@example.com",
    "stage": "prod",
    "tmpStorageMb": "2048",
    "githubRepo": "acme/rearcquest",
    "stackName": "RqFull",
}

Templates = dict[str, "Template"]


def render(value: Any) -> Any:
    """Render ``Ref``/``Fn::GetAtt``/``Fn::Join`` as ``${Name}`` strings; other values unchanged.

    ``{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::b/pr/*"]]}`` becomes
    ``"arn:${AWS::Partition}:s3:::b/pr/*"``, so tests can compare ARNs as text.
    """
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return "${" + arg + "}"
        if fn == "Fn::GetAtt":
            return "${" + ".".join(arg) + "}"
        if fn == "Fn::Join":
            separator, parts = arg
            return separator.join(str(render(part)) for part in parts)
    if isinstance(value, dict):
        return {key: render(item) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item) for item in value]
    return value


def as_list(value: Any) -> list[Any]:
    """IAM allows a single value or a list; always get a list."""
    return value if isinstance(value, list) else [value]


def resources(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """The resources of ``type_``, by logical id."""
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == type_
    }


def one(template: Mapping[str, Any], type_: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """The single resource of ``type_`` whose logical id starts with ``prefix``."""
    found = [(n, r) for n, r in resources(template, type_).items() if n.startswith(prefix)]
    assert len(found) == 1, f"expected one {type_} named {prefix}*, found {[n for n, _ in found]}"
    return found[0]


def role_statements(template: Mapping[str, Any], role_prefix: str) -> dict[str, dict[str, Any]]:
    """Every statement of the inline policies attached to one role, rendered, by Sid.

    Lists of actions and resources are sorted. Statements without a Sid (those CDK adds, e.g. for the SQS event source) are keyed by their
    sorted actions.
    """
    role_id, _ = one(template, "AWS::IAM::Role", role_prefix)
    statements: dict[str, dict[str, Any]] = {}
    for policy in resources(template, "AWS::IAM::Policy").values():
        props = policy["Properties"]
        if {"Ref": role_id} not in props["Roles"]:
            continue
        for statement in render(props["PolicyDocument"]["Statement"]):
            # Order carries no meaning in IAM (and CDK's minimizePolicies sorts): compare sorted.
            for field in ("Action", "Resource"):
                if isinstance(statement.get(field), list):
                    statement[field] = sorted(statement[field])
            key = statement.get("Sid") or ",".join(sorted(as_list(statement["Action"])))
            assert key not in statements, f"duplicate statement {key}"
            statements[key] = statement
    return statements
