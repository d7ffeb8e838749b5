"""Rules about who imports what under src/, read from the source with ``ast`` (see docs/architecture.md)."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import tomllib
from collections.abc import Iterator
from pathlib import Path

import rearcquest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "rearcquest"

# The entry points may take the version from the package's public API; nothing else does.
ENTRY_POINTS = {"cli", "lambdas", "demo", "__main__", "__init__"}


@functools.cache
def _modules() -> tuple[tuple[str, ast.Module], ...]:
    """Every module under src/rearcquest as (dotted name, parsed tree), parsed once a run."""
    return tuple(
        (
            ".".join(path.relative_to(SRC).with_suffix("").parts),
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path)),
        )
        for path in sorted(PACKAGE.rglob("*.py"))
    )


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
    # One literal, and it is what the installed package's metadata says (Hatch read it there).
    assert literals == [importlib.metadata.version("rearcquest")] == [rearcquest.__version__]


# The AWS seams: the only modules that import the AWS SDK or look inside its errors. They translate
# every botocore error into a StorageError carrying S3's (SQS's, Glue's) code and the key.
AWS_SEAMS = {"storage", "queues", "catalog", "_botocore"}
# `sources/` is the HTTP seam: the `response` it reads is httpx's, not botocore's.
HTTP_SEAM = "sources"


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Every module ``tree`` imports (top level, in functions, or for type checking only)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield _imported_from(module, node), node.lineno


def test_only_the_aws_seams_import_boto3_or_botocore() -> None:
    # The type stubs (mypy_boto3_s3) name the client type in signatures and load nothing at run time.
    offenders = [
        f"{module}:{line} imports {name}"
        for module, tree in _modules()
        if _short(module) not in AWS_SEAMS
        for name, line in _imports(module, tree)
        if name.split(".")[0] in ("boto3", "botocore", "s3transfer")
    ]
    assert offenders == []


def test_only_the_aws_seams_read_an_errors_response() -> None:
    offenders = []
    for module, tree in _modules():
        short = _short(module)
        if short in AWS_SEAMS or short.split(".")[0] == HTTP_SEAM:
            continue
        for node in ast.walk(tree):
            reads = (isinstance(node, ast.Attribute) and node.attr == "response") or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and any(
                    isinstance(arg, ast.Constant) and arg.value == "response" for arg in node.args
                )
            )
            if reads:
                offenders.append(f"{module}:{getattr(node, 'lineno', '?')}")
    assert offenders == [], "use StorageError.code and .key, filled by the seams"


def test_attributes_are_named_so_mypy_checks_them() -> None:
    # A name computed at run time (getattr(result, outcome)) hides a typo from mypy. Only the
    # package's lazy loader (PEP 562) resolves names by string.
    offenders = [
        f"{module}:{node.lineno}"
        for module, tree in _modules()
        if module != "rearcquest.__init__"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "setattr", "delattr")
        and len(node.args) > 1
        and not isinstance(node.args[1], ast.Constant)
    ]
    assert offenders == []


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_a_subpackage_module_takes_nothing_from_a_package_init_above_it() -> None:
    # index/_app and index/_server took defaults and helpers from index/__init__, which re-exports
    # them: a circle through the package. Its submodules are fine (`from rearcquest.index import
    # _http`); names go to the sibling module that defines them.
    offenders = []
    for module, tree in _modules():
        parts = module.split(".")
        if len(parts) < 3 or parts[-1] == "__init__":
            continue
        ancestors = {".".join(parts[:n]) for n in range(1, len(parts))}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (source := _imported_from(module, node)) in (
                ancestors
            ):
                offenders += [
                    f"{module}:{node.lineno} takes {alias.name} from {source}"
                    for alias in node.names
                    if not _is_module(f"{source}.{alias.name}")
                ]
    assert offenders == []


def test_the_import_contract_counts_type_only_imports_and_keeps_renderers_on_top() -> None:
    """An import made only for type checking is an import: a circle through one is a circle.
    The renderers sit just below the entry points, so no library module can reach them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False
    (contract,) = config["contracts"]
    layers = [layer.replace(" ", "") for layer in contract["layers"]]
    assert layers.index("render") < layers.index("pipeline")
    library = {"pipeline", "fanout", "events", "surveys", "sync", "tables", "analytics"}
    for module, tree in _modules():
        if _short(module) not in library:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _imported_from(module, node)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            # from rearcquest.render import x, from rearcquest import render, import ...render
            assert not any(n.startswith("rearcquest.render") for n in names), module
