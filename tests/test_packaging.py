"""The package as it would be published: what the wheel declares, built from this checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# A Markdown link or image whose target is not a URL (scheme:), an anchor (#) or absolute (/).
RELATIVE_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)\)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (the dev extra's build and Hatch, no download)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("rearcquest-*.whl")
    return built


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [
            m
            for m in archive.namelist()
            if m.split("/")[0].endswith(".dist-info") and m.split("/", 1)[1] == name
        ]
        return archive.read(member).decode()


def _metadata(wheel: Path) -> Message:
    return Parser().parsestr(_dist_info(wheel, "METADATA"))


def test_the_licence_file_is_the_declared_licence() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"Copyright \(c\) \d{4} rearcquest contributors", text)
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


@pytest.mark.integration
def test_the_wheel_has_both_console_scripts_on_the_same_entry_point(wheel: Path) -> None:
    entry_points = _dist_info(wheel, "entry_points.txt")
    scripts = dict(
        line.replace(" ", "").split("=", 1)
        for line in entry_points.split("[console_scripts]", 1)[1].split("[", 1)[0].splitlines()
        if "=" in line
    )
    assert scripts == {"rq": "rearcquest.cli:main", "rearcquest": "rearcquest.cli:main"}


@pytest.mark.integration
def test_the_wheel_carries_the_licence_file_in_its_metadata(wheel: Path) -> None:
    metadata = _metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert _dist_info(wheel, "licenses/LICENSE") == (REPO / "LICENSE").read_text()


@pytest.mark.integration
def test_the_wheel_is_ready_for_the_package_index(wheel: Path) -> None:
    metadata = _metadata(wheel)
    classifiers = metadata.get_all("Classifier") or []
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Programming Language :: Python :: 3.11" in classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Source", "Issues", "Changelog"} <= urls.keys()
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.integration
def test_the_package_page_links_point_at_the_repository(wheel: Path) -> None:
    metadata = _metadata(wheel)
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert RELATIVE_LINK.findall(description) == []
    # The README's relative links, each made absolute; the text around them as it is.
    readme = (REPO / "README.md").read_text()
    targets = RELATIVE_LINK.findall(readme)
    assert targets, "the README has relative links: else this test checks nothing"
    source = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])["Source"]
    for target in targets:
        assert f"]({source}/blob/main/{target})" in description, target
    any_target = re.compile(r"\]\([^)\s]+\)")
    assert any_target.sub("]()", description).strip() == any_target.sub("]()", readme).strip()


def test_the_package_page_shows_images_from_their_raw_file() -> None:
    # The substitutions Hatch applies (hatch-fancy-pypi-readme), in their order, on a README line.
    hook = PYPROJECT["tool"]["hatch"]["metadata"]["hooks"]["fancy-pypi-readme"]
    text = "![chart](docs/img/a.png) [aws](docs/aws.md) [up](#top) [x](https://e.org/y)"
    for substitution in hook["substitutions"]:
        text = re.sub(substitution["pattern"], substitution["replacement"], text)
    assert text == (
        "![chart](https://raw.githubusercontent.com/rearcquest/rearcquest/main/docs/img/a.png) "
        "[aws](https://github.com/rearcquest/rearcquest/blob/main/docs/aws.md) "
        "[up](#top) [x](https://e.org/y)"
    )
