"""Rules about who imports what under src/, read from the source with ``ast`` (see docs/architecture.md)."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

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


# The AWS seams (rearcquest.aws): the only modules that import the AWS SDK or look inside its
# errors. They translate every botocore error into a StorageError carrying the code and the key.
AWS_SEAMS = "aws"
# `sources/` is the HTTP seam: the `response` it reads is httpx's, not botocore's.
HTTP_SEAM = "sources"


def _package(module: str) -> str:
    """The first part under rearcquest: ``rearcquest.aws.storage`` -> ``aws``."""
    return _short(module).split(".")[0]


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
        if _package(module) != AWS_SEAMS
        for name, line in _imports(module, tree)
        if name.split(".")[0] in ("boto3", "botocore", "s3transfer")
    ]
    assert offenders == []


def test_only_the_entry_points_make_s3_clients() -> None:
    # Stores are built only in the entry points: below them code is handed an S3Access (or a
    # store) and a run makes one client. An S3Access without a client makes one on first use.
    offenders = []
    for module, tree in _modules():
        short = _short(module)
        if _package(module) == AWS_SEAMS or short in ENTRY_POINTS:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            lazy = name.endswith("S3Access") and "client" not in {k.arg for k in node.keywords}
            if lazy or name.endswith("make_s3_client") or name.startswith("boto3."):
                offenders.append(f"{short}:{node.lineno} calls {name}")
    assert offenders == [], "take an S3Access (or a store) from the entry point"


def test_only_the_aws_seams_read_an_errors_response() -> None:
    offenders = []
    for module, tree in _modules():
        if _package(module) in (AWS_SEAMS, HTTP_SEAM):
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


def test_the_import_contract_counts_type_only_imports_and_keeps_the_wings_apart() -> None:
    """An import made only for type checking is an import: a circle through one is a circle.
    The three wings are one layer of independent parts, below the jobs and above the records."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False
    (contract,) = config["contracts"]
    layers = [layer.replace(" ", "") for layer in contract["layers"]]

    def where(part: str) -> int:
        return next(
            i for i, layer in enumerate(layers) if part in layer.replace(":", "|").split("|")
        )

    assert "mirror|data|index" in layers  # `|`: independent of one another
    assert where("cli") < where("output") < where("jobs") < where("mirror")
    assert where("mirror") < where("records") < where("aws") == where("sources") < where("config")
    assert "aws|sources" in layers
    assert len(layers) <= 8


# What prints and draws is the entry points' alone (and its own package's).
OUTPUT_USERS = ENTRY_POINTS | {"demo", "localaws", "offline"}


def test_only_the_entry_points_import_the_output() -> None:
    offenders = []
    for module, tree in _modules():
        if _short(module) in OUTPUT_USERS or _package(module) == "output":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _imported_from(module, node)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            # from rearcquest.output.render import x, from rearcquest import output, import ...
            if any(n == "rearcquest.output" or n.startswith("rearcquest.output.") for n in names):
                offenders.append(f"{module}:{node.lineno}")
    assert offenders == []


def test_no_import_cycle_counting_lazy_and_type_only_imports() -> None:
    # Every import statement counts, wherever it is: in a function, under TYPE_CHECKING.
    graph: dict[str, set[str]] = {}
    for module, tree in _modules():
        deps = graph.setdefault(module.removesuffix(".__init__"), set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                # `from rearcquest.index import _http` imports the module _http; `from
                # rearcquest.index import create_app` imports the package's __init__.
                base = _imported_from(module, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if _is_module(sub) else base)
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    cycles = []
    for start in graph:  # a depth-first walk from each module back to itself
        stack, seen = [(start, (start,))], set()
        while stack:
            here, path = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    cycles.append(" -> ".join((*path, start)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    # The package's __init__ names its public API lazily (PEP 562) and the CLI imports it: the
    # only way back to `rearcquest` is the CLI, which the package never imports.
    assert cycles == []


# The library (everything but the entry points): the entry points build its options and its
# Settings from the command line, the environment or an event, and pass them down.
LIBRARY_EXEMPT = {"cli", "lambdas", "demo", "__main__"}
MAX_PARAMETERS = 12


def _library() -> Iterator[tuple[str, ast.Module]]:
    return ((m, t) for m, t in _modules() if _short(m) not in LIBRARY_EXEMPT)


def test_only_config_and_the_entry_points_read_the_environment() -> None:
    # rearcquest.aws._botocore reads AWS_ENDPOINT_URL[_<SERVICE>] as boto3 itself does: the AWS
    # SDK's own variables, read in the AWS seam (docs/configuration.md).
    allowed = {"config", "aws._botocore"}
    offenders = [
        f"{module}:{node.lineno}"
        for module, tree in _library()
        if _short(module) not in allowed
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("from_env", "environ", "getenv")
    ]
    assert offenders == [], "take the defaults as a Settings the entry point read"


def _untyped_bag(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``**kwargs: Any`` (or unannotated) carrying options; not ``**_`` (botocore's event
    handlers must accept and ignore keywords) nor a ``*args, **kwargs`` pass-through to the
    wrapped object's own signature."""
    bag = function.args.kwarg
    if bag is None or bag.arg == "_" or function.args.vararg is not None:
        return False
    return bag.annotation is None or ast.unparse(bag.annotation) in ("Any", "object")


def test_the_library_takes_typed_options() -> None:
    offenders = []
    for module, tree in _library():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
                if count > MAX_PARAMETERS or _untyped_bag(node):
                    offenders.append(f"{module}.{node.name}:{node.lineno}")
    assert offenders == [], f"at most {MAX_PARAMETERS} parameters, and no untyped **options bag"


def test_no_command_hands_on_ctx_params() -> None:
    # A command builds its options by name: its parameter names are not library API.
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    offenders = [
        f"{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "params"
        and isinstance(node.value, ast.Name)
        and node.value.id == "ctx"
    ]
    assert offenders == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("mirror/sync.py", "from rearcquest.data import tables"),  # one wing into another
        ("records/lease.py", "from rearcquest.jobs import job"),  # a lower layer upward
        ("data/tables.py", "    from rearcquest.output import render"),  # type-only, to the top
    ],
    ids=["wing-to-wing", "upward", "type-only-upward"],
)
def test_the_import_contract_fails_on_a_forbidden_import(
    tmp_path: Path, module: str, line: str
) -> None:
    """scripts/lint's contract, run on a copy of src/ with one forbidden import added."""
    shutil.copytree(SRC, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "rearcquest" / module
    text = target.read_text(encoding="utf-8")
    if line.startswith(" "):  # under the module's `if TYPE_CHECKING:`
        text = text.replace("if TYPE_CHECKING:\n", f"if TYPE_CHECKING:\n{line}\n", 1)
    else:
        text = text.replace("\nlog = ", f"\n{line}  # noqa\n\nlog = ", 1)
    assert line in text
    target.write_text(text, encoding="utf-8")

    def lint(src: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(src)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    broken = lint(tmp_path / "src")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "BROKEN" in broken.stdout
    assert module.replace("/", ".").removesuffix(".py") in broken.stdout
    kept = lint(SRC)  # the same run on the real tree: the contract holds
    assert kept.returncode == 0, kept.stdout + kept.stderr
