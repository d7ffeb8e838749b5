#!/usr/bin/env python3
"""The CDK app: ``cdk synth`` / ``cdk deploy`` run this file (see ``cdk.json`` and docs/aws.md).

Parameters are CDK context values, e.g.
``cdk deploy Rearcquest -c contact=you@example.com -c schedule="cron(0 15 * * ? *)"``, or for
production ``-c stage=prod -c alarmEmail=ops@example.com`` (``prod`` requires the e-mail);
:mod:`rearcquest_infra.settings` lists them all. The Lambda code is the directory built by
``scripts/build-lambda-bundle`` (``-c bundlePath=DIR`` to use another).
"""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from rearcquest_infra import GithubDeployRoleStack, InfraSettings, PipelineStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    """Add the stacks the context asks for to ``app`` (a new one by default) and return it.

    Raises:
        ValueError: a context value is missing or malformed.
        FileNotFoundError: the Lambda bundle has not been built.
    """
    app = app or cdk.App()
    settings = InfraSettings.from_context(app.node.try_get_context)
    # Unset, the stacks are environment-agnostic; cdk sets these from the credentials in use.
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    PipelineStack(app, settings.stack_name, settings=settings, env=env)
    if settings.github_repo is not None:
        GithubDeployRoleStack(app, f"{settings.stack_name}GithubDeploy", settings=settings, env=env)
    cdk.Tags.of(app).add("project", "rearcquest")
    return app


if __name__ == "__main__":
    try:
        build_app().synth()
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")
