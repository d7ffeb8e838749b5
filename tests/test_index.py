"""The bucket index: pure rendering and HTTP semantics, the ASGI routing, the static page, and
the running server against moto's server and SeaweedFS (hostile keys, ranges, 10,000 objects)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import anyio
import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest

from conftest import BLS_RELEASES
from rearcquest.errors import ConfigError, StorageError
from rearcquest.index import (
    AUTO_TOKEN,
    DEFAULT_INDEX_KEY,
    Limits,
    _app,
    _http,
    check_token,
    create_app,
    exposure_warning,
    resolve_token,
    start_server,
    write_static_index,
)
from rearcquest.index._app import _Throttle
from rearcquest.index._render import (
    PAGE_CSP,
    View,
    build_listing,
    display_name,
    href_path,
    human_size,
    listing_document,
    relative_href,
    render_page,
    sort_files,
)
from rearcquest.layout import LEGACY_STATE_NAME, RESERVED_PREFIX, lock_key, state_key
from rearcquest.storage import ObjectInfo, ObjectStore, ObjectStream, make_s3_client

VINTAGE = "2026-08-06"
T0 = datetime(2026, 8, 6, 8, 30, tzinfo=UTC)

# Keys (under the served prefix) that try to break out of HTML, attributes, URLs or the prefix.
HOSTILE = {
    "script": "<script>alert(1).txt",
    "img": "<img src=x onerror=alert(1)>",
    "quote": "say \"hi\" & 'bye'.txt",
    "space": "with  spaces .txt",
    "percent": "100% %2e%2e%2f.txt",
    "query": "what?x=1#frag",
    "plus": "a+b=c;d.txt",
    "colon": "javascript:alert(1)",
    "unicode": "ünïcødé 数据 📈.txt",
    "bidi": "invoice\u202etxt.exe",
    "long": "L" * 240 + ".txt",  # SeaweedFS, like a file system, caps one segment at 255 bytes
}
# Close to S3's 1,024-byte limit for a whole key, in several segments.
LONG_KEY = "/".join(["d" * 200] * 4) + "/" + "ü" * 40 + ".txt"


# -- helpers -------------------------------------------------------------------------------------


class _Rows(HTMLParser):
    """Collect the listing rows (class, data-name, link) and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._row: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and a.get("class") in ("file", "folder", "up"):
            self._row = {"class": a["class"], "name": a.get("data-name"), "href": None, **a}
            self.rows.append(self._row)
        elif tag == "a" and self._row is not None and self._row["href"] is None:
            self._row["href"] = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None


def parse(page: str) -> _Rows:
    parser = _Rows()
    parser.feed(page)
    return parser


def files(page: str) -> dict[str, str | None]:
    return {r["name"]: r["href"] for r in parse(page).rows if r["class"] == "file"}


def info(key: str, size: int = 1, minutes: int = 0) -> ObjectInfo:
    return ObjectInfo(
        key=key, size=size, etag="e" + key[:4], last_modified=T0 + timedelta(minutes=minutes)
    )


def asgi(
    app: Any,
    method: str,
    url: str,
    client_cookies: dict[str, str] | None = None,
    raise_app_exceptions: bool = True,
    peer: tuple[str, int] = ("127.0.0.1", 123),
    **kwargs: Any,
) -> httpx.Response:
    """One request through the ASGI app in process (no socket), from the address ``peer``."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=raise_app_exceptions, client=peer
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", cookies=client_cookies
        ) as client:
            return await client.request(method, url, **kwargs)

    return anyio.run(go)


def put_release(store: ObjectStore, prefix: str = "pr/") -> dict[str, bytes]:
    """Upload the real BLS files of one release; return them by key."""
    data = {
        prefix + p.name: p.read_bytes()
        for p in sorted((BLS_RELEASES / VINTAGE).iterdir())
        if p.name != "listing.html"
    }
    for key, body in data.items():
        store.put_bytes(key, body)
    return data


# -- pure: names, links, sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1_613_575, "1.6 MB"),
        (999_960, "1.0 MB"),
        (3 * 10**12, "3.0 TB"),
        (5 * 10**15, "5.0 PB"),
    ],
    ids=["zero", "bytes", "kb", "mb", "rounds-up-unit", "tb", "pb"],
)
def test_human_size(size: int, expected: str) -> None:
    assert human_size(size) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pr.class", "/pr.class"),
        ("sub/a b.txt", "/sub/a%20b.txt"),
        ("what?x=1#frag", "/what%3Fx%3D1%23frag"),
        ("100%", "/100%25"),
        ("/evil.example/x", "/%2Fevil.example/x"),
        ("ü", "/%C3%BC"),
        ('"><script>', "/%22%3E%3Cscript%3E"),
    ],
    ids=["plain", "space", "query-and-fragment", "percent", "leading-slash", "unicode", "quote"],
)
def test_href_path_encodes_everything_and_never_leaves_the_host(path: str, expected: str) -> None:
    href = href_path(path)
    assert href == expected
    assert not href.startswith("//")
    assert unquote(href[1:]) == path


@pytest.mark.parametrize(
    ("page_dir", "key", "expected"),
    [
        ("", "pr/pr.class", "./pr/pr.class"),
        ("pr/", "pr/pr.class", "./pr.class"),
        ("site/", "pr/a b", "../pr/a%20b"),
        ("a/b/", "a/c/x", "../c/x"),
        ("", "javascript:alert(1)", "./javascript%3Aalert%281%29"),
        ("", "/x", ".//x"),
    ],
    ids=["root", "same-folder", "sibling", "up-one", "scheme-like", "empty-segment"],
)
def test_relative_href(page_dir: str, key: str, expected: str) -> None:
    href = relative_href(page_dir, key)
    assert href == expected
    target = urlsplit(urljoin("https://bucket.example/" + page_dir + "index.html", href))
    assert target.hostname == "bucket.example"
    if not key.startswith("/"):  # Python's urljoin, unlike browsers, folds empty segments
        assert unquote(target.path) == "/" + key


def test_display_name_escapes_html_and_shows_bidi_controls() -> None:
    assert display_name('<b>"&') == "&lt;b&gt;&quot;&amp;"
    shown = display_name("invoice\u202etxt.exe")
    assert "\u202e" not in shown
    assert "\\u202e" in shown
    assert display_name("tab\there") == 'tab<span class="esc">\\u0009</span>here'


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../secret",
        "a/../../other-bucket/x",
        "./a",
        "a/./b",
        "a\\..\\b",
        "nul\x00",
        "cr\r\nx",
        "x" * 1100,
    ],
    ids=[
        "dotdot",
        "dotdot-first",
        "dotdot-deep",
        "dot",
        "dot-middle",
        "backslash",
        "nul",
        "crlf",
        "too-long",
    ],
)
def test_check_path_refuses_traversal(path: str) -> None:
    with pytest.raises(_http.UnsafePath):
        _http.check_path(path, "pr/")


@pytest.mark.parametrize(
    "path",
    ["a.txt", "...", "..a", "a..", "sub/x", "", "a//b", "ünï"],
    ids=[
        "plain",
        "three-dots",
        "dotdot-prefix",
        "dotdot-suffix",
        "nested",
        "root",
        "empty-seg",
        "unicode",
    ],
)
def test_check_path_keeps_the_prefix(path: str) -> None:
    assert _http.check_path(path, "pr/") == "pr/" + path


# -- pure: HTTP semantics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=9-9", 10, (9, 9)),
        ("BYTES = 1 - 2", 10, (1, 2)),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=4-2", 10, None),
        ("bytes=-", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=0-", 0, None),
        ("bytes=" + "9" * 30 + "-", 10, None),
    ],
    ids=[
        "none",
        "first-byte",
        "middle",
        "open-end",
        "suffix",
        "suffix-longer",
        "end-clamped",
        "last-byte",
        "spaces-case",
        "multi-ignored",
        "other-unit",
        "reversed",
        "empty",
        "garbage",
        "empty-object",
        "absurd-number",
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    result = _http.parse_range(header, size)
    assert (None if result is None else (result.start, result.end)) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=99-"],
    ids=["at-end", "beyond", "empty-suffix", "far"],
)
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(_http.RangeNotSatisfiable):
        _http.parse_range(header, 10)


@pytest.mark.parametrize(
    ("inm", "ims", "expected"),
    [
        ('"abc"', None, True),
        ('W/"abc"', None, True),
        ('"x", "abc"', None, True),
        ("*", None, True),
        ('"other"', None, False),
        ('"other"', "Thu, 06 Aug 2026 09:00:00 GMT", False),
        (None, "Thu, 06 Aug 2026 08:30:00 GMT", True),
        (None, "Thu, 06 Aug 2026 08:29:59 GMT", False),
        (None, "not a date", False),
        (None, None, False),
    ],
    ids=[
        "etag",
        "weak",
        "list",
        "star",
        "other",
        "inm-wins",
        "ims-equal",
        "ims-older",
        "ims-bad",
        "none",
    ],
)
def test_not_modified(inm: str | None, ims: str | None, expected: bool) -> None:
    assert _http.not_modified(inm, ims, "abc", T0.replace(microsecond=500)) is expected


def test_preconditions_and_if_range() -> None:
    assert not _http.precondition_failed('"abc"', None, "abc", T0)
    assert _http.precondition_failed('"nope"', None, "abc", T0)
    assert _http.precondition_failed('W/"abc"', None, "abc", T0)  # If-Match compares strongly
    assert _http.precondition_failed(None, "Thu, 06 Aug 2026 08:00:00 GMT", "abc", T0)
    assert _http.if_range_allows('"abc"', "abc", T0)
    assert not _http.if_range_allows('"old"', "abc", T0)
    assert not _http.if_range_allows('W/"abc"', "abc", T0)
    assert _http.if_range_allows("Thu, 06 Aug 2026 08:30:00 GMT", "abc", T0)
    assert not _http.if_range_allows("Thu, 06 Aug 2026 08:00:00 GMT", "abc", T0)


@pytest.mark.parametrize(
    ("key", "fallback", "star"),
    [
        ("pr/pr.class", "pr.class", "pr.class"),
        ('pr/say "hi"\\.txt', "say _hi__.txt", "say%20%22hi%22%5C.txt"),
        ("ünï.txt", "_n_.txt", "%C3%BCn%C3%AF.txt"),
        ("x/a\r\nSet-Cookie: y", "aSet-Cookie: y", "aSet-Cookie%3A%20y"),
        # Bidi controls would make the saved name read as "invoiceexe.txt".
        ("x/invoice\u202etxt.exe", "invoicetxt.exe", "invoicetxt.exe"),
        ("x/\u2067ab\u2069\u200f\u061c.pdf", "ab.pdf", "ab.pdf"),
        ("x/t\u0085ab\tline\u2028.txt", "tabline.txt", "tabline.txt"),
        ("x/\u202e\u200e", "download", "download"),
    ],
    ids=["plain", "quotes", "unicode", "header-injection", "bidi", "isolates", "c1-sep", "only"],
)
def test_content_disposition(key: str, fallback: str, star: str) -> None:
    value = _http.content_disposition(key)
    assert value == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{star}"
    assert "\r" not in value and "\n" not in value


def test_content_type_guesses_only_over_generic_types() -> None:
    assert _http.content_type("a/report.csv", "binary/octet-stream") == "text/csv"
    assert _http.content_type("a/pr.data.0.Current", None) == "application/octet-stream"
    assert _http.content_type("a/x.txt", "application/json") == "application/json"


def test_exposure_warning() -> None:
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None and "all interfaces" in warning and "--token auto" in warning
    with_token = exposure_warning("::", "s3cret")
    assert with_token is not None and "all interfaces" in with_token and "--token" not in with_token
    assert "192.0.2.7" in (exposure_warning("192.0.2.7", None) or "")


# -- pure: listing, sorting, rendering -----------------------------------------------------------


def sample_listing() -> Any:
    objects = [
        info("pr/b.txt", 300, 1),
        info("pr/A.txt", 20, 3),
        info("pr/c.txt", 1000, 2),
        info("pr/", 0),  # a folder marker object: not a file of its own folder
        info("pr/" + LEGACY_STATE_NAME, 5),
    ] + [info("pr/" + name, 7) for name in HOSTILE.values()]
    return build_listing("bkt", "pr/", "", objects, ["pr/sub/", "pr/<x>/", "other/"], generated=T0)


def test_build_listing_hides_every_reserved_key() -> None:
    objects = [
        info(state_key("pr/")),
        info(lock_key("pr/")),
        info(LEGACY_STATE_NAME),
        info("a.txt"),
        info(".rearcquest-notes.txt"),  # only the reserved folder and the legacy name are rq's
    ]
    prefixes = [RESERVED_PREFIX, "pr/", ".rearcquest2/"]
    listing = build_listing("bkt", "", "", objects, prefixes, generated=T0)
    assert [f.name for f in listing.files] == [".rearcquest-notes.txt", "a.txt"]
    assert [f.name for f in listing.folders] == [".rearcquest2/", "pr/"]


def test_build_listing_sorts_and_hides_bookkeeping() -> None:
    listing = sample_listing()
    assert [f.name for f in listing.folders] == ["<x>/", "sub/"]
    names = [f.name for f in listing.files]
    assert names[:3] == sorted(names[:3], key=str.casefold)
    assert "" not in names and LEGACY_STATE_NAME not in names
    assert len(names) == 3 + len(HOSTILE)
    assert listing.files[0].key == "pr/" + listing.files[0].name


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("name", "asc", ["A.txt", "b.txt", "c.txt"]),
        ("name", "desc", ["c.txt", "b.txt", "A.txt"]),
        ("size", "asc", ["A.txt", "b.txt", "c.txt"]),
        ("size", "desc", ["c.txt", "b.txt", "A.txt"]),
        ("modified", "desc", ["A.txt", "c.txt", "b.txt"]),
    ],
    ids=["name", "name-desc", "size", "size-desc", "newest-first"],
)
def test_sort_files(sort: str, order: str, expected: list[str]) -> None:
    listing = build_listing(
        "bkt", "", "", [info("b.txt", 300, 1), info("A.txt", 20, 3), info("c.txt", 1000, 2)], []
    )
    view = View.from_query(sort, order, None)
    assert [f.name for f in sort_files(listing.files, view)] == expected


def test_view_from_query_falls_back_on_bad_values() -> None:
    view = View.from_query("evil", "sideways", "  q  ")
    assert (view.sort, view.order, view.q) == ("name", "asc", "q")
    assert View.from_query("size", None, None).order == "desc"
    assert len(View.from_query(None, None, "x" * 500).q) == 200
    assert View("size", "desc", "a&b").query(order="asc") == "?sort=size&order=asc&q=a%26b"


def test_render_page_escapes_every_hostile_name() -> None:
    listing = sample_listing()
    page = render_page(listing, View(), href=lambda p: href_path(p), json_href="?format=json")
    doc = parse(page)
    # The only script is the page's own; no tag carries an event handler.
    assert [t for t, _ in doc.tags].count("script") == 1
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]
    assert not [t for t, _ in doc.tags if t == "img"]
    rows = files(page)
    for name in HOSTILE.values():
        href = rows[name]
        assert href is not None and href.startswith("/") and not href.startswith("//")
        assert unquote(href[1:]) == name
    assert ">invoice\u202etxt.exe<" not in page  # shown as a visible escape, not obeyed
    assert '>invoice<span class="esc">\\u202e</span>txt.exe<' in page


def test_render_page_filter_marks_rows_hidden_without_javascript() -> None:
    page = render_page(sample_listing(), View(q="TXT"), href=href_path)
    rows = parse(page).rows
    hidden = {r["name"] for r in rows if "hidden" in r}
    shown = {r["name"] for r in rows if "hidden" not in r}
    assert {"A.txt", "b.txt", "c.txt", HOSTILE["script"]} <= shown
    assert {"sub/", HOSTILE["img"], HOSTILE["colon"]} <= hidden
    assert "showing " in page


def test_render_page_sort_links_and_aria() -> None:
    page = render_page(sample_listing(), View("size", "desc"), href=href_path)
    heads = {a.get("data-key"): a for t, a in parse(page).tags if t == "th"}
    assert heads["size"]["aria-sort"] == "descending"
    assert "aria-sort" not in heads["name"]
    links = [
        a["href"]
        for t, a in parse(page).tags
        if t == "a" and (a.get("href") or "").startswith("?sort")
    ]
    assert "?sort=size&order=asc" in links and "?sort=name&order=asc" in links
    names = [r["name"] for r in parse(page).rows if r["class"] == "file"]
    assert names.index("c.txt") < names.index("b.txt") < names.index("A.txt")


def test_render_page_without_link_for_unservable_keys() -> None:
    listing = build_listing("bkt", "", "", [info("../escape.txt"), info("ok.txt")], ["../"])
    page = render_page(
        listing, View(), href=lambda p: href_path(p) if _http.is_servable(p) else None
    )
    rows = {r["name"]: r["href"] for r in parse(page).rows}
    assert rows == {"../": None, "../escape.txt": None, "ok.txt": "/ok.txt"}


def test_listing_document_filters_and_sorts() -> None:
    doc = listing_document(sample_listing(), View("size", "desc", "txt"), href=href_path)
    names = [o["name"] for o in doc["objects"]]
    assert names[0] == "c.txt"
    assert all("txt" in n.lower() for n in names)
    assert doc["folders"] == []
    assert doc["objects"][0] == {
        "name": "c.txt",
        "path": "c.txt",
        "key": "pr/c.txt",
        "size": 1000,
        "last_modified": "2026-08-06T08:32:00Z",
        "etag": "epr/c",
        "href": "/c.txt",
    }
    assert doc["count"] == {"folders": 0, "objects": len(names)}
    json.dumps(doc)


def test_page_csp_allows_exactly_the_inline_script_and_style() -> None:
    import base64
    import hashlib

    page = render_page(sample_listing(), View(), href=href_path)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script and style
    for body in (script.group(1), style.group(1)):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in PAGE_CSP
    assert "unsafe-inline" not in PAGE_CSP


# -- the ASGI app, in process (moto) -------------------------------------------------------------


def moto_store(endpoint: str, bucket: str | None = None) -> ObjectStore:
    """A fresh bucket on moto's server (explicit keys: module fixtures run before the env one)."""
    client = make_s3_client(endpoint_url=endpoint, access_key=("testing", "testing"))
    store = ObjectStore(client, bucket or "idx-" + uuid.uuid4().hex[:12])
    store.create_bucket()
    return store


def load(store: ObjectStore) -> ObjectStore:
    """A real BLS release under pr/, hostile names, a sub-folder, bookkeeping and neighbours."""
    put_release(store)
    for name in HOSTILE.values():
        store.put_bytes("pr/hostile/" + name, name.encode())
    store.put_bytes("pr/sub/deep.txt", b"deep")
    store.put_bytes("pr/" + LONG_KEY, b"long")
    store.put_bytes("pr/empty.bin", b"")
    store.put_bytes("pr/" + LEGACY_STATE_NAME, b"{}")
    store.put_bytes(state_key("pr/"), b"{}")
    store.put_bytes(lock_key("pr/"), b"{}")
    store.put_bytes("secret.txt", b"not under the prefix")
    store.put_bytes("pr-other/x.txt", b"a neighbouring prefix")
    return store


@pytest.fixture(scope="module")
def loaded(moto_server: str) -> ObjectStore:
    """One loaded bucket shared by the read-only tests of this module."""
    return load(moto_store(moto_server, "idx-shared-" + uuid.uuid4().hex[:8]))


@pytest.fixture
def fresh(moto_server: str) -> ObjectStore:
    """A loaded bucket of its own, for tests that write."""
    return load(moto_store(moto_server))


@pytest.fixture
def app(loaded: ObjectStore) -> Any:
    return create_app(loaded, prefix="pr/")


def test_listing_page(app: Any, loaded: ObjectStore) -> None:
    r = asgi(app, "GET", "/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-encoding"] == "gzip"  # httpx decodes it
    assert r.headers["content-security-policy"] == PAGE_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in r.headers
    rows = parse(r.text).rows
    assert {r["name"] for r in rows if r["class"] == "folder"} == {
        "dddd" * 50 + "/",
        "hostile/",
        "sub/",
    }
    names = files(r.text)
    assert names["pr.data.0.Current"] == "/pr.data.0.Current"
    assert LEGACY_STATE_NAME not in names and "secret.txt" not in names
    assert 'title="1,613,575 bytes">1.6 MB<' in r.text


def test_listing_of_a_folder_has_breadcrumbs_and_parent(app: Any) -> None:
    r = asgi(app, "GET", "/sub/")
    assert r.status_code == 200
    rows = parse(r.text).rows
    assert rows[0]["class"] == "up" and rows[0]["href"] == "/"
    assert files(r.text) == {"deep.txt": "/sub/deep.txt"}
    assert '<span aria-current="page">sub/</span>' in r.text


def test_listing_hostile_names_link_to_their_bytes(app: Any) -> None:
    page = asgi(app, "GET", "/hostile/").text
    assert [t for t, _ in parse(page).tags].count("script") == 1
    links = files(page)
    assert set(links) == set(HOSTILE.values())
    for name, href in links.items():
        assert href is not None
        r = asgi(app, "GET", href)
        assert r.status_code == 200, name
        assert r.content == name.encode()


def test_very_long_key(app: Any) -> None:
    folder, _, name = LONG_KEY.rpartition("/")
    page = asgi(app, "GET", href_path(folder + "/")).text
    assert files(page) == {name: href_path(LONG_KEY)}
    r = asgi(app, "GET", href_path(LONG_KEY))
    assert r.status_code == 200 and r.content == b"long"
    assert len(("pr/" + LONG_KEY).encode()) > 880


def test_json_listing(app: Any) -> None:
    r = asgi(app, "GET", "/?format=json&sort=size&order=desc")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["prefix"] == "pr/" and doc["bucket"].startswith("idx-shared-")
    assert doc["objects"][0]["name"] == "pr.data.1.AllData"
    assert [f["path"] for f in doc["folders"]] == ["d" * 200 + "/", "hostile/", "sub/"]
    assert doc["count"]["objects"] == 13  # the release and empty.bin; not the state object


def test_folder_without_slash_redirects_relative(app: Any) -> None:
    r = asgi(app, "GET", "/sub?sort=size")
    assert r.status_code == 302
    assert r.headers["location"] == "./sub/?sort=size"


@pytest.mark.parametrize(
    "url",
    [
        "/nope/",
        "/nope.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/%2E%2E/pr-other/x.txt",
        "/%2e%2e%2f%2e%2e%2fother-bucket/x",
        "/%00",
        "/a%5c..%5csecret.txt",
    ],
    ids=[
        "folder",
        "object",
        "dotdot",
        "encoded-dotdot",
        "encoded-slash",
        "deep",
        "upper-case",
        "other-bucket",
        "nul",
        "backslash",
    ],
)
def test_nothing_outside_the_prefix_is_reachable(app: Any, url: str) -> None:
    r = asgi(app, "GET", url)
    assert r.status_code == 404
    assert b"not under the prefix" not in r.content and b"neighbouring" not in r.content
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "url",
    [
        "/.rearcquest/",
        "/.rearcquest",
        "/.rearcquest/state/pr.json",
        "/.rearcquest/locks/pr.json",
        "/pr/" + LEGACY_STATE_NAME,
        "/pr/.rearcquest-sync-state.json?format=json",
    ],
    ids=["folder", "folder-no-slash", "state", "lock", "legacy-state", "legacy-json"],
)
def test_reserved_objects_are_neither_listed_nor_served(loaded: ObjectStore, url: str) -> None:
    whole = create_app(loaded)
    assert asgi(whole, "GET", url).status_code == 404
    page = asgi(whole, "GET", "/")
    folders = {r["name"] for r in parse(page.text).rows if r["class"] == "folder"}
    assert "pr/" in folders and ".rearcquest/" not in folders
    assert LEGACY_STATE_NAME not in asgi(whole, "GET", "/pr/").text


def test_absolute_url_in_path_stays_a_key(app: Any) -> None:
    r = asgi(app, "GET", "//evil.example/x", follow_redirects=False)
    assert r.status_code == 404
    assert "location" not in r.headers


def test_download_headers(app: Any, loaded: ObjectStore) -> None:
    head = loaded.head("pr/pr.series")
    assert head is not None
    r = asgi(app, "GET", "/pr.series")
    assert r.status_code == 200
    assert r.content == (BLS_RELEASES / VINTAGE / "pr.series").read_bytes()
    assert r.headers["content-length"] == str(head.size)
    assert r.headers["etag"] == f'"{head.etag}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"].startswith('attachment; filename="pr.series"')
    assert r.headers["content-type"] == "application/octet-stream"
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["last-modified"].endswith("GMT")
    assert "content-encoding" not in r.headers


def test_head_has_headers_and_no_body(app: Any, loaded: ObjectStore) -> None:
    r = asgi(app, "HEAD", "/pr.data.0.Current")
    assert r.status_code == 200
    assert r.headers["content-length"] == "1613575"
    assert r.content == b""


@pytest.mark.parametrize(
    ("range_header", "status", "expected"),
    [
        ("bytes=0-9", 206, (0, 9)),
        ("bytes=-5", 206, (97, 101)),
        ("bytes=100-", 206, (100, 101)),
        ("bytes=50-5000", 206, (50, 101)),
        ("bytes=102-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,3-4", 200, None),
        ("bytes=5-1", 200, None),
    ],
    ids=["head", "suffix", "tail", "clamped", "past-end", "empty-suffix", "multi", "reversed"],
)
def test_ranges(
    app: Any, loaded: ObjectStore, range_header: str, status: int, expected: tuple[int, int] | None
) -> None:
    body = loaded.get_bytes("pr/pr.class")
    assert len(body) == 102
    r = asgi(app, "GET", "/pr.class", headers={"Range": range_header})
    assert r.status_code == status
    if status == 206:
        assert expected is not None
        start, end = expected
        assert r.content == body[start : end + 1]
        assert r.headers["content-range"] == f"bytes {start}-{end}/102"
        assert r.headers["content-length"] == str(end - start + 1)
    elif status == 416:
        assert r.headers["content-range"] == "bytes */102"
        assert r.content == b""
    else:
        assert r.content == body


def test_range_on_empty_object_sends_it_whole(app: Any) -> None:
    r = asgi(app, "GET", "/empty.bin", headers={"Range": "bytes=0-"})
    assert r.status_code == 200
    assert r.headers["content-length"] == "0"


def test_if_range(app: Any, loaded: ObjectStore) -> None:
    head = loaded.head("pr/pr.class")
    assert head is not None
    ok = asgi(app, "GET", "/pr.class", headers={"Range": "bytes=0-1", "If-Range": f'"{head.etag}"'})
    assert ok.status_code == 206
    stale = asgi(app, "GET", "/pr.class", headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert stale.status_code == 200 and len(stale.content) == 102


def test_conditional_requests(app: Any, loaded: ObjectStore) -> None:
    first = asgi(app, "GET", "/pr.class")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    r = asgi(app, "GET", "/pr.class", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = asgi(app, "HEAD", "/pr.class", headers={"If-None-Match": f"W/{etag}"})
    assert r.status_code == 304
    r = asgi(app, "GET", "/pr.class", headers={"If-Modified-Since": modified})
    assert r.status_code == 304
    r = asgi(
        app, "GET", "/pr.class", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert r.status_code == 200 and len(r.content) == 102
    r = asgi(
        app, "GET", "/pr.class", headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
    )
    assert r.status_code == 200
    r = asgi(app, "GET", "/pr.class", headers={"If-Match": '"other"'})
    assert r.status_code == 412


def test_post_and_other_methods_are_refused(app: Any) -> None:
    assert asgi(app, "POST", "/pr.class").status_code == 405
    assert asgi(app, "PUT", "/pr.class", content=b"x").status_code == 405
    assert asgi(app, "DELETE", "/pr.class").status_code == 405


def test_host_check_refuses_foreign_names(loaded: ObjectStore) -> None:
    app = create_app(loaded, prefix="pr/", allowed_hosts={"127.0.0.1", "localhost"})
    assert asgi(app, "GET", "/").status_code == 200
    r = asgi(app, "GET", "/", headers={"Host": "rebind.attacker.example:8000"})
    assert r.status_code == 400
    assert asgi(app, "GET", "/", headers={"Host": "localhost:8000"}).status_code == 200


def test_storage_errors_become_502_pages(moto_server: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    app = create_app(ObjectStore(client, "no-such-bucket-" + uuid.uuid4().hex[:8]))
    r = asgi(app, "GET", "/")
    assert r.status_code == 502
    assert "Traceback" not in r.text and "botocore" not in r.text
    assert asgi(app, "GET", "/?format=json").json()["status"] == 502


def test_unreachable_endpoint_becomes_502() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    app = create_app(ObjectStore(client, "bucket"))
    r = asgi(app, "GET", "/some/file.txt")
    assert r.status_code == 502
    assert "127.0.0.1" not in r.text  # the endpoint is not shown to visitors


# -- caches --------------------------------------------------------------------------------------


def test_listing_cache_lists_once_for_concurrent_requests() -> None:
    from rearcquest.index._app import _ListingCache

    cache = _ListingCache(ttl=3600)
    calls: list[str] = []
    gate = threading.Event()

    def load() -> Any:
        calls.append("listed")
        gate.wait(10)
        return [], [], T0

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, "pr/", load) for _ in range(8)]
        gate.set()
        results = [f.result() for f in futures]
    assert calls == ["listed"]
    assert all(r is results[0] for r in results)
    cache.get("other/", load)
    assert len(calls) == 2


def test_listing_cache_off_and_bounded() -> None:
    from rearcquest.index._app import _ListingCache

    calls: list[int] = []

    def load() -> Any:
        calls.append(1)
        return [], [], T0

    off = _ListingCache(ttl=0)
    off.get("a/", load)
    off.get("a/", load)
    assert len(calls) == 2
    small = _ListingCache(ttl=3600, max_entries=2)
    for prefix in ("a/", "b/", "c/", "a/"):
        small.get(prefix, load)
    assert len(calls) == 2 + 4  # a/ was dropped when c/ came in


def test_page_cache_keeps_within_its_budget() -> None:
    from rearcquest.index._app import _PageCache

    cache = _PageCache(max_bytes=10)
    cache.put("a", (b"12345", False))
    cache.put("b", (b"12345", True))
    assert cache.get("a") == (b"12345", False)  # a is now the most recently used
    cache.put("c", (b"123", False))
    assert cache.get("b") is None and cache.get("a") is not None
    cache.put("huge", (b"x" * 11, False))
    assert cache.get("huge") is None


def test_cached_listing_and_fresh_listing(fresh: ObjectStore) -> None:
    cached = create_app(fresh, prefix="pr/", cache_seconds=3600)
    live = create_app(fresh, prefix="pr/", cache_seconds=0)
    assert "new.txt" not in files(asgi(cached, "GET", "/").text)
    assert "new.txt" not in files(asgi(live, "GET", "/").text)
    fresh.put_bytes("pr/new.txt", b"new")
    assert "new.txt" not in files(asgi(cached, "GET", "/").text)
    assert "new.txt" in files(asgi(live, "GET", "/").text)
    # Downloads never come from a cache.
    assert asgi(cached, "GET", "/new.txt").content == b"new"


class _BrokenStore(ObjectStore):
    def list_page(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not an S3 error")


def test_unexpected_errors_are_a_plain_500_page(loaded: ObjectStore) -> None:
    app = create_app(_BrokenStore(loaded.client, loaded.bucket), cache_seconds=0)
    r = asgi(app, "GET", "/", raise_app_exceptions=False)
    assert r.status_code == 500
    assert "Traceback" not in r.text and "a bug" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


# -- token ---------------------------------------------------------------------------------------


@pytest.fixture
def locked(loaded: ObjectStore) -> Any:
    return create_app(loaded, prefix="pr/", token="s3cret-token-in-tests")


def test_token_required_everywhere(locked: Any) -> None:
    for url in ("/", "/pr.class", "/?format=json", "/nope"):
        r = asgi(locked, "GET", url)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert b"Fourth" not in r.content and "pr.class" not in r.text


def test_bearer_token(locked: Any) -> None:
    r = asgi(locked, "GET", "/pr.class", headers={"Authorization": "Bearer s3cret-token-in-tests"})
    assert r.status_code == 200 and len(r.content) == 102
    wrong = asgi(
        locked,
        "GET",
        "/pr.class",
        headers={"Authorization": "Bearer s3cret-token-in-tests-in-tests-X"},
    )
    assert wrong.status_code == 401


def test_token_link_sets_cookie_and_drops_the_token(locked: Any) -> None:
    r = asgi(locked, "GET", "/sub/?sort=size&token=s3cret-token-in-tests")
    assert r.status_code == 303
    assert r.headers["location"] == "/sub/?sort=size"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "s3cret-token-in-tests" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    ok = asgi(locked, "GET", "/sub/", client_cookies={"rq_index_auth": value})
    assert ok.status_code == 200 and "deep.txt" in ok.text
    bad = asgi(locked, "GET", "/sub/", client_cookies={"rq_index_auth": "s3cret-token-in-tests"})
    assert bad.status_code == 401


def test_login_form_post(locked: Any) -> None:
    r = asgi(locked, "POST", "/", data={"token": "s3cret-token-in-tests"})
    assert r.status_code == 303 and "rq_index_auth=" in r.headers["set-cookie"]
    wrong = asgi(locked, "POST", "/", data={"token": "guess"})
    assert wrong.status_code == 401 and "not right" in wrong.text


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


def test_throttle_delays_double_after_five_failures_and_forget() -> None:
    now = [1000.0]
    throttle = _Throttle(clock=lambda: now[0])
    delays = [throttle.failed("192.0.2.1") for _ in range(10)]
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 10]  # capped at 10 s
    assert throttle.failed("192.0.2.2") == 0  # another client starts afresh
    throttle.succeeded("192.0.2.1")
    assert throttle.failures("192.0.2.1") == 0
    for _ in range(6):
        throttle.failed("192.0.2.1")
    now[0] += _Throttle.FORGET + 1
    assert throttle.failed("192.0.2.1") == 0 and throttle.failures("192.0.2.1") == 1


def test_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = _Throttle()
    for i in range(_Throttle.MAX_CLIENTS + 50):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.failures("10.0.0.0") == 0  # the oldest were forgotten
    assert (
        throttle.failures(
            f"10.0.{(_Throttle.MAX_CLIENTS + 49) // 256}.{(_Throttle.MAX_CLIENTS + 49) % 256}"
        )
        == 1
    )


def test_wrong_tokens_are_slowed_per_client(
    loaded: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_app, "_sleep", no_wait)
    locked = create_app(loaded, prefix="pr/", token="s3cret-token-in-tests")
    attacker, other = ("192.0.2.66", 4000), ("192.0.2.7", 4001)
    guesses = [
        ("GET", "/?token=guess-1", {}),
        ("POST", "/", {"data": {"token": "guess-2"}}),
        ("GET", "/pr.class", {"headers": {"Authorization": "Bearer guess-3"}}),
        ("GET", "/?token=guess-4", {}),
        ("GET", "/?token=guess-5", {}),
    ]
    for method, url, kwargs in guesses:
        assert asgi(locked, method, url, peer=attacker, **kwargs).status_code == 401
    assert slept == []  # five free failures
    for i in range(3):
        r = asgi(locked, "GET", f"/?token=more-{i}", peer=attacker)
        assert r.status_code == 401 and "not right" in r.text
    assert slept == [1, 2, 4]
    # Another client is not slowed, and asking without a token is no failure.
    assert asgi(locked, "GET", "/?token=typo", peer=other).status_code == 401
    assert asgi(locked, "GET", "/", peer=attacker).status_code == 401
    assert slept == [1, 2, 4]
    # The right token still works, and clears the client's failures.
    ok = asgi(locked, "GET", "/?token=s3cret-token-in-tests", peer=attacker)
    assert ok.status_code == 303
    asgi(locked, "GET", "/?token=again", peer=attacker)
    assert slept == [1, 2, 4]


def test_login_redirect_never_leaves_the_site(locked: Any) -> None:
    r = asgi(locked, "GET", "//evil.example/x?token=s3cret-token-in-tests")
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/") and not location.startswith("//")
    assert urlsplit(urljoin("http://127.0.0.1/", location)).hostname == "127.0.0.1"


# -- the static page -----------------------------------------------------------------------------


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


# -- the running server, against moto's server and SeaweedFS -------------------------------------


@dataclass
class Backend:
    name: str
    store: ObjectStore


@pytest.fixture(params=["moto", "seaweedfs"])
def backend(request: pytest.FixtureRequest, moto_server: str, seaweedfs: str) -> Backend:
    # Both servers are asked for by name, so they start (once) before the environment fixture
    # sets AWS_* variables, which `weed` would read as credentials to enforce.
    endpoint = moto_server if request.param == "moto" else seaweedfs
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), "idx-" + uuid.uuid4().hex[:12])
    store.create_bucket()
    return Backend(request.param, store)


@pytest.fixture
def served(backend: Backend) -> Iterator[tuple[str, ObjectStore, dict[str, bytes]]]:
    data = put_release(backend.store)
    for name in HOSTILE.values():
        backend.store.put_bytes("pr/hostile/" + name, name.encode())
        data["pr/hostile/" + name] = name.encode()
    backend.store.put_bytes("secret.txt", b"not under the prefix")
    with start_server(backend.store, prefix="pr/") as server:
        yield server.url, backend.store, data


@pytest.mark.integration
def test_server_lists_and_streams_every_object(
    served: tuple[str, ObjectStore, dict[str, bytes]],
) -> None:
    url, _, data = served
    with httpx.Client(base_url=url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == PAGE_CSP
        links = files(page.text)
        hostile = files(client.get("/hostile/").text)
        assert set(hostile) == set(HOSTILE.values())
        for key, body in data.items():
            name = key.removeprefix("pr/")
            href = (
                hostile[name.removeprefix("hostile/")]
                if name.startswith("hostile/")
                else links[name]
            )
            assert href is not None
            with client.stream("GET", href) as r:
                assert r.status_code == 200, key
                assert r.headers["content-length"] == str(len(body))
                assert b"".join(r.iter_bytes()) == body
        for bad in ("/%2e%2e/secret.txt", "/..%2fsecret.txt", "/../secret.txt"):
            r = client.get(bad)
            assert r.status_code == 404 and b"not under" not in r.content


@pytest.mark.integration
def test_server_ranges_and_validators(served: tuple[str, ObjectStore, dict[str, bytes]]) -> None:
    url, _, data = served
    body = data["pr/pr.data.0.Current"]
    size = len(body)
    with httpx.Client(base_url=url) as client:
        cases = {
            "bytes=0-0": body[:1],
            f"bytes={size - 1}-": body[-1:],
            "bytes=-1": body[-1:],
            f"bytes=-{size + 10}": body,
            "bytes=1000000-1065535": body[1_000_000:1_065_536],
            f"bytes=1600000-{size * 2}": body[1_600_000:],
        }
        for header, expected in cases.items():
            r = client.get("/pr.data.0.Current", headers={"Range": header})
            assert r.status_code == 206, header
            assert r.content == expected, header
            assert r.headers["content-length"] == str(len(expected))
        r = client.get("/pr.data.0.Current", headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        head = client.head("/pr.data.0.Current")
        assert head.status_code == 200 and head.headers["content-length"] == str(size)
        etag = head.headers["etag"]
        assert client.get("/pr.data.0.Current", headers={"If-None-Match": etag}).status_code == 304
        modified = head.headers["last-modified"]
        assert (
            client.get("/pr.data.0.Current", headers={"If-Modified-Since": modified}).status_code
            == 304
        )


class _EndlessBody:
    """An object body that never ends, and tells whether it was closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def read(self, size: int) -> bytes:
        return b"x" * size

    def close(self) -> None:
        self.closed.set()


class _EndlessStore(ObjectStore):
    """A real bucket whose object `endless.bin` claims 1 TB and never runs out of bytes."""

    body: _EndlessBody

    def head(self, key: str) -> ObjectInfo | None:
        return ObjectInfo(key, 10**12, "endless", T0) if key == "endless.bin" else None

    def open(self, key: str, *, byte_range: tuple[int, int] | None = None) -> ObjectStream:
        self.body = _EndlessBody()
        return ObjectStream(ObjectInfo(key, 10**12, "endless", T0), None, self.body)


@pytest.mark.integration
def test_client_disconnect_releases_the_s3_stream(moto_server: str) -> None:
    base = moto_store(moto_server)
    store = _EndlessStore(base.client, base.bucket)
    with start_server(store) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/endless.bin") as r:
            assert r.headers["content-length"] == str(10**12)
            got = 0
            for chunk in r.iter_raw():
                got += len(chunk)
                if got > 1_000_000:
                    break
        # Without the disconnect watch the server would read this body for ever.
        assert store.body.closed.wait(20)


class _ManyObjects(BaseHTTPRequestHandler):
    """Just enough of S3 over HTTP for botocore: HeadBucket, ListObjectsV2 (paged as S3 pages:
    keys and common prefixes in one order, MaxKeys of both together), HeadObject, GetObject."""

    entries: ClassVar[list[str]] = [f"many/{i:05d}.txt" for i in range(10_000)] + [
        "many/sub/last.txt"
    ]
    lists: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", headers.get("Content_Length", str(len(body))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = unquote(url.path).split("/", 2)
        if len(parts) == 2 or not parts[2]:
            if self.command == "HEAD":
                self._send(200)
                return
            query = dict(parse_qsl(url.query))
            type(self).lists.append(query)
            self._send(200, self._listing(parts[1], query), Content_Type="application/xml")
            return
        key = parts[2]
        if key not in self.entries:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        self._send(
            200,
            key.encode(),
            ETag=f'"{hashlib.md5(key.encode()).hexdigest()}"',
            Last_Modified="Thu, 06 Aug 2026 08:30:00 GMT",
            Content_Type="text/plain",
        )

    def _listing(self, bucket: str, query: dict[str, str]) -> bytes:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        size = min(int(query.get("max-keys", "1000")), 1000)
        grouped: list[tuple[str, bool]] = []
        for key in self.entries:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter)[0] + delimiter
                if not grouped or grouped[-1] != (folder, True):
                    grouped.append((folder, True))
            else:
                grouped.append((key, False))
        start = int(query.get("continuation-token", "0"))
        page = grouped[start : start + size]
        truncated = start + size < len(grouped)
        xml = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><MaxKeys>{size}</MaxKeys>",
            f"<KeyCount>{len(page)}</KeyCount><IsTruncated>{str(truncated).lower()}</IsTruncated>",
        ]
        if truncated:
            xml.append(f"<NextContinuationToken>{start + size}</NextContinuationToken>")
        for name, is_folder in page:
            if is_folder:
                xml.append(f"<CommonPrefixes><Prefix>{name}</Prefix></CommonPrefixes>")
            else:
                xml.append(
                    f"<Contents><Key>{name}</Key><LastModified>2026-08-06T08:30:00.000Z"
                    f"</LastModified><ETag>&quot;e&quot;</ETag><Size>{len(name)}</Size></Contents>"
                )
        xml.append("</ListBucketResult>")
        return "".join(xml).encode()


@pytest.fixture
def many_objects() -> Iterator[ObjectStore]:
    """A bucket of 10,001 objects served over HTTP on 127.0.0.1 by a minimal S3 listing server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ManyObjects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ManyObjects.lists.clear()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        client = make_s3_client(endpoint_url=endpoint, access_key=("testing", "testing"))
        yield ObjectStore(client, "many-bucket")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _next_link(page: str) -> str | None:
    match = re.search(r'<a id="next" rel="next" href="([^"]+)"', page)
    return html.unescape(match.group(1)) if match else None


@pytest.mark.integration
def test_server_shows_ten_thousand_objects_a_page_at_a_time(many_objects: ObjectStore) -> None:
    with (
        start_server(many_objects) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        first = client.get("/many/")
        assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
        lists = [q for q in _ManyObjects.lists if q.get("prefix") == "many/"]
        # The first page after one ListObjectsV2 call, however big the folder.
        assert len(lists) == 1 and "continuation-token" not in lists[0]
        links = files(first.text)
        assert len(links) == 1000 and links["00999.txt"] == "/many/00999.txt"
        assert "this page: " in first.text and 'id="first"' not in first.text
        # Follow "next" to the end: every object once, one listing call a page.
        names: list[str] = []
        folders: list[str] = []
        page, url = first.text, str(first.url)
        for _ in range(20):
            rows = parse(page).rows
            names += [r["name"] for r in rows if r["class"] == "file"]
            folders += [r["name"] for r in rows if r["class"] == "folder"]
            link = _next_link(page)
            if link is None:
                break
            url = urljoin(url, link)
            response = client.get(url)
            assert response.status_code == 200
            assert 'id="first" href="?sort=name&amp;order=asc"' in response.text
            page = response.text
        assert names == [f"{i:05d}.txt" for i in range(10_000)]
        assert folders == ["sub/"]  # S3 pages keys and folders in one order: the last page
        assert len([q for q in _ManyObjects.lists if q.get("prefix") == "many/"]) == 11
        # Sorting and the filter apply to the page shown, and keep it.
        second = client.get("/many/?page=1000&sort=size&order=desc&format=json").json()
        assert [o["name"] for o in second["objects"]][:1] == ["01999.txt"]
        assert second["count"]["objects"] == 1000 and second["page"] == "1000"
        filtered = client.get("/many/?q=0999&format=json").json()
        assert [o["name"] for o in filtered["objects"]] == ["00999.txt"]
        # JSON: "next" is the URL of the next page's JSON, null on the last.
        doc = client.get("/many/?format=json").json()
        seen = len(doc["objects"])
        for _ in range(20):
            if doc["next"] is None:
                break
            assert doc["next"].startswith("/many/?") and "format=json" in doc["next"]
            doc = client.get(doc["next"]).json()
            seen += len(doc["objects"])
        assert seen == 10_000 and doc["count"]["folders"] == 1 and doc["next_page"] is None
        assert client.get("/many/09999.txt").content == b"many/09999.txt"


def test_render_page_links_to_the_first_and_next_page() -> None:
    objects = [info(f"pr/{i}.txt") for i in range(3)]
    one = build_listing("bkt", "pr/", "", objects, [], generated=T0)
    assert not one.paged and 'class="pages"' not in render_page(one, View(), href=href_path)
    first = build_listing("bkt", "pr/", "", objects, [], generated=T0, next_page="k/+=&x")
    view = View.from_query("size", "asc", "txt", None)
    page = render_page(first, view, href=href_path)
    assert 'href="?sort=size&amp;order=asc&amp;q=txt&amp;page=k%2F%2B%3D%26x"' in page
    assert 'id="first"' not in page and "this page: " in page
    assert 'name="page"' not in page
    later = build_listing("bkt", "pr/", "", objects, [], generated=T0, page="k/+=&x")
    page = render_page(later, View.from_query(None, None, None, "k/+=&x"), href=href_path)
    assert '<a id="first" href="?sort=name&amp;order=asc">' in page and 'id="next"' not in page
    # The filter form stays on the page shown.
    assert '<input type="hidden" name="page" value="k/+=&amp;x">' in page
    static = render_page(first, View(), href=href_path, mode="static")
    assert 'class="pages"' not in static
    doc = listing_document(first, view, href=href_path)
    assert doc["next"] == "/?sort=size&order=asc&q=txt&page=k%2F%2B%3D%26x&format=json"
    assert doc["next_page"] == "k/+=&x" and doc["page"] is None


@pytest.mark.parametrize("page", ["\x00bad", "x" * 3000], ids=["control", "too-long"])
def test_view_ignores_unusable_page_tokens(page: str) -> None:
    assert View.from_query(None, None, None, page).page == ""


class _StaleTokenStore(ObjectStore):
    def list_page(self, prefix: str = "", **kwargs: Any) -> Any:
        if kwargs.get("token"):
            error = botocore.exceptions.ClientError(
                {"Error": {"Code": "InvalidArgument", "Message": "bad token"}}, "ListObjectsV2"
            )
            raise StorageError(f"listing s3://{self.bucket}/{prefix} failed") from error
        return super().list_page(prefix, **kwargs)


def test_a_page_token_s3_refuses_is_a_400(loaded: ObjectStore) -> None:
    app = create_app(_StaleTokenStore(loaded.client, loaded.bucket), prefix="pr/")
    r = asgi(app, "GET", "/?page=not-a-token")
    assert r.status_code == 400 and "first page" in r.text
    assert asgi(app, "GET", "/?page=not-a-token&format=json").json()["status"] == 400
    assert asgi(app, "GET", "/").status_code == 200


def test_gzip_only_when_accepted(app: Any) -> None:
    r = asgi(app, "GET", "/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers and r.text.startswith("<!doctype html>")
    raw = asgi(app, "GET", "/", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "accept-encoding"


# -- exposed to a network: timeouts, the connection bound ---------------------------------------

# Short limits so the tests do not wait; the generous socket timeouts only bound a broken run.
QUICK = Limits(request_timeout=0.5, keep_alive_timeout=0.5, max_connections=3)


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=20)


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test)."""
    received = b""
    for _ in range(10_000):
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError("the server kept sending")


def _read_head(sock: socket.socket) -> bytes:
    """One response's status line and headers (for HEAD requests, which have no body)."""
    received = b""
    for _ in range(10_000):
        if b"\r\n\r\n" in received:
            return received
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    raise AssertionError("no end of headers")


def _head_request(path: str = "/pr.class", *, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n".encode()


@pytest.fixture
def quick_server(loaded: ObjectStore) -> Iterator[str]:
    with start_server(loaded, prefix="pr/", limits=QUICK) as server:
        yield server.url


def test_half_sent_request_gets_408_and_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers unfinished
        answer = _read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_dribbled_request_is_closed_although_bytes_keep_coming(quick_server: str) -> None:
    # Each byte would cancel uvicorn's keep-alive timer; the request clock keeps running.
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
    with _connect(quick_server) as sock:
        sent = 0
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset: closed while sending
                closed = True
                break
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                closed = True
                break
        assert closed, "the server waited for the whole dribbled request"
        assert sent < len(request)
        assert _read_to_eof(sock).startswith(b"HTTP/1.1 408")


def test_silent_connection_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        assert _read_to_eof(sock) == b""


def test_idle_keep_alive_is_closed(quick_server: str) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(_head_request())
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
        # Kept alive: a second request on the same connection is answered ...
        sock.sendall(_head_request())
        assert _read_head(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        # ... and then, idle, the connection is closed.
        assert _read_to_eof(sock) == b""


def test_connections_beyond_the_bound_get_503(loaded: ObjectStore) -> None:
    limits = Limits(request_timeout=30, keep_alive_timeout=30, max_connections=3)
    with start_server(loaded, prefix="pr/", limits=limits) as server:
        held = [_connect(server.url) for _ in range(3)]
        try:
            for sock in held:  # answered, so surely accepted, and kept open
                sock.sendall(_head_request())
                assert _read_head(sock).startswith(b"HTTP/1.1 200 OK\r\n")
            with _connect(server.url) as extra:
                answer = _read_to_eof(extra)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"retry-after: 1" in answer
            # The connections within the bound still work.
            held[0].sendall(_head_request())
            assert _read_head(held[0]).startswith(b"HTTP/1.1 200 OK\r\n")
            # A freed place is taken again (once the server has seen the close).
            held.pop().close()
            for _ in range(200):
                with _connect(server.url) as again:
                    again.sendall(_head_request(close=True))
                    answer = _read_to_eof(again)
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                time.sleep(0.05)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        finally:
            for sock in held:
                sock.close()


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


def test_the_default_limits_are_those_documented(loaded: ObjectStore) -> None:
    from rearcquest.index._protocol import LimitedH11Protocol
    from rearcquest.index._server import _server

    server = _server(
        loaded, prefix="", host="0.0.0.0", token=None, cache_seconds=5, limits=Limits()
    )
    protocol = server.config.http
    assert isinstance(protocol, type) and issubclass(protocol, LimitedH11Protocol)
    assert (protocol.request_timeout, protocol.max_connections) == (10.0, 256)
    assert server.config.timeout_keep_alive == 5
    assert server.config.limit_concurrency == 257  # running requests, one above the connections
