"""Docs are part of the product: every command and variable is documented, cli.md matches --help."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import typer

from rearcquest.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


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


def test_cli_md_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli-docs"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
