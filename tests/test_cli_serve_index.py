"""`rq serve-index` end to end: the server as a real process until Ctrl-C, the static page,
exit codes and messages."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from typer.testing import CliRunner

from conftest import BLS_RELEASES
from rearcquest.cli import app

runner = CliRunner()
VINTAGE = "2026-08-06"


@pytest.fixture
def bucket(moto_server: str) -> tuple[str, Any]:
    """A moto bucket holding one real BLS release under pr/."""
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"cli-idx-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    for path in sorted((BLS_RELEASES / VINTAGE).iterdir()):
        if path.name != "listing.html":
            client.put_object(Bucket=name, Key="pr/" + path.name, Body=path.read_bytes())
    return name, client


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    first_line: str


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return ""
    return proc.stdout.readline()


@pytest.fixture
def serve_process(moto_server: str) -> Iterator[Any]:
    """Start `rq serve-index` as a process on a free port; always stopped afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        cmd = [sys.executable, "-m", "rearcquest", "serve-index", "--port", "0"]
        cmd += ["--endpoint-url", moto_server, *args]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        procs.append(proc)
        line = _read_line(proc, 30)
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert match, (line, proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
        return Served(proc, match.group(1), line)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _interrupt(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=20)


@pytest.mark.integration
def test_serves_until_ctrl_c(serve_process: Any, bucket: tuple[str, Any]) -> None:
    name, _ = bucket
    served = serve_process("--bucket", name, "--prefix", "pr/")
    assert served.first_line.startswith(f"Serving s3://{name}/pr/ at http://127.0.0.1:")
    assert "Ctrl-C" in served.first_line
    expected = (BLS_RELEASES / VINTAGE / "pr.class").read_bytes()
    with httpx.Client(base_url=served.url) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'href="/pr.data.0.Current"' in page.text
        assert client.get("/pr.class").content == expected
        doc = client.get("/?format=json").json()
        assert doc["count"]["objects"] == 12
        assert client.get("/%2e%2e/").status_code == 404
        # Another name for this host is refused (DNS rebinding).
        assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400
    assert _interrupt(served.proc) == 0
    assert served.proc.stderr is not None
    assert "Traceback" not in served.proc.stderr.read()


@pytest.mark.integration
def test_sigterm_stops_the_server_as_ctrl_c_does(
    serve_process: Any, bucket: tuple[str, Any]
) -> None:
    name, _ = bucket
    served = serve_process("--bucket", name, "--prefix", "pr/")
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/").status_code == 200
    served.proc.send_signal(signal.SIGTERM)  # systemd's or a container's stop
    assert served.proc.wait(timeout=20) == 0
    assert served.proc.stderr is not None
    assert "Traceback" not in served.proc.stderr.read()


@pytest.mark.integration
def test_token_from_the_environment(serve_process: Any, bucket: tuple[str, Any]) -> None:
    name, _ = bucket
    served = serve_process("--bucket", name, env={"RQ_INDEX_TOKEN": "tok-" + "x" * 20})
    assert "(token required)" in served.first_line
    assert "tok-" not in served.first_line
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/").status_code == 401
        assert client.get("/pr/pr.class").status_code == 401
        auth = {"Authorization": "Bearer tok-" + "x" * 20}
        assert client.get("/pr/pr.class", headers=auth).status_code == 200
        login = client.get("/pr/?token=tok-" + "x" * 20, follow_redirects=True)
        assert login.status_code == 200 and str(login.url).endswith("/pr/")
        assert client.get("/pr/pr.class").status_code == 200
    assert _interrupt(served.proc) == 0


def _next_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of stdout, even if it already sits in the reader's buffer (where select()
    does not see it): read in a thread, waited for at most ``timeout`` seconds."""
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@pytest.mark.integration
def test_auto_token_prints_the_link_once(serve_process: Any, bucket: tuple[str, Any]) -> None:
    name, _ = bucket
    served = serve_process("--bucket", name, "--token", "auto")
    assert "(token required)" in served.first_line
    link = _next_line(served.proc, 30).strip()
    match = re.fullmatch(r"Open (http://127\.0\.0\.1:\d+/)\?token=([A-Za-z0-9_-]{32})", link)
    assert match and match.group(1) == served.url, link
    token = match.group(2)
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=auto").status_code == 401  # "auto" is not the token
        opened = client.get(link.removeprefix("Open "), follow_redirects=True)
        assert opened.status_code == 200 and "pr/" in opened.text
        assert client.get("/pr/pr.class", headers={"Authorization": f"Bearer {token}"}).content
    assert _interrupt(served.proc) == 0
    assert served.proc.stdout is not None and served.proc.stderr is not None
    rest = served.proc.stdout.read() + served.proc.stderr.read()
    assert token not in rest  # printed once, never logged


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("tooshort", "the index token is 8 characters long; use at least 16"),
        ("fifteen-chars-x", "the index token is 15 characters long"),
        ("has spaces in the token", "the index token has spaces or control characters"),
    ],
    ids=["short", "fifteen", "spaces"],
)
def test_weak_token_is_refused(
    moto_server: str, bucket: tuple[str, Any], token: str, message: str
) -> None:
    name, _ = bucket
    args = ["serve-index", "--bucket", name, "--token", token, "--endpoint-url", moto_server]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"Error: {message}" in result.output
    assert "--token auto" in result.output and "Traceback" not in result.output


def test_weak_token_from_the_environment_is_refused(moto_server: str) -> None:
    args = ["serve-index", "--bucket", "b", "--endpoint-url", moto_server]
    result = runner.invoke(app, args, env={"RQ_INDEX_TOKEN": "1234"})
    assert result.exit_code == 2 and "4 characters long" in result.output


def test_write_static(moto_server: str, bucket: tuple[str, Any]) -> None:
    name, client = bucket
    args = ["serve-index", "--bucket", name, "--prefix", "pr/", "--write-static"]
    result = runner.invoke(app, [*args, "--endpoint-url", moto_server])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"Wrote s3://{name}/index.html: 12 objects under s3://{name}/pr/"
    )
    head = client.head_object(Bucket=name, Key="index.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    page = client.get_object(Bucket=name, Key="index.html")["Body"].read().decode()
    assert 'href="./pr/pr.data.0.Current"' in page


def test_write_static_json_with_presigned_links(moto_server: str, bucket: tuple[str, Any]) -> None:
    name, _ = bucket
    args = ["serve-index", "--bucket", name, "--prefix", "pr/", "--write-static"]
    args += ["--index-key", "pr/index.html", "--presign", "600", "--format", "json"]
    result = runner.invoke(app, [*args, "--endpoint-url", moto_server])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["key"] == "pr/index.html" and doc["objects"] == 12
    assert doc["url"] == f"s3://{name}/pr/index.html"
    with httpx.Client() as client:
        page = client.get(doc["share_url"])
        assert page.status_code == 200
        link = re.search(r'href="([^"]+pr\.class[^"]*)"', page.text)
        assert link is not None
        download = client.get(link.group(1).replace("&amp;", "&"))
        assert download.content == (BLS_RELEASES / VINTAGE / "pr.class").read_bytes()


def test_missing_bucket(moto_server: str) -> None:
    result = runner.invoke(
        app, ["serve-index", "--bucket", "no-such-bucket-here", "--endpoint-url", moto_server]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


def test_port_in_use(moto_server: str, bucket: tuple[str, Any]) -> None:
    name, _ = bucket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ["serve-index", "--bucket", name, "--port", port, "--endpoint-url", moto_server]
        result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


@pytest.mark.parametrize("key", ["../index.html", "site/", "/index.html"], ids=str)
def test_bad_index_key(moto_server: str, bucket: tuple[str, Any], key: str) -> None:
    name, _ = bucket
    args = ["serve-index", "--bucket", name, "--write-static", "--index-key", key]
    result = runner.invoke(app, [*args, "--endpoint-url", moto_server])
    assert result.exit_code == 2
    assert "index key" in result.output


def test_port_out_of_range_is_a_usage_error() -> None:
    result = runner.invoke(app, ["serve-index", "--bucket", "b", "--port", "70000"])
    assert result.exit_code == 2


def test_without_the_serve_extra(
    monkeypatch: pytest.MonkeyPatch, moto_server: str, bucket: tuple[str, Any]
) -> None:
    import rearcquest.index

    for module in ("starlette", "uvicorn"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import starlette` fail
    for module in ("rearcquest.index._server", "rearcquest.index._app"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delattr(rearcquest.index, "_server", raising=False)
    monkeypatch.delattr(rearcquest.index, "_app", raising=False)
    name, client = bucket
    args = ["serve-index", "--bucket", name, "--endpoint-url", moto_server]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "pip install 'rearcquest[serve]'" in result.output
    # The static page needs no extra.
    result = runner.invoke(app, [*args, "--write-static"])
    assert result.exit_code == 0, result.output
    assert client.head_object(Bucket=name, Key="index.html")["ContentLength"] > 0


def test_help_names_the_options() -> None:
    result = runner.invoke(app, ["serve-index", "--help"])
    assert result.exit_code == 0
    for option in (
        "--bucket",
        "--prefix",
        "--host",
        "--port",
        "--token",
        "--write-static",
        "--index-key",
        "--presign",
        "--cache-seconds",
        "--endpoint-url",
    ):
        assert option in result.output
    assert "RQ_INDEX_TOKEN" in result.output


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        (["--write-static", "--token", "x" * 16], "--token"),
        (["--write-static", "--host", "0.0.0.0"], "--host"),
        (["--write-static", "--port", "9000"], "--port"),
        (["--write-static", "--cache-seconds", "0"], "--cache-seconds"),
        (["--write-static", "--host", "0.0.0.0", "--port", "9000"], "--host, --port"),
        (["--presign", "60"], "--presign"),
        (["--index-key", "other.html"], "--index-key"),
        (["--format", "json"], "--format"),
    ],
    ids=[
        "static-token",
        "static-host",
        "static-port",
        "static-cache",
        "static-two",
        "live-presign",
        "live-index-key",
        "live-format",
    ],
)
def test_options_of_the_other_mode_are_refused(extra: list[str], refused: str) -> None:
    # Refused before any S3 request: no server needed.
    result = runner.invoke(app, ["serve-index", "--bucket", "b", *extra])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {refused}: cannot be used with" in result.output


def test_token_from_the_environment_is_not_refused_with_write_static(
    monkeypatch: pytest.MonkeyPatch, moto_server: str, bucket: tuple[str, Any]
) -> None:
    # RQ_INDEX_TOKEN set for the live page must not break the static one.
    monkeypatch.setenv("RQ_INDEX_TOKEN", "x" * 16)
    name, client = bucket
    args = ["serve-index", "--bucket", name, "--endpoint-url", moto_server, "--write-static"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert client.head_object(Bucket=name, Key="index.html")["ContentLength"] > 0


def test_a_taken_port_is_refused_before_the_bucket_is_asked(moto_server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ["serve-index", "--bucket", "no-such-bucket-here", "--port", port]
        result = runner.invoke(app, [*args, "--endpoint-url", moto_server])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
