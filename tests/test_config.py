"""Settings: User-Agent, polite defaults for bls.gov, prefixes, URLs."""

from __future__ import annotations

import pytest

from rearcquest import __version__
from rearcquest.config import (
    DEFAULT_BLS_URL,
    build_user_agent,
    check_http_url,
    default_rps,
    require_user_agent,
)
from rearcquest.errors import ConfigError
from rearcquest.layout import default_prefix, normalise_prefix


def test_user_agent_from_contact_or_whole() -> None:
    assert (
        build_user_agent("me@example.com") == f"rearcquest/{__version__} (contact: me@example.com)"
    )
    assert build_user_agent("me@example.com", "mine/1.0 (ops@x.org)") == "mine/1.0 (ops@x.org)"
    assert build_user_agent(None, "  ") is None
    with pytest.raises(ConfigError, match="not an e-mail address or URL"):
        build_user_agent("just a name")


@pytest.mark.parametrize(
    ("url", "rps"),
    [
        (DEFAULT_BLS_URL, 1.0),
        ("https://www.bls.gov/x/", 1.0),
        ("http://127.0.0.1:8/pr/", 0.0),
        ("https://notbls.gov.example/pr/", 0.0),
    ],
    ids=["download.bls.gov", "www.bls.gov", "local", "lookalike"],
)
def test_polite_rate_only_for_bls(url: str, rps: float) -> None:
    assert default_rps(url) == rps


def test_contact_required_only_for_bls() -> None:
    with pytest.raises(ConfigError, match="--contact"):
        require_user_agent(DEFAULT_BLS_URL, None)
    require_user_agent("http://127.0.0.1:8/pr/", None)
    require_user_agent(DEFAULT_BLS_URL, "ua (contact: a@b.c)")


@pytest.mark.parametrize(
    ("given", "expected"), [("", ""), ("pr", "pr/"), ("a/b/", "a/b/"), (" x ", "x/")]
)
def test_prefixes(given: str, expected: str) -> None:
    assert normalise_prefix(given) == expected


@pytest.mark.parametrize("bad", ["/abs", "a/../b", ".."])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalise_prefix(bad)


def test_default_prefix_is_the_directory_name() -> None:
    assert default_prefix(DEFAULT_BLS_URL) == "pr/"
    assert default_prefix("https://download.bls.gov/pub/time.series/ce/") == "ce/"
    assert default_prefix("http://host/") == ""


@pytest.mark.parametrize("bad", ["ftp://x/", "download.bls.gov/pr/", "http:///nohost"])
def test_only_http_urls(bad: str) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        check_http_url(bad, "source URL")


@pytest.mark.parametrize(
    ("value", "count", "percent", "default"),
    [
        (None, 20, 50.0, True),
        ("0", 0, None, False),
        ("15", 15, None, False),
        (" 7 ", 7, None, False),
        (3, 3, None, False),
        ("10%", None, 10.0, False),
        ("12.5%", None, 12.5, False),
        ("0%", None, 0.0, False),
        ("100%", None, 100.0, False),
    ],
    ids=["default", "zero", "count", "spaces", "int", "percent", "fraction", "0%", "100%"],
)
def test_max_delete_accepts_a_count_or_a_share(
    value: str | int | None, count: int | None, percent: float | None, default: bool
) -> None:
    from rearcquest.config import DeleteLimit

    assert DeleteLimit.parse(value) == DeleteLimit(count, percent, default)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "not a non-negative number"),
        (-1, "must not be negative"),
        ("abc", "not a non-negative number"),
        ("", "not a non-negative number"),
        ("1.5", "not a non-negative number"),
        ("150%", "between 0% and 100%"),
        ("-5%", "between 0% and 100%"),
        ("nan%", "between 0% and 100%"),
        ("%", "not a percentage"),
        ("ten%", "not a percentage"),
    ],
    ids=[
        "negative",
        "negative-int",
        "word",
        "empty",
        "fraction",
        "over-100",
        "negative-share",
        "nan",
        "bare-percent",
        "word-percent",
    ],
)
def test_bad_max_delete_is_a_config_error(value: str | int, message: str) -> None:
    from rearcquest.config import DeleteLimit

    with pytest.raises(ConfigError, match=message) as info:
        DeleteLimit.parse(value)
    assert "--max-delete" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("limit", "deletes", "mirrored", "trips"),
    [
        (None, 0, 12, False),
        (None, 11, 12, True),  # the listing shrank from 12 files to 1
        (None, 6, 12, False),  # exactly half may go
        (None, 7, 12, True),  # more than half may not
        (None, 1, 2, True),  # only one file would remain
        (None, 1, 1, True),
        (None, 1, 3, False),
        (None, 21, 100, True),  # the count default still holds
        (None, 20, 100, False),
        ("15", 11, 12, False),  # an explicit count replaces the default rules
        ("3", 4, 100, True),
        ("0", 1, 100, True),
        ("100%", 12, 12, False),
        ("10%", 2, 12, True),
        ("10%", 1, 12, False),
        ("0%", 1, 12, True),
    ],
)
def test_delete_limit_decision(limit: str | None, deletes: int, mirrored: int, trips: bool) -> None:
    from rearcquest.config import DeleteLimit

    assert DeleteLimit.parse(limit).exceeded(deletes, mirrored) is trips
