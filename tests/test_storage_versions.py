"""ObjectStore and S3 versioning: the status, version ids, and reading an old version."""

from __future__ import annotations

import io

import pytest

from rearcquest.errors import StorageError
from rearcquest.storage import ObjectStore


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
