"""Use rearcquest as a library: mirror a BLS directory and print what changed.

    RQ_BLS_BUCKET=my-bucket RQ_CONTACT=you@example.com python examples/library_sync.py

Any S3-compatible endpoint works through AWS_ENDPOINT_URL; RQ_BLS_URL picks another directory.
"""

from __future__ import annotations

import os
import sys

from rearcquest import ObjectStore, RqError, SyncOptions, make_s3_client, sync_bls
from rearcquest.config import DEFAULT_BLS_URL


def main() -> int:
    store = ObjectStore(make_s3_client(), os.environ["RQ_BLS_BUCKET"])
    try:
        options = SyncOptions(
            source_url=os.environ.get("RQ_BLS_URL", DEFAULT_BLS_URL),
            contact=os.environ.get("RQ_CONTACT"),
        )
        result = sync_bls(store, options)
        result.raise_for_errors()
    except RqError as exc:
        print(f"sync failed: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"added {len(result.added)}, updated {len(result.updated)}, deleted {len(result.deleted)}"
    )
    for name in result.added + result.updated:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
