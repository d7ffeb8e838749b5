"""Rules about who imports what under src/, read from the source with ``ast`` (see docs/architecture.md)."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import rearcquest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "rearcquest"

# The entry points may take the version from the package's public API; nothing else does.
ENTRY_POINTS = {"cli", "lambdas", "demo", "__main__", "__init__"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    """Yield every module under src/rearcquest as (dotted name, parsed tree)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        yield ".".join(parts), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` names, resolving relative imports."""
    if node.level == 0:
        return node.module or ""
    # Module names keep their last part (``rearcquest.index.__init__``), so the package is the rest.
    package = module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _short(module: str) -> str:
    """``rearcquest.sources._http`` -> ``sources._http``; ``rearcquest.cli`` -> ``cli``."""
    return module.removeprefix("rearcquest.").removesuffix(".__init__")


def test_only_entry_points_take_the_version_from_the_package() -> None:
    offenders = []
    for module, tree in _modules():
        if _short(module) in ENTRY_POINTS or module == "rearcquest.__init__":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _imported_from(module, node) == "rearcquest":
                if any(alias.name in ("__version__", "*") for alias in node.names):
                    offenders.append(f"{module}:{node.lineno}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "__version__"
                and isinstance(node.value, ast.Name)
                and node.value.id == "rearcquest"
            ):
                offenders.append(f"{module}:{node.lineno}")
    assert offenders == [], "import __version__ from rearcquest._version, a leaf"


def test_hatch_reads_the_version_from_the_leaf() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    path = pyproject["tool"]["hatch"]["version"]["path"]
    assert path == "src/rearcquest/_version.py"
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [rearcquest.__version__]
