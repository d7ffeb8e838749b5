"""The examples run as documented."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import boto3

from rearcquest.offline import OfflineServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_library_example_syncs(moto_server: str, bls_server: OfflineServer) -> None:
    bucket = f"ex-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    env = {
        **os.environ,
        "RQ_BLS_BUCKET": bucket,
        "RQ_CONTACT": "example@example.com",
        "RQ_BLS_URL": bls_server.bls_url,
        "AWS_ENDPOINT_URL": moto_server,
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "library_sync.py")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("added 12, updated 0, deleted 0")


def test_crontab_line_runs_rq_run_daily() -> None:
    lines = [
        line
        for line in (EXAMPLES / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["15", "9", "*", "*", "*"]
    assert re.search(r'rq" run\b', fields[5])


def test_systemd_units_are_well_formed() -> None:
    service = configparser.ConfigParser(strict=True, interpolation=None)
    service.read(EXAMPLES / "rearcquest.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("rq run")
    timer = configparser.ConfigParser(strict=True, interpolation=None)
    timer.read(EXAMPLES / "rearcquest.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 09:15:00"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_env_example_names_only_documented_variables() -> None:
    documented = (EXAMPLES.parent / "docs" / "configuration.md").read_text()
    for line in (EXAMPLES / "rearcquest.env.example").read_text().splitlines():
        line = line.lstrip("# ")
        if "=" in line and line.split("=")[0].isupper():
            assert f"`{line.split('=')[0]}`" in documented, line
