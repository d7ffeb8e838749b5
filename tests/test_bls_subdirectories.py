"""The root listing: directories (surveys) in IIS, Apache and nginx pages."""

from __future__ import annotations

import pytest

from rearcquest.errors import ListingError
from rearcquest.offline import OfflineServer, ServedFile
from rearcquest.sources._http import HttpClient
from rearcquest.sources.bls import (
    RemoteDir,
    fetch_subdirectories,
    parse_listing,
    parse_subdirectories,
)

ROOT = "https://download.bls.gov/pub/time.series/"

IIS = (
    "<html><head><title>download.bls.gov - /pub/time.series/</title></head><body>"
    "<H1>download.bls.gov - /pub/time.series/</H1><hr>\n\n<pre>"
    '<A HREF="/pub/">[To Parent Directory]</A><br><br>'
    '  8/6/2026  8:30 AM        &lt;dir&gt; <A HREF="/pub/time.series/pr/">pr</A><br>'
    ' 11/12/2026  8:30 AM        &lt;dir&gt; <A HREF="/pub/time.series/cu/">cu</A><br>'
    '  1/2/2025 10:05 PM        <dir> <A HREF="/pub/time.series/la">la</A><br>'
    '  1/2/2025 10:05 PM         1234 <A HREF="/pub/time.series/overview.txt">overview.txt</A><br>'
    "</pre><hr></body></html>"
)
APACHE = (
    "<html><body><h1>Index of /pub/time.series</h1><table>"
    '<tr><th><a href="?C=N;O=D">Name</a></th></tr>'
    '<tr><td><a href="/pub/">Parent Directory</a></td><td>&nbsp;</td></tr>'
    '<tr><td><a href="ce/">ce/</a></td><td align="right">2026-08-06 08:30  </td><td>-</td></tr>'
    '<tr><td><a href="oe/">oe/</a></td><td align="right">2026-03-01 12:00  </td><td>-</td></tr>'
    '<tr><td><a href="README">README</a></td><td>2026-03-01 12:00</td><td>3</td></tr>'
    "</table></body></html>"
)
NGINX = (
    "<html><head><title>Index of /pub/time.series/</title></head><body><pre>"
    '<a href="../">../</a>\n'
    '<a href="jt/">jt/</a>                                                06-Aug-2026 08:30       -\n'
    '<a href="https://elsewhere.example/xx/">xx/</a>                       06-Aug-2026 08:30       -\n'
    "</pre><hr></body></html>"
)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            IIS,
            [
                RemoteDir("cu", ROOT + "cu/", "2026-11-12 08:30"),
                RemoteDir("la", ROOT + "la/", "2025-01-02 22:05"),
                RemoteDir("pr", ROOT + "pr/", "2026-08-06 08:30"),
            ],
        ),
        (
            APACHE,
            [
                RemoteDir("ce", ROOT + "ce/", "2026-08-06 08:30"),
                RemoteDir("oe", ROOT + "oe/", "2026-03-01 12:00"),
            ],
        ),
        (NGINX, [RemoteDir("jt", ROOT + "jt/", "2026-08-06 08:30")]),
    ],
    ids=["iis-dir-rows", "apache-name-slash", "nginx-name-slash"],
)
def test_parse_subdirectories(page: str, expected: list[RemoteDir]) -> None:
    assert parse_subdirectories(page, ROOT) == expected


def test_files_are_not_directories_and_directories_not_files() -> None:
    assert [f.name for f in parse_listing(IIS, ROOT)] == ["overview.txt"]


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<html><body>nothing</body></html>", "not a directory listing"),
        ('<pre><A HREF="/pub/time.series/pr/">pr</A><br>', "cut short"),
        (
            '<pre> 1/2/2025 10:05 PM 12 <A HREF="/pub/time.series/a.txt">a.txt</A><br></pre>',
            "names no directory",
        ),
    ],
    ids=["no-links", "cut-short", "files-only"],
)
def test_bad_root_pages_are_refused(page: str, message: str) -> None:
    with pytest.raises(ListingError, match=message):
        parse_subdirectories(page, ROOT)


def test_offline_server_serves_a_root_of_surveys_beside_its_directory() -> None:
    from datetime import datetime

    listed = datetime(2026, 8, 6, 8, 30)
    cu = {"cu.series": ServedFile("cu.series", b"cu series\n", listed)}
    pr = {"pr.class": ServedFile("pr.class", b"pr class\n", listed)}
    with (
        OfflineServer(pr, surveys={"cu": cu}) as server,
        HttpClient(user_agent="rq tests@example.com") as http,
    ):
        assert server.bls_url == server.url + "/pub/time.series/pr/"  # the old API stands
        assert server.root_url == server.url + "/pub/time.series/"
        dirs = fetch_subdirectories(http, server.root_url)
        assert [(d.name, d.url) for d in dirs] == [
            ("cu", server.root_url + "cu/"),
            ("pr", server.root_url + "pr/"),
        ]
        assert http.get_bytes(server.root_url + "cu/cu.series", max_bytes=1000) == b"cu series\n"
        assert http.get_bytes(server.bls_url + "pr.class", max_bytes=1000) == b"pr class\n"
        server.set_survey("ce", cu)
        assert [d.name for d in fetch_subdirectories(http, server.root_url)] == ["ce", "cu", "pr"]
        server.remove_survey("ce")
        with pytest.raises(Exception, match="404"):
            http.get_bytes(server.root_url + "ce/", max_bytes=1000)
        assert server.requests_under("/pub/time.series/cu/")
        assert [r.path for r in server.file_requests()] == ["/pub/time.series/pr/pr.class"]
