"""The offline server's file-backed files (``ServedFile(path=...)``), used by the benchmarks."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import httpx

from rearcquest.offline import OfflineServer, ServedFile
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
