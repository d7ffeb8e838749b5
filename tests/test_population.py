"""fetch_population against a real local HTTP server and moto: store once, refuse bad answers."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from rearcquest.aws.storage import ObjectInfo, ObjectStore, ObjectStream
from rearcquest.config import DEFAULT_POPULATION_URL, LEGACY_POPULATION_URL, RetryPolicy
from rearcquest.errors import ConfigError, DataError, RqError, SourceError, StorageError
from rearcquest.mirror.population import (
    META_CANONICAL_SHA256,
    META_FETCHED_AT,
    META_SHAPE,
    META_SOURCE_URL,
    FetchResult,
    fetch_population,
)
from rearcquest.offline import (
    DATAUSA_LEGACY_PATH,
    DATAUSA_TESSERACT_PATH,
    Fault,
    OfflineServer,
    add_datausa_routes,
)
from rearcquest.sources._http import HttpClient

KEY = "datausa/population.json"
FAST = RetryPolicy(attempts=2, base=0.0)
TESS = "tesseract-acs1-2013-2023-raw.json"


def real(shared_data: Path, name: str) -> bytes:
    return (shared_data / "datausa" / name).read_bytes()


class CountingStore(ObjectStore):
    """An ObjectStore that counts the S3 requests change detection makes."""

    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__(client, bucket)
        self.calls: dict[str, int] = {"head": 0, "open": 0, "put": 0}

    def head(self, key: str) -> ObjectInfo | None:
        self.calls["head"] += 1
        return super().head(key)

    def open(self, key: str, *, byte_range: tuple[int, int] | None = None) -> ObjectStream:
        self.calls["open"] += 1
        return super().open(key, byte_range=byte_range)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        self.calls["put"] += 1
        return super().put_bytes(key, data, content_type=content_type, metadata=metadata)


@pytest.fixture(scope="module")
def module_s3() -> Iterator[Any]:
    """One moto S3 for the module (starting moto per test would dominate the run time)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def store(module_s3: Any) -> CountingStore:
    """A fresh bucket ``pop-<n>`` in the module's moto S3."""
    bucket = f"pop-{uuid.uuid4().hex[:12]}"
    module_s3.create_bucket(Bucket=bucket)
    return CountingStore(module_s3, bucket)


@pytest.fixture(scope="module")
def api_server() -> Iterator[OfflineServer]:
    with OfflineServer(require_contact=False) as server:
        yield server


@pytest.fixture
def api(api_server: OfflineServer) -> OfflineServer:
    """The DataUSA-like server, with no routes, faults or recorded requests."""
    api_server.routes.clear()
    api_server.faults.clear()
    api_server.requests.clear()
    return api_server


def tess_url(server: OfflineServer) -> str:
    return f"{server.url}{DATAUSA_TESSERACT_PATH}?{urlsplit(DEFAULT_POPULATION_URL).query}"


def serve(server: OfflineServer, body: bytes, *, status: int = 200, ctype: str = "") -> str:
    server.add_route(DATAUSA_TESSERACT_PATH, body, status=status, **_ctype(ctype))
    return tess_url(server)


def _ctype(ctype: str) -> dict[str, str]:
    return {"content_type": ctype} if ctype else {}


Fetch = Callable[..., FetchResult]


@pytest.fixture(scope="module")
def shared_http() -> Iterator[HttpClient]:
    with HttpClient(retry=FAST) as client:
        yield client


@pytest.fixture
def fetch(shared_http: HttpClient) -> Fetch:
    """fetch_population through one shared HTTP client (building one per call costs 0.1 s)."""

    def run(store: ObjectStore, url: str, **kw: Any) -> FetchResult:
        if "contact" not in kw:
            kw["http"] = shared_http
        return fetch_population(store, url=url, retry=FAST, **kw)

    return run


def snapshot(store: ObjectStore, key: str = KEY) -> tuple[bytes, dict[str, str], str]:
    info = store.head(key)
    assert info is not None
    return store.get_bytes(key), dict(info.metadata), info.etag


def test_first_fetch_stores_the_body_as_received_with_metadata(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    body = real(shared_data, TESS)
    url = serve(api, body)
    result = fetch(store, url)
    assert result.written is True
    assert result.reason == "new object"
    info = store.head(KEY)
    assert info is not None
    assert store.get_bytes(KEY) == body, "byte for byte, as received"
    assert info.content_type == "application/json"
    assert info.metadata[META_SOURCE_URL] == url
    assert info.metadata[META_SHAPE] == "tesseract"
    assert info.metadata[META_CANONICAL_SHA256] == result.data.canonical_sha256
    assert info.metadata[META_FETCHED_AT] == result.fetched_at
    assert result.fetched_at.endswith("+00:00")
    assert result.to_dict() == {
        "url": url,
        "bucket": store.bucket,
        "key": KEY,
        "written": True,
        "reason": "new object",
        "shape": "tesseract",
        "rows": 10,
        "years": [2013, 2023],
        "sha256": result.data.canonical_sha256,
    }


def test_refetching_unchanged_data_writes_nothing_with_one_head(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    url = serve(api, real(shared_data, TESS))
    fetch(store, url)
    before = snapshot(store)
    store.calls.update(head=0, open=0, put=0)
    result = fetch(store, url)
    assert result.written is False
    assert result.reason == "unchanged: same canonical sha256 as the stored object"
    assert store.calls == {"head": 1, "open": 0, "put": 0}, "one HEAD, no GET, no PUT"
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "name",
    [
        "tesseract-acs1-resaved-a.json",
        "tesseract-acs1-resaved-b.json",
        "tesseract-acs1-resaved-c.json",
        "tesseract-acs1-resaved-d.json",
    ],
)
def test_reordered_annotations_are_not_a_change(
    store: CountingStore, api: OfflineServer, shared_data: Path, name: str, fetch: Fetch
) -> None:
    fetch(store, serve(api, real(shared_data, TESS)))
    before = snapshot(store)
    result = fetch(store, serve(api, real(shared_data, name)))
    assert result.written is False
    assert snapshot(store) == before, "the first answer's bytes stay"


def test_changed_data_is_written(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    fetch(store, serve(api, real(shared_data, TESS)))
    doc = json.loads(real(shared_data, TESS))
    doc["data"][-1]["Population"] = 334914897.0  # a revised estimate
    newer = json.dumps(doc, separators=(",", ":")).encode()
    result = fetch(store, serve(api, newer))
    assert result.written is True
    assert result.reason == "the data changed"
    body, metadata, _ = snapshot(store)
    assert body == newer
    assert metadata[META_CANONICAL_SHA256] == result.data.canonical_sha256


def test_force_writes_unchanged_data(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    url = serve(api, real(shared_data, TESS))
    fetch(store, url)
    store.calls["put"] = 0
    result = fetch(store, url, force=True)
    assert result.written is True
    assert "--force" in result.reason
    assert store.calls["put"] == 1


def test_a_stored_object_without_the_hash_is_replaced(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    store.put_bytes(KEY, b'{"hand": "made"}')
    result = fetch(store, serve(api, real(shared_data, TESS)))
    assert result.written is True
    assert result.reason == f"the stored object has no {META_CANONICAL_SHA256} metadata"
    assert store.get_bytes(KEY) == real(shared_data, TESS)


def test_the_legacy_shape_is_accepted_and_switching_shapes_is_a_change(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    urls = add_datausa_routes(api)
    assert urls["legacy"].endswith(
        DATAUSA_LEGACY_PATH + "?" + urlsplit(LEGACY_POPULATION_URL).query
    )
    legacy = fetch(store, urls["legacy"])
    assert (legacy.data.shape, legacy.years) == ("datausa-legacy", (2013, 2023))
    assert dict(legacy.data.rows)[2018] == 322903030
    assert store.head(KEY).metadata[META_SHAPE] == "datausa-legacy"  # type: ignore[union-attr]
    current = fetch(store, urls["tesseract"])
    assert current.written is True
    assert current.reason == "the data changed"
    assert dict(current.data.rows)[2018] == 327167439


def test_contact_goes_into_the_user_agent(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    fetch(store, serve(api, real(shared_data, TESS)), contact="me@example.com")
    assert "(contact: me@example.com)" in api.requests[-1].user_agent


def test_transient_errors_are_retried(
    store: CountingStore, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    url = serve(api, real(shared_data, TESS))
    api.faults.append(Fault(DATAUSA_TESSERACT_PATH, status=503, retry_after="0"))
    result = fetch(store, url)
    assert result.written is True
    assert [r.status for r in api.requests] == [503, 200]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tesseract/data.jsonrecords"


BIG = 64 * 1024


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        ({"status": 404, "body": b"Not Found"}, SourceError, "HTTP 404"),
        ({"status": 500, "body": b"{}"}, SourceError, "HTTP 500 (gave up after 2 attempts)"),
        ({"body": b"<html><head><title>Service Unavailable</title></head></html>", "ctype": "text/html"}, DataError, "an HTML page ('Service Unavailable'), not JSON"),
        ({"body": b'{"data": [{"Nation ID": "01000US", "Year": 2020'}, DataError, "invalid JSON"),
        ({"body": b" " * (BIG + 1)}, DataError, f"exceeds the {BIG}-byte limit"),
        ({"body": b'{"columns": [], "rows": []}'}, DataError, "unknown response shape"),
        ({"file": "tesseract-acs5-state-by-year-raw.json"}, DataError, "not national population: the rows are by State"),
        ({"body": b'{"page": {"total": 0}, "columns": ["Nation ID", "Nation", "Year", "Population"], "data": []}'}, DataError, "holds no rows"),
        ({"edit": ("Population", -1.0)}, DataError, "Population -1.0 is not positive"),
        ({"edit": ("Population", "n/a")}, DataError, "Population 'n/a' is not a number"),
        ({"edit": ("Year", 2014)}, DataError, "year 2014 appears twice (rows 1 and 2)"),
        ({"unreachable": True}, SourceError, "cannot connect"),
    ],
    ids=["404", "500", "html-page", "invalid-json", "too-large", "unknown-shape", "state-level", "empty-data", "negative-population", "non-numeric-population", "duplicate-year", "unreachable"],
)  # fmt: skip
def test_bad_input_leaves_the_stored_object_byte_identical(
    store: CountingStore,
    api: OfflineServer,
    shared_data: Path,
    answer: dict[str, Any],
    error: type[RqError],
    message: str,
    fetch: Fetch,
) -> None:
    url = serve(api, real(shared_data, TESS))
    fetch(store, url)
    before = snapshot(store)
    store.calls["put"] = 0
    if "file" in answer:
        body = real(shared_data, answer["file"])
    elif "edit" in answer:
        doc = json.loads(real(shared_data, TESS))
        field, value = answer["edit"]
        doc["data"][0][field] = value
        body = json.dumps(doc).encode()
    else:
        body = answer.get("body", b"")
    serve(api, body, status=answer.get("status", 200), ctype=answer.get("ctype", ""))
    with pytest.raises(error) as caught:
        fetch(store, _closed_port_url() if "unreachable" in answer else url, max_bytes=BIG)
    assert message in str(caught.value)
    assert caught.value.exit_code == (3 if error is SourceError else 1)
    assert store.calls["put"] == 0
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "ftp://datausa.io/api/data"}, "is not an http(s) URL"),
        ({"key": "datausa/"}, "must name an object"),
        ({"key": ""}, "must name an object"),
    ],
    ids=["ftp-url", "folder-key", "empty-key"],
)
def test_bad_settings_are_refused_before_any_request(
    store: CountingStore, kw: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        fetch_population(store, **kw)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert store.calls == {"head": 0, "open": 0, "put": 0}


def test_a_missing_bucket_is_a_storage_error(
    module_s3: Any, api: OfflineServer, shared_data: Path, fetch: Fetch
) -> None:
    store = ObjectStore(module_s3, "no-such-bucket")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        fetch(store, serve(api, real(shared_data, TESS)))
