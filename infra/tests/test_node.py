"""The CDK tests run on the Node.js of the package index, not on one the machine happens to have."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import conftest
from .conftest import NO_NODE, NODE, node_from_the_package_index, put_node_on_path


def test_jsii_starts_the_node_of_the_infra_extra() -> None:
    wheel_node = node_from_the_package_index()
    assert wheel_node is not None, NO_NODE
    assert Path(NODE).resolve() == wheel_node
    assert Path(str(shutil.which("node"))).resolve() == wheel_node
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v")


def test_no_node_anywhere_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "node_from_the_package_index", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.UsageError, match=r"^no Node\.js for the CDK tests: .*\[infra\]"):
        put_node_on_path()
    assert os.environ["PATH"] == str(tmp_path)
