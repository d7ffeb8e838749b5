"""How fast the benchmark's SeaweedFS takes in one big object, with no source at all.

This is the floor under the ``big`` fixture of ``run.py``: whatever the source, a sync of one big
file cannot be faster than writing its bytes into the S3 server. Three writers, each run
``--repeat`` times into a fresh SeaweedFS on 127.0.0.1:

- ``writer``: bytes already in memory, through ``ObjectStore.writer`` (the sync's streaming
  multipart upload: 8 MiB parts, 8 in flight), in the 64 kB pieces a download arrives in;
- ``writer+sha256``: the same, hashing every piece as the sync does;
- ``rclone``: ``rclone copyto`` of the same bytes from a local file (skipped without rclone).

Usage::

    python benchmarks/sync/ingest.py                 # 2 GiB, each writer twice
    python benchmarks/sync/ingest.py --mib 256 --repeat 1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

from rearcquest.aws.storage import ObjectStore, make_s3_client

PIECE = 64 * 1024
BLOCK = 8 * 1024 * 1024


def write(store: ObjectStore, key: str, size: int, *, sha256: bool) -> None:
    """Write ``size`` bytes through the streaming writer, piece by piece."""
    block = os.urandom(BLOCK)
    digest = hashlib.sha256() if sha256 else None
    writer = store.writer(key, size=size)
    sent = 0
    while sent < size:
        for start in range(0, BLOCK, PIECE):
            piece = block[start : start + PIECE]
            if digest is not None:
                digest.update(piece)
            writer.write(piece)
        sent += BLOCK
    writer.complete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="object size in MiB (whole 8 MiB)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per writer")
    args = parser.parse_args(argv)
    size = max(1, args.mib // 8) * BLOCK
    work = bench.WORK / "ingest"
    shutil.rmtree(work, ignore_errors=True)
    env = bench.clean_env()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    print(f"| writer | {size / 2**20:,.0f} MiB: wall s | CPU s (this process) |")
    print("|---|--:|--:|")
    try:
        with bench.seaweedfs(work / "seaweedfs") as weed:
            store = ObjectStore(make_s3_client(endpoint_url=weed.s3), "ingest")
            store.create_bucket()
            for n in range(args.repeat):
                for label, sha256 in (("writer", False), ("writer+sha256", True)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    write(store, f"{label}-{n}", size, sha256=sha256)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    print(f"| {label} | {wall:.1f} | {cpu:.1f} |", flush=True)
            if shutil.which("rclone") is None:
                print("rclone is not on PATH: its row is skipped")
                return 0
            path = work / "object.bin"
            block = os.urandom(BLOCK)
            with path.open("wb") as out:
                for _ in range(size // BLOCK):
                    out.write(block)
            config = work / "rclone.conf"
            config.write_text("")
            for n in range(args.repeat):
                cmd = [
                    "rclone", "--config", str(config), "copyto", str(path), f":s3:ingest/rclone-{n}",
                    "--s3-provider", "SeaweedFS", "--s3-endpoint", weed.s3,
                    "--s3-access-key-id", bench.S3_KEYS["AWS_ACCESS_KEY_ID"],
                    "--s3-secret-access-key", bench.S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                ]  # fmt: skip
                wall = time.perf_counter()
                subprocess.run(cmd, check=True, env=env)
                print(f"| rclone copyto | {time.perf_counter() - wall:.1f} | |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
