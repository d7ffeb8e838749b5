"""The S3-compatible server fixture really stores objects with metadata."""

from __future__ import annotations

import pytest

from rearcquest.aws.storage import ObjectStore, make_s3_client

pytestmark = pytest.mark.integration


def test_roundtrip_with_metadata(seaweed_bucket: tuple[str, str]) -> None:
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    etag = store.put_bytes("a/b.txt", b"hello", metadata={"rq-sha256": "abc"})
    info = store.head("a/b.txt")
    assert info is not None
    assert info.etag == etag
    assert info.metadata["rq-sha256"] == "abc"
    assert [o.key for o in store.list_objects("a/")] == ["a/b.txt"]
    assert store.get_bytes("a/b.txt") == b"hello"
