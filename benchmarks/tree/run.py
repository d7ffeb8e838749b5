"""`rq sync-bls --survey all` against `rclone sync` of a whole generated ``time.series`` tree.

The tree is generated from ``tests/data/bls/time-series-inventory.tsv.gz`` (the real surveys' data
file counts and largest file sizes): 60 surveys, each with its mapping files (``<s>.series``,
``<s>.footnote``, ... 1-50 kB) and its data files (the largest as in the inventory, the others
log-uniform below it), all scaled so the tree holds about ``--total-mb`` (2,000 MB) in about
1,500 files from 1 kB to 200 MB. The files are written once to ``benchmarks/work/tree/`` and
served from disk by :class:`rearcquest.offline.OfflineServer` under ``/pub/time.series/`` (IIS
pages, ``<dir>`` rows in the root), 20 ms added to every request, no rate limit.

Each tool syncs the whole root into its own fresh SeaweedFS bucket (full sync, checked file by
file: names and sizes), then again (no-op: no file body, no byte into S3). rq:
``rq sync-bls --survey all --root-url URL --max-rps 0``; rclone: ``rclone sync :http: :s3:B
--http-url URL`` (its http backend walks the directories). Figures: wall time, CPU, peak RSS,
requests the source answered (listings and files apart).

Usage:
    .venv/bin/python benchmarks/tree/run.py                   # ~2 GB, both tools, once
    .venv/bin/python benchmarks/tree/run.py --total-mb 200    # a quick, smaller tree

Needs ``rclone`` and GNU ``time`` on PATH and ``weed`` in the virtualenv, like benchmarks/sync.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import math
import random
import shlex
import shutil
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rearcquest.offline import OfflineServer, ServedFile

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "tests" / "data" / "bls" / "time-series-inventory.tsv.gz"
WORK = REPO / "benchmarks" / "work" / "tree"
SURVEYS = 60
DELAY = 0.02
MIN_SIZE = 1_000
MAX_SIZE = 200_000_000
MAPPINGS = (
    "series", "footnote", "area", "item", "period", "seasonal", "base", "txt", "contacts",
    "industry", "occupation", "measure",
)  # fmt: skip


def _sync_module():  # type: ignore[no-untyped-def]
    """benchmarks/sync/run.py: its process measurement, SeaweedFS and environment helpers."""
    spec = importlib.util.spec_from_file_location("sync_bench", REPO / "benchmarks/sync/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sync_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Planned:
    survey: str
    name: str
    size: int


def plan_tree(inventory: Path, *, total_bytes: int, seed: int = 11) -> list[Planned]:
    """The tree's files and sizes, from the inventory, scaled to about ``total_bytes``."""
    rng = random.Random(seed)
    with gzip.open(inventory, "rt", newline="") as handle:
        rows = sorted(csv.DictReader(handle, delimiter="\t"), key=lambda r: r["survey"])[:SURVEYS]
    raw: list[tuple[str, str, float]] = []
    for row in rows:
        survey, count = row["survey"], max(1, int(row["data_files"]))
        largest = float(row["largest_data_file_mb"]) * 1e6
        for mapping in MAPPINGS:
            raw.append((survey, f"{survey}.{mapping}", 10 ** rng.uniform(3, 4.7)))
        raw.append((survey, row["largest_data_file"], largest))
        for n in range(count - 1):
            size = 10 ** rng.uniform(3, math.log10(max(largest, 2e3)))
            raw.append((survey, f"{survey}.data.{n + 1}.Part{n:03d}", size))

    def sized(scale: float) -> list[Planned]:
        return [
            Planned(
                s, n, int(min(MAX_SIZE, max(MIN_SIZE, size * scale if ".data." in n else size)))
            )
            for s, n, size in raw
        ]

    # Scale the data files until the total is right; files clamped at 200 MB push the rest up.
    scale = 1.0
    for _ in range(20):
        total = sum(p.size for p in sized(scale))
        if abs(total - total_bytes) < total_bytes * 0.005:
            break
        scale *= total_bytes / total
    return sized(scale)


def write_tree(planned: list[Planned], root: Path) -> dict[str, dict[str, ServedFile]]:
    """Write the files (text rows like BLS's) under ``root/<survey>/``; return them by survey."""
    listed = datetime(2026, 8, 6, 8, 30)
    block = b"".join(
        f"CUUR0000SA0{i:06d}\t{2000 + i % 26}\tM{1 + i % 12:02d}\t{100 + i % 997}.{i % 10}\t\n".encode()
        for i in range(40_000)
    )
    tree: dict[str, dict[str, ServedFile]] = {}
    for item in planned:
        path = root / item.survey / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.stat().st_size != item.size:
            with path.open("wb") as out:
                header = f"series_id\tyear\tperiod\tvalue\tfootnote_codes\t{item.name}\n".encode()
                out.write(header[: item.size])
                left = item.size - min(len(header), item.size)
                while left > 0:
                    out.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
        tree.setdefault(item.survey, {})[item.name] = ServedFile(item.name, b"", listed, path=path)
    return tree


def verify(client: object, bucket: str, tree: dict[str, dict[str, ServedFile]]) -> str:
    """The bucket holds every file of the tree at ``<survey>/<name>`` with its size."""
    paginator = client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    stored = {
        o["Key"]: o["Size"]
        for page in paginator.paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if not o["Key"].startswith(".rearcquest/")
    }
    want = {f"{s}/{n}": f.size for s, files in tree.items() for n, f in files.items()}
    if stored != want:
        missing = sorted(set(want) - set(stored))[:3]
        return f"no: {len(stored)} objects for {len(want)} files (missing {missing})"
    return "yes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-mb", type=int, default=2000)
    parser.add_argument("--tool", nargs="+", choices=("rq", "rclone"), default=["rq", "rclone"])
    parser.add_argument("--parallel", type=int, default=8, help="rq --parallel")
    parser.add_argument("--transfers", type=int, default=4, help="rq --transfers")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/tree")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool, tools taking turns")
    parser.add_argument("--rq-command", help="how to run rq (default: the virtualenv's rq)")
    args = parser.parse_args(argv)
    bench = _sync_module()
    bench.compile_rq()
    if args.rq_command:
        bench.RQ[:] = shlex.split(args.rq_command)

    planned = plan_tree(INVENTORY, total_bytes=args.total_mb * 1_000_000)
    tree = write_tree(planned, WORK / "files")
    sizes = [p.size for p in planned]
    print(
        f"tree: {len(tree)} surveys, {len(planned)} files, {sum(sizes) / 1e6:,.0f} MB, "
        f"{min(sizes):,} B to {max(sizes) / 1e6:,.1f} MB",
        flush=True,
    )
    first, *rest = sorted(tree)
    server = OfflineServer(
        tree[first],
        directory=f"/pub/time.series/{first}/",
        surveys={s: tree[s] for s in rest},
        delay=DELAY,
    ).start()
    root_url = server.root_url
    config = WORK / "rclone.conf"
    config.write_text("")
    walls: dict[tuple[str, str], list[float]] = {}
    try:
        with bench.seaweedfs(WORK / "seaweedfs") as weed:
            # Tools take turns, run by run, so a slow spell on the machine hits all alike.
            for tool, n in ((t, n) for n in range(args.repeat) for t in args.tool):
                bucket = f"tree-{tool}-{n}"
                weed.client.create_bucket(Bucket=bucket)
                if tool == "rq":
                    cmd = [
                        *bench.RQ, "--quiet", "sync-bls", "--bucket", bucket, "--survey", "all",
                        "--root-url", root_url, "--contact", bench.CONTACT, "--endpoint-url",
                        weed.s3, "--max-rps", "0", "--parallel", str(args.parallel),
                        "--transfers", str(args.transfers), "--format", "json",
                    ]  # fmt: skip
                else:
                    cmd = [
                        "rclone", "--config", str(config), "sync", ":http:", f":s3:{bucket}",
                        "--http-url", root_url, "--user-agent", bench.USER_AGENT,
                        "--s3-provider", "SeaweedFS", "--s3-endpoint", weed.s3,
                        "--s3-access-key-id", bench.S3_KEYS["AWS_ACCESS_KEY_ID"],
                        "--s3-secret-access-key", bench.S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                    ]  # fmt: skip
                for phase in ("full sync", "no-op"):
                    server.requests.clear()
                    got = bench.measure(cmd, bench.clean_env(), WORK)
                    if got.code != 0:
                        print(f"{tool} {phase} failed ({got.code}):\n{got.stderr[-3000:]}")
                        return 1
                    listings = sum(1 for r in server.requests if r.path.endswith("/"))
                    files = len(server.requests) - listings
                    verified = verify(weed.client, bucket, tree) if phase == "full sync" else "-"
                    walls.setdefault((tool, phase), []).append(got.wall)
                    print(
                        f"| {tool:<6} | {phase:<9} | {got.wall:8.1f} s | {got.cpu:7.1f} s | "
                        f"{got.rss_mib:6.0f} MiB | {listings:5d} | {files:5d} | {verified} |",
                        flush=True,
                    )
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    for (tool, phase), times in sorted(walls.items()):
        spread = f" ({min(times):.1f}-{max(times):.1f})" if len(times) > 1 else ""
        print(f"median {tool:<6} {phase:<9} {statistics.median(times):8.1f} s{spread}")
    for phase in ("full sync", "no-op"):
        if ("rq", phase) in walls and ("rclone", phase) in walls:
            ratio = statistics.median(walls["rq", phase]) / statistics.median(
                walls["rclone", phase]
            )
            print(f"rq / rclone, {phase}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
