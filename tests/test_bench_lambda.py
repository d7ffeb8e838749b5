"""The pure parts of the Lambda benchmark (benchmarks/lambda/): the CPU share, the stack's
settings, the BLS-like files and the report. The cgroups and mounts need root and run only there."""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest

from conftest import load_script
from rearcquest.data.analytics import scan_bls

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent / "benchmarks" / "lambda"


def _load(name: str) -> ModuleType:
    module: ModuleType = load_script(BENCH / f"{name}.py", f"bench_lambda_{name}")
    return module


run = _load("run")
generate = _load("generate")


def test_cpu_share_is_lambdas_one_vcpu_per_1769_mb() -> None:
    assert run.cpu_share(1769) == 1.0
    assert round(run.cpu_share(1024), 2) == 0.58
    # cpu.cfs_quota_us over a 100 ms period: 1,024 MB gets 57.9 ms of it.
    assert run.cfs_quota_us(1024) == 57_886
    assert run.cfs_quota_us(1769) == 100_000
    assert run.cfs_quota_us(3538) == 200_000  # two vCPUs: a quota over the period
    assert run.cfs_quota_us(1) == 1000  # the kernel's floor


def test_stack_limits_are_read_from_the_stack_source(tmp_path: Path) -> None:
    limits = run.stack_limits()
    assert limits.timeout_s == 15 * 60
    assert limits.memory_mb >= 128 and limits.tmp_mb >= 512 and limits.max_receives >= 1
    stack, settings = tmp_path / "stack.py", tmp_path / "settings.py"
    stack.write_text(
        "from aws_cdk import Duration\n"
        "WORK_TIMEOUT = Duration.minutes(12)\n"
        "MEMORY_MB = 1024\n"
        "WORK_MEMORY_MB = 2 * MEMORY_MB\n"
        "WORK_TMP_STORAGE_MB = 3000\n"
        "MAX_RECEIVE_COUNT = 4\n"
        "NOT_A_CONSTANT = len('x')\n"
    )
    settings.write_text(
        "DEFAULT_TMP_STORAGE_MB = 5000\nDEFAULT_TOTAL_RPS = 3.0\nDEFAULT_WORK_CONCURRENCY = 4\n"
    )
    got = run.stack_limits(stack, settings)
    # The worker's own memory when the stack has one; /tmp as the stack computes it (the larger).
    assert got == run.StackLimits(2048, 5000, 720, 4, 0.75)


@pytest.mark.parametrize("seed", range(3))
def test_data_files_are_exactly_the_size_asked_and_read_as_bls_rows(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(120, 5_000), rng.randint(5_000, 400_000), rng.randint(1, 3) * 1_000_000]
    for size in sizes:
        path = tmp_path / f"cs.data.{size}"
        generate.write_data_file(path, size, survey="cs", seed=seed)
        data = path.read_bytes()
        assert len(data) == size
        assert data.startswith(generate.HEADER) and data.endswith(b"\t\r\n")
        lines = data.split(b"\r\n")[1:-1]
        rows = pl.scan_csv(path, separator="\t").collect()
        assert rows.height == len(lines)
        frame = scan_bls(path).collect()
        assert frame.height == len(lines)
        assert frame["series_id"].n_unique() == len({line[:17] for line in lines})
        assert frame["period"].unique().to_list() == ["A01"]


def test_a_data_file_too_small_for_one_row_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        generate.write_data_file(tmp_path / "x", len(generate.HEADER) + 10, survey="cs")


def test_survey_files_name_series_of_the_data_file(tmp_path: Path) -> None:
    files = generate.write_survey_files(tmp_path, "ch")
    assert set(files) == {"ch.area", "ch.seasonal", "ch.txt", "ch.series"}
    generate.write_data_file(tmp_path / "ch.data.1.AllData", 200_000, survey="ch")
    series = pl.read_csv(files["ch.series"], separator="\t").rename(str.strip)
    data = scan_bls(tmp_path / "ch.data.1.AllData").collect()
    assert series.height == generate.SERIES_ROWS
    assert set(data["series_id"]) <= {s.strip() for s in series["series_id"]}


def test_sizes_come_from_the_inventory_or_in_mb() -> None:
    known = run.inventory()
    assert known["cs"] == run.BigFile("cs", "cs.data.1.AllData", 6_072_400_000)
    assert known["ch"].size == 3_369_700_000
    got = run.parse_sizes("cs, 600,1200.5", known)
    assert [(f.survey, f.name, f.size) for f in got] == [
        ("cs", "cs.data.1.AllData", 6_072_400_000),
        ("zb", "zb.data.1.AllData", 600_000_000),
        ("zc", "zc.data.1.AllData", 1_200_500_000),
    ]
    for bad in ("nosuchsurvey", "0", "-5", "cs,cs"):
        with pytest.raises(ValueError, match=r"inventory|more than 0|twice"):
            run.parse_sizes(bad, known)


def test_the_report_is_a_markdown_table() -> None:
    table = run.markdown_table(["a", "b|c", "n"], [["x", "1 | 2", "3"]], right="c")
    assert table.splitlines() == [
        "| a | b\\|c | n |",
        "| --- | --- | --: |",
        "| x | 1 \\| 2 | 3 |",
    ]
    inv = run.Invocation(25.0, 3, "cs/cs.data.1.AllData", 2, 49.84, 4.66, 87_000_000)
    inv.cgroup_peak, inv.tmp_peak, inv.outcome = 598_000_000, 5_400_000, "done"
    lines = run.report([inv]).splitlines()
    assert lines[0].startswith("| source | # | message | wall | CPU | peak RSS |")
    assert lines[2] == (
        "| 25 MB/s | 3 | `cs/cs.data.1.AllData` (receive 2) | 49.8 s | 4.7 s | 87 MB | 598 MB "
        "| 5.4 MB | done |"
    )


def test_a_long_outcome_keeps_its_start_and_its_cause() -> None:
    text = "the tables of cs were not all built: " + "x" * 400 + ": No space left on device"
    short = run.clipped(text)
    assert len(short) == 200
    assert short.startswith("the tables of cs") and short.endswith("No space left on device")
    assert run.clipped("short") == "short"


def test_the_summary_has_one_row_per_message_and_how_it_ended() -> None:
    def inv(number: int, message: str, outcome: str, wall: float, rss: int) -> object:
        got = run.Invocation(5.0, number, message, 1, wall, 1.0, rss)
        got.outcome = outcome
        return got

    runs = [
        inv(1, "cs", "done", 5.0, 100_000_000),
        inv(2, "cs/cs.data.1.AllData", "continuation", 170.0, 120_000_000),
        inv(3, "cs/cs.data.1.AllData", "done", 60.5, 130_000_000),
        inv(4, "ch/ch.data.1.AllData", "killed at the timeout", 180.0, 90_000_000),
    ]
    lines = run.summary(runs).splitlines()
    assert lines[0] == ("| source | message | invocations | wall | peak RSS | peak /tmp | ended |")
    assert lines[2:] == [
        "| 5 MB/s | `cs` | 1 | 5.0 s | 100 MB | 0.0 MB | **done** |",
        "| 5 MB/s | `cs/cs.data.1.AllData` | 2 | 230.5 s | 130 MB | 0.0 MB | **done** |",
        "| 5 MB/s | `ch/ch.data.1.AllData` | 1 | 180.0 s | 90 MB | 0.0 MB | killed at the timeout |",
    ]


def test_the_outcome_comes_from_the_exit_the_answer_and_the_workers_last_error(
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    log.write_text(
        '{"level": "INFO", "message": "work done"}\n'
        "not json\n"
        '{"level": "ERROR", "message": "the tables of cs were not all built"}\n'
        '{"level": "ERROR", "message": "work message failed: no space left on device"}\n'
    )
    ok = '{"rss": 123}\n{"answer": {"batchItemFailures": []}}\n'
    failed = '{"rss": 456}\n{"answer": {"batchItemFailures": [{"itemIdentifier": "m"}]}}\n'
    assert run.classify(0, killed=False, oom=False, out=ok, err=log) == ("done", 123)
    assert run.classify(0, killed=False, oom=False, out=failed, err=log) == (
        "error: no space left on device",
        456,
    )
    assert run.classify(-9, killed=True, oom=False, out="", err=log) == (
        "killed at the timeout",
        0,
    )
    assert run.classify(-9, killed=False, oom=True, out="", err=log)[0] == "killed: out of memory"
    log.write_text("Traceback (most recent call last):\nImportError: no module named x\n")
    assert run.classify(1, killed=False, oom=False, out="", err=log)[0] == (
        "crashed: ImportError: no module named x"
    )
