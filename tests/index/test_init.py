"""``rearcquest.index`` itself: tokens, limits, the static page written to the bucket."""

from __future__ import annotations

import re
import sys
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest

from conftest import BLS_RELEASES
from rearcquest.aws.storage import ObjectStore
from rearcquest.errors import ConfigError
from rearcquest.index import (
    AUTO_TOKEN,
    DEFAULT_INDEX_KEY,
    Limits,
    check_token,
    create_app,
    resolve_token,
    write_static_index,
)
from rearcquest.layout import LEGACY_STATE_NAME

from .helpers import HOSTILE, T0, VINTAGE, files, parse


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("short-token", "11 characters long; use at least 16, or --token auto"),
        ("x" * 15, "15 characters long"),
        ("sixteen chars ok", "spaces or control characters"),
        ("sixteen-chars-ok\n", "spaces or control characters"),
        ("auto", "must be resolved first"),
    ],
    ids=["short", "fifteen", "space", "newline", "unresolved-auto"],
)
def test_weak_tokens_are_refused(loaded: ObjectStore, token: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(loaded, token=token)


def test_resolve_token() -> None:
    assert resolve_token(None) is None and resolve_token("") is None
    assert resolve_token("x" * 16) == "x" * 16
    generated = {resolve_token(AUTO_TOKEN) for _ in range(3)}
    assert len(generated) == 3  # a new one each time
    for token in generated:
        assert token is not None and len(token) == 32 and check_token(token) == token
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_token("too-short")


def test_write_static_index(fresh: ObjectStore) -> None:
    loaded = fresh
    written = write_static_index(loaded, "pr/", now=T0)
    assert written.key == DEFAULT_INDEX_KEY == "index.html"
    assert written.objects == 12 + len(HOSTILE) + 3  # release, hostile, deep, long, empty.bin
    head = loaded.head("index.html")
    assert head is not None and head.content_type == "text/html; charset=utf-8"
    page = loaded.get_bytes("index.html").decode()
    assert 'http-equiv="Content-Security-Policy"' in page
    assert [t for t, _ in parse(page).tags].count("script") == 1
    links = files(page)
    assert links["pr.class"] == "./pr/pr.class"
    assert links["sub/deep.txt"] == "./pr/sub/deep.txt"
    assert (
        LEGACY_STATE_NAME not in links and "index.html" not in links and "secret.txt" not in links
    )
    for name in HOSTILE.values():
        href = links["hostile/" + name]
        assert href is not None
        assert unquote(urlsplit(urljoin("https://site.example/index.html", href)).path) == (
            "/pr/hostile/" + name
        )
    # Written again under the prefix, it does not list itself.
    again = write_static_index(loaded, "pr/", "pr/index.html")
    assert again.objects == written.objects
    assert files(loaded.get_bytes("pr/index.html").decode())["pr.class"] == "./pr.class"


def test_write_static_index_presigned(fresh: ObjectStore) -> None:
    written = write_static_index(fresh, "pr/", presign_seconds=3600, now=T0)
    assert written.expires == "2026-08-06T09:30:00+00:00"
    assert written.share_url is not None and "X-Amz-Expires=3600" in written.share_url
    with httpx.Client() as client:
        page = client.get(written.share_url)
        assert page.status_code == 200 and "pr.data.0.Current" in page.text
        href = files(page.text)["pr.class"]
        assert href is not None and "X-Amz-Signature=" in href
        assert client.get(href).content == (BLS_RELEASES / VINTAGE / "pr.class").read_bytes()


@pytest.mark.parametrize(
    "key",
    ["", "folder/", "/abs.html", "../up.html", "a/./b.html"],
    ids=["empty", "folder", "absolute", "dotdot", "dot"],
)
def test_write_static_index_refuses_bad_keys(loaded: ObjectStore, key: str) -> None:
    with pytest.raises(ConfigError, match="index key"):
        write_static_index(loaded, "", key)


@pytest.mark.parametrize("seconds", [0, 604801], ids=["zero", "over-7-days"])
def test_write_static_index_refuses_bad_expiry(loaded: ObjectStore, seconds: int) -> None:
    with pytest.raises(ConfigError, match="7 days"):
        write_static_index(loaded, "", presign_seconds=seconds)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"request_timeout": 0}, "timeouts must be positive"),
        ({"keep_alive_timeout": -1}, "timeouts must be positive"),
        ({"max_connections": 0}, "max_connections must be at least 1"),
    ],
    ids=["request", "keep-alive", "connections"],
)
def test_limits_are_checked(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Limits(**limits)


@pytest.mark.parametrize(
    ("write_static", "given", "refused"),
    [
        (True, {"--host", "--prefix", "--cache-seconds"}, "--host, --cache-seconds"),
        (False, {"--presign", "--port", "--format"}, "--presign, --format"),
    ],
    ids=["static-refuses-live", "live-refuses-static"],
)
def test_check_mode_names_the_other_modes_options(
    write_static: bool, given: set[str], refused: str
) -> None:
    from rearcquest.errors import OptionError
    from rearcquest.index import check_mode

    with pytest.raises(OptionError, match="cannot be used with") as caught:
        check_mode(write_static, given)
    assert caught.value.options == refused
    check_mode(write_static, {"--prefix", "--bucket"})  # options of both modes pass


def test_index_create_app_without_the_serve_extra_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rearcquest.index

    for module in {"starlette", *(name for name in sys.modules if name.startswith("starlette."))}:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import starlette...` fail
    for module in ("_app", "_server"):
        monkeypatch.delitem(sys.modules, f"rearcquest.index.{module}", raising=False)
        monkeypatch.delattr(rearcquest.index, module, raising=False)
    # create_app is imported on first use (no forwarder): the same error, at the latest when it
    # is called.
    with pytest.raises(ConfigError, match=r"pip install 'rearcquest\[serve\]'"):
        rearcquest.index.create_app(store=None)
