"""The directory-listing parser: the real IIS format, Apache/nginx pages, hostile links."""

from __future__ import annotations

from pathlib import Path

import pytest

from rearcquest.errors import ListingError
from rearcquest.sources.bls import parse_listing

BASE = "https://download.bls.gov/pub/time.series/pr/"
VINTAGES = ["2024-06-06", "2025-06-05", "2025-09-04", "2026-08-06"]


@pytest.mark.parametrize("vintage", VINTAGES)
def test_real_iis_listing_names_every_file_with_exact_size(shared_data: Path, vintage: str) -> None:
    folder = shared_data / "bls" / "pr" / vintage
    files = parse_listing((folder / "listing.html").read_text(), BASE)
    on_disk = {p.name: p.stat().st_size for p in folder.iterdir() if p.name != "listing.html"}
    assert {f.name: f.size for f in files} == on_disk
    assert all(f.url == BASE + f.name for f in files)
    assert all(f.modified is not None and len(f.modified) == 16 for f in files)


def test_iis_dates_are_normalised_to_24h(shared_data: Path) -> None:
    page = (shared_data / "bls" / "pr" / "2026-08-06" / "listing.html").read_text()
    by_name = {f.name: f for f in parse_listing(page, BASE)}
    assert by_name["pr.class"].modified == "2026-08-06 08:30"
    assert by_name["pr.contacts"].modified == "2022-09-13 16:52"
    assert by_name["pr.period"].modified == "1994-01-07 15:53"


APACHE = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html><head><title>Index of /pub/time.series/pr</title></head><body>
<h1>Index of /pub/time.series/pr</h1>
<table>
<tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th></tr>
<tr><th colspan="3"><hr></th></tr>
<tr><td><a href="/pub/time.series/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td></tr>
<tr><td><a href="pr.class">pr.class</a></td><td align="right">2024-06-06 08:30  </td><td align="right">102 </td></tr>
<tr><td><a href="pr.data.0.Current">pr.data.0.Current</a></td><td align="right">2024-06-06 08:30  </td><td align="right">1.4M</td></tr>
<tr><td><a href="old/">old/</a></td><td align="right">2020-01-01 00:00  </td><td align="right">  - </td></tr>
<tr><td><a href="my%20file.txt">my file.txt</a></td><td align="right">2023-02-03 14:05  </td><td align="right">7 </td></tr>
</table></body></html>
"""

NGINX = """<html>
<head><title>Index of /pub/time.series/pr/</title></head>
<body>
<h1>Index of /pub/time.series/pr/</h1><hr><pre><a href="../">../</a>
<a href="archive/">archive/</a>                                           01-Jan-2020 00:00                   -
<a href="pr.class">pr.class</a>                                           06-Jun-2024 08:30                 102
<a href="pr.series">pr.series</a>                                          06-Jun-2024 08:30               15657
</pre><hr></body>
</html>
"""


def test_apache_autoindex() -> None:
    files = {f.name: f for f in parse_listing(APACHE, BASE)}
    assert sorted(files) == ["my file.txt", "pr.class", "pr.data.0.Current"]
    assert files["pr.class"].size == 102
    assert files["pr.class"].modified == "2024-06-06 08:30"
    # Apache rounds sizes ("1.4M"): not exact, so the size is unknown rather than wrong.
    assert files["pr.data.0.Current"].size is None
    assert files["my file.txt"].url == BASE + "my%20file.txt"


def test_nginx_autoindex() -> None:
    files = {f.name: f for f in parse_listing(NGINX, BASE)}
    assert sorted(files) == ["pr.class", "pr.series"]
    assert files["pr.series"].size == 15657
    assert files["pr.series"].modified == "2024-06-06 08:30"


HOSTILE = [
    ('<A HREF="https://evil.example/pub/time.series/pr/x.txt">x.txt</A>', "other host"),
    ('<A HREF="/pub/time.series/pr/x.txt?download=1">x.txt</A>', "query string"),
    ('<A HREF="/pub/time.series/pr/x.txt#top">x.txt</A>', "fragment"),
    ('<A HREF="/pub/time.series/">[To Parent Directory]</A>', "parent"),
    ('<A HREF="../../etc/passwd">passwd</A>', "dot-dot"),
    ('<A HREF="/pub/time.series/pr/%2e%2e/ce.txt">ce.txt</A>', "encoded dot-dot"),
    ('<A HREF="/pub/time.series/pr/sub/x.txt">x.txt</A>', "deeper path"),
    ('<A HREF="/pub/time.series/pr/sub%2Fx.txt">x.txt</A>', "encoded slash"),
    ('<A HREF="javascript:alert(1)">js</A>', "javascript"),
    ('<A HREF="mailto:a@b.c">mail</A>', "mailto"),
    ('<A HREF="/pub/time.series/pr/sub/">sub</A>', "sub-directory"),
    ('<A HREF="http://download.bls.gov/pub/time.series/pr/x.txt">x.txt</A>', "other scheme"),
    ('<A HREF="/pub/time.series/pr/x%00y.txt">x.txt</A>', "encoded nul"),
    ('<A HREF="/pub/time.series/pr/x%1By.txt">x.txt</A>', "encoded control"),
    (f'<A HREF="/pub/time.series/pr/{"x" * 256}">x</A>', "too long"),
]


@pytest.mark.parametrize(("link", "why"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_hostile_links_are_ignored(link: str, why: str) -> None:
    row = f"  6/6/2024  8:30 AM          102 {link}<br>"
    page = (
        '<html><body><pre><A HREF="/pub/time.series/">[To Parent Directory]</A><br><br>'
        f'{row}  6/6/2024  8:30 AM           10 <A HREF="/pub/time.series/pr/ok.txt">ok.txt</A><br>'
        "</pre></body></html>"
    )
    assert [f.name for f in parse_listing(page, BASE)] == ["ok.txt"], why


def test_dir_rows_are_skipped() -> None:
    page = (
        "<pre>  1/1/2020 12:00 AM        &lt;dir&gt; "
        '<A HREF="/pub/time.series/pr/old/">old</A><br>'
        '  6/6/2024  8:30 AM           10 <A HREF="/pub/time.series/pr/ok.txt">ok.txt</A><br></pre>'
    )
    assert [f.name for f in parse_listing(page, BASE)] == ["ok.txt"]


@pytest.mark.parametrize(
    "page",
    [
        "",
        "not html at all \x00\x01",
        "<html><body><h1>Service Unavailable</h1></body></html>",
        '<pre><A HREF="/pub/time.series/">[To Parent Directory]</A><br><br></pre>',
        '<pre>  6/6/2024  8:30 AM   10 <A HREF="/pub/time.series/pr/a.txt">a.txt</A><br>  6/6/2024',
    ],
    ids=["empty", "garbage", "error page", "no files", "cut short"],
)
def test_unusable_pages_are_refused(page: str) -> None:
    with pytest.raises(ListingError):
        parse_listing(page, BASE)


@pytest.mark.parametrize(
    "href",
    [
        "/pub/time.series/pr/pr.class",
        "/pub/time.series/pr/pr.data.0.Current?x=1#top",
        "/pub/time.series/pr/a#b?c",
        "/pub/time.series/pr/../cu/cu.series",
        "/pub/time.series/pr/./pr.class",
        "/pub/time.series//pr/pr.class",
        "//evil.example/pub/time.series/pr/pr.class",
        "/pub/time.series/pr/pr.\nclass",
        "/pub/time.series/pr/pr\tclass",
        "/pub/time.series/pr\\pr.class",
        "/pub/time.series/pr/pr%2Fclass",
        "/pub/time.series/pr/pr .class",
        "/pub/time.series/pr/",
        "/",
        "pr.class",
        "http://127.0.0.1:1/pub/time.series/pr/pr.class",
        "/pub/time.series/pr/pr.class;",
        "/pub/time.series/pr/a;b=c",
        "//[evil/pr.class",
        "http://127.0.0.1:99999/pub/time.series/pr/pr.class",
    ],
)
def test_links_resolve_as_urljoin_resolves_them(href: str) -> None:
    from urllib.parse import SplitResult, urljoin, urlsplit

    from rearcquest.sources.bls import _resolve

    base_url = "http://127.0.0.1:8080/pub/time.series/pr/"
    expected: SplitResult | None
    try:
        expected = urlsplit(urljoin(base_url, href))
    except ValueError:  # "Invalid IPv6 URL": the link is ignored
        expected = None
    assert _resolve(urlsplit(base_url), base_url, href) == expected


@pytest.mark.parametrize("href", ["//[evil/x", "//[::1/x", "http://[x/pr.class"])
def test_a_link_that_is_no_url_is_ignored_not_a_crash(href: str) -> None:
    from rearcquest.sources.bls import parse_subdirectories

    page = (
        "<html><body><pre>"
        '<A HREF="/pub/time.series/">[To Parent Directory]</A><br><br>'
        f' 8/6/2026  8:30 AM        10 <A HREF="{href}">x</A><br>'
        ' 8/6/2026  8:30 AM        12 <A HREF="/pub/time.series/pr/pr.class">pr.class</A><br>'
        ' 8/6/2026  8:30 AM   &lt;dir&gt; <A HREF="/pub/time.series/pr/sub/">sub</A><br>'
        "</pre><hr></body></html>"
    )
    files = parse_listing(page, "http://127.0.0.1:1/pub/time.series/pr/")
    assert [(f.name, f.size) for f in files] == [("pr.class", 12)]
    assert [
        d.name for d in parse_subdirectories(page, "http://127.0.0.1:1/pub/time.series/pr/")
    ] == ["sub"]
