"""Shared fixtures: an isolated environment, moto for AWS APIs, and real local servers.

Servers bind 127.0.0.1 on free ports, start per session or per test, and are always stopped.

The suite has two tiers. The unit tier (``scripts/test --quick``: ``-m "not integration"``) runs
in-process: moto's mocked AWS (no endpoint), the BLS-like server's threads, CliRunner. The
integration tier is every test marked ``integration``, which :func:`pytest_collection_modifyitems`
adds by rule (:data:`INTEGRATION_FIXTURES`, :data:`INTEGRATION_MODULES`, a ``seaweedfs``
parameter) beside the explicit marks; a unit test that starts a Python, ``rq`` or a server
program anyway fails, saying to mark it (:func:`_unit_tier_starts_no_programs`).
"""

from __future__ import annotations

import atexit
import copy
import gc
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.endpoint
import botocore.hooks
import botocore.loaders
import botocore.session
import pytest

REPO = Path(__file__).resolve().parents[1]
# The programs the test extra installs (weed, rclone, ruff...) are in the venv's bin folder, which
# is on PATH only in an activated venv: put it first, as `.venv/bin/python -m pytest` has not.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
# The real BLS and DataUSA snapshots, all in the repository: two BLS releases and two DataUSA
# answers ship with the package (src/rearcquest/_data/), the rest is in tests/data/ (its
# README.md says where each came from). Both are gzipped; tests read the plain files.
DATA_SOURCES = (REPO / "src" / "rearcquest" / "_data", REPO / "tests" / "data")


def unpack_data(sources: tuple[Path, ...], dest: Path) -> Path:
    """Lay the files of ``sources`` into one tree at ``dest``, each ``NAME.gz`` as ``NAME``."""
    for root in sources:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name == "README.md":
                continue
            relative = path.relative_to(root)
            packed = path.suffix == ".gz"
            target = dest / (relative.with_suffix("") if packed else relative)
            if target.exists():
                raise RuntimeError(f"{relative} is in more than one of {sources}")
            target.parent.mkdir(parents=True, exist_ok=True)
            body = path.read_bytes()
            target.write_bytes(gzip.decompress(body) if packed else body)
    return dest


DATA = unpack_data(DATA_SOURCES, Path(tempfile.mkdtemp(prefix="rq-test-data-")))
atexit.register(shutil.rmtree, DATA, ignore_errors=True)
BLS_RELEASES = DATA / "bls" / "pr"
DATAUSA = DATA / "datausa"


# -- the tiers ------------------------------------------------------------------------------------

# A test that asks for one of these (itself or through another fixture) is an integration test:
# a real S3 endpoint over HTTP (moto's threaded server, SeaweedFS) or the shared `rq demo` run.
INTEGRATION_FIXTURES = frozenset({"moto_server", "seaweedfs", "seaweed_bucket", "demo_run"})
# Modules whose every test starts a program (rq, python, weed, rclone, Chromium) or runs `rq demo`.
INTEGRATION_MODULES = frozenset(
    {
        "test_cli_exit_codes.py",
        "test_demo.py",
        "test_index_browser.py",
        "test_seaweedfs_smoke.py",
        "test_startup.py",
        "test_sync_integration.py",
        "test_sync_rclone.py",
    }
)
# Tests that share an expensive per-module or per-session fixture run on one xdist worker
# (scripts/test passes --dist loadgroup), so it starts once: the browser, SeaweedFS, `rq demo`.
XDIST_GROUPS = {"test_index_browser.py": "browser"}
# The programs a unit test may not start: Python itself (so `python -m rearcquest`) and what the
# test extra installs in the venv's bin folder (rq, weed, rclone...).
VENV_BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def uses(item: pytest.Item) -> set[str]:
    """The fixtures ``item`` asks for, with ``seaweedfs`` for a ``seaweedfs`` parameter (a fixture
    such as ``any_store`` that asks for the server by name only when given it)."""
    names = set(getattr(item, "fixturenames", ()))
    if "seaweedfs" in getattr(getattr(item, "callspec", None), "params", {}).values():
        names.add("seaweedfs")
    return names


def integration_by_rule(item: pytest.Item) -> bool:
    """Whether ``item`` is an integration test by the rules above (explicit marks aside)."""
    return item.path.name in INTEGRATION_MODULES or bool(INTEGRATION_FIXTURES & uses(item))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tests of tests/ by the rules; group what shares a costly fixture."""
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue  # infra/tests/conftest.py tiers its own
        if integration_by_rule(item) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        group = XDIST_GROUPS.get(item.path.name)
        for fixture in ("demo_run", "seaweedfs"):
            if group is None and fixture in uses(item):
                group = fixture
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Spend less of the run in the cyclic garbage collector (~8% of it with Python's defaults):
    what is alive once the tests are collected (modules, botocore's models, moto's backends)
    stays alive, so no collection walks it again; and collections run a tenth as often, as the
    tests make cycles by the thousand (every botocore client, moto response, polars frame)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(7_000, 10, 10)


def starts_a_program(args: Any) -> bool:
    """Whether ``args`` (as given to :class:`subprocess.Popen`) starts Python or a venv program."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = os.fsdecode(args).split() or [""]
    program = os.fsdecode(next(iter(args), ""))
    found = Path(shutil.which(program) or program)
    return found.name.startswith("python") or found.parent == VENV_BIN


class UnitTierStartedAProgram(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _unit_tier_starts_no_programs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test not marked ``integration`` that starts Python or a venv program fails, saying so."""
    if request.node.get_closest_marker("integration") is not None:
        return
    popen = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if starts_a_program(args):
            raise UnitTierStartedAProgram(
                f"{request.node.nodeid} starts {args!r}: mark it @pytest.mark.integration "
                "(or add its module to INTEGRATION_MODULES in tests/conftest.py)"
            )
        popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


# -- the environment and AWS ---------------------------------------------------------------------

# Every botocore session (moto's mock and each store's client make new ones, hundreds a run)
# would parse the service models' JSON again, ~0.1 s a client: the tests share one loader, as
# the clients of one session do.
_loaders: dict[str | None, Any] = {}


def _shared_loader(search_path_string: str | None = None) -> Any:
    if search_path_string not in _loaders:
        _loaders[search_path_string] = botocore.loaders.create_loader(search_path_string)
    return _loaders[search_path_string]


botocore.session.create_loader = _shared_loader  # type: ignore[attr-defined]


def _register_botocore_handlers_once() -> None:
    """Every new botocore session (moto resets boto3's default one for each test; each store rq
    makes has its own) registers botocore's ~130 built-in handlers one by one, checking each
    handler's signature: ~6 ms a session. They are the same handlers every time: the first
    session's registrations are kept, and each later session starts from a copy of them
    (botocore's own way of handing a session's handlers to its clients), ~0.2 ms."""
    session = botocore.session.Session
    register = session._register_builtin_handlers  # type: ignore[attr-defined]
    made: list[Any] = []

    def register_once(self: Any, events: Any) -> None:
        emitter = getattr(self, "_original_handler", None)
        state = vars(emitter) if type(emitter) is botocore.hooks.HierarchicalEmitter else {}
        # Only a session's own new, empty emitter (else, or in another botocore, as before).
        fresh = (
            events is getattr(self, "_events", None)
            and not getattr(state.get("_handlers"), "_root", {"children": True})["children"]
            and state.get("_unique_id_handlers") == {}
        )
        if not fresh:
            register(self, events)
        elif not made:
            register(self, events)
            made.append(copy.copy(emitter))
        else:
            emitter.__dict__.update(copy.copy(made[0]).__dict__, _lookup_cache={})

    session._register_builtin_handlers = register_once  # type: ignore[attr-defined]


_register_botocore_handlers_once()


class _RetriesWithoutWaiting:
    """What ``botocore.endpoint`` sees of the ``time`` module: a client retries as configured,
    at once, not after its jittered backoff (a random 0.1 to 3 s in the few tests whose S3 is
    down or unreachable), as the tests' :data:`FAST` policy does for rq's own HTTP."""

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


botocore.endpoint.time = _RetriesWithoutWaiting  # type: ignore[attr-defined]


def _servers_stop_at_once() -> None:
    """A test server's ``shutdown()`` waits until its ``serve_forever`` loop next wakes: every
    0.05 s for rq's offline server (``rq demo`` and ~160 unit tests start one), every 0.5 s by
    default. Here the loops wake every 5 ms, so stopping a server takes ~3 ms, not ~30."""
    import socketserver

    serve_forever = socketserver.BaseServer.serve_forever

    def serve_forever_waking_often(
        self: socketserver.BaseServer, poll_interval: float = 0.5
    ) -> None:
        serve_forever(self, min(poll_interval, 0.005))

    socketserver.BaseServer.serve_forever = serve_forever_waking_often  # type: ignore[method-assign]


_servers_stop_at_once()


def _s3_urls_module(self: Any) -> Any:
    """moto's S3 backend reloads ``moto.s3.urls`` on every request, for a custom endpoint set in
    the environment meanwhile (``MOTO_S3_CUSTOM_ENDPOINTS``), which no test sets: ~10% of an S3
    test's time. Loaded once here."""
    import moto.s3.urls

    return moto.s3.urls


def _load_moto_s3_once() -> None:
    from moto.s3.models import S3Backend

    S3Backend._url_module = property(_s3_urls_module)  # type: ignore[assignment,method-assign]


_load_moto_s3_once()


def _make_moto_responses_once() -> None:
    """Each start of moto's mock builds its ~1,300 ``responses`` routes (every AWS URL pattern
    times every HTTP method, for code that calls AWS through ``requests``) again, ~3 ms a test;
    they are the same routes every time, so each is built once and registered again."""
    import moto.core.models

    make = moto.core.models.CallbackResponse  # type: ignore[attr-defined]
    made: dict[tuple[Any, ...], Any] = {}

    def callback_response(**route: Any) -> Any:
        key = tuple(sorted(route.items()))
        if key not in made:
            made[key] = make(**route)
        return made[key]

    moto.core.models.CallbackResponse = callback_response  # type: ignore[attr-defined,assignment]


_make_moto_responses_once()


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's AWS or RQ settings; boto3 gets dummy credentials."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "RQ_")):
            monkeypatch.delenv(name)
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real snapshots the tests share, unpacked: ``bls/pr/<vintage>/``, ``datausa/``..."""
    return DATA


@pytest.fixture
def s3_client() -> Iterator[Any]:
    """A moto-mocked S3 client (in-process, no server)."""
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def store(s3_client: Any) -> Any:
    """An ObjectStore on a fresh moto bucket ``test-bucket``."""
    from rearcquest.aws.storage import ObjectStore

    s3_client.create_bucket(Bucket="test-bucket")
    return ObjectStore(s3_client, "test-bucket")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3/SQS server on 127.0.0.1 (the demo's embedded endpoint), for a real URL."""
    from rearcquest.offline import embedded_s3

    with embedded_s3() as url:
        yield url


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server: SeaweedFS ``weed mini`` on 127.0.0.1; yields its S3 URL."""
    from weed import seaweedfs as run_seaweedfs

    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server.url


@pytest.fixture
def seaweed_bucket(seaweedfs: str, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A fresh bucket on the SeaweedFS server; yields ``(endpoint_url, bucket)``."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"t-{name}-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=seaweedfs, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    return seaweedfs, bucket


def load_script(path: Path, name: str) -> Any:
    """Import the script at ``path`` (a benchmark, ``scripts/architecture-picture``) as module
    ``name``, registered in ``sys.modules`` so that its dataclasses can look their module up."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def _fast_retry() -> Any:
    from rearcquest.config import RetryPolicy

    return RetryPolicy(attempts=2, base=0.01, cap=0.02)


# Two attempts, a few milliseconds apart: a retried request without the wait.
FAST = _fast_retry()


@pytest.fixture(params=["moto", pytest.param("seaweedfs", marks=pytest.mark.integration)])
def any_store(request: pytest.FixtureRequest) -> Any:
    """A fresh bucket on moto (in-process) or on a real SeaweedFS server."""
    from rearcquest.aws.storage import ObjectStore, make_s3_client

    if request.param == "moto":
        return request.getfixturevalue("store")
    endpoint, bucket = request.getfixturevalue("seaweed_bucket")
    return ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)


def _clear_lambda_caches() -> None:
    from rearcquest import lambdas

    lambdas._s3_client.cache_clear()
    lambdas._sqs_client.cache_clear()
    lambdas._glue_client.cache_clear()
    lambdas._configure_logging.cache_clear()


@pytest.fixture
def lambda_aws() -> Iterator[tuple[Any, Any]]:
    """moto (in-process) with the buckets ``rq-bls`` and ``rq-population``, as the Lambda
    handlers see them from a fresh container; yields the S3 and SQS clients."""
    from moto import mock_aws

    with mock_aws():
        _clear_lambda_caches()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="rq-bls")
        s3.create_bucket(Bucket="rq-population")
        yield s3, boto3.client("sqs", region_name="us-east-1")
    _clear_lambda_caches()


def break_survey_build(monkeypatch: pytest.MonkeyPatch, survey: str, error: Exception) -> None:
    """Make the tables build of ``survey`` raise ``error``; every other survey builds as usual
    (a second call breaks another survey instead, not both)."""
    from rearcquest.data import tables

    build = getattr(tables._build_survey, "__wrapped__", tables._build_survey)

    def broken(store: Any, name: str, **options: Any) -> None:
        if name == survey:
            raise error
        build(store, name, **options)

    broken.__wrapped__ = build  # type: ignore[attr-defined]
    monkeypatch.setattr(tables, "_build_survey", broken)


def release(vintage: str) -> dict[str, Any]:
    """The files of one real BLS release (2024-06-06, 2025-06-05, 2025-09-04 or 2026-08-06)."""
    from rearcquest.offline import load_release

    return load_release(BLS_RELEASES / vintage)


@pytest.fixture
def bls_server(shared_data: Path) -> Iterator[Any]:
    """The BLS-like server on 127.0.0.1 serving the real 2024-06-06 release."""
    from rearcquest.offline import OfflineServer

    with OfflineServer(release("2024-06-06")) as server:
        yield server


@dataclass(frozen=True)
class DemoRun:
    """What one ``rq demo`` printed, its exit code and the threads it left running."""

    exit_code: int
    stdout: str
    stderr: str
    leftover_threads: list[threading.Thread]


@pytest.fixture(scope="session")
def demo_run() -> DemoRun:
    """``rq demo`` run once for the tests that only read what it printed (in-process, so they
    can also see that it leaves no thread behind)."""
    from typer.testing import CliRunner

    from rearcquest.cli import app

    threads_before = {t.ident for t in threading.enumerate()}
    with restored_logging():
        result = CliRunner().invoke(app, ["demo"])
    leftover = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    return DemoRun(result.exit_code, result.stdout, result.stderr, leftover)


class restored_logging:
    """On exit, put back the ``rearcquest`` logger (level, handlers, filters, propagate) and the
    root logger's level as they were on entry, and drop the root handlers added since (but
    pytest's own, which pytest adds and removes around each phase of a test)."""

    def __enter__(self) -> None:
        import logging

        self._package, self._root = logging.getLogger("rearcquest"), logging.getLogger()
        package, root = self._package, self._root
        self._saved = (package.level, list(package.handlers), list(package.filters))
        self._propagate = package.propagate
        self._saved_root = (root.level, list(root.handlers))

    def __exit__(self, *exc: object) -> None:
        package, root = self._package, self._root
        package.setLevel(self._saved[0])
        package.handlers[:] = self._saved[1]
        package.filters[:] = self._saved[2]
        package.propagate = self._propagate
        root.setLevel(self._saved_root[0])
        for handler in list(root.handlers):
            if handler not in self._saved_root[1] and not _pytests(handler):
                root.removeHandler(handler)


def _pytests(handler: object) -> bool:
    return type(handler).__module__.startswith("_pytest.")


@pytest.fixture(autouse=True)
def _restored_logging() -> Iterator[None]:
    """What ``rq -v`` or a Lambda handler configures does not leak into the next test."""
    with restored_logging():
        yield
