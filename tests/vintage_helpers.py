"""The four real pr releases synced in order into a versioned bucket, once per module."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
import pytest

from conftest import FAST, release
from rearcquest.aws.storage import ObjectStore
from rearcquest.layout import releases_key
from rearcquest.offline import OfflineServer
from rearcquest.records.releases import Release, ReleaseFile, ReleaseLog
from sync_helpers import sync_dir

VINTAGES = ["2024-06-06", "2025-06-05", "2025-09-04", "2026-08-06"]
# Release stamps are UTC: the served files' Last-Modified (08:30 US Eastern is 12:30 UTC).
STAMPS = [
    max(f.last_modified for f in release(v).values()).strftime("%Y-%m-%d %H:%M") for v in VINTAGES
]
SLUGS = [s.replace(" ", "T").replace(":", "") for s in STAMPS]
BUCKET = "vintage-bucket"
CONTACT = "tests@example.com"
DATA = "pr.data.0.Current"


def synced_mirror(endpoint_url: str | None = None) -> Iterator[dict[str, Any]]:
    """For a module-scoped fixture: four releases synced in order (``--vintages``) into a
    versioned bucket, on moto in-process or, given its ``endpoint_url``, on a real S3 server."""
    from moto import mock_aws

    env = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        env.setenv(name, value)
    try:
        with contextlib.ExitStack() as stack:
            if endpoint_url is None:
                stack.enter_context(mock_aws())
            client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint_url)
            client.create_bucket(Bucket=BUCKET)
            client.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
            yield _sync_releases(client)
    finally:
        env.undo()


def _sync_releases(client: Any) -> dict[str, Any]:
    store = ObjectStore(client, BUCKET)
    results = []
    with OfflineServer(release(VINTAGES[0])) as server:
        for vintage in VINTAGES:
            server.set_files(release(vintage))
            result = sync_dir(
                store, source_url=server.bls_url, contact=CONTACT, retry=FAST, vintages=True
            )
            result.raise_for_errors()
            results.append(result)
        # A sync that changes nothing records no release.
        sync_dir(store, source_url=server.bls_url, contact=CONTACT, retry=FAST)
    return {"client": client, "store": store, "results": results}


def put_release_files(
    client: Any, bucket: str, prefix: str, vintage: str
) -> dict[str, dict[str, str]]:
    """Put one real release's files (but the 3 MB AllData) under ``prefix`` of a versioned
    bucket; return the release log's ``files`` for them: each sha256 and S3 version id."""
    files = {}
    for name, served in release(vintage).items():
        if name == "pr.data.1.AllData":
            continue
        put = client.put_object(Bucket=bucket, Key=prefix + name, Body=served.data)
        files[name] = {
            "sha256": hashlib.sha256(served.data).hexdigest(),
            "version_id": put["VersionId"],
        }
    return files


def write_release_log(
    client: Any, bucket: str, prefix: str, releases: list[tuple[str, dict[str, Any]]]
) -> None:
    """Write a release log by hand (as a tampered or a hand-made one): ``(stamp, files)`` each."""
    doc = {
        "version": 1,
        "prefix": prefix,
        "releases": [
            {
                "release": stamp,
                "synced_at": "2026-01-01T00:00:00+00:00",
                "changed": [],
                "removed": [],
                "files": files,
            }
            for stamp, files in releases
        ],
    }
    client.put_object(Bucket=bucket, Key=releases_key(prefix), Body=json.dumps(doc).encode())


def logged_releases(
    store: ObjectStore,
    releases: Sequence[tuple[str, Mapping[str, bytes | None]]],
    *,
    prefix: str = "pr/",
) -> None:
    """Make ``store``'s bucket versioned, put each release's files as new versions (oldest
    release first) and write the release log naming them: releases whose bytes no BLS server
    would serve (duplicate keys, wide values, control characters). A file given as ``None`` is
    only named in the log (no object is put: S3 keys with control characters are refused)."""
    store.client.put_bucket_versioning(
        Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    logged = []
    for stamp, files in releases:
        entries = {}
        for name, data in files.items():
            if data is None:
                entries[name] = ReleaseFile(hashlib.sha256(b"").hexdigest())
                continue
            put = store.client.put_object(Bucket=store.bucket, Key=prefix + name, Body=data)
            entries[name] = ReleaseFile(hashlib.sha256(data).hexdigest(), put["VersionId"])
        logged.append(
            Release(stamp, "2026-01-01T00:00:00+00:00", tuple(sorted(files)), (), entries)
        )
    store.put_bytes(releases_key(prefix), ReleaseLog(prefix, tuple(logged)).to_json())


def data_file(*rows: tuple[str, int, str, str]) -> bytes:
    """A BLS data file of ``(series_id, year, period, value)`` rows, padded as BLS pads them."""
    lines = ["series_id        \tyear\tperiod\t       value\tfootnote_codes"]
    lines += [f"{s:<17}\t{y}\t{p}\t{v:>12}\t" for s, y, p, v in rows]
    return ("\r\n".join(lines) + "\r\n").encode()
