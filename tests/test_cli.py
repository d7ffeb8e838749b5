"""The command line as a whole: help, version, errors, lean start-up, the public API."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import rearcquest
from rearcquest.cli import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = [c.name for c in app.registered_commands]
    assert {"sync-bls", "fetch-population", "analyze", "demo"} <= set(commands)
    for command in commands:
        assert command is not None and f" {command} " in result.output, command


def test_no_args_shows_help() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"rq (rearcquest) {rearcquest.__version__}"


def test_unknown_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sync-bls", "--bucket", "b", "--no-such-option"])
    assert result.exit_code == 2


@pytest.mark.integration
def test_help_does_not_import_heavy_dependencies() -> None:
    code = (
        "import sys; from rearcquest.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'polars', "
        "'httpx', 'moto', 'starlette', 'uvicorn'})\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr


@pytest.mark.integration
def test_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rearcquest", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("rq (rearcquest) ")


def test_public_api_is_sorted_and_resolvable() -> None:
    assert rearcquest.__all__ == sorted(rearcquest.__all__)
    for name in rearcquest.__all__:
        assert getattr(rearcquest, name) is not None, name


def test_verbosity_is_per_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    # -v shows an error's cause; it lives in the context object, so it does not outlive its run.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    args = ["sync-bls", "--bucket", "b", "--source-url", "http://127.0.0.1:9/", "--no-lock"]
    args += ["--endpoint-url", "http://127.0.0.1:9"]
    verbose = runner.invoke(app, ["-v", *args])
    assert verbose.exit_code != 0
    assert "caused by EndpointConnectionError" in verbose.stderr
    plain = runner.invoke(app, args)
    assert plain.exit_code == verbose.exit_code
    assert "Error: cannot list s3://b/" in plain.stderr
    assert "caused by" not in plain.stderr


def test_verbose_and_quiet_work_after_the_command_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # As `rq -v sync-bls ...`: the error's cause is shown; the flags add up where both are given.
    import logging

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    args = ["sync-bls", "--bucket", "b", "--source-url", "http://127.0.0.1:9/", "--no-lock"]
    args += ["--endpoint-url", "http://127.0.0.1:9"]
    after = runner.invoke(app, [*args, "-v"])
    assert after.exit_code != 0
    assert "caused by EndpointConnectionError" in after.stderr
    runner.invoke(app, ["-v", *args, "-v"])
    assert logging.getLogger("rearcquest").level == logging.DEBUG  # -v and -v: -vv
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == after.exit_code
    assert logging.getLogger("rearcquest").level == logging.ERROR
    assert "Error: cannot list s3://b/" in quiet.stderr


def test_shell_completion_completes_commands_and_options() -> None:
    # `rq --install-completion` installs what `--show-completion` prints; the shell then asks rq.
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="rq")
    assert script.exit_code == 0
    assert "_RQ_COMPLETE=complete_bash" in script.stdout

    def complete(words: str, index: int) -> str:
        env = {"_RQ_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(index)}
        return str(runner.invoke(app, [], prog_name="rq", env=env).stdout)

    assert complete("rq sync", 1).split() == ["sync-bls"]
    assert complete("rq sync-bls --sur", 2).split() == ["--survey"]
