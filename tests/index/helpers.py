"""Helpers shared by the tests of :mod:`rearcquest.index`: hostile keys, a page parser, one
request through the ASGI app in process, buckets loaded with a real BLS release."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import anyio
import httpx

from conftest import BLS_RELEASES
from rearcquest.aws.storage import ObjectInfo, ObjectStore, make_s3_client
from rearcquest.layout import LEGACY_STATE_NAME, lock_key, state_key

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
