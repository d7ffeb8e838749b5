"""The whole-tree rehearsal (benchmarks/rehearsal/run.py, issue 21 §3): surveys of the real
inventory planned onto the work queue and synced by the worker's own handler, with the stack's
concurrency, rate and dead-letter settings, on moto's SQS server and moto's S3 or SeaweedFS.

The test runs one survey of each size class of the inventory (:func:`sample`), its sizes divided
by 1,000 and its rates multiplied by 5; ``python benchmarks/rehearsal/run.py`` runs every survey
(its figures are in benchmarks/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent / "benchmarks" / "rehearsal" / "run.py"


rehearsal = load_script(BENCH, "bench_rehearsal_run")


def test_the_rehearsal_reads_the_stacks_fan_out_settings() -> None:
    stack = rehearsal.stack_settings()
    # infra/rearcquest_infra: two workers at once sharing two requests a second, 15 minutes,
    # five receives before the DLQ; rq's own 512 MiB big-file threshold.
    assert (stack.concurrency, stack.total_rps, stack.worker_rps) == (2, 2.0, 1.0)
    assert (stack.timeout_s, stack.max_receives) == (900, 5)
    assert stack.big_file_bytes == 512 * 1024 * 1024


def test_the_tree_has_every_survey_of_the_inventory_with_its_file_counts() -> None:
    surveys = rehearsal.inventory()
    assert len(surveys) == 65
    assert sum(s.data_files for s in surveys) == 828
    cs = next(s for s in surveys if s.name == "cs")
    files = rehearsal.planned_files(cs, scale=1000)
    assert len(files) == cs.data_files
    assert files["cs.data.1.AllData"] == 6_072_400  # 6,072.4 MB at 1/1000
    assert max(files.values()) == files["cs.data.1.AllData"]
    assert all(n.startswith("cs.data.") for n in files)
    # Seeded: the same tree every run.
    assert rehearsal.planned_files(cs, scale=1000) == files


def test_the_sample_covers_every_size_class() -> None:
    surveys = rehearsal.inventory()
    chosen = rehearsal.sample(surveys)
    classes = [rehearsal.size_class(s) for s in chosen]
    assert classes == list(range(len(rehearsal.SIZE_CLASSES)))
    assert rehearsal.sample(surveys) == chosen


@pytest.mark.parametrize(
    ("times", "window", "peak"),
    [
        ([], 1.0, 0),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 1.0, 3),
        ([0.0, 1.0, 2.0, 3.0], 1.0, 1),
        ([3.0, 0.0, 0.1, 0.2], 1.0, 3),
        ([0.0, 1.0, 2.0, 3.0, 4.0, 4.99], 5.0, 6),
    ],
    ids=["none", "edge-excluded", "spaced", "unsorted", "five-seconds"],
)
def test_peak_per_second_counts_a_half_open_window(
    times: list[float], window: float, peak: int
) -> None:
    assert rehearsal.peak_per_second(times, window) == peak


def test_the_allowed_requests_are_each_limiters_spacing_with_both_edges_and_one_late() -> None:
    # Two workers at 1/s each: one request at each edge of a second, and one late, each.
    assert rehearsal.allowed_requests(2.0, 1.0, 2) == 6
    assert rehearsal.allowed_requests(2.0, 5.0, 2) == 14
    # Over ten seconds at 20 a second: 204, 2 % above the budget.
    assert rehearsal.allowed_requests(20.0, 10.0, 2) == 204


@pytest.mark.parametrize("s3", ["moto", "seaweedfs"])
def test_a_sample_of_the_whole_tree_goes_through_planner_queue_and_workers(
    moto_server: str, tmp_path: Path, s3: str, request: pytest.FixtureRequest
) -> None:
    surveys = rehearsal.sample(rehearsal.inventory())
    s3_url, bucket = (
        request.getfixturevalue("seaweed_bucket") if s3 == "seaweedfs" else (None, "rq-rehearsal")
    )
    figures = rehearsal.rehearse(
        surveys,
        endpoint_url=moto_server,
        folder=tmp_path,
        scale=1000,
        time_scale=5,
        s3_endpoint_url=s3_url,
        bucket=bucket,
    )
    assert figures.surveys == len(surveys) == 5
    # The largest class has a file above the (scaled) big-file threshold: its own message.
    assert figures.file_messages >= 1
    assert figures.messages_planned == len(surveys) + figures.file_messages
    assert figures.invocations >= figures.messages_planned
    # No message in the DLQ; a failed receive (a file message meeting its survey's lease) came
    # back and went through.
    assert figures.dead_letters == []
    # The source's rate stayed within the budget (5 x the stack's 2 requests a second).
    assert figures.budget_rps == 10.0
    for window in rehearsal.RATE_WINDOWS:
        assert rehearsal.peak_per_second(
            figures.request_times, window
        ) <= rehearsal.allowed_requests(figures.budget_rps, window, figures.concurrency)
    # The mirror equals the source, every file's bytes; every table was built once.
    assert figures.mirror_mismatches == []
    doc = figures.to_dict()
    assert doc["tables_written_more_than_once"] == []
    assert doc["tables_missing"] == []
    assert doc["tables"] == len(figures.tables_expected)
    assert rehearsal.problems(figures) == []
