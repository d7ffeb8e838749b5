"""`rq demo` runs the whole job offline and leaves nothing running."""

from __future__ import annotations

import threading

from typer.testing import CliRunner

from rearcquest.cli import app


def test_demo_runs_every_step_and_stops_everything() -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "added       12" in out
    assert "updated      3  pr.data.0.Current, pr.data.1.AllData, pr.series" in out
    assert "(5 re-dated by the source with identical bytes: not uploaded)" in out
    assert "1 request(s) to the source" in out
    assert "Wrote s3://rq-demo/datausa/population.json: 10 years, 2013-2023 (tesseract)" in out
    assert "Unchanged s3://rq-demo/datausa/population.json" in out
    assert "2 message(s) (the first is S3's s3:TestEvent, skipped); 0 failed" in out
    assert "322,069,808.0" in out and "4,158,441.04" in out
    assert "237 series" in out
    assert "PRS30006032  2018  Q01       0.5  327,167,439" in out
    leftover = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert leftover == []
