"""The S3 seam: timestamps, errors, metadata, batching, streaming writes, copies, versions."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from rearcquest.aws import storage
from rearcquest.aws.storage import ObjectStore, S3Access, _parse_timestamp, make_s3_client
from rearcquest.errors import ConfigError, NoSpaceError, StorageError


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
def test_parse_timestamp_takes_the_fast_path_or_falls_back(
    value: str, expected: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.utils

    fell_back: list[str] = []
    slow = botocore.utils.parse_timestamp
    monkeypatch.setattr(botocore.utils, "parse_timestamp", lambda v: fell_back.append(v) or slow(v))
    parsed = _parse_timestamp(value)
    assert parsed == expected
    assert (parsed.tzinfo is None) == (expected.tzinfo is None)
    # S3's two stamp formats never reach botocore's parser (dateutil, ~0.2 ms a stamp).
    assert fell_back == ([] if expected.tzinfo is not None else [value])


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


@pytest.mark.parametrize(
    ("operation", "code", "key"),
    [
        (lambda s: s.get_bytes("missing"), "NoSuchKey", "missing"),
        (lambda s: ObjectStore(s.client, "no-such-bucket").get_bytes("k"), "NoSuchBucket", "k"),
        (lambda s: ObjectStore(s.client, "no-such-bucket").check_bucket(), "404", None),
        (
            lambda s: list(ObjectStore(s.client, "no-such-bucket").list_objects("p/")),
            "NoSuchBucket",
            "p/",
        ),
        (lambda s: s.delete("gone", if_match="abc"), "NoSuchKey", "gone"),
        (lambda s: s.get_bytes("k", max_bytes=1), None, "k"),
    ],
    ids=[
        "missing-key",
        "missing-bucket-read",
        "missing-bucket-check",
        "listing",
        "if-match-gone",
        "too-large",
    ],
)
def test_a_storage_error_carries_s3s_code_and_the_key(
    store: ObjectStore, operation: Any, code: str | None, key: str | None
) -> None:
    store.put_bytes("k", b"two bytes")
    with pytest.raises(StorageError) as info:
        operation(store)
    assert (info.value.code, info.value.key) == (code, key)


def test_a_version_is_named_in_the_message_not_in_the_key(store: ObjectStore) -> None:
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store.put_bytes("k", b"one")
    with pytest.raises(StorageError, match=r"k\?versionId=nope") as info:
        store.get_bytes("k", version_id="nope")
    assert info.value.key == "k"
    assert info.value.code is not None


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (
            {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "AccessDenied",
        ),
        ({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "503"),
        ({"Error": {"Code": ""}}, None),
    ],
    ids=["code", "status-only", "neither"],
)
def test_the_code_is_s3s_else_the_http_status(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, response: Any, code: str | None
) -> None:
    def refuse(**kwargs: Any) -> Any:
        raise botocore.exceptions.ClientError(response, "PutObject")

    monkeypatch.setattr(store.client, "put_object", refuse)
    with pytest.raises(StorageError) as info:
        store.put_bytes("w", b"x")
    assert (info.value.code, info.value.key) == (code, "w")


def test_no_answer_has_no_code() -> None:
    client = make_s3_client(endpoint_url="http://127.0.0.1:9", access_key=("a", "b"))
    with pytest.raises(StorageError) as info:
        ObjectStore(client, "bucket").get_bytes("k")
    assert (info.value.code, info.value.key) == (None, "k")


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


MiB = 1024 * 1024


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    """Parts of 512 KiB (moto's minimum lowered to match), so multipart tests stay fast."""
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 512 * 1024)
    return 512 * 1024


def s3_calls(store: ObjectStore) -> list[tuple[str, int | None]]:
    """Record every S3 operation the store's client makes, with its part number if any."""
    calls: list[tuple[str, int | None]] = []

    def record(event_name: str, params: Any, **_: Any) -> None:
        calls.append((event_name.rsplit(".", 1)[1], params.get("PartNumber")))

    # before-parameter-build sees the API parameters (PartNumber), once per call made.
    store.client.meta.events.register("before-parameter-build.s3.*", record)
    return calls


def pending_uploads(store: ObjectStore) -> list[Any]:
    return list(store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


@pytest.mark.parametrize("size", [0, 1000, 512 * 1024], ids=["empty", "small", "one-part"])
def test_a_body_that_fits_in_one_part_is_one_put_with_the_final_metadata(
    store: ObjectStore, small_parts: int, size: int
) -> None:
    calls = s3_calls(store)
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    writer = store.writer("small", content_type="text/plain", metadata={"rq-a": "start"})
    for start in range(0, size, 100_000):
        writer.write(body[start : start + 100_000])
    assert calls == []  # nothing is sent before the body is known to fit
    etag = writer.complete(metadata={"rq-a": "final", "rq-sha256": "abc"})
    assert calls == [("PutObject", None)]
    assert not writer.multipart and writer.size == size
    assert etag == hashlib.md5(body).hexdigest()
    head = store.head("small")
    assert head is not None
    assert head.metadata == {"rq-a": "final", "rq-sha256": "abc"}
    assert head.content_type == "text/plain"
    assert store.get_bytes("small") == body


def test_a_larger_body_is_sent_in_parts_while_it_is_written(
    store: ObjectStore, small_parts: int
) -> None:
    calls = s3_calls(store)
    body = bytes(range(256)) * (5 * small_parts // 2 // 256) + b"tail"
    writer = store.writer("big", content_type="text/plain", metadata={"rq-a": "start"})
    for start in range(0, len(body), 200_000):
        writer.write(body[start : start + 200_000])
    assert writer.multipart
    assert calls[0] == ("CreateMultipartUpload", None)
    writer.write(b"")
    etag = writer.complete(metadata={"rq-a": "ignored"})
    assert etag.endswith("-3")  # a multipart ETag names its part count
    assert sorted(c for c in calls if c[0] == "UploadPart") == [
        ("UploadPart", 1),
        ("UploadPart", 2),
        ("UploadPart", 3),
    ]
    assert calls[-1] == ("CompleteMultipartUpload", None)
    assert store.get_bytes("big") == body
    head = store.head("big")
    assert head is not None
    assert head.metadata == {"rq-a": "start"}  # fixed when the upload started
    assert head.content_type == "text/plain"
    assert pending_uploads(store) == []


def test_parts_go_while_the_body_is_still_being_written(
    store: ObjectStore, small_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    real = store.client.upload_part
    first_part = threading.Event()

    def watched(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 1:
            first_part.set()
        return real(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", watched)
    writer = store.writer("streamed")
    writer.write(b"a" * small_parts)
    writer.write(b"b")  # the first part is full and more came: it is sent now
    # Part 1 reaches S3 while the writer still waits for the rest of the body (bounded wait).
    assert first_part.wait(30)
    writer.write(b"c" * small_parts)
    writer.complete()
    assert store.get_bytes("streamed") == b"a" * small_parts + b"b" + b"c" * small_parts


def test_an_abort_leaves_no_object_no_part_and_no_write(
    store: ObjectStore, small_parts: int
) -> None:
    store.put_bytes("kept", b"old bytes")
    before = store.head("kept")
    calls = s3_calls(store)
    writer = store.writer("kept")
    writer.write(b"n" * (3 * small_parts))
    writer.abort()
    writer.abort()  # twice is harmless
    ops = [name for name, _ in calls]
    assert "AbortMultipartUpload" in ops
    assert "CompleteMultipartUpload" not in ops and "PutObject" not in ops
    assert pending_uploads(store) == []
    after = store.head("kept")
    assert before is not None and after is not None
    assert (after.etag, after.last_modified) == (before.etag, before.last_modified)
    assert store.get_bytes("kept") == b"old bytes"
    with pytest.raises(StorageError, match="closed"):
        writer.write(b"more")
    with pytest.raises(StorageError, match="closed"):
        writer.complete()


def test_a_small_body_aborted_sends_nothing(store: ObjectStore, small_parts: int) -> None:
    calls = s3_calls(store)
    writer = store.writer("never")
    writer.write(b"x" * 1000)
    writer.abort()
    assert calls == []
    assert store.head("never") is None


def test_a_failed_part_aborts_the_upload_and_fails_the_writer(
    store: ObjectStore, small_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.client.upload_part

    def refuse_second(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "SlowDown", "Message": "injected"}}, "UploadPart"
            )
        return real(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", refuse_second)
    writer = store.writer("broken")

    def write_all() -> None:
        for _ in range(20):
            writer.write(b"z" * small_parts)
        writer.complete()

    with pytest.raises(StorageError, match=r"cannot write s3://test-bucket/broken: .*SlowDown"):
        write_all()
    assert store.head("broken") is None
    assert pending_uploads(store) == []
    assert writer.size < 20 * small_parts  # the failure stopped the writing early


def test_a_refused_complete_aborts_the_upload(
    store: ObjectStore, small_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> Any:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "InternalError", "Message": "injected"}}, "CompleteMultipartUpload"
        )

    monkeypatch.setattr(store.client, "complete_multipart_upload", refuse)
    writer = store.writer("refused")
    writer.write(b"q" * (2 * small_parts + 1))
    with pytest.raises(StorageError, match="InternalError"):
        writer.complete()
    assert store.head("refused") is None
    assert pending_uploads(store) == []


def test_parts_in_flight_are_bounded_per_object_and_per_store(
    store: ObjectStore, small_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    monkeypatch.setattr(storage, "PARTS_PER_UPLOAD", 2)
    monkeypatch.setattr(storage, "PARTS_IN_FLIGHT", 3)
    real = store.client.upload_part
    lock = threading.Lock()
    active: dict[str, int] = {"a": 0, "b": 0}
    highest = {"a": 0, "b": 0, "all": 0}

    def slow(**kwargs: Any) -> Any:
        key = kwargs["Key"]
        with lock:
            active[key] += 1
            highest[key] = max(highest[key], active[key])
            highest["all"] = max(highest["all"], sum(active.values()))
        time.sleep(0.02)  # lets parts pile up if nothing held them back
        try:
            return real(**kwargs)
        finally:
            with lock:
                active[key] -= 1

    monkeypatch.setattr(store.client, "upload_part", slow)

    def write(key: str) -> None:
        writer = store.writer(key)
        for _ in range(8):
            writer.write(key.encode() * small_parts)
        writer.complete()

    threads = [threading.Thread(target=write, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert highest["a"] <= 2 and highest["b"] <= 2
    assert highest["all"] <= 3
    assert store.get_bytes("a") == b"a" * 8 * small_parts


def test_a_known_size_beyond_the_part_limit_gets_larger_parts(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "PART_SIZE", 8 * MiB)
    assert store.writer("k", size=8 * MiB * 10_000).part_size == 8 * MiB
    assert store.writer("k", size=8 * MiB * 10_000 + 1).part_size == 9 * MiB
    assert store.writer("k", size=200 * 1024**3).part_size == 21 * MiB
    assert store.writer("k").part_size == 8 * MiB


def test_an_empty_bucket_name_is_a_config_error(s3_client: Any) -> None:
    with pytest.raises(ConfigError, match="no bucket given"):
        ObjectStore(s3_client, "  ")


def test_a_missing_profile_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="AWS profile 'nobody' is not configured"):
        make_s3_client(profile="nobody")


@pytest.mark.parametrize(
    ("endpoint", "signed"),
    [
        ("http://127.0.0.1:8333", False),
        ("http://localhost:9000", False),
        ("http://[::1]:9000", False),
        ("http://10.0.0.5:9000", None),
        ("http://minio.example.com", None),
        ("https://127.0.0.1:8333", None),
        (None, None),
    ],
    ids=["loopback-ip", "localhost", "loopback-v6", "lan", "remote-http", "https", "aws"],
)
def test_bodies_are_signed_except_over_plain_http_on_loopback(
    endpoint: str | None, signed: bool | None
) -> None:
    client = make_s3_client(endpoint_url=endpoint, access_key=("a", "b"))
    assert client.meta.config.s3.get("payload_signing_enabled") is signed  # None: botocore's rule


def test_a_loopback_put_sends_an_unsigned_body_with_its_checksum(moto_server: str) -> None:
    client = make_s3_client(endpoint_url=moto_server, access_key=("a", "b"))
    client.create_bucket(Bucket="unsigned")
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                for k, v in request.headers.items()
            }
        )

    client.meta.events.register("before-send.s3.PutObject", capture)
    ObjectStore(client, "unsigned").put_bytes("k", b"body")
    (headers,) = sent
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    # The CRC32 rq computed (one zlib call), in a header: no aws-chunked trailer.
    assert headers["x-amz-checksum-crc32"] == "26gLsg=="  # base64 of crc32(b"body"), big-endian
    assert "aws-chunked" not in headers.get("content-encoding", "")


def test_a_part_carries_its_crc32_in_a_header_and_a_reused_buffer_is_copied(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import zlib

    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 512 * 1024)
    client = make_s3_client(endpoint_url=moto_server, access_key=("a", "b"))
    client.create_bucket(Bucket="parts")
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        sent.append({k: v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()})

    client.meta.events.register("before-send.s3.UploadPart", capture)
    body = bytes(range(256)) * 5000  # 1.28 MB: three parts
    writer = ObjectStore(client, "parts").writer("k")
    buffer = bytearray(100_000)
    for start in range(0, len(body), len(buffer)):
        piece = body[start : start + len(buffer)]
        buffer[: len(piece)] = piece
        writer.write(buffer[: len(piece)] if len(piece) < len(buffer) else buffer)
        buffer[:] = b"\0" * len(buffer)  # the caller reuses its buffer at once
    writer.complete()
    assert ObjectStore(client, "parts").get_bytes("k") == body
    parts = [body[i : i + 512 * 1024] for i in range(0, len(body), 512 * 1024)]
    # S3 checks each part against the header; no aws-chunked trailer is streamed.
    assert sorted(h["x-amz-checksum-crc32"] for h in sent) == sorted(
        base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode() for part in parts
    )
    assert all("aws-chunked" not in h.get("content-encoding", "") for h in sent)


def test_only_large_bodies_wait_for_100_continue(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore asks every PUT to wait for "100 Continue": a round trip per small object.
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256 * 1024)
    monkeypatch.setattr(storage, "PART_SIZE", 512 * 1024)
    monkeypatch.setattr(storage, "EXPECT_CONTINUE_MIN", 300 * 1024)
    client = make_s3_client(endpoint_url=moto_server, access_key=("a", "b"))
    client.create_bucket(Bucket="expect")
    sent: list[tuple[str, int, str | None]] = []

    def capture(request: Any, event_name: str, **_: Any) -> None:
        expect = request.headers.get("Expect")
        size = int(request.headers.get("Content-Length", 0))
        text = expect.decode() if isinstance(expect, bytes) else expect
        sent.append((event_name.rsplit(".", 1)[-1], size, text))

    client.meta.events.register("before-send.s3", capture)
    store = ObjectStore(client, "expect")
    store.put_bytes("small", b"x" * 1000)
    store.put_bytes("large", b"y" * (400 * 1024))
    store.put_bytes_if("cond", b"z" * 10, if_none_match=True)
    writer = store.writer("parts")
    writer.write(b"p" * (512 * 1024 + 200 * 1024))
    writer.complete()
    assert store.get_bytes("large") == b"y" * (400 * 1024)
    assert store.head("parts") is not None
    expects = {(op, size): expect for op, size, expect in sent if op in ("PutObject", "UploadPart")}
    assert expects == {
        ("PutObject", 1000): None,
        ("PutObject", 400 * 1024): "100-continue",
        ("PutObject", 10): None,
        ("UploadPart", 512 * 1024): "100-continue",
        ("UploadPart", 200 * 1024): None,
    }


# -- replace_metadata: new metadata in place by a server-side copy --


def test_metadata_and_content_type_are_replaced_bytes_kept(store: ObjectStore) -> None:
    etag = store.put_bytes(
        "pr/pr.class", b"class data", content_type="application/java-vm", metadata={"a": "1"}
    )
    new = store.replace_metadata(
        "pr/pr.class",
        {"mtime": "1717677000.000000000", "note": "café"},
        content_type="text/plain; charset=utf-8",
        if_match=etag,
    )
    head = store.head("pr/pr.class")
    assert head is not None
    assert new == head.etag == etag  # a single copy of the same bytes keeps the ETag
    assert head.metadata == {"mtime": "1717677000.000000000", "note": "café"}  # "a" is gone
    assert head.content_type == "text/plain; charset=utf-8"
    assert store.get_bytes("pr/pr.class") == b"class data"


@pytest.mark.integration
def test_a_changed_object_is_left_alone(seaweed_bucket: tuple[str, str]) -> None:
    # moto ignores CopySourceIfMatch; SeaweedFS, like S3, answers 412.
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    store.put_bytes("k", b"one", metadata={"a": "1"})
    with pytest.raises(StorageError, match=f"cannot update metadata of s3://{bucket}/k"):
        store.replace_metadata("k", {"a": "2"}, content_type="text/plain", if_match="0" * 32)
    head = store.head("k")
    assert head is not None and head.metadata == {"a": "1"}


def test_a_missing_object_is_a_clear_error(store: ObjectStore) -> None:
    with pytest.raises(StorageError, match="no such object"):
        store.replace_metadata("gone", {}, content_type="text/plain")


def test_objects_over_the_copy_limit_are_copied_part_by_part(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CopyObject stops at 5 GiB; the same path is taken here with a smaller limit.
    part = 5 * 1024 * 1024  # S3's smallest part
    monkeypatch.setattr(storage, "COPY_LIMIT", part)
    monkeypatch.setattr(storage, "COPY_PART_SIZE", part)
    data = bytes(range(256)) * (part // 256) + b"tail"
    etag = store.put_bytes("big", data, metadata={"old": "x"})
    new = store.replace_metadata("big", {"mtime": "1.000000000"}, content_type="text/plain")
    head = store.head("big")
    assert head is not None
    assert new == head.etag != etag and head.etag.endswith("-2")
    assert head.metadata == {"mtime": "1.000000000"}
    assert head.content_type == "text/plain"
    assert store.get_bytes("big") == data
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


# -- versioning: the status, version ids, reading an old version --


def test_versioning_status(store: ObjectStore) -> None:
    assert store.versioning() == ""
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    assert store.versioning() == "Enabled"
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    assert store.versioning() == "Suspended"


def test_unversioned_objects_have_no_version_id(store: ObjectStore) -> None:
    store.put_bytes("k", b"one")
    head = store.head("k")
    assert head is not None and head.version_id is None


def test_old_versions_are_read_by_id(store: ObjectStore) -> None:
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store.put_bytes("k", b"one")
    first = store.head("k")
    store.put_bytes("k", b"two")
    second = store.head("k")
    assert first is not None and second is not None
    assert first.version_id and second.version_id and first.version_id != second.version_id
    assert store.get_bytes("k") == b"two"
    assert store.get_bytes("k", version_id=first.version_id) == b"one"
    sink = io.BytesIO()
    assert store.download_to("k", sink, version_id=first.version_id) == 3
    assert sink.getvalue() == b"one"
    with store.open("k", version_id=second.version_id) as stream:
        assert stream.info.version_id == second.version_id


def test_a_missing_version_names_it(store: ObjectStore) -> None:
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store.put_bytes("k", b"one")
    with pytest.raises(StorageError, match=r"s3://test-bucket/k\?versionId=nope"):
        store.get_bytes("k", version_id="nope")


# -- reader options (Polars' object-store reader) --------------------------------------------------


def test_reader_options_follow_a_local_endpoint_and_the_clients_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token")
    store = ObjectStore(
        make_s3_client(endpoint_url="http://127.0.0.1:9/", region="eu-west-3"), "bucket"
    )
    reader = store.reader_options()
    assert reader.storage_options == {
        "aws_region": "eu-west-3",
        "aws_endpoint_url": "http://127.0.0.1:9",
        "aws_virtual_hosted_style_request": "false",
        "aws_allow_http": "true",
    }
    assert reader.credential_provider() == (
        {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_session_token": "a-token",
        },
        None,
    )


def test_reader_options_leave_the_aws_endpoint_to_the_region() -> None:
    store = ObjectStore(make_s3_client(region="us-west-2"), "bucket")
    options = store.reader_options().storage_options
    assert options == {"aws_region": "us-west-2"}


def test_polars_reads_an_object_of_seaweedfs_through_the_reader_options(
    seaweed_bucket: tuple[str, str],
) -> None:
    import polars as pl

    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    buffer = io.BytesIO()
    pl.DataFrame({"year": [2019, 2020], "n": [1, 2]}).write_parquet(buffer)
    store.put_bytes("t/x.parquet", buffer.getvalue())
    reader = store.reader_options()
    frame = pl.scan_parquet(
        store.url("t/x.parquet"),
        storage_options=reader.storage_options,
        credential_provider=reader.credential_provider,
    ).collect()
    assert frame.rows() == [(2019, 1), (2020, 2)]


def test_s3_access_makes_its_one_client_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    real = storage.make_s3_client
    monkeypatch.setattr(
        storage, "make_s3_client", lambda **kw: made.append(kw) or real(access_key=("a", "b"), **kw)
    )
    s3 = S3Access(endpoint_url="http://127.0.0.1:9", max_pool_connections=3)
    assert made == []
    one, two = s3.store("one"), s3.store("two")
    assert made == [{"endpoint_url": "http://127.0.0.1:9", "max_pool_connections": 3}]
    assert one.client is two.client is s3.client
    assert (one.bucket, two.bucket, one.endpoint_url) == ("one", "two", "http://127.0.0.1:9")


def test_s3_access_uses_the_client_it_is_given(
    s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "make_s3_client", lambda **kw: pytest.fail("a client was made"))
    s3 = S3Access(client=s3_client)
    assert s3.client is s3_client and s3.store("b").client is s3_client
    with pytest.raises(ConfigError, match="no bucket given"):
        s3.store(" ")


# -- downloads to the local disk ------------------------------------------------------------------


def test_a_download_larger_than_the_free_space_is_refused_before_writing(
    store: ObjectStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("pr/pr.data.0.Current", b"x" * 3_000_000)
    monkeypatch.setattr(storage, "free_bytes", lambda directory: 1_000_000)
    target = tmp_path / "copy"
    with target.open("wb") as fh, pytest.raises(NoSpaceError) as caught:
        store.download_to("pr/pr.data.0.Current", fh)
    assert str(caught.value).startswith(
        f"no space left in {tmp_path}: need ~3 MB, have 1 MB (to download "
        "s3://test-bucket/pr/pr.data.0.Current)"
    )
    assert (caught.value.directory, caught.value.needed) == (str(tmp_path), 3_000_000)
    assert target.stat().st_size == 0  # nothing was written


def test_a_disk_that_fills_up_during_a_download_is_a_no_space_error(store: ObjectStore) -> None:
    store.put_bytes("pr/pr.data.0.Current", b"x" * 2_500_000)
    # /dev/full answers every write with ENOSPC, as a full disk does.
    with open("/dev/full", "wb", buffering=0) as fh, pytest.raises(NoSpaceError) as caught:
        store.download_to("pr/pr.data.0.Current", fh)
    assert str(caught.value).startswith("no space left in /dev: need ~3 MB, have ")
    assert "cannot read" not in str(caught.value)


def test_a_download_into_a_buffer_checks_no_disk(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("k", b"abc")
    monkeypatch.setattr(storage, "free_bytes", lambda directory: 0)
    buffer = io.BytesIO()
    assert store.download_to("k", buffer) == 3
    assert buffer.getvalue() == b"abc"


def test_uploads_at_ends_when_the_endpoint_does_not_move_on(store: Any) -> None:
    # An S3-compatible endpoint that answers "truncated" without a marker that moves on would
    # be listed for ever.
    key = "pr/big.file"
    first = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    real = store.client.list_multipart_uploads
    calls: list[dict[str, Any]] = []

    def stuck(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        if len(calls) > 5:
            raise AssertionError("listed the uploads for ever")
        return {**real(**kwargs), "IsTruncated": True}

    store.client.list_multipart_uploads = stuck
    assert first in store.uploads_at(key)
    assert len(calls) <= 2


def test_get_bytes_holds_the_body_once_not_its_chunks_and_their_join(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # A series file is read whole (up to 512 MB): 64 KiB chunks joined held it twice at the end.
    import tracemalloc

    size = 16 * 1024 * 1024
    path = tmp_path / "body"
    path.write_bytes(b"x" * size)
    info = storage.ObjectInfo("k", size, "etag")

    def open_file(key: str, **_: Any) -> storage.ObjectStream:
        return storage.ObjectStream(info, None, path.open("rb", buffering=0))

    monkeypatch.setattr(store, "open", open_file)
    tracemalloc.start()
    try:
        body = store.get_bytes("k", max_bytes=size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(body) == size
    assert peak < 1.25 * size, f"peak {peak / size:.2f}x the body"
