"""The AWS infrastructure of rearcquest, as CDK stacks (see ``docs/aws.md``)."""

from __future__ import annotations

from rearcquest_infra.github_deploy_stack import GithubDeployRoleStack
from rearcquest_infra.pipeline_stack import PipelineStack
from rearcquest_infra.settings import InfraSettings

__all__ = ["GithubDeployRoleStack", "InfraSettings", "PipelineStack"]
