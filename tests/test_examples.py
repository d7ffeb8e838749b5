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
import pytest

import rearcquest
from rearcquest.config import DEFAULT_POPULATION_KEY
from rearcquest.offline import OfflineServer, add_datausa_routes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.integration
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


def _crontab_fields() -> list[str]:
    """The five time fields and the command of the example's one crontab line."""
    lines = [
        line
        for line in (EXAMPLES / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    return lines[0].split(None, 5)


def test_crontab_line_runs_rq_run_daily() -> None:
    fields = _crontab_fields()
    assert fields[:5] == ["15", "9", "*", "*", "*"]
    assert re.search(r'rq" run\b', fields[5])


@pytest.mark.integration
def test_crontab_command_runs_rq_run_with_the_env_file_as_cron_does(
    tmp_path: Path, moto_server: str, bls_server: OfflineServer
) -> None:
    command = _crontab_fields()[5]
    assert "%" not in command, "cron would turn % into a newline"
    home = tmp_path / "home"
    bls_bucket, pop_bucket = f"cron-bls-{uuid.uuid4().hex[:8]}", f"cron-pop-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    for bucket in (bls_bucket, pop_bucket):
        s3.create_bucket(Bucket=bucket)
    population_url = add_datausa_routes(bls_server)["tesseract"]
    # Installed as the example says: the env file (as rearcquest.env.example, filled in), the
    # log directory, and credentials from the usual chain (~/.aws), not from the env file.
    files = {
        ".config/rearcquest/env": (
            f"# filled in from rearcquest.env.example\nRQ_BLS_BUCKET={bls_bucket}\n"
            f"RQ_POPULATION_BUCKET={pop_bucket}\nRQ_CONTACT=cron@example.com\n"
            # A URL with '&' is quoted, as the example says: sh would run it in the background.
            f"RQ_BLS_URL={bls_server.bls_url}\nRQ_POPULATION_URL='{population_url}'\n"
            f"AWS_ENDPOINT_URL={moto_server}\n"
        ),
        ".aws/credentials": "[default]\naws_access_key_id = t\naws_secret_access_key = t\n",
        ".aws/config": "[default]\nregion = us-east-1\n",
        # rq as installed, running the code under test.
        ".local/bin/rq": (
            f"#!/bin/sh\nPYTHONPATH={Path(rearcquest.__file__).parents[1]} "
            f'exec {sys.executable} -m rearcquest "$@"\n'
        ),
    }
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    (home / ".local/bin/rq").chmod(0o755)
    (home / ".local/state/rearcquest").mkdir(parents=True)
    # cron's environment: HOME, LOGNAME, SHELL and PATH, nothing else; the command runs in sh.
    cron_env = [f"HOME={home}", "LOGNAME=cron", "SHELL=/bin/sh", "PATH=/usr/bin:/bin"]
    proc = subprocess.run(
        ["env", "-i", *cron_env, "/bin/sh", "-c", command], capture_output=True, text=True
    )
    log = (home / ".local/state/rearcquest/run.log").read_text()
    assert proc.returncode == 0, log
    assert (proc.stdout, proc.stderr) == ("", "")
    assert "Error:" not in log
    mirrored = s3.list_objects_v2(Bucket=bls_bucket, Prefix="pr/")["KeyCount"]
    assert mirrored == len(bls_server.files)
    assert s3.head_object(Bucket=pop_bucket, Key=DEFAULT_POPULATION_KEY)["ContentLength"] > 0


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
