"""What the Lambda bundle holds: no CLI-only packages (the handlers never import them), no boto3,
and byte code compiled by the runtime's Python version.

The bundle itself is not built here (it downloads ~50 MB of wheels); the selection logic of
``infra/lambda_bundle.py`` is, and the handlers are imported with the left-out packages refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_bundle

from .cfn_helpers import INFRA, REPO

SCRIPT = INFRA / "lambda_bundle.py"


def test_requirements_leave_out_the_cli_and_the_runtimes_packages() -> None:
    names = {
        re.split(r"[<>=!~;\[\s]", r, maxsplit=1)[0].lower() for r in lambda_bundle.requirements()
    }
    assert {"httpx", "polars"} <= names
    assert not names & {"typer", "rich", "click", "boto3", "botocore"}


def test_requirements_match_names_however_spelled(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        'dependencies = ["Typer[all]>=0.12", "rich ; python_version > \'3\'", "boto3",'
        ' "Click==8.1", "Markdown_It_Py", "httpx>=0.27", "polars"]\n'
    )
    assert lambda_bundle.requirements(pyproject) == ["httpx>=0.27", "polars"]


def test_check_finds_left_out_packages_in_a_built_bundle(tmp_path: Path) -> None:
    (tmp_path / "polars").mkdir()
    (tmp_path / "rearcquest").mkdir()
    assert lambda_bundle.left_out_found(tmp_path) == []
    (tmp_path / "click").mkdir()
    (tmp_path / "typing_extensions.py").write_text("")
    (tmp_path / "shellingham").mkdir()
    assert lambda_bundle.left_out_found(tmp_path) == ["click", "shellingham"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "click, shellingham" in result.stderr


def test_the_handlers_reach_the_library_not_the_cli() -> None:
    modules = lambda_bundle.handler_modules()
    assert {
        "rearcquest.lambdas",
        "rearcquest.jobs.pipeline",
        "rearcquest.mirror.sync",
        "rearcquest.data.analytics",
        "rearcquest.aws.storage",
        "rearcquest.index",
    } <= set(modules)
    assert "rearcquest.cli" not in modules


def test_the_handlers_import_with_the_cli_packages_refused() -> None:
    # A fresh interpreter, so nothing imported typer or rich before the refusal.
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "imports"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "handler modules import without typer, rich, click" in result.stdout


def _fake_src(tmp_path: Path, helper: str) -> Path:
    package = tmp_path / "rearcquest"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "lambdas.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from rearcquest import typed_only\n"
        "def handler(event, context):\n"
        "    from . import helper\n"
        "    return helper.run()\n"
    )
    (package / "typed_only.py").write_text("import typer\n")
    (package / "helper.py").write_text(helper)
    return tmp_path


def test_the_check_sees_a_lazy_import_and_skips_type_checking_blocks(tmp_path: Path) -> None:
    src = _fake_src(tmp_path, "def run():\n    return 1\n")
    assert lambda_bundle.handler_modules(src) == [
        "rearcquest",
        "rearcquest.helper",
        "rearcquest.lambdas",
    ]


@pytest.mark.parametrize(
    ("helper", "message"),
    [
        ("import rich.console\ndef run():\n    return 1\n", "rich is not in the Lambda bundle"),
        ("from rearcquest import cli\n", "the handlers can reach rearcquest.cli"),
    ],
    ids=["imports-rich", "imports-cli"],
)
def test_the_check_fails_when_a_handler_needs_the_cli(
    tmp_path: Path, helper: str, message: str
) -> None:
    src = _fake_src(tmp_path, helper)
    (src / "rearcquest" / "cli.py").write_text("import typer\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "imports", str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_the_build_compiles_for_the_runtime_python() -> None:
    script = (REPO / "scripts" / "build-lambda-bundle").read_text()
    assert "infra/lambda_bundle.py requirements" in script
    assert 'infra/lambda_bundle.py check "$OUT"' in script
    assert "LAMBDA_PY=${LAMBDA_PY:-python$LAMBDA_PYTHON}" in script
    (compile_line,) = [line for line in script.splitlines() if "compileall" in line]
    assert compile_line.startswith('"$LAMBDA_PY" -m compileall')
    assert "--invalidation-mode unchecked-hash" in compile_line
    # Byte code is compiled last, after every file that goes in is in place.
    assert script.index("compileall") > script.index("strip --strip-unneeded")


def _installed_bytes(requirements: list[str]) -> tuple[int, set[str]]:
    """The bytes the installed distributions of ``requirements`` and their own requirements take
    (extras and the left-out packages excluded), and their names."""
    from importlib import metadata

    seen: set[str] = set()
    todo = [lambda_bundle._name(r) for r in requirements]
    total = 0
    while todo:
        name = todo.pop()
        if name in seen or name in lambda_bundle.LEFT_OUT:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another Python version (exceptiongroup on 3.11+)
        seen.add(name)
        for path in dist.files or []:
            located = Path(str(dist.locate_file(path)))
            if located.is_file():
                total += located.stat().st_size
        todo += [lambda_bundle._name(r) for r in dist.requires or [] if "extra ==" not in r]
    return total, seen


def test_the_bundle_with_polars_stays_under_lambdas_250_mb() -> None:
    # The bundle's dependencies as installed here: the same manylinux x86_64 wheels the script
    # downloads, before it strips their symbol tables, so an upper bound of the bundle.
    # scripts/build-lambda-bundle measured 150 MB unzipped (51.7 MB zipped) with polars 2.1.
    size, names = _installed_bytes(lambda_bundle.requirements())
    assert {"polars", "httpx"} <= names
    assert any(name.startswith("polars-runtime") for name in names)
    source = sum(p.stat().st_size for p in (REPO / "src" / "rearcquest").rglob("*") if p.is_file())
    mb = (size + source) / 2**20
    assert 100 < mb < 250, f"the Lambda bundle would be {mb:.0f} MB unzipped"
