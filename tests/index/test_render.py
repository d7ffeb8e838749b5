"""``rearcquest.index._render``: names, links and sizes, the listing, sorting and paging, the
HTML page and its CSP (pure, no S3)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from rearcquest.index import _http
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

from .helpers import HOSTILE, T0, files, info, parse


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

    page = render_page(sample_listing(), View(), href=href_path)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script and style
    for body in (script.group(1), style.group(1)):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in PAGE_CSP
    assert "unsafe-inline" not in PAGE_CSP


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
