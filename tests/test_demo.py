"""`rq demo` runs the whole job offline and leaves nothing running."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import DemoRun


def test_demo_runs_every_step_and_stops_everything(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0, demo_run.stdout + demo_run.stderr
    out = demo_run.stdout
    assert "added       12" in out
    assert "updated      3  pr.data.0.Current, pr.data.1.AllData, pr.series" in out
    assert "(5 re-dated by the source with identical bytes: not uploaded)" in out
    assert "1 request(s) to the source" in out
    assert "Wrote s3://rq-demo/datausa/population.json: 10 years, 2013-2023 (tesseract)" in out
    assert "Unchanged s3://rq-demo/datausa/population.json" in out
    assert "2 message(s) (the first is S3's s3:TestEvent, skipped); 0 failed" in out
    assert "the reports went to the log: `rq -v demo 2>demo.log` saves it" in out
    assert "322,069,808.0" in out and "4,158,441.04" in out
    assert "237 series" in out
    assert "PRS30006032  2018  Q01       0.5  327,167,439" in out
    assert demo_run.leftover_threads == []


def test_the_report_log_lines_are_where_the_demo_says(tmp_path: Path) -> None:
    # What the demo says to run: rq -v demo 2>demo.log
    log = tmp_path / "demo.log"
    with log.open("w") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "rearcquest", "-v", "demo"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, log.read_text()
    assert "the reports went to the log, on stderr" in proc.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    reports = {r["report"]: r["data"] for r in records if r["message"].startswith("report ")}
    assert sorted(reports) == ["best_year", "population", "series_population"]
    assert reports["population"]["mean"] == 322069808.0
    assert len(reports["best_year"]) == 237


def test_demo_serve_shows_the_bucket_until_ctrl_c() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "rearcquest", "demo", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _serve_and_stop(proc)


def _serve_and_stop(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if match := re.search(r"Browse the demo bucket at (http://\S+)", line):
                url = match.group(1)
        assert url is not None, proc.stderr.read() if proc.stderr else ""
        page = httpx.get(url + "pr/", timeout=10)
        assert page.status_code == 200
        assert "pr.data.0.Current" in page.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_serve_on_a_taken_port_is_refused_before_the_demo_runs() -> None:
    import socket

    from typer.testing import CliRunner

    from rearcquest.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(app, ["demo", "--serve", "--port", port])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    assert result.stdout == ""
