"""The fan-out worker's own code under Lambda's limits: its CPU share, memory, /tmp and clock.

Each invocation is ``rearcquest.lambdas.work_handler`` in a fresh Python process (a cold start),
given one SQS record of the work queue and a context whose ``get_remaining_time_in_millis``
counts down from the function's timeout, inside:

- a cgroup (v1) with Lambda's CPU share for the function's memory (1 vCPU at 1,769 MB, in
  proportion below and above: 1,024 MB is 0.58 vCPU, ``cpu.cfs_quota_us`` over
  ``cpu.cfs_period_us``) and its memory cap (``memory.limit_in_bytes``, no swap). The kernel
  kills the process when it needs more, as Lambda does;
- a ``/tmp`` of the function's size: an ext4 file system on a loop device (``TMPDIR``), backed
  by a file on disk. A tmpfs would be charged to the memory cgroup; Lambda's ``/tmp`` is not.
  It is one file system for the whole run, as a warm container keeps its ``/tmp`` between
  invocations: what a killed invocation leaves there, the next one finds;
- the clock: the process is killed when the timeout is reached, as Lambda kills it.

Around it, outside the limits: a BLS-like source (:class:`rearcquest.offline.OfflineServer`)
sending at most ``--bandwidth`` MB/s over every connection together, serving generated
BLS-like files of the inventory's sizes (``generate.py``, written once to
``benchmarks/work/lambda/files/``); SeaweedFS (``tests/weed.py``, the default) or moto as S3, with
a versioned bucket; moto's SQS as the work queue. The planner (``rearcquest.jobs.fanout.plan_work``,
what the scheduled function runs) queues one message per survey and one per big file; the
harness then hands the queue's messages out one at a time, as the event source does with a
batch size of 1. A failed message comes back (at once, not after the 90-minute visibility
timeout) until it has been received as often as the queue's ``maxReceiveCount``, then counts as
dead-lettered. A message the worker sends to the queue (a continuation) is run in its turn.

The function's memory, ``/tmp``, timeout, ``maxReceiveCount`` and rate are read from the stack
(``infra/rearcquest_infra/pipeline_stack.py`` and ``settings.py``), not repeated here.

``--scale N`` runs a proportional model of the real thing in 1/N of the time: every file, the
``/tmp``, the timeout and the big-file threshold are divided by N; the bandwidth, the memory and
the CPU share are not (they are rates and a cap that must not grow with a file's size).

Measured per invocation: wall time (spawn to exit), CPU time (user + system, ``wait4``), the
process's peak RSS (``VmHWM``, which the child reads at its end), the cgroup's peak
(``memory.max_usage_in_bytes``: RSS plus the page cache it is charged for, what the cap
enforces), the peak use of ``/tmp`` (``statvfs`` of the mount, every 0.1 s, above the empty
file system's), and the outcome: ``done``, ``continuation`` (it succeeded and queued more work),
``error: ...`` (the message failed; the worker's log line), ``killed at the timeout``,
``killed: out of memory``.

Usage (root, Linux with cgroup v1 ``cpu`` and ``memory`` controllers, loop devices, mkfs.ext4):

    python benchmarks/lambda/run.py --help
    python benchmarks/lambda/run.py                                   # cs and ch, 5 and 25 MB/s
    python benchmarks/lambda/run.py --sizes cs,ch --bandwidth 25 --scale 5
    python benchmarks/lambda/run.py --sizes 600,1200 --bandwidth 25 --tmp-mb 800
    python benchmarks/lambda/run.py --src before=/elsewhere/src       # another build's worker

Everything it creates (cgroups, the mount, the loop device, the servers) is removed on any exit,
Ctrl-C and SIGTERM included; the generated files are kept for the next run (``--clean`` removes
them).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = REPO / "benchmarks" / "work" / "lambda"
INVENTORY = REPO / "tests" / "data" / "bls" / "time-series-inventory.tsv.gz"
STACK = REPO / "infra" / "rearcquest_infra" / "pipeline_stack.py"
STACK_SETTINGS = REPO / "infra" / "rearcquest_infra" / "settings.py"

# Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion to memory.
MB_PER_VCPU = 1769
CFS_PERIOD_US = 100_000
MB = 1_000_000
MIB = 1024 * 1024
CONTACT = "rearcquest-benchmark@example.com"
CGROUP_ROOT = Path("/sys/fs/cgroup")
POLL_SECONDS = 0.1


# -- the stack's settings -------------------------------------------------------------------------


def _constants(path: Path) -> dict[str, Any]:
    """The module-level constants of a Python file, without importing it (the stack imports the
    CDK): integers, floats, strings, tuples of them, names of earlier constants, and
    ``Duration.minutes/seconds/hours(n)`` as seconds."""
    units = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
    found: dict[str, Any] = {}

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return found[node.id]
        if isinstance(node, ast.Tuple):
            return tuple(value(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return value(node.left) * value(node.right)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "Duration"
            and node.func.attr in units
        ):
            return value(node.args[0]) * units[node.func.attr]
        raise ValueError("not a constant")

    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            with contextlib.suppress(ValueError, KeyError):
                found[targets[0].id] = value(node.value)
    return found


@dataclass(frozen=True)
class StackLimits:
    """What the stack gives the worker function."""

    memory_mb: int
    tmp_mb: int
    timeout_s: float
    max_receives: int
    worker_rps: float


def stack_limits(stack: Path = STACK, settings: Path = STACK_SETTINGS) -> StackLimits:
    """Read the worker's limits from the stack's source."""
    const, config = _constants(stack), _constants(settings)
    # The worker's own memory setting when the stack has one, else the one of every function.
    memory = const.get("WORK_MEMORY_MB", const["MEMORY_MB"])
    # As the stack sets the worker's ephemeral storage: max(tmpStorageMb, WORK_TMP_STORAGE_MB),
    # tmpStorageMb at its default.
    tmp = max(config["DEFAULT_TMP_STORAGE_MB"], const["WORK_TMP_STORAGE_MB"])
    # As InfraSettings.worker_rps: the politeness budget shared by the workers at once.
    rps = config["DEFAULT_TOTAL_RPS"] / config["DEFAULT_WORK_CONCURRENCY"]
    return StackLimits(memory, tmp, const["WORK_TIMEOUT"], const["MAX_RECEIVE_COUNT"], rps)


def cpu_share(memory_mb: int) -> float:
    """The vCPUs Lambda gives a function of ``memory_mb``: 1 at 1,769 MB, in proportion."""
    return memory_mb / MB_PER_VCPU


def cfs_quota_us(memory_mb: int, period_us: int = CFS_PERIOD_US) -> int:
    """``cpu.cfs_quota_us`` for Lambda's CPU share over ``period_us`` (the kernel's floor is
    1 ms)."""
    return max(1000, round(period_us * cpu_share(memory_mb)))


# -- the files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BigFile:
    """One data file of the run: its survey, name and real size in bytes."""

    survey: str
    name: str
    size: int


def inventory(path: Path = INVENTORY) -> dict[str, BigFile]:
    """The largest data file of every survey of the real inventory, by survey."""
    files = {}
    with gzip.open(path, "rt") as fh:
        next(fh)
        for line in fh:
            survey, _title, _update, _count, name, megabytes = line.rstrip("\n").split("\t")
            files[survey] = BigFile(survey, name, round(float(megabytes) * MB))
    return files


def parse_sizes(text: str, known: dict[str, BigFile]) -> list[BigFile]:
    """``cs,ch`` (surveys of the inventory: their largest file at its size) or ``600,1200``
    (MB: a file of that size in a generated survey ``za``, ``zb``, ...), or both.

    Raises:
        ValueError: an entry is neither a survey of the inventory nor a positive size.
    """
    files = []
    for number, entry in enumerate(e.strip() for e in text.split(",") if e.strip()):
        if entry in known:
            files.append(known[entry])
            continue
        try:
            megabytes = float(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is neither a survey of the inventory nor MB") from None
        if megabytes <= 0:
            raise ValueError(f"{entry!r}: a size must be more than 0 MB")
        survey = "z" + "abcdefghijklmnopqrstuvwxy"[number % 25]
        files.append(BigFile(survey, f"{survey}.data.1.AllData", round(megabytes * MB)))
    if len({f.survey for f in files}) != len(files):
        raise ValueError(f"{text!r} names a survey twice")
    return files


# -- the report -----------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: str = "") -> str:
    """A Markdown table; the columns whose letter index (``a`` = first) is in ``right`` are
    right-aligned. A ``|`` in a cell is escaped."""
    align = [
        "--:" if "abcdefghijklmnopqrstuvwxyz"[i] in right else "---" for i in range(len(header))
    ]
    lines = [header, align, *rows]
    return "\n".join(
        "| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines
    )


def size_text(size: float) -> str:
    """A size in MB (decimal), one decimal below 10 MB."""
    return f"{size / MB:,.1f} MB" if size < 10 * MB else f"{size / MB:,.0f} MB"


@dataclass
class Invocation:
    """One run of the handler, as measured."""

    bandwidth: float
    number: int
    message: str
    receive: int
    wall: float = 0.0
    cpu: float = 0.0
    rss: int = 0
    cgroup_peak: int = 0
    tmp_peak: int = 0
    outcome: str = ""

    def row(self) -> list[str]:
        receive = f" (receive {self.receive})" if self.receive > 1 else ""
        return [
            f"{self.bandwidth:g} MB/s",
            str(self.number),
            f"`{self.message}`{receive}",
            f"{self.wall:.1f} s",
            f"{self.cpu:.1f} s",
            size_text(self.rss),
            size_text(self.cgroup_peak),
            size_text(self.tmp_peak),
            self.outcome,
        ]


INVOCATION_HEADER = (
    "source",
    "#",
    "message",
    "wall",
    "CPU",
    "peak RSS",
    "cgroup peak",
    "peak /tmp",
    "outcome",
)


def report(invocations: Sequence[Invocation]) -> str:
    """The Markdown table of the invocations."""
    return markdown_table(INVOCATION_HEADER, [i.row() for i in invocations], right="defgh")


def summary(invocations: Sequence[Invocation]) -> str:
    """One row per message: its invocations, their time, the largest peaks, how it ended
    (``done`` when its last invocation was)."""
    groups: dict[tuple[float, str], list[Invocation]] = {}
    for inv in invocations:
        groups.setdefault((inv.bandwidth, inv.message), []).append(inv)
    rows = []
    for (bandwidth, message), runs in groups.items():
        last = runs[-1].outcome
        rows.append(
            [
                f"{bandwidth:g} MB/s",
                f"`{message}`",
                str(len(runs)),
                f"{sum(r.wall for r in runs):.1f} s",
                size_text(max(r.rss for r in runs)),
                size_text(max(r.tmp_peak for r in runs)),
                "**done**" if last == "done" else clipped(last, 120),
            ]
        )
    header = ("source", "message", "invocations", "wall", "peak RSS", "peak /tmp", "ended")
    return markdown_table(header, rows, right="cdef")


# -- the Lambda-like box --------------------------------------------------------------------------


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


class LambdaBox:
    """A cgroup (CPU share, memory cap) and a loop-mounted ext4 ``/tmp``; removed on exit."""

    def __init__(self, work: Path, *, memory_mb: int, tmp_mb: int) -> None:
        self.name = f"rq-lambda-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.memory_mb, self.tmp_mb = memory_mb, tmp_mb
        self.cpu = CGROUP_ROOT / "cpu" / self.name
        self.memory = CGROUP_ROOT / "memory" / self.name
        self.image = work / f"{self.name}.img"
        self.tmp = work / f"{self.name}.mnt"
        self._stack = contextlib.ExitStack()
        self._empty = 0

    def __enter__(self) -> LambdaBox:
        try:
            self._create()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _create(self) -> None:
        stack = self._stack
        self.cpu.mkdir()
        stack.callback(self._remove_cgroup, self.cpu)
        (self.cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (self.cpu / "cpu.cfs_quota_us").write_text(str(cfs_quota_us(self.memory_mb)))
        self.memory.mkdir()
        stack.callback(self._remove_cgroup, self.memory)
        limit = self.memory_mb * MIB
        (self.memory / "memory.limit_in_bytes").write_text(str(limit))
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # memory and swap together: no swap beyond the memory cap
            swap.write_text(str(limit))
        (self.memory / "memory.swappiness").write_text("0")
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as fh:
            fh.truncate(self.tmp_mb * MIB)
        stack.callback(self.image.unlink, missing_ok=True)
        # No blocks reserved for root (the worker runs as root here) and no journal: the whole
        # size is the worker's, as Lambda's /tmp is.
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(self.image))
        device = _run("losetup", "--find", "--show", str(self.image))
        stack.callback(_run, "losetup", "--detach", device)
        self.tmp.mkdir()
        stack.callback(self.tmp.rmdir)
        _run("mount", device, str(self.tmp))
        stack.callback(self._unmount)
        self._empty = self._used()

    def _unmount(self) -> None:
        for _ in range(50):
            if subprocess.run(["umount", str(self.tmp)], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        _run("umount", "--lazy", str(self.tmp))

    @staticmethod
    def _remove_cgroup(path: Path) -> None:
        # A cgroup can be removed once its last process has gone; a killed one takes a moment.
        for _ in range(100):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        path.rmdir()

    def _used(self) -> int:
        st = os.statvfs(self.tmp)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    @property
    def usable(self) -> int:
        """The bytes the empty ``/tmp`` offers."""
        st = os.statvfs(self.tmp)
        return st.f_blocks * st.f_frsize - self._empty

    def tmp_used(self) -> int:
        """The bytes in use on ``/tmp`` now, above the empty file system's."""
        return max(0, self._used() - self._empty)

    def reset_peak(self) -> int:
        """Start a new memory peak; return the cgroup's out-of-memory kills so far."""
        (self.memory / "memory.max_usage_in_bytes").write_text("0")
        return self.oom_kills()

    def peak_memory(self) -> int:
        """The cgroup's peak memory since :meth:`reset_peak`."""
        return int((self.memory / "memory.max_usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        """The processes the kernel killed for the cgroup's memory so far."""
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            key, _, count = line.partition(" ")
            if key == "oom_kill":
                return int(count)
        return 0

    def spawn(self, cmd: Sequence[str], env: dict[str, str], out: Path, err: Path) -> int:
        """Start ``cmd`` inside the cgroups; return its pid. A shell joins them and execs the
        command, so nothing of this (threaded) process runs between fork and exec."""
        join = 'echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@"'
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    join,
                    "sh",
                    str(self.cpu / "cgroup.procs"),
                    str(self.memory / "cgroup.procs"),
                    *cmd,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.tmp,
            )
        # The harness reaps it itself (wait4, for its CPU time): Popen must not.
        proc.returncode = 0
        return proc.pid


# -- the services ---------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(work: Path) -> Iterator[str]:
    """moto's server (every AWS service) on 127.0.0.1 in its own process; its URL."""
    import urllib.request

    binary = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    with (work / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_endpoint(kind: str, work: Path, moto_url: str) -> Iterator[str]:
    """The S3 endpoint: SeaweedFS (objects on disk) or the moto server (objects in memory)."""
    if kind == "moto":
        yield moto_url
        return
    sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS harness of the tests
    from weed import seaweedfs

    shutil.rmtree(work / "seaweedfs", ignore_errors=True)
    try:
        with seaweedfs(work / "seaweedfs") as server:
            yield server.url
    finally:
        shutil.rmtree(work / "seaweedfs", ignore_errors=True)


# -- one run --------------------------------------------------------------------------------------

# The child: one invocation of the worker's handler. argv: the event (JSON), the monotonic
# deadline, the function's memory in MB. It prints the handler's answer and its peak RSS.
CHILD = r"""
import json, sys, time, uuid

event, deadline, memory = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
from rearcquest import lambdas  # the function's init, as Lambda imports the handler


class Context:
    function_name = "rq-benchmark-work"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:rq-benchmark-work"
    memory_limit_in_mb = memory
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/rq-benchmark-work"
    log_stream_name = "benchmark"

    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.monotonic()) * 1000))


def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


try:
    answer = lambdas.work_handler(event, Context())
finally:
    print(json.dumps({"rss": peak_rss()}), flush=True)
print(json.dumps({"answer": answer}), flush=True)
"""


@dataclass
class Options:
    """The command line, resolved."""

    files: list[BigFile]
    bandwidths: list[float]
    memory_mb: int
    tmp_mb: int
    timeout_s: float
    max_receives: int
    worker_rps: float
    scale: float
    s3: str
    src: Path
    max_invocations: int
    log: list[str] = field(default_factory=list)


def generated(big: BigFile, scale: float) -> tuple[dict[str, Path], Path]:
    """The survey's small files and its data file at ``size / scale``, written once."""
    sys.path.insert(0, str(HERE))
    from generate import write_data_file, write_survey_files

    size = round(big.size / scale)
    folder = WORK / "files" / big.survey
    small = write_survey_files(folder, big.survey)
    data = folder / big.name
    if not data.exists() or data.stat().st_size != size:
        print(f"generating {data} ({size_text(size)}) ...", file=sys.stderr, flush=True)
        write_data_file(data, size, survey=big.survey)
    return small, data


def clipped(text: str, limit: int = 200) -> str:
    """``text`` in at most ``limit`` characters: its start and its end (where an error's cause
    is) around an ellipsis when it is longer."""
    if len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + "…" + text[len(text) - (limit - head - 1) :]


def peak_rss(pid: int) -> int:
    """The peak RSS of process ``pid`` so far (``VmHWM``), or 0 when it is gone."""
    try:
        with Path(f"/proc/{pid}/status").open() as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def classify(code: int, *, killed: bool, oom: bool, out: str, err: Path) -> tuple[str, int]:
    """The invocation's outcome and its peak RSS, from its exit and its output."""
    rss, answer = 0, None
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            rss = doc.get("rss", rss)
            answer = doc.get("answer", answer)
    if killed:
        return "killed at the timeout", rss
    if oom:
        return "killed: out of memory", rss
    if answer is None:
        lines = err.read_text(errors="replace").strip().splitlines() or [f"exit {code}"]
        return f"crashed: {clipped(lines[-1])}", rss
    if answer.get("batchItemFailures"):
        errors = []
        for line in err.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if doc.get("level") == "ERROR":
                    errors.append(str(doc.get("message", "")))
        # The worker's last word on the message ("work message failed: ...").
        last = errors[-1].removeprefix("work message failed: ") if errors else ""
        return f"error: {clipped(last)}" if last else "error", rss
    return "done", rss


def run_bandwidth(options: Options, bandwidth: float, invocations: list[Invocation]) -> None:
    """Plan, queue and run every message with the source at ``bandwidth`` MB/s."""
    from rearcquest.aws.queues import Queue, make_sqs_client
    from rearcquest.aws.storage import make_s3_client
    from rearcquest.config import DEFAULT_BIG_FILE_BYTES
    from rearcquest.jobs.events import sqs_batch_event
    from rearcquest.jobs.fanout import enqueue_work, plan_work
    from rearcquest.layout import TABLES_PREFIX
    from rearcquest.mirror.surveys import make_http
    from rearcquest.offline import OfflineServer, ServedFile

    listed = datetime(2026, 8, 19, 8, 30)
    surveys = {}
    for big in options.files:
        small, data = generated(big, options.scale)
        files = {n: ServedFile(n, p.read_bytes(), listed) for n, p in small.items()}
        files[big.name] = ServedFile(big.name, b"", listed, path=data)
        surveys[big.survey] = files
    work = WORK / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    big_file_bytes = round(DEFAULT_BIG_FILE_BYTES / options.scale)
    timeout = options.timeout_s / options.scale
    keys = ("benchmark", "benchmark")
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(OfflineServer(surveys=surveys, bandwidth=bandwidth * MB))
        moto = stack.enter_context(moto_server(work))
        s3_url = stack.enter_context(s3_endpoint(options.s3, work, moto))
        box = stack.enter_context(
            LambdaBox(
                work, memory_mb=options.memory_mb, tmp_mb=round(options.tmp_mb / options.scale)
            )
        )
        s3 = make_s3_client(endpoint_url=s3_url, access_key=keys)
        bucket = "rq-benchmark"  # the S3 server is new for every run
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        sqs = make_sqs_client(endpoint_url=moto, access_key=keys)
        queue = sqs.create_queue(QueueName="work")["QueueUrl"]
        names = [f.survey for f in options.files]
        with make_http(
            source.root_url, contact=CONTACT, user_agent=None, max_rps=0, retry=None, connections=2
        ) as http:
            plan = plan_work(
                http, surveys=names, root_url=source.root_url, big_file_bytes=big_file_bytes
            )
        enqueue_work(Queue(sqs, queue), plan.messages)
        print(
            f"\n{bandwidth:g} MB/s: {len(plan.messages)} messages planned; /tmp "
            f"{size_text(box.usable)} usable; clock {timeout:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(options.src),
            "TMPDIR": str(box.tmp),
            "HOME": str(box.tmp),
            "AWS_ENDPOINT_URL_S3": s3_url,
            "AWS_ENDPOINT_URL_SQS": moto,
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            # The stack's worker environment (pipeline_stack.py, _work), pointed at the local
            # source and bucket, and the queue a worker sends its continuations to.
            "RQ_BLS_BUCKET": bucket,
            "RQ_CONTACT": CONTACT,
            "RQ_MAX_RPS": f"{options.worker_rps:g}",
            "RQ_VINTAGES": "1",
            "RQ_TABLES": "1",
            "RQ_TABLES_PREFIX": TABLES_PREFIX,
            "RQ_BLS_ROOT_URL": source.root_url,
            "RQ_BLS_ROOT_PREFIX": "",
            "RQ_WORK_QUEUE_URL": queue,
            "RQ_BIG_FILE_BYTES": str(big_file_bytes),
        }
        number = 0
        while number < options.max_invocations:
            got = sqs.receive_message(
                QueueUrl=queue,
                MaxNumberOfMessages=1,
                VisibilityTimeout=43200,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not got:
                # A message sent with a delay (a continuation may be) is not received yet.
                delayed = sqs.get_queue_attributes(
                    QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
                )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
                if int(delayed) == 0:
                    break
                time.sleep(1)
                continue
            message = got[0]
            number += 1
            body = json.loads(message["Body"])
            what = f"{body['survey']}/{body.get('file') or ''}".rstrip("/")
            receive = int(message["Attributes"]["ApproximateReceiveCount"])
            event = sqs_batch_event([message], queue=queue)
            inv = Invocation(bandwidth, number, what, receive)
            _invoke(box, env, event, timeout, options.memory_mb, inv, work / f"{number}")
            print(" | ".join(inv.row()), file=sys.stderr, flush=True)
            invocations.append(inv)
            if inv.outcome in ("done", "continuation") or receive >= options.max_receives:
                if inv.outcome not in ("done", "continuation"):
                    inv.outcome += f" (receive {receive} of {options.max_receives}: dead-lettered)"
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        else:
            options.log.append(f"{bandwidth:g} MB/s: stopped after {number} invocations")


def _queued(box: LambdaBox, env: dict[str, str]) -> int:
    from rearcquest.aws.queues import make_sqs_client

    sqs = make_sqs_client(
        endpoint_url=env["AWS_ENDPOINT_URL_SQS"],
        access_key=(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
    )
    attrs = sqs.get_queue_attributes(
        QueueUrl=env["RQ_WORK_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _invoke(
    box: LambdaBox,
    env: dict[str, str],
    event: dict[str, Any],
    timeout: float,
    memory_mb: int,
    inv: Invocation,
    files: Path,
) -> None:
    """Run one invocation in the box and measure it into ``inv``."""
    queued = _queued(box, env)
    oom_before = box.reset_peak()
    out, err = files.with_suffix(".out"), files.with_suffix(".log")
    start = time.monotonic()
    deadline = start + timeout
    pid = box.spawn(
        [sys.executable, "-c", CHILD, json.dumps(event), repr(deadline), str(memory_mb)],
        env,
        out,
        err,
    )
    killed, tmp_peak, rss_peak = False, 0, 0
    try:
        while True:
            # Its peak RSS is read while it runs too: a killed process reports nothing.
            rss_peak = max(rss_peak, peak_rss(pid))
            done, status, usage = os.wait4(pid, os.WNOHANG)
            tmp_peak = max(tmp_peak, box.tmp_used())
            if done:
                break
            if time.monotonic() >= deadline and not killed:
                os.kill(pid, signal.SIGKILL)  # Lambda's timeout
                killed = True
            time.sleep(POLL_SECONDS)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.wait4(pid, 0)
        raise
    inv.wall = time.monotonic() - start
    inv.cpu = usage.ru_utime + usage.ru_stime
    inv.cgroup_peak = box.peak_memory()
    inv.tmp_peak = tmp_peak
    oom = box.oom_kills() > oom_before
    code = os.waitstatus_to_exitcode(status)
    inv.outcome, rss = classify(code, killed=killed, oom=oom, out=out.read_text(), err=err)
    inv.rss = max(rss, rss_peak)
    if inv.outcome == "done" and _queued(box, env) > queued:
        inv.outcome = "continuation"


# -- the command ----------------------------------------------------------------------------------


def _raise_on_sigterm() -> None:
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def main(argv: Sequence[str] | None = None) -> int:
    limits = stack_limits()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Needs root and Linux: cgroup v1 cpu and memory controllers, loop devices, "
        "mkfs.ext4. See benchmarks/README.md, section 'lambda'.",
    )
    parser.add_argument(
        "--sizes",
        default="cs,ch",
        help="data files: surveys of the inventory (their largest file, at its real size) "
        "and/or sizes in MB, comma-separated (default: cs,ch, 6,072 and 3,370 MB)",
    )
    parser.add_argument(
        "--bandwidth",
        default="5,25",
        help="the source's bandwidth in MB/s, comma-separated: one run each (default: 5,25)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=limits.memory_mb,
        help=f"the function's memory, which sets its CPU share too (the stack's: {limits.memory_mb})",
    )
    parser.add_argument(
        "--tmp-mb",
        type=int,
        default=limits.tmp_mb,
        help=f"the function's /tmp in MB, before --scale (the stack's: {limits.tmp_mb})",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="divide every file, /tmp, the timeout and the big-file threshold by this "
        "(default 1: the real sizes and the 15-minute clock)",
    )
    parser.add_argument("--s3", choices=("seaweedfs", "moto"), default="seaweedfs")
    parser.add_argument(
        "--src",
        default=str(REPO / "src"),
        help="the source tree whose worker runs (default: this repository's src)",
    )
    parser.add_argument(
        "--receives",
        type=int,
        default=limits.max_receives,
        help=f"receives of a failing message before it is dead-lettered (the stack's: "
        f"{limits.max_receives})",
    )
    parser.add_argument("--max-invocations", type=int, default=60)
    parser.add_argument("--clean", action="store_true", help="remove the generated files")
    args = parser.parse_args(argv)
    if args.clean:
        shutil.rmtree(WORK / "files", ignore_errors=True)
        return 0
    if os.geteuid() != 0 or sys.platform != "linux":
        parser.error("needs root on Linux (cgroups, loop mounts)")
    try:
        files = parse_sizes(args.sizes, inventory())
        bandwidths = [float(b) for b in args.bandwidth.split(",") if b.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if args.scale <= 0 or any(b <= 0 for b in bandwidths) or args.memory_mb < 128:
        parser.error("--scale and --bandwidth must be more than 0, --memory-mb at least 128")
    options = Options(
        files=files,
        bandwidths=bandwidths,
        memory_mb=args.memory_mb,
        tmp_mb=args.tmp_mb,
        timeout_s=limits.timeout_s,
        max_receives=args.receives,
        worker_rps=limits.worker_rps,
        scale=args.scale,
        s3=args.s3,
        src=Path(args.src).resolve(),
        max_invocations=args.max_invocations,
    )
    _raise_on_sigterm()
    load = os.getloadavg()
    started = time.monotonic()
    invocations: list[Invocation] = []
    try:
        for bandwidth in bandwidths:
            run_bandwidth(options, bandwidth, invocations)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaned up", file=sys.stderr)
        if not invocations:
            return 130
    share = cpu_share(options.memory_mb)
    scaled = (
        f"scaled by 1/{options.scale:g} (files, /tmp, timeout, big-file threshold)"
        if options.scale != 1
        else "not scaled"
    )
    print(
        f"\nWorker: {options.memory_mb} MB ({share:.2f} vCPU: cpu.cfs_quota_us "
        f"{cfs_quota_us(options.memory_mb)} of {CFS_PERIOD_US}), /tmp "
        f"{options.tmp_mb / options.scale:,.0f} MB, timeout {options.timeout_s / options.scale:.0f} s; "
        f"{scaled}. Files: "
        + ", ".join(
            f"{f.name} {size_text(f.size / options.scale)} (real {size_text(f.size)})"
            for f in files
        )
        + f". S3: {options.s3}. Load average at the start {load[0]:.2f}, {load[1]:.2f}, "
        f"{load[2]:.2f}; run took {time.monotonic() - started:.0f} s.\n"
    )
    print(report(invocations))
    print()
    print(summary(invocations))
    for line in options.log:
        print(f"\n{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
