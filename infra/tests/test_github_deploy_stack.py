"""The GitHub OIDC deploy role: trusted by one repository's main branch, allowed only CDK's roles."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from rearcquest_infra import GithubDeployRoleStack, InfraSettings

from .cfn_helpers import Templates, one, render, resources, role_statements

HOST = "token.actions.githubusercontent.com"


def test_absent_unless_a_repository_is_given(default_templates: Templates) -> None:
    assert set(default_templates) == {"Rearcquest"}


def test_trusts_only_the_main_branch_through_oidc(full_templates: Templates) -> None:
    template = full_templates["RqFullGithubDeploy"]
    doc = template.to_json()
    provider_id, provider = one(doc, "AWS::IAM::OIDCProvider", "GithubOidcProvider")
    assert provider["Properties"]["Url"] == f"https://{HOST}"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]
    _, role = one(doc, "AWS::IAM::Role", "DeployRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": {"Fn::GetAtt": [provider_id, "Arn"]}}
    assert trust["Condition"] == {
        "StringEquals": {
            f"{HOST}:aud": "sts.amazonaws.com",
            f"{HOST}:sub": "repo:acme/rearcquest:ref:refs/heads/main",
        }
    }
    assert "StringLike" not in trust["Condition"]
    assert role["Properties"]["MaxSessionDuration"] == 3600
    assert "ManagedPolicyArns" not in role["Properties"]


def test_may_only_assume_the_cdk_bootstrap_roles(full_templates: Templates) -> None:
    doc = full_templates["RqFullGithubDeploy"].to_json()
    statements = role_statements(doc, "DeployRole")
    assert list(statements) == ["AssumeCdkBootstrapRoles"]
    prefix = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-"
    suffix = "-role-${AWS::AccountId}-${AWS::Region}"
    assert statements["AssumeCdkBootstrapRoles"]["Action"] == "sts:AssumeRole"
    assert statements["AssumeCdkBootstrapRoles"]["Resource"] == [
        f"{prefix}{name}{suffix}" for name in ("deploy", "file-publishing")
    ]
    # No stack looks anything up: the lookup role (read access to the whole account) is not needed.
    assert not any("lookup" in r for r in statements["AssumeCdkBootstrapRoles"]["Resource"])
    assert resources(doc, "AWS::IAM::User") == {}
    assert "DeployRoleArn" in doc["Outputs"]


def test_uses_an_existing_provider_when_told() -> None:
    import aws_cdk as cdk

    app = cdk.App()
    settings = InfraSettings(
        contact="me@example.com",
        github_repo="acme/rq",
        github_create_provider=False,
    )
    stack = GithubDeployRoleStack(app, "Gh", settings=settings)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::IAM::OIDCProvider", 0)
    _, role = one(template.to_json(), "AWS::IAM::Role", "DeployRole")
    (trust,) = render(role["Properties"]["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Principal"] == {
        "Federated": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:oidc-provider/{HOST}"
    }
    assert trust["Condition"]["StringEquals"][f"{HOST}:sub"] == "repo:acme/rq:ref:refs/heads/main"


def test_refuses_to_build_without_a_repository() -> None:
    import aws_cdk as cdk

    with pytest.raises(ValueError, match="githubRepo"):
        GithubDeployRoleStack(cdk.App(), "Gh", settings=InfraSettings(contact="me@example.com"))
