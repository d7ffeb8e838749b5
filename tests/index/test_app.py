"""``rearcquest.index._app``: the ASGI app in process over moto's server: routing, downloads,
ranges and validators, errors, the listing and page caches, the token guard and its throttle."""

from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlsplit

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import BLS_RELEASES
from rearcquest.aws.storage import ObjectStore
from rearcquest.index import _app, create_app
from rearcquest.index._app import _Throttle
from rearcquest.index._render import PAGE_CSP, href_path
from rearcquest.layout import LEGACY_STATE_NAME

from .helpers import HOSTILE, LONG_KEY, T0, VINTAGE, asgi, files, parse


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


def test_listing_cache_lists_once_for_concurrent_requests() -> None:
    from rearcquest.index._app import _ListingCache

    requests = 8
    cache = _ListingCache(ttl=3600)
    changed = threading.Condition()
    calls: list[str] = []
    waiting = [0]  # callers blocked before the listing, on the cache's per-prefix lock

    class _CountedLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def __enter__(self) -> None:
            with changed:
                waiting[0] += 1
                changed.notify_all()
            self._lock.acquire()
            with changed:
                waiting[0] -= 1
                changed.notify_all()

        def __exit__(self, *exc: object) -> None:
            self._lock.release()

    cache._locks = [_CountedLock() for _ in cache._locks]  # type: ignore[misc]
    gate = threading.Event()

    def load() -> Any:
        with changed:
            calls.append("listed")
            changed.notify_all()
        assert gate.wait(30), "the listing was never released"
        return [], [], T0

    with ThreadPoolExecutor(requests) as pool:
        futures = [pool.submit(cache.get, "pr/", load) for _ in range(requests)]
        # Hold the first listing until every request either lists too (no coalescing) or waits
        # for it; only then may it finish, so a late caller cannot pass by finding it cached.
        with changed:
            assert changed.wait_for(lambda: len(calls) + waiting[0] >= requests, timeout=30)
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


def test_a_page_token_s3_refuses_is_a_400(
    loaded: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loaded.client.list_objects_v2

    def refuse_tokens(**kwargs: Any) -> Any:
        if "ContinuationToken" in kwargs:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "InvalidArgument", "Message": "bad token"}}, "ListObjectsV2"
            )
        return real(**kwargs)

    monkeypatch.setattr(loaded.client, "list_objects_v2", refuse_tokens)
    app = create_app(loaded, prefix="pr/")
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
