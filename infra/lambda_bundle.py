#!/usr/bin/env python3
"""What goes into the Lambda bundle, for ``scripts/build-lambda-bundle`` (standard library only).

The handlers (:mod:`rearcquest.lambdas`) use the library, never the CLI: the packages only the CLI
imports stay out of the bundle, and so do those the Lambda runtime provides.

    python infra/lambda_bundle.py requirements       the runtime requirements to install
    python infra/lambda_bundle.py check DIR          fail if a left-out package is in DIR
    python infra/lambda_bundle.py imports [SRC]      import every module the handlers can reach
                                                     (statically, lazy imports included) with the
                                                     CLI-only packages refused; fail if one needs
                                                     them (SRC: a directory holding rearcquest/)
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import re
import sys
import tomllib
import types
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
SRC = REPO / "src"
HANDLER_MODULE = "rearcquest.lambdas"
# The Lambda Python runtime provides these (and they are a third of the bundle's size).
PROVIDED = {"boto3": "boto3", "botocore": "botocore", "s3transfer": "s3transfer"}
# Distributions only `rq` (cli.py) needs, with their import names: typer and rich, and what they
# pull in. The handlers never import them.
CLI_ONLY = {
    "typer": "typer",
    "rich": "rich",
    "click": "click",
    "shellingham": "shellingham",
    "markdown-it-py": "markdown_it",
    "mdurl": "mdurl",
    "pygments": "pygments",
}
LEFT_OUT = {**PROVIDED, **CLI_ONLY}
# The live index server (`rq serve-index`) needs the `serve` extra, which is not a runtime
# requirement and so not in the bundle; its modules are reached only through `serve()`,
# `start_server()` and `create_app()`, which no handler calls (the index handler renders a page).
SERVER_ONLY = ("rearcquest.index._app", "rearcquest.index._protocol", "rearcquest.index._server")
SERVE_EXTRA = ("starlette", "uvicorn")


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement (``Typer>=0.12`` -> ``typer``)."""
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The project's runtime requirements without the left-out distributions.

    Args:
        pyproject: the ``pyproject.toml`` to read.

    Returns:
        The requirement strings, in their order in ``pyproject.toml``.
    """
    with pyproject.open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    return [dep for dep in deps if _name(dep) not in LEFT_OUT]


def left_out_found(bundle: Path) -> list[str]:
    """The left-out packages present in a built bundle directory (an empty list when clean)."""
    return sorted(
        module
        for module in LEFT_OUT.values()
        if (bundle / module).is_dir() or (bundle / f"{module}.py").is_file()
    )


def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> Iterable[str]:
    """Every module an import statement of ``path`` names, lazy imports inside functions
    included, ``if TYPE_CHECKING:`` blocks excluded (they never run)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip: set[int] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            yield base
            # `from pkg import name` may name a submodule.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def handler_modules(src: Path = SRC, root: str = HANDLER_MODULE) -> list[str]:
    """The project's modules the handlers can import, directly or not, lazily or not.

    Args:
        src: the directory holding the ``rearcquest`` package.
        root: the module to start from.

    Returns:
        Module names, sorted; parent packages included (importing a module runs them).
    """
    top = root.split(".")[0]
    seen: set[str] = set()
    todo = [root]
    while todo:
        module = todo.pop()
        if module in seen or module in SERVER_ONLY or _module_file(module, src) is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = _module_file(module, src)
        assert path is not None
        todo.extend(m for m in _imports(path, module) if m.split(".")[0] == top)
    return sorted(seen)


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuse to import the given top-level modules, as if they were not installed."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not in the Lambda bundle", name=fullname)
        return None


def import_refusing(modules: Iterable[str], refused: Iterable[str]) -> None:
    """Import ``modules`` with ``refused`` top-level packages unavailable.

    Raises:
        ImportError: a module needs a refused package (or is missing).
        RuntimeError: one of the refused packages was imported before (the check would be void).
    """
    refused = set(refused)
    already = sorted(name for name in sys.modules if name.split(".")[0] in refused)
    if already:
        raise RuntimeError(f"already imported, cannot be refused: {already}")
    sys.meta_path.insert(0, _Refuse(refused))
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str]) -> int:
    """The command line; see the module docstring."""
    if argv[:1] == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        found = left_out_found(Path(argv[1]))
        if found:
            print(f"error: left-out packages in the bundle: {', '.join(found)}", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["imports"] and len(argv) <= 2:
        src = SRC
        if len(argv) == 2:
            src = Path(argv[1]).resolve()
            sys.path.insert(0, str(src))
        modules = handler_modules(src)
        if any(m == "rearcquest.cli" for m in modules):
            print("error: the handlers can reach rearcquest.cli", file=sys.stderr)
            return 1
        refused = [*CLI_ONLY.values(), *SERVE_EXTRA]
        import_refusing(modules, refused)
        print(f"{len(modules)} handler modules import without {', '.join(CLI_ONLY)}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
