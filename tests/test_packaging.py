"""The package as it would be published: what the wheel declares, built from this checkout."""

from __future__ import annotations

import importlib.metadata
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


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with theirs, as this environment resolves them
    (rearcquest's own extras read from this checkout's pyproject.toml)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    extras = PYPROJECT["project"]["optional-dependencies"]
    seen: set[str] = set()
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name == "rearcquest":
            todo += [(Requirement(r), "") for e in requirement.extras for r in extras[e]]
            continue
        for wanted in {"", *requirement.extras}:
            key = f"{name}[{wanted}]"
            if key in seen:
                continue
            seen.add(key)
            try:
                requires = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue  # not installed here (a marker for another platform): never imported
            todo += [(Requirement(r), wanted) for r in requires]
    return {key.split("[")[0] for key in seen}


# Runs `rq demo` as in an environment without the distributions that own the modules of BLOCKED:
# importing one fails as it would there (optional imports, e.g. requests' simplejson, fall back).
RQ_DEMO_WITHOUT = """
import importlib.abc, runpy, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the demo extra)", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["rq", "demo"]
runpy.run_module("rearcquest", run_name="__main__")
"""


@pytest.mark.integration
def test_rq_demo_runs_with_only_the_demo_extra_installed(tmp_path: Path) -> None:
    from packaging.utils import canonicalize_name

    demo = _closure([*PYPROJECT["project"]["dependencies"], "rearcquest[demo]"])
    # moto[server] brings every other AWS service's requirements; S3 and SQS need none of them.
    assert not demo & {"cfn-lint", "sympy", "networkx", "docker", "aws-xray-sdk", "pydantic"}
    owners = importlib.metadata.packages_distributions()
    blocked = sorted(
        module
        for module, dists in owners.items()
        if not {canonicalize_name(d) for d in dists} & (demo | {"rearcquest"})
    )
    assert {"cfnlint", "sympy", "pytest"} <= set(blocked), "the dev extra's are installed here"
    proc = subprocess.run(
        [sys.executable, "-c", f"BLOCKED = {set(blocked)!r}\n{RQ_DEMO_WITHOUT}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "== S3 endpoint http://127.0.0.1:" in proc.stdout


def _readme_section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match is not None, f"README.md has no section {title!r}"
    return match.group(1)


def test_the_readme_installs_what_works_today_from_a_clone() -> None:
    readme = (REPO / "README.md").read_text()
    # The README's first command block is still the two scripts.
    first = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first is not None
    assert [line.split()[0] for line in first.group(1).splitlines()] == [
        "scripts/demo",
        "scripts/test",
    ]
    install = _readme_section("Install")
    assert "pipx install ." in install
    assert "uv tool install ." in install
    # Why the names a newcomer tries on the index give something else (Redis Queue) or nothing.
    assert "`pip install rq`" in install and "Redis Queue" in install
    for script in PYPROJECT["project"]["scripts"]:
        assert f"`{script}`" in install
    # No command block installs from the index what is not there.
    blocks = "\n".join(re.findall(r"```(?:sh|console)\n(.*?)```", readme, re.S))
    assert not re.search(r"^\s*(\$ )?pip install .?rearcquest", blocks, re.M)
