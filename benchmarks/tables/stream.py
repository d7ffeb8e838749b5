"""Peak memory and temporary disk of one ``rq tables`` build, by the size of the data file.

For each scale (the real ``pr.data.0.Current`` repeated N times, see
``benchmarks/analyze/generate.py``) the survey ``pr`` (that data file, the real series and mapping
files) is put in a SeaweedFS bucket, and a fresh Python process builds its tables
(``rearcquest.data.tables.build_tables``) with ``TMPDIR`` pointing at an empty folder. Reported:
the build's wall time, the process's peak RSS (its ``VmHWM``), the most bytes the
temporary folder held (sampled every 50 ms) and the partition's size against the text's. The
partition is checked to hold exactly the rows of ``observations_query`` over the local text.

``--src`` runs the build with another copy of rq's ``src`` (e.g. ``git archive <commit> src``
unpacked somewhere), to compare a change with the code before it.

Usage:
    python benchmarks/tables/stream.py                      # 100x, 200x (165 MB, 330 MB)
    python benchmarks/tables/stream.py --times 200 --src /tmp/old/src

Needs the test extra (the ``weed`` binary). Files go to benchmarks/work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "analyze"))
sys.path.insert(0, str(REPO / "tests"))

from generate import DEFAULT_SOURCE, generate  # noqa: E402

from weed import seaweedfs  # noqa: E402

WORK = REPO / "benchmarks" / "work"
BUCKET = "stream-bench"

# The child: build the tables of pr, print the result as JSON (the parent measures it).
CHILD = """
import json, sys
from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.data.tables import build_tables
store = ObjectStore(make_s3_client(endpoint_url=sys.argv[1]), sys.argv[2])
doc = build_tables(store, surveys=["pr"]).to_dict()
# VmHWM: the peak of this process's own memory (ru_maxrss would count the parent's, forked).
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({**doc, "peak_kb": int(status)}))
"""


def _text(times: int) -> Path:
    path = WORK / f"pr.data.0.Current.x{times}"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        generate(path, times)
    return path


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            # A file removed between the listing and the stat counts for nothing.
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def _measure(src: Path, endpoint: str) -> dict[str, float]:
    """Run the child build; its wall time, peak RSS and the peak of its temporary folder."""
    with tempfile.TemporaryDirectory(prefix="rq-stream-bench-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(src),
            "TMPDIR": tmp,
            "AWS_ACCESS_KEY_ID": "weed",
            "AWS_SECRET_ACCESS_KEY": "weed",
            "AWS_REGION": "us-east-1",
        }
        peak_tmp = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tmp
            while not done.wait(0.05):
                peak_tmp = max(peak_tmp, _folder_bytes(Path(tmp)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, endpoint, BUCKET], env=env, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        status = proc.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        if status != 0:
            raise SystemExit(f"the build failed ({status})")
        result = json.loads(out)
        if result["failed"]:
            raise SystemExit(f"the build failed: {result['tables']}")
        return {"seconds": seconds, "rss_mb": result["peak_kb"] / 1024, "tmp_mb": peak_tmp / 1e6}


def main() -> None:
    import polars as pl

    from rearcquest.aws.storage import ObjectStore, make_s3_client
    from rearcquest.data.tables import observations_query

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", default="100,200", help="scales, comma-separated")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="rq's src to build with")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rq-weed-") as root, seaweedfs(Path(root)) as weed:
        client = make_s3_client(endpoint_url=weed.url, access_key=("weed", "weed"))
        store = ObjectStore(client, BUCKET)
        store.create_bucket()
        release = DEFAULT_SOURCE.parent
        for mapping in sorted(release.glob("pr.*.gz")):
            if ".data." not in mapping.name:
                store.put_bytes(f"pr/{mapping.stem}", gzip.decompress(mapping.read_bytes()))
        for times in [int(t) for t in args.times.split(",")]:
            text = _text(times)
            name = "pr.data.0.Current"
            with text.open("rb") as fh:
                writer = store.writer(f"pr/{name}", size=text.stat().st_size)
                while chunk := fh.read(8 * 1024 * 1024):
                    writer.write(chunk)
                writer.complete()
            store.delete_many(["tables/pr/_manifest.json"])
            measured = _measure(args.src, weed.url)
            key = f"tables/pr/observations/file={name}/part-0.parquet"
            part = store.get_bytes(key)
            built = pl.read_parquet(io.BytesIO(part))
            assert built.equals(observations_query(text).collect()), "the partition differs"
            rows.append(
                f"| {times}x | {text.stat().st_size / 1e6:,.0f} MB | {built.height:,} | "
                f"{measured['seconds']:.1f} s | {measured['rss_mb']:,.0f} MB | "
                f"{measured['tmp_mb']:,.1f} MB | {len(part) / 1e6:,.1f} MB "
                f"({100 * len(part) / text.stat().st_size:.1f} %) |"
            )
            print(rows[-1], flush=True)
    print(
        "\n| scale | text | rows | build | peak RSS | peak temporary disk | partition |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
