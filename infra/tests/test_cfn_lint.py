"""cfn-lint over every synthesized template, with the defaults and with every option on."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]

from .cfn_helpers import Templates

# W3005 "dependency already enforced": CDK makes each function depend on its whole role
# construct (role and policy), which repeats the GetAtt dependency on the role; harmless.
IGNORED = ["W3005"]
REGIONS = ["us-east-1"]


def _lint(template: Template) -> list[str]:
    matches = lint(
        json.dumps(template.to_json()),
        config=ManualArgs(regions=REGIONS, ignore_checks=IGNORED),
    )
    return [f"{m.rule.id} {m.path_string}: {m.message}" for m in matches]


@pytest.mark.parametrize("fixture", ["default_templates", "full_templates"])
def test_templates_pass_cfn_lint(request: pytest.FixtureRequest, fixture: str) -> None:
    templates: Templates = request.getfixturevalue(fixture)
    assert templates
    for name, template in templates.items():
        assert _lint(template) == [], name


def test_cfn_lint_would_catch_a_bad_template(default_template: Template) -> None:
    broken = json.loads(json.dumps(default_template.to_json()))
    function = next(r for r in broken["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    function["Properties"]["Runtime"] = "python2.7"
    function["Properties"]["Timeout"] = 5000
    problems = _lint(Template.from_json(broken))
    assert any(p.startswith("E") and "Timeout" in p for p in problems), problems
