"""ObjectStore.replace_metadata: new metadata in place by a server-side copy (moto S3)."""

from __future__ import annotations

import pytest

from rearcquest import storage
from rearcquest.errors import StorageError
from rearcquest.storage import ObjectStore, make_s3_client


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
