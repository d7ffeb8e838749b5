"""The role GitHub Actions assumes through OIDC to deploy: no IAM user, no stored keys.

Deployed once by an administrator (``cdk deploy RearcquestGithubDeploy -c githubRepo=owner/name``).
The role trusts only GitHub's OIDC tokens of workflows running on the repository's ``main``
branch (subject ``repo:owner/name:ref:refs/heads/main``, matched exactly), and may do one thing:
assume the two roles of ``cdk bootstrap`` a deployment uses (deploy, asset publishing; not the
lookup role, since no stack looks anything up). CloudFormation then deploys with the bootstrap
execution role, which docs/aws.md narrows, so the workflow itself never holds broad permissions.

A job that names a GitHub environment gets the subject ``repo:owner/name:environment:<name>``
instead, whatever its branch: the deploy job names none, so the branch is what AWS checks.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from rearcquest_infra.settings import InfraSettings

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The qualifier `cdk bootstrap` uses unless told otherwise.
CDK_QUALIFIER = "hnb659fds"
CDK_BOOTSTRAP_ROLES = ("deploy", "file-publishing")
# The only branch whose workflows may deploy.
DEPLOY_BRANCH = "main"


class GithubDeployRoleStack(Stack):
    """An OIDC identity provider for GitHub and the deploy role it may assume.

    Args:
        scope: the CDK app.
        construct_id: the stack id.
        settings: ``github_repo`` and ``github_create_provider`` (an account has at most one
            provider per URL: turn it off when one exists) are used.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if settings.github_repo is None:
            raise ValueError("context 'githubRepo' (owner/name) is required for this stack")
        provider_arn = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:oidc-provider/{GITHUB_OIDC_HOST}"
        if settings.github_create_provider:
            provider = iam.CfnOIDCProvider(
                self,
                "GithubOidcProvider",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_list=["sts.amazonaws.com"],
            )
            provider_arn = provider.attr_arn
        # StringEquals, never StringLike: a wildcard would let other branches, tags or pull
        # requests of the repository deploy.
        subject = f"repo:{settings.github_repo}:ref:refs/heads/{DEPLOY_BRANCH}"
        role = iam.Role(
            self,
            "DeployRole",
            description=(
                f"GitHub Actions deploys of {settings.github_repo}, {DEPLOY_BRANCH} branch only "
                "(OIDC, no keys)"
            ),
            max_session_duration=Duration.hours(1),
            assumed_by=iam.FederatedPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                        f"{GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
                assume_role_action="sts:AssumeRoleWithWebIdentity",
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRoles",
                actions=["sts:AssumeRole"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
                    f"cdk-{CDK_QUALIFIER}-{name}-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
                    for name in CDK_BOOTSTRAP_ROLES
                ],
            )
        )
        CfnOutput(
            self,
            "DeployRoleArn",
            value=role.role_arn,
            description="set as the AWS_DEPLOY_ROLE_ARN variable of the GitHub environment",
        )
