"""Docs are part of the product: every command and variable is documented, cli.md matches --help,
the README's session is what `rq demo` prints, and the test data says where it came from."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import DemoRun, load_script
from rearcquest.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
TRIM = "..."  # in the README's session: lines of rq demo's output left out here
PORT = re.compile(r"127\.0\.0\.1:\d+")


def test_every_rq_variable_in_the_code_is_documented_once() -> None:
    used: set[str] = set()
    for path in (REPO / "src").rglob("*.py"):
        used |= set(re.findall(r"\bRQ_[A-Z_]+[A-Z]\b", path.read_text()))
    documented = re.findall(r"^\| `(RQ_[A-Z_]+)`", (DOCS / "configuration.md").read_text(), re.M)
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert used <= set(documented), f"undocumented: {sorted(used - set(documented))}"


def test_every_command_has_a_docs_page_or_section() -> None:
    command = typer.main.get_command(app)
    names = sorted(command.commands)  # type: ignore[attr-defined]
    assert "sync-bls" in names
    cli_md = (DOCS / "cli.md").read_text()
    for name in names:
        assert f"## `rq {name}`" in cli_md, name


@pytest.mark.integration
def test_cli_md_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli-docs"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _readme_demo_session() -> list[str]:
    """The lines of the README's ``console`` block that starts with ``$ rq demo``, after it."""
    match = re.search(r"```console\n\$ rq demo\n(.*?)```", README.read_text(), re.S)
    assert match is not None, "README.md has no ```console block starting with `$ rq demo`"
    return match.group(1).splitlines()


def _same_but_ports(line: str) -> str:
    return PORT.sub("127.0.0.1:PORT", line.rstrip())


def test_readme_session_is_what_rq_demo_prints(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0, demo_run.stderr
    printed = [_same_but_ports(line) for line in demo_run.stdout.splitlines()]
    shown = [_same_but_ports(line) for line in _readme_demo_session()]
    # Line for line, in order; only a `...` line may stand for lines left out.
    position, gap = 0, False
    for number, line in enumerate(shown, 1):
        if line == TRIM:
            gap = True
            continue
        rest = printed[position:] if gap else printed[position : position + 1]
        if line not in rest:
            where = "after the lines before it" if not gap else "after a `...`"
            pytest.fail(
                f"README.md's rq demo session, line {number}, is not what rq demo prints "
                f"{where}: {line!r}; run rq demo and paste its output"
            )
        position += rest.index(line) + 1
        gap = False
    assert gap or position == len(printed), "the session ends before rq demo's output: add `...`"
    steps = [line for line in printed if line.startswith("== ")]
    assert len(steps) >= 7 and set(steps) <= set(shown), "the session shows every step"


def test_test_data_readme_names_every_file() -> None:
    data = REPO / "tests" / "data"
    readme = (data / "README.md").read_text()
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.name != "README.md":
            folder = path.parent.relative_to(data).as_posix()
            assert path.name.removesuffix(".gz") in readme, f"README.md omits {path.name}"
            assert folder.startswith("bls/pr/") <= (f"tests/data/{folder}/" in readme), folder


def test_nothing_reads_data_beside_the_repository() -> None:
    beside = ("../" + "shared", 'parent / "' + "shared", "RQ_" + "SHARED_DATA")
    roots = ["tests", "scripts", ".ci", "src", "infra", "benchmarks", "docs", ".github"]
    generated = {"__pycache__", "work", "cdk.out", "test-artifacts"}
    found = [
        f"{path.relative_to(REPO)}: {needle}"
        for root in roots
        for path in (REPO / root).rglob("*")
        if path.is_file()
        and path.suffix in {"", ".py", ".md", ".yml", ".json", ".toml", ".txt", ".sh"}
        and not generated & set(path.relative_to(REPO).parts)
        for needle in beside
        if needle in path.read_text(errors="replace")
    ]
    assert found == [], "the tests, scripts and CI read only the repository"


def test_every_test_named_in_the_security_page_exists() -> None:
    """docs/security.md names the test behind each guarantee: each must be a test of that file."""
    page = (DOCS / "security.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page)
    assert len(named) >= 30
    missing = []
    for path, name in named:
        source = (REPO / path).read_text() if (REPO / path).is_file() else ""
        if not re.search(rf"^(async )?def {name}\(", source, re.M):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_the_architecture_picture_is_drawn_from_the_import_contract() -> None:
    """docs/img/architecture.svg is what scripts/architecture-picture draws from pyproject.toml's
    contract and the files under src/: a moved module or a changed layer must redraw it."""
    picture = load_script(REPO / "scripts" / "architecture-picture", "architecture_picture")
    drawn = picture.draw()
    assert (REPO / "docs" / "img" / "architecture.svg").read_text(encoding="utf-8") == drawn
    for part in ("mirror/", "data/", "index/", "jobs/", "records/", "aws/", "sources/"):
        assert f">{part}" in drawn
    assert "![" in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "(img/architecture.svg)" in (REPO / "docs" / "architecture.md").read_text()


def _python_blocks() -> list[tuple[str, str]]:
    """The ``python`` code blocks of the README, docs/*.md and benchmarks/README.md."""
    pages = [README, REPO / "benchmarks" / "README.md", *sorted(DOCS.glob("*.md"))]
    fence = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [
        (page.relative_to(REPO).as_posix(), block)
        for page in pages
        for block in fence.findall(page.read_text(encoding="utf-8"))
    ]


def _resolves(dotted: str) -> bool:
    """Tell whether ``dotted`` names a module of rearcquest, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_the_docs_python_imports_what_rearcquest_has() -> None:
    """Every rearcquest name a docs snippet imports exists (modules moved in the wings layout)."""
    wrong = []
    for page, block in _python_blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rearcquest"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("rearcquest")]
            else:
                continue
            wrong += [f"{page}: {name}" for name in names if not _resolves(name)]
    assert not wrong


def test_every_rearcquest_name_in_the_docs_exists() -> None:
    """A dotted ``rearcquest.x`` the READMEs or a docs page name is a module or attribute."""
    dotted = re.compile(r"`(rearcquest(?:\.[A-Za-z_]\w*)+)")
    wrong = [
        f"{page.relative_to(REPO)}: {name}"
        for page in [README, REPO / "benchmarks" / "README.md", *sorted(DOCS.glob("*.md"))]
        for name in dotted.findall(page.read_text(encoding="utf-8"))
        if not _resolves(name)
    ]
    assert not wrong
