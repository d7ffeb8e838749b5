"""Settings: User-Agent, polite defaults for bls.gov, prefixes, URLs."""

from __future__ import annotations

import pytest

from rearcquest import __version__
from rearcquest.config import (
    DEFAULT_BLS_URL,
    build_user_agent,
    check_http_url,
    default_prefix,
    default_rps,
    normalise_prefix,
    require_user_agent,
)
from rearcquest.errors import ConfigError


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
