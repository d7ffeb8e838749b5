"""``rearcquest.index._server``: the running server against moto's server and SeaweedFS (hostile
keys, ranges, 10,000 objects, a client that leaves), its exposure warning and default limits."""

from __future__ import annotations

import hashlib
import html
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import httpx
import pytest

from rearcquest.aws.storage import ObjectInfo, ObjectStore, ObjectStream, make_s3_client
from rearcquest.index import Limits, exposure_warning, start_server
from rearcquest.index._render import PAGE_CSP

from .helpers import HOSTILE, T0, files, moto_store, parse, put_release


def test_exposure_warning() -> None:
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None and "all interfaces" in warning and "--token auto" in warning
    with_token = exposure_warning("::", "s3cret")
    assert with_token is not None and "all interfaces" in with_token and "--token" not in with_token
    assert "192.0.2.7" in (exposure_warning("192.0.2.7", None) or "")


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
