"""A whole-tree rehearsal of the fan-out: every survey of the real inventory, planned, queued and
synced by the worker's own code, with the stack's concurrency and rate (issue 21 §3).

- **The tree.** Every survey of ``tests/data/bls/time-series-inventory.tsv.gz`` (or the ones
  asked), with its real name, its real number of data files and its largest data file under its
  real name, the sizes divided by ``--scale``: the largest at the inventory's size, the others
  log-uniform below it (seeded), each with the survey's small files (``<s>.series``, ``.area``,
  ``.seasonal``, ``.txt``). Every data file is BLS-like text the tables build reads
  (``benchmarks/lambda/generate.py``). Served from disk by ``OfflineServer`` under one root,
  which records every request with its time.
- **The planner** (:func:`rearcquest.jobs.fanout.plan_work`, what the scheduled function runs)
  lists the root and every survey and queues (:func:`~rearcquest.jobs.fanout.enqueue_work`) one
  message per survey and one per file above the stack's big-file threshold (scaled like the
  files), on a work queue with the stack's dead-letter queue after ``MAX_RECEIVE_COUNT``
  receives (moto's SQS, which moves a message received once too often to the DLQ).
- **The workers**: the stack's maximum concurrency (``DEFAULT_WORK_CONCURRENCY``) of threads,
  each an instance taking one message at a time (the stack's batch size of 1) and running
  ``rearcquest.lambdas.work_handler`` on it, the real handler with the stack's environment
  (``RQ_MAX_RPS`` the worker's share of ``DEFAULT_TOTAL_RPS``, ``RQ_TABLES``, ``RQ_VINTAGES``,
  ``RQ_TABLES_PREFIX``, ``RQ_WORK_QUEUE_URL``) and a Lambda context counting down from
  ``WORK_TIMEOUT``. A message the handler fails comes back after ``--retry-after`` seconds (the
  queue's 90-minute visibility timeout, scaled down: longer than any message here runs), until
  SQS dead-letters it; a message it succeeds with is deleted; a continuation it sends is run in
  its turn.
- **Time.** ``--time-scale K`` runs K times faster than the stack's clock: every rate (the
  budget, each worker's share) is multiplied by K and the worker's time before its handover
  margin divided by it (``HANDOVER_MARGIN`` + (``WORK_TIMEOUT`` - it) / K: the margin covers
  requests that do not go faster), so the requests a second at the source are compared with K
  times the stack's budget.
- **Checks**: no message in the DLQ; the most requests the source answered in any one, five
  and ten seconds (sliding windows over the request log) within what the workers' limiters
  allow at the budget (:func:`allowed_requests`); the mirror equal to the source,
  every file's bytes; every table (each data file's observations partition, each survey's
  series table) written exactly once.

The settings are read from the stack's source (``infra/rearcquest_infra/pipeline_stack.py``,
``settings.py``) as ``benchmarks/lambda/run.py`` reads them. S3 and SQS are moto's server
(``rearcquest.offline.embedded_s3``), or SeaweedFS for S3 with ``--s3 seaweedfs``.

Usage:

    python benchmarks/rehearsal/run.py                       # every survey, 1/1000, time 10x
    python benchmarks/rehearsal/run.py --surveys pr,cs,nd --time-scale 5
    python benchmarks/rehearsal/run.py --json                # the figures as JSON

``tests/test_rehearsal.py`` runs a sample of surveys covering every size class through the same
function.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gzip
import importlib.util
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
INVENTORY = REPO / "tests" / "data" / "bls" / "time-series-inventory.tsv.gz"
ROOT = "/pub/time.series/"
BUCKET = "rq-rehearsal"
CONTACT = "rearcquest-rehearsal@example.com"
TABLES_PREFIX = "tables/"
MB = 1_000_000
# The survey's small files beside its data files (the series file is what the tables decode).
SMALL_FILES = ("area", "seasonal", "series", "txt")
# The size classes of the inventory's largest data files (MB, upper bounds): the test runs one
# survey of each.
SIZE_CLASSES = (1.0, 10.0, 100.0, 1000.0, math.inf)
POLL_SECONDS = 0.05
# The windows (seconds) the source's request rate is checked over (see allowed_requests).
RATE_WINDOWS = (1.0, 5.0, 10.0)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@functools.cache
def _lambda_bench() -> ModuleType:
    """benchmarks/lambda/run.py: the stack's constants, read from its source."""
    return _load("rehearsal_lambda_run", REPO / "benchmarks" / "lambda" / "run.py")


@functools.cache
def _generate() -> ModuleType:
    """benchmarks/lambda/generate.py: BLS-like data and survey files."""
    return _load("rehearsal_lambda_generate", REPO / "benchmarks" / "lambda" / "generate.py")


# -- the stack's settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSettings:
    """What the stack gives the fan-out, read from its source."""

    concurrency: int
    total_rps: float
    worker_rps: float
    timeout_s: float
    max_receives: int
    big_file_bytes: int


def stack_settings() -> StackSettings:
    """The stack's worker concurrency, rate, timeout and DLQ setting, and rq's big-file
    threshold (the stack does not set ``RQ_BIG_FILE_BYTES``)."""
    from rearcquest.config import DEFAULT_BIG_FILE_BYTES

    bench = _lambda_bench()
    limits = bench.stack_limits()
    config = bench._constants(bench.STACK_SETTINGS)
    return StackSettings(
        concurrency=config["DEFAULT_WORK_CONCURRENCY"],
        total_rps=config["DEFAULT_TOTAL_RPS"],
        worker_rps=limits.worker_rps,
        timeout_s=limits.timeout_s,
        max_receives=limits.max_receives,
        big_file_bytes=DEFAULT_BIG_FILE_BYTES,
    )


# -- the tree -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Survey:
    """One survey of the inventory: its data files' count and its largest file."""

    name: str
    data_files: int
    largest: str
    largest_mb: float


def inventory(path: Path = INVENTORY) -> list[Survey]:
    """Every survey of the real inventory, by name."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return sorted(
        (
            Survey(
                r["survey"],
                max(1, int(r["data_files"])),
                r["largest_data_file"],
                float(r["largest_data_file_mb"]),
            )
            for r in rows
        ),
        key=lambda s: s.name,
    )


def size_class(survey: Survey) -> int:
    """The index in :data:`SIZE_CLASSES` of the survey's largest data file."""
    return next(i for i, bound in enumerate(SIZE_CLASSES) if survey.largest_mb < bound)


def sample(surveys: Sequence[Survey]) -> list[Survey]:
    """One survey of each size class, the one with the fewest data files (then by name): the
    test's deterministic cut of the tree."""
    chosen = []
    for index in range(len(SIZE_CLASSES)):
        members = [s for s in surveys if size_class(s) == index]
        if members:
            chosen.append(min(members, key=lambda s: (s.data_files, s.name)))
    return chosen


def planned_files(survey: Survey, *, scale: float, seed: int = 21) -> dict[str, int]:
    """The survey's data files and their sizes in bytes at ``1/scale``: the largest at the
    inventory's size, the others log-uniform between 1 kB and it (at least 1 kB each)."""
    rng = random.Random(f"{seed}:{survey.name}")
    largest = max(1_000, round(survey.largest_mb * MB / scale))
    files = {survey.largest: largest}
    for n in range(survey.data_files - 1):
        size = 10 ** rng.uniform(3, math.log10(max(largest, 1_001)))
        files[f"{survey.name}.data.{n + 2}.Part{n:03d}"] = round(size)
    return files


def write_tree(surveys: Sequence[Survey], folder: Path, *, scale: float) -> dict[str, Path]:
    """Write every survey's files under ``folder/<survey>/`` (kept for the next run when the
    sizes match); return them by ``<survey>/<name>``."""
    generate = _generate()
    paths: dict[str, Path] = {}
    for survey in surveys:
        where = folder / survey.name
        small = generate.write_survey_files(where, survey.name)
        paths.update({f"{survey.name}/{n}": p for n, p in small.items()})
        for name, size in planned_files(survey, scale=scale).items():
            path = where / name
            if not path.is_file() or path.stat().st_size != size:
                generate.write_data_file(path, size, survey=survey.name)
            paths[f"{survey.name}/{name}"] = path
    return paths


def served(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The files as ``OfflineServer`` serves them, by survey (read from disk as requested)."""
    from rearcquest.offline import ServedFile

    listed = datetime(2026, 8, 6, 8, 30)
    tree: dict[str, dict[str, Any]] = {}
    for key, path in paths.items():
        survey, name = key.split("/", 1)
        tree.setdefault(survey, {})[name] = ServedFile(name, b"", listed, path=path)
    return tree


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one rehearsal did and measured."""

    surveys: int = 0
    files: int = 0
    bytes: int = 0
    scale: float = 1.0
    time_scale: float = 1.0
    concurrency: int = 0
    messages_planned: int = 0
    file_messages: int = 0
    continuations: int = 0
    invocations: int = 0
    failed_invocations: int = 0
    dead_letters: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    source_requests: int = 0
    request_times: list[float] = field(default_factory=list)
    # The most requests the source answered in any one second, and in any five divided by 5.
    peak_rps: int = 0
    peak_rps_5s: float = 0.0
    # The most requests in any window of each of RATE_WINDOWS, and what the limiters allow there.
    peak_requests: dict[str, int] = field(default_factory=dict)
    allowed: dict[str, int] = field(default_factory=dict)
    # The one-second peak over the workers' requests only (after the planner's last).
    peak_rps_workers: int = 0
    # The requests of the busiest second: (seconds from the start, path).
    busiest: list[tuple[float, str]] = field(default_factory=list)
    budget_rps: float = 0.0
    wall_s: float = 0.0
    plan_s: float = 0.0
    longest_message_s: float = 0.0
    mirror_mismatches: list[str] = field(default_factory=list)
    table_writes: dict[str, int] = field(default_factory=dict)
    tables_expected: list[str] = field(default_factory=list)
    load_average: tuple[float, float] = (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The figures, without the per-table counts (their summary instead)."""
        doc = asdict(self)
        doc["tables"] = len(self.table_writes)
        doc["tables_written_more_than_once"] = sorted(
            k for k, n in self.table_writes.items() if n != 1
        )
        doc["tables_missing"] = sorted(set(self.tables_expected) - set(self.table_writes))
        del doc["table_writes"], doc["tables_expected"], doc["request_times"]
        return doc


def allowed_requests(budget_rps: float, window: float, limiters: int) -> int:
    """The most requests ``limiters`` rate limiters sharing ``budget_rps`` may bring to the
    source in any window of ``window`` seconds.

    Each spaces its requests ``limiters / budget_rps`` apart, so it may have one at both edges
    of a window (``floor(window * rate) + 1``); and one more, a request that left its slot late
    and reached the source just before the next: the workers here are threads of one process,
    beside moto and the tables builds, and a request waits for the GIL (on Lambda each worker is
    a process of its own). Over ten seconds at the stack's budget that is 2 % above it.
    """
    rate = budget_rps / limiters
    return limiters * (math.floor(window * rate + 1e-9) + 2)


def peak_per_second(times: Sequence[float], window: float = 1.0) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def busiest_second(requests: Sequence[tuple[float, str]], peak: int) -> list[tuple[float, str]]:
    """The first run of ``peak`` requests within one second."""
    ordered = sorted(requests)
    for start in range(len(ordered) - peak + 1):
        run = ordered[start : start + peak]
        if run[-1][0] - run[0][0] < 1.0:
            return [(round(at, 3), path) for at, path in run]
    return []


class _Context:
    """A Lambda context whose remaining time counts down from the (scaled) timeout."""

    def __init__(self, timeout_s: float, request_id: str) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set these variables (and only these of ``RQ_*``) while the block runs."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("RQ_")]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _clear_lambda_caches() -> None:
    from rearcquest import lambdas

    for cached in (lambdas._s3_client, lambdas._sqs_client, lambdas._glue_client):
        cached.cache_clear()


def _queues(sqs: Any, max_receives: int) -> tuple[str, str]:
    """The work queue and its DLQ, as the stack makes them."""
    suffix = os.urandom(4).hex()
    dlq = sqs.create_queue(QueueName=f"rq-rehearsal-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=f"rq-rehearsal-{suffix}",
        Attributes={
            # Long enough that a message in flight is never handed to a second worker here.
            "VisibilityTimeout": "600",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
            ),
        },
    )["QueueUrl"]
    return url, dlq


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _record_table_writes(s3: Any, bucket: str, counts: Counter[str], lock: threading.Lock) -> None:
    """Count each write of a table (a Parquet object under the tables prefix) on ``s3``."""

    def record(params: dict[str, Any], **_: Any) -> None:
        key = unquote(str(params["url_path"])).lstrip("/").split("?", 1)[0]
        key = key.removeprefix(f"{bucket}/")
        if key.startswith(TABLES_PREFIX) and key.endswith(".parquet"):
            with lock:
                counts[key] += 1

    for call in ("PutObject", "CreateMultipartUpload"):
        s3.meta.events.register(f"before-call.s3.{call}", record)


def rehearse(
    surveys: Sequence[Survey],
    *,
    endpoint_url: str,
    folder: Path,
    scale: float = 1000.0,
    time_scale: float = 10.0,
    retry_after: float = 2.0,
    s3_endpoint_url: str | None = None,
    bucket: str = BUCKET,
) -> Figures:
    """Plan, queue and work the whole tree of ``surveys``; measure and check it.

    Args:
        surveys: the surveys of the inventory to serve.
        endpoint_url: moto's server (SQS, and S3 unless ``s3_endpoint_url``).
        folder: where the generated files are written (kept between runs).
        scale: every file's size is divided by this, and the big-file threshold with it.
        time_scale: every rate is multiplied by this, the time before the handover margin
            divided by it.
        retry_after: seconds before a failed message comes back (the visibility timeout).
        s3_endpoint_url: another S3 server (SeaweedFS).
        bucket: the mirror bucket (made, and versioned, if it is not there).

    Returns:
        The figures; the caller checks them.
    """
    import boto3

    from rearcquest import lambdas
    from rearcquest.aws.queues import Queue
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.config import HANDOVER_MARGIN
    from rearcquest.jobs.fanout import WorkMessage, enqueue_work, plan_work
    from rearcquest.layout import observations_key, series_key
    from rearcquest.mirror.surveys import make_http
    from rearcquest.offline import OfflineServer

    stack = stack_settings()
    figures = Figures(scale=scale, time_scale=time_scale, concurrency=stack.concurrency)
    figures.budget_rps = stack.total_rps * time_scale
    paths = write_tree(surveys, folder, scale=scale)
    tree = served(paths)
    figures.surveys = len(tree)
    figures.files = len(paths)
    figures.bytes = sum(p.stat().st_size for p in paths.values())
    first, *others = sorted(tree)
    s3_url = s3_endpoint_url or endpoint_url
    environ = {
        "AWS_ENDPOINT_URL": s3_url,
        "AWS_ENDPOINT_URL_SQS": endpoint_url,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "rehearsal"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "rehearsal"),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with (
        _environ(environ),
        OfflineServer(
            tree[first], directory=f"{ROOT}{first}/", surveys={s: tree[s] for s in others}
        ) as server,
    ):
        s3 = boto3.client("s3", endpoint_url=s3_url)
        sqs = boto3.client("sqs", endpoint_url=endpoint_url)
        owned = (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists)
        with contextlib.suppress(*owned):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        url, dlq = _queues(sqs, stack.max_receives)
        worker_env = {
            # As the stack's WorkFunction environment (pipeline_stack.py), the rate scaled.
            "RQ_BLS_BUCKET": bucket,
            "RQ_CONTACT": CONTACT,
            "RQ_MAX_RPS": f"{stack.worker_rps * time_scale:g}",
            "RQ_VINTAGES": "1",
            "RQ_TABLES": "1",
            "RQ_TABLES_PREFIX": TABLES_PREFIX,
            "RQ_WORK_QUEUE_URL": url,
            "RQ_BLS_ROOT_URL": server.root_url,
        }
        # The clock: the transfer time before the handover margin runs K times faster, as the
        # rates do; the margin itself (the parts in flight, the state, the continuation) does not.
        timeout_s = HANDOVER_MARGIN + (stack.timeout_s - HANDOVER_MARGIN) / time_scale
        started = time.monotonic()
        # The planner: the scheduled function's part, at the whole budget (it runs alone).
        with make_http(
            server.root_url,
            contact=CONTACT,
            user_agent=None,
            max_rps=figures.budget_rps,
            retry=None,
            connections=2,
        ) as http:
            plan = plan_work(
                http,
                surveys=["all"],
                root_url=server.root_url,
                big_file_bytes=max(1, round(stack.big_file_bytes / scale)),
                tables_prefix=TABLES_PREFIX,
            )
        assert not plan.listing_errors, plan.listing_errors
        figures.messages_planned = enqueue_work(Queue(sqs, url), plan.messages)
        figures.file_messages = sum(1 for m in plan.messages if m.file)
        planned_at = time.monotonic()
        figures.plan_s = planned_at - started

        counts: Counter[str] = Counter()
        lock = threading.Lock()
        _clear_lambda_caches()
        os.environ.update(worker_env)
        _record_table_writes(lambdas._s3_client(), bucket, counts, lock)
        stop = threading.Event()
        errors: list[BaseException] = []

        def instance(number: int) -> None:
            """One worker instance: a message at a time, as the event source hands them out."""
            try:
                while not stop.is_set():
                    got = sqs.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=1,
                        AttributeNames=["ApproximateReceiveCount"],
                    ).get("Messages", [])
                    if not got:
                        if _depth(sqs, url) == 0:
                            return
                        time.sleep(POLL_SECONDS)  # messages in flight or coming back
                        continue
                    (msg,) = got
                    body = WorkMessage.from_json(msg["Body"])
                    event = {
                        "Records": [
                            {
                                "messageId": msg["MessageId"],
                                "receiptHandle": msg["ReceiptHandle"],
                                "body": msg["Body"],
                                "attributes": msg.get("Attributes", {}),
                                "eventSource": "aws:sqs",
                            }
                        ]
                    }
                    began = time.monotonic()
                    context = _Context(timeout_s, f"{number}-{began}")
                    response = lambdas.work_handler(event, context)
                    took = time.monotonic() - began
                    with lock:
                        figures.invocations += 1
                        figures.continuations += 1 if getattr(body, "continuation", 0) else 0
                        figures.longest_message_s = max(figures.longest_message_s, took)
                    if response["batchItemFailures"]:
                        with lock:
                            figures.failed_invocations += 1
                            receives = msg.get("Attributes", {}).get("ApproximateReceiveCount")
                            figures.failures.append(f"{body.survey}/{body.file or ''} #{receives}")
                        # Back on the queue after the (scaled) visibility timeout.
                        sqs.change_message_visibility(
                            QueueUrl=url,
                            ReceiptHandle=msg["ReceiptHandle"],
                            VisibilityTimeout=max(0, round(retry_after)),
                        )
                    else:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            except BaseException as exc:  # the run fails, saying why
                errors.append(exc)
                stop.set()

        threads = [
            threading.Thread(target=instance, args=(n,), name=f"worker-{n}", daemon=True)
            for n in range(stack.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        figures.wall_s = time.monotonic() - started
        _clear_lambda_caches()
        if errors:
            raise errors[0]

        dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        figures.dead_letters = [m["Body"] for m in dead]
        times = [r.at for r in server.requests]
        figures.request_times = times
        figures.source_requests = len(times)
        figures.peak_rps = peak_per_second(times)
        figures.peak_rps_5s = peak_per_second(times, 5.0) / 5
        for window in RATE_WINDOWS:
            figures.peak_requests[f"{window:g}s"] = peak_per_second(times, window)
            figures.allowed[f"{window:g}s"] = allowed_requests(
                figures.budget_rps, window, figures.concurrency
            )
        figures.peak_rps_workers = peak_per_second([t for t in times if t >= planned_at])
        figures.busiest = busiest_second(
            [(r.at - started, r.path) for r in server.requests], figures.peak_rps
        )

        store = ObjectStore(s3, bucket)
        mirrored = {o.key for o in store.list_objects("") if not o.key.startswith(".")}
        mirrored = {k for k in mirrored if not k.startswith(TABLES_PREFIX)}
        for key in sorted(set(paths) | mirrored):
            same = key in paths and key in mirrored
            if not same or store.get_bytes(key) != paths[key].read_bytes():
                figures.mirror_mismatches.append(key)
        figures.table_writes = dict(counts)
        figures.tables_expected = [series_key(TABLES_PREFIX, s) for s in tree] + [
            observations_key(TABLES_PREFIX, s, n)
            for s, files in tree.items()
            for n in files
            if ".data." in n
        ]
    figures.load_average = os.getloadavg()[:2]
    return figures


def problems(figures: Figures) -> list[str]:
    """What the rehearsal's checks found wrong (none: it passed)."""
    found = []
    if figures.dead_letters:
        found.append(f"{len(figures.dead_letters)} message(s) in the DLQ: {figures.dead_letters}")
    for window in RATE_WINDOWS:
        most = peak_per_second(figures.request_times, window)
        allowed = allowed_requests(figures.budget_rps, window, figures.concurrency)
        if most > allowed:
            found.append(
                f"the source answered {most} requests in {window:g} s, over the budget's "
                f"{allowed} ({figures.budget_rps:g} a second, {figures.concurrency} workers)"
            )
    if figures.mirror_mismatches:
        found.append(f"the mirror differs from the source: {figures.mirror_mismatches[:10]}")
    doc = figures.to_dict()
    if doc["tables_written_more_than_once"] or doc["tables_missing"]:
        found.append(
            f"tables written more than once: {doc['tables_written_more_than_once'][:10]}; "
            f"missing: {doc['tables_missing'][:10]}"
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--surveys", help="comma-separated surveys (default: every one)")
    parser.add_argument("--sample", action="store_true", help="the test's sample of surveys")
    parser.add_argument("--scale", type=float, default=1000.0, help="divide every size by this")
    parser.add_argument(
        "--time-scale", type=float, default=10.0, help="multiply every rate by this"
    )
    parser.add_argument("--retry-after", type=float, default=2.0)
    parser.add_argument("--s3", choices=("moto", "seaweedfs"), default="moto")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "rehearsal")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from rearcquest.offline import embedded_s3

    every = inventory()
    if args.surveys:
        wanted = set(args.surveys.split(","))
        chosen = [s for s in every if s.name in wanted]
    else:
        chosen = sample(every) if args.sample else every
    before = os.getloadavg()[:2]
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(embedded_s3())
        s3_url = None
        if args.s3 == "seaweedfs":
            sys.path.insert(0, str(REPO / "tests"))
            from weed import seaweedfs  # type: ignore[import-not-found]

            s3_url = stack.enter_context(seaweedfs(Path(tempfile.mkdtemp()))).url
        figures = rehearse(
            chosen,
            endpoint_url=endpoint,
            folder=args.work,
            scale=args.scale,
            time_scale=args.time_scale,
            retry_after=args.retry_after,
            s3_endpoint_url=s3_url,
        )
    doc = figures.to_dict()
    doc["load_average_before"] = before
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name, value in doc.items():
            print(f"{name}: {value}")
    found = problems(figures)
    for problem in found:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
