"""What a sync loads at start-up: every rq run pays for it (see benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rearcquest.aws.storage import make_s3_client
from rearcquest.errors import ConfigError


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_http_client_leaves_out_the_httpx_command_line() -> None:
    out = _run(
        "import sys\n"
        "from rearcquest.sources._http import HttpClient\n"
        "HttpClient().close()\n"
        "loaded = [m for m in ('httpx._main', 'rich', 'pygments', 'click') if m in sys.modules]\n"
        "import httpx._main\n"
        "print(loaded, 'httpx' in sys.modules, callable(httpx._main.main))\n"
    )
    assert out == "[] True True"


def test_s3_client_needs_botocore_only() -> None:
    out = _run(
        "import sys\n"
        "from rearcquest.aws.storage import make_s3_client\n"
        "client = make_s3_client(endpoint_url='http://127.0.0.1:9', region='eu-west-1')\n"
        "print(client.meta.region_name, [m for m in ('boto3', 's3transfer') if m in sys.modules])\n"
    )
    assert out == "eu-west-1 []"


def test_custom_endpoint_without_region_uses_us_east_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    client = make_s3_client(endpoint_url="http://127.0.0.1:9")
    assert client.meta.region_name == "us-east-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("from_env", [False, True], ids=["option", "AWS_PROFILE"])
def test_unknown_profile_is_a_config_error(monkeypatch: pytest.MonkeyPatch, from_env: bool) -> None:
    if from_env:
        monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="AWS profile 'no-such-profile' is not configured"):
        make_s3_client(profile=None if from_env else "no-such-profile", region="eu-west-1")


@pytest.mark.parametrize(
    "args", [["--help"], ["sync-bls", "--help"], ["analyze", "--help"], ["serve-index", "--help"]]
)
def test_help_imports_no_heavy_package(args: list[str]) -> None:
    # Every run of rq pays for what parsing its command line imports: boto3, polars and pydantic
    # (typer 0.29 coerces options with it, hence constraints.txt) are loaded only by the work.
    out = _run(
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from rearcquest.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "heavy = ('boto3', 'botocore', 'polars', 'pydantic', 'httpx', 'starlette', 'uvicorn',"
        " 'sqlglot', 'statistics')\n"
        "print(result.exit_code, [m for m in heavy if m in sys.modules])\n"
    )
    assert out == "0 []"


@pytest.mark.parametrize(
    ("args", "built"),
    [
        (["sync-bls", "--help"], ["sync-bls"]),
        (["-q", "-vv", "analyze", "--report", "all"], ["analyze"]),
        (["--help"], None),
        ([], None),
        (["sync-blss"], None),  # a typo: the whole app, which suggests the right name
    ],
    ids=["command", "flags-first", "help", "nothing", "typo"],
)
def test_only_the_command_asked_is_built(args: list[str], built: list[str] | None) -> None:
    # typer builds every command's options before reading the command line: ~45 ms a run.
    from rearcquest.cli import _for_command, app

    everything = list(app.registered_commands)
    chosen = _for_command(args)
    if built is None:
        assert chosen is app
    else:
        names = [info.callback.__name__.replace("_", "-") for info in chosen.registered_commands]
        assert names == built
    assert app.registered_commands == everything  # the module's app is left whole


def test_a_command_runs_from_the_console_script() -> None:
    # The entry point with one command built: its own help, and the whole app's on a typo.
    rq = [
        sys.executable,
        "-c",
        "import sys; from rearcquest.cli import main; sys.argv[0] = 'rq'; main()",
    ]
    done = subprocess.run([*rq, "-q", "sync-bls", "-h"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage: rq sync-bls [OPTIONS]" in done.stdout
    done = subprocess.run([*rq, "sync-blss"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Did you mean 'sync-bls'?" in done.stderr


@pytest.fixture(scope="module")
def newest_typer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """typer, click and rich at the newest versions the package index has (what `pipx install .`
    resolves), installed apart from the project's pinned ones."""
    target = tmp_path_factory.mktemp("newest")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--upgrade",
            "--target",
            str(target),
            "typer",
            "rich",
            "click",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return str(target)


@pytest.mark.integration
@pytest.mark.parametrize(
    "args",
    [["--help"], ["sync-bls", "--help"], ["analyze", "-v", "-h"], ["-q", "surveys", "--help"]],
    ids=["help", "sync-bls-help", "flags-after", "flags-before"],
)
def test_the_cli_runs_with_the_newest_typer(newest_typer: str, args: list[str]) -> None:
    # An install that resolves the newest typer (pipx, uv) must run every command: rq once built
    # typer's option objects itself, which a newer typer's constructor refused.
    import os
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from rearcquest.cli import main; sys.argv[0] = 'rq'; main()",
            *args,
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([newest_typer, str(src)])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: rq")
    check = subprocess.run(
        [sys.executable, "-c", "import typer; print(typer.__file__)"],
        env={**os.environ, "PYTHONPATH": newest_typer},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.startswith(newest_typer)  # the newest, not the pinned one
