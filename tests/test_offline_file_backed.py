"""The offline server's file-backed files (``ServedFile(path=...)``), used by the benchmarks."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from rearcquest.errors import ConfigError
from rearcquest.offline import OfflineServer, Pacer, ServedFile
from rearcquest.sources.bls import parse_listing

UA = {"User-Agent": "rq-tests (contact: tests@example.com)"}


def test_file_backed_body_size_and_304(tmp_path: Path) -> None:
    body = bytes(range(256)) * 5000 + b"tail"
    disk = tmp_path / "big.bin"
    disk.write_bytes(body)
    listed = datetime(2026, 1, 2, 3, 4)
    files = {
        "big.bin": ServedFile("big.bin", b"", listed, path=disk),
        "small.txt": ServedFile("small.txt", b"hello", listed),
    }
    with OfflineServer(files) as server, httpx.Client(headers=UA) as client:
        listing = parse_listing(client.get(server.bls_url).text, server.bls_url)
        assert {f.name: f.size for f in listing} == {"big.bin": len(body), "small.txt": 5}
        got = client.get(server.bls_url + "big.bin")
        assert got.status_code == 200
        assert got.headers["Content-Length"] == str(len(body))
        assert hashlib.sha256(got.content).digest() == hashlib.sha256(body).digest()
        head = client.head(server.bls_url + "big.bin")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["ETag"] == got.headers["ETag"]
        again = client.get(
            server.bls_url + "big.bin",
            headers={"If-Modified-Since": got.headers["Last-Modified"]},
        )
        assert again.status_code == 304 and again.content == b""
        assert client.get(server.bls_url + "small.txt").content == b"hello"
    assert [r.status for r in server.file_requests()] == [200, 200, 304, 200]


class _FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_books_each_write_at_the_rate_without_idle_credit() -> None:
    fake = _FakeTime()
    pacer = Pacer(1000.0, clock=fake.clock, sleep=fake.sleep)
    pacer.wait(500)  # the first slot starts now
    pacer.wait(500)  # waits for the first 500 bytes' half second
    pacer.wait(250)
    assert fake.slept == [0.5, 0.5]
    fake.now += 10.0  # idle: no credit is earned
    pacer.wait(1000)
    pacer.wait(1)
    assert fake.slept == [0.5, 0.5, 1.0]


def test_pacer_refuses_a_rate_of_zero_or_less() -> None:
    with pytest.raises(ConfigError):
        Pacer(0.0)
    with pytest.raises(ConfigError):
        OfflineServer({}, bandwidth=-1.0)


def test_bandwidth_paces_every_body_byte_through_one_shared_pacer(tmp_path: Path) -> None:
    body = random.Random(21).randbytes(300_000)
    disk = tmp_path / "big.bin"
    disk.write_bytes(body)
    listed = datetime(2026, 1, 2, 3, 4)
    files = {
        "big.bin": ServedFile("big.bin", b"", listed, path=disk),
        "small.txt": ServedFile("small.txt", b"hello" * 1000, listed),
    }
    fake = _FakeTime()
    with OfflineServer(files, bandwidth=1e6) as server, httpx.Client(headers=UA) as client:
        assert server.pacer is not None
        server.pacer = Pacer(1e6, clock=fake.clock, sleep=fake.sleep)
        got = client.get(server.bls_url + "big.bin")
        small = client.get(server.bls_url + "small.txt")
    assert got.content == body and small.content == b"hello" * 1000
    # Every byte (headers included) waited for its slot: the fake clock moved by the bytes sent
    # over the rate, less the first write's slot, which starts at once.
    assert sum(fake.slept) >= (len(body) + 5000) / 1e6 - Pacer.PIECE / 1e6
    with OfflineServer({}) as unlimited:
        assert unlimited.pacer is None
