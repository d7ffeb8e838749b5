"""The S3 seam: timestamps, error translation, metadata, batching and multipart, on moto."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from rearcquest import storage
from rearcquest.errors import ConfigError, StorageError
from rearcquest.storage import ObjectStore, _parse_timestamp, make_s3_client


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-08-06T12:30:00.000Z", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        ("2026-08-06T12:30:00+00:00", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        ("Thu, 06 Aug 2026 12:30:00 GMT", datetime(2026, 8, 6, 12, 30, tzinfo=UTC)),
        # Digits first but no zone: not the fast path's business, botocore's parser decides.
        ("2026-08-06T12:30:00", datetime(2026, 8, 6, 12, 30)),
    ],
    ids=["iso-z", "iso-offset", "http-date", "iso-naive"],
)
def test_parse_timestamp_takes_the_fast_path_or_falls_back(value: str, expected: datetime) -> None:
    parsed = _parse_timestamp(value)
    assert parsed == expected
    assert (parsed.tzinfo is None) == (expected.tzinfo is None)


def test_listing_timestamps_are_aware_datetimes(store: ObjectStore) -> None:
    store.put_bytes("a/b.txt", b"x")
    (info,) = list(store.list_objects("a/"))
    assert isinstance(info.last_modified, datetime)
    assert info.last_modified.tzinfo is not None


def test_metadata_round_trips_non_ascii_and_reserved_characters(store: ObjectStore) -> None:
    metadata = {
        "rq-source-url": "https://download.bls.gov/pub/time.series/pr/pr.class?x=1&y=é",
        "note": "100% sure; naïve “quotes”",
    }
    store.put_bytes("k", b"body", content_type="text/plain", metadata=metadata)
    head = store.head("k")
    assert head is not None
    assert head.metadata == metadata
    assert head.content_type == "text/plain"
    with store.open("k") as stream:
        assert stream.info.metadata == metadata
        assert b"".join(stream.chunks()) == b"body"


def test_head_of_a_missing_object_is_none(store: ObjectStore) -> None:
    assert store.head("nope") is None


@pytest.mark.parametrize(
    ("operation", "needle"),
    [
        (lambda s: s.get_bytes("missing"), "no such object"),
        (lambda s: ObjectStore(s.client, "no-such-bucket").get_bytes("k"), "does not exist"),
        (lambda s: ObjectStore(s.client, "no-such-bucket").check_bucket(), "does not exist"),
        (lambda s: list(ObjectStore(s.client, "no-such-bucket").list_objects("")), "create it"),
    ],
    ids=["missing-key", "missing-bucket-read", "missing-bucket-check", "missing-bucket-list"],
)
def test_errors_name_the_object_and_the_fix(
    store: ObjectStore, operation: Any, needle: str
) -> None:
    with pytest.raises(StorageError, match=needle) as info:
        operation(store)
    assert "s3://" in str(info.value) or "bucket" in str(info.value)
    # The botocore cause stays attached for --verbose.
    assert isinstance(
        info.value.__cause__, botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError
    )


def test_unreachable_endpoint_says_so() -> None:
    client = make_s3_client(endpoint_url="http://127.0.0.1:9", access_key=("a", "b"))
    store = ObjectStore(client, "bucket")
    with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint http://127\.0\.0\.1:9"):
        store.head("k")


def test_get_bytes_refuses_oversize_objects(store: ObjectStore) -> None:
    store.put_bytes("big", b"x" * 100)
    with pytest.raises(StorageError, match="100 bytes, more than the 10 allowed"):
        store.get_bytes("big", max_bytes=10)
    assert store.get_bytes("big", max_bytes=100) == b"x" * 100


def test_ranged_open_reads_only_the_range(store: ObjectStore) -> None:
    store.put_bytes("r", b"0123456789")
    with store.open("r", byte_range=(2, 5)) as stream:
        assert b"".join(stream.chunks()) == b"2345"
        assert stream.content_range == "bytes 2-5/10"


def test_delete_many_batches_over_a_thousand_keys(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"d/{i:05d}" for i in range(2345)]
    for key in keys[::500]:  # a few real objects, one in each batch; S3 deletes absent keys too
        store.put_bytes(key, b"")
    calls: list[int] = []
    real = store.client.delete_objects

    def counting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Delete"]["Objects"]))
        return real(**kwargs)

    monkeypatch.setattr(store.client, "delete_objects", counting)
    assert store.delete_many([*keys, "d/never-existed"]) == {}
    assert calls == [1000, 1000, 346]
    assert list(store.list_objects("d/")) == []


def test_delete_many_reports_per_key_failures(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("x/1", b"")

    def partial(**kwargs: Any) -> Any:
        return {"Errors": [{"Key": "x/1", "Code": "AccessDenied", "Message": "denied"}]}

    monkeypatch.setattr(store.client, "delete_objects", partial)
    assert store.delete_many(["x/1"]) == {"x/1": "denied"}


def test_upload_below_the_threshold_is_one_put(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 1024)
    body = b"a" * 1024
    seen: list[int] = []
    etag = store.upload("small", io.BytesIO(body), len(body), on_bytes=seen.append)
    assert etag == hashlib.md5(body).hexdigest()
    assert seen == [1024]


def test_upload_above_the_threshold_is_multipart_in_parts(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3's minimum part size is 5 MiB (moto enforces it for all but the last part).
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 1024 * 1024)
    body = bytes(range(256)) * (11 * 1024 * 1024 // 256 + 3)
    seen: list[int] = []
    etag = store.upload(
        "big",
        io.BytesIO(body),
        len(body),
        content_type="text/plain",
        metadata={"rq-sha256": "abc"},
        on_bytes=seen.append,
    )
    assert etag.endswith("-3")  # a multipart ETag names its part count
    assert seen == [5 * 1024 * 1024, 5 * 1024 * 1024, len(body) - 10 * 1024 * 1024]
    assert store.get_bytes("big") == body
    head = store.head("big")
    assert head is not None
    assert head.metadata == {"rq-sha256": "abc"}
    assert head.content_type == "text/plain"


def test_a_failed_multipart_upload_is_aborted(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 1024 * 1024)

    class Breaks(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 5 * 1024 * 1024:
                raise OSError("disk gone")
            return super().read(size)

    body = b"z" * (6 * 1024 * 1024)
    with pytest.raises(OSError, match="disk gone"):
        store.upload("broken", Breaks(body), len(body))
    assert store.head("broken") is None
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
    assert uploads.get("Uploads", []) == []


def test_an_empty_bucket_name_is_a_config_error(s3_client: Any) -> None:
    with pytest.raises(ConfigError, match="no bucket given"):
        ObjectStore(s3_client, "  ")


def test_a_missing_profile_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="AWS profile 'nobody' is not configured"):
        make_s3_client(profile="nobody")
