"""The conftest's logging isolation: what ``rq -v`` and the Lambda handlers configure on the
``rearcquest`` logger is undone after each test, so no test sees another's handlers or level."""

from __future__ import annotations

import logging
from typing import Any

from typer.testing import CliRunner

from conftest import restored_logging
from rearcquest import lambdas
from rearcquest.cli import app


def state() -> tuple[Any, ...]:
    package, root = logging.getLogger("rearcquest"), logging.getLogger()
    return (
        package.level,
        list(package.handlers),
        list(package.filters),
        package.propagate,
        root.level,
        # pytest's capture handlers come and go around each phase of a test.
        [h for h in root.handlers if not type(h).__module__.startswith("_pytest.")],
    )


def test_restored_logging_undoes_the_cli_set_up() -> None:
    before = state()
    with restored_logging():
        # The group callback configures logging before --help ends the command.
        result = CliRunner().invoke(app, ["-v", "analyze", "--help"])
        assert result.exit_code == 0, result.output
        package = logging.getLogger("rearcquest")
        assert state() != before
        assert package.level == logging.INFO and package.propagate is False
    assert state() == before


def test_restored_logging_undoes_the_lambda_set_up() -> None:
    before = state()
    lambdas._configure_logging.cache_clear()
    try:
        with restored_logging():
            lambdas._configure_logging()
            assert logging.getLogger("rearcquest").propagate is False
            assert state() != before
    finally:
        lambdas._configure_logging.cache_clear()
    assert state() == before


# The loggers as collection found them, before any test ran: every test must start so.
_PRISTINE = state()


def test_restored_logging_drops_root_handlers_added_meanwhile() -> None:
    before = state()
    with restored_logging():
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.CRITICAL)
        assert state() != before
    assert state() == before


def test_a_cli_run_leaves_its_set_up_behind_for_the_fixture() -> None:
    assert state() == _PRISTINE
    assert CliRunner().invoke(app, ["-vv", "analyze", "--help"]).exit_code == 0
    assert logging.getLogger("rearcquest").level == logging.DEBUG  # left for the fixture to undo


def test_the_next_test_sees_the_logger_as_it_was() -> None:
    # Runs after the test above (pytest keeps the module's order): without the conftest's
    # fixture it would find the DEBUG level and the handler that run installed.
    assert state() == _PRISTINE
    assert logging.getLogger("rearcquest").level != logging.DEBUG
