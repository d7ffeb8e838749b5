"""rq's own process (rearcquest._process): who it is, whether another still runs, and the sweep
of the temporary folders a killed run left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rearcquest import _process
from rearcquest._process import ProcessId, gone, scratch_dir, sweep_scratch


def this_process() -> ProcessId:
    me = _process.current()
    assert me is not None, "the tests run on Linux, with /proc"
    return me


def folder_of(process: ProcessId, where: Path, purpose: str = "tables") -> Path:
    """A folder named as scratch_dir names one of ``process``, with a file in it."""
    folder = where / f"rq-{_process._tag(process)}-{purpose}-abc123"
    folder.mkdir()
    (folder / "pr.data.0.Current").write_bytes(b"x" * 1000)
    return folder


def test_this_process_is_alive_and_an_ended_or_recycled_pid_is_gone() -> None:
    me = this_process()
    assert me.pid == os.getpid() and not gone(me)
    assert gone(ProcessId(me.host, me.pid, me.start + 1))  # this pid, another start: recycled
    # Not certain, so not gone: another host, an impossible pid.
    assert not gone(ProcessId("elsewhere", me.pid, me.start + 1))
    assert not gone(ProcessId(me.host, _process.MAX_PID + 1, 0))


def test_a_process_that_proc_hides_is_not_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc mounted with hidepid=2 shows no other user's process: the pid still exists (kill(0)
    # says so), so its lease is not taken over nor its folder removed.
    me = this_process()
    monkeypatch.setattr(_process, "_PROC", tmp_path)  # a /proc that shows nothing
    assert not gone(ProcessId(me.host, os.getppid(), 1))


def test_the_sweep_removes_only_the_folders_of_ended_processes(tmp_path: Path) -> None:
    me = this_process()
    dead = folder_of(ProcessId(me.host, me.pid, me.start + 1), tmp_path)
    live = folder_of(me, tmp_path)
    elsewhere = folder_of(ProcessId("another host", me.pid, me.start + 1), tmp_path)
    others = [tmp_path / "rq-tables-abc", tmp_path / "rq-1-2-zzz", tmp_path / "notrq"]
    for folder in others:
        folder.mkdir()
    # A file and a link named like a dead process's folder are not folders of rq.
    file = tmp_path / f"rq-{_process._tag(ProcessId(me.host, me.pid, me.start + 2))}-x-1"
    file.write_text("x")
    link = tmp_path / f"rq-{_process._tag(ProcessId(me.host, me.pid, me.start + 3))}-x-1"
    link.symlink_to(live)
    assert sweep_scratch(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert all(p.exists() for p in [live, elsewhere, *others, file, link])
    assert (live / "pr.data.0.Current").exists()


def test_scratch_dir_names_the_folder_after_this_process_and_sweeps_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_process, "_swept", set())
    me = this_process()
    dead = folder_of(ProcessId(me.host, me.pid, me.start + 1), tmp_path)
    with scratch_dir("tables") as folder:
        assert Path(folder).name.startswith(f"rq-{_process._tag(me)}-tables-")
        assert not dead.exists()
        again = folder_of(ProcessId(me.host, me.pid, me.start + 1), tmp_path, "series")
        with scratch_dir("series"):
            assert again.exists()  # once per process: the start of the run
    assert not Path(folder).exists()


def test_process_ids_of_lock_objects_parse_or_are_none() -> None:
    from fuzz_helpers import random_json

    rng = random.Random(4)
    valid = this_process().to_dict()
    assert ProcessId.from_dict(valid) == this_process()
    bad = [
        {**valid, "pid": True},
        {**valid, "pid": 0},
        {**valid, "start": -1},
        {**valid, "host": ""},
    ]
    assert [ProcessId.from_dict(doc) for doc in bad] == [None] * 4
    for case in range(2000):
        doc = dict(valid)
        doc[rng.choice(["host", "pid", "start", "other"])] = random_json(rng)
        found = ProcessId.from_dict(doc if rng.random() < 0.9 else random_json(rng))
        assert found is None or 0 < found.pid <= _process.MAX_PID, f"case {case}"


@pytest.mark.integration
def test_a_killed_runs_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    # A real rq process that made its folder and was SIGKILLed; another still at work.
    code = (
        "import sys, time\n"
        "from rearcquest._process import scratch_dir\n"
        "held = scratch_dir('tables')\n"
        "folder = held.name\n"
        "open(folder + '/pr.data.0.Current', 'wb').write(b'x' * 1000)\n"
        "print(folder, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def start() -> tuple[subprocess.Popen[str], Path]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        return proc, Path(proc.stdout.readline().strip())

    running, kept = start()
    try:
        killed, left = start()
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
        assert left.is_dir() and kept.is_dir() and left != kept
        foreign = tmp_path / "someone-elses"
        foreign.mkdir()
        sweep = "from rearcquest._process import scratch_dir\nscratch_dir('x').cleanup()\n"
        subprocess.run([sys.executable, "-c", sweep], env=env, check=True, timeout=60)
        assert not left.exists()
        assert kept.is_dir() and foreign.is_dir()
    finally:
        running.kill()
        running.communicate(timeout=60)


def test_wait_all_gives_results_in_order_and_cancels_what_has_not_begun() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rearcquest._process import wait_all

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert wait_all(pool.submit(lambda n=n: n * n) for n in range(5)) == [0, 1, 4, 9, 16]
    release = threading.Event()

    def fail() -> None:
        raise ValueError("first")

    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(fail), pool.submit(release.wait, 5), pool.submit(release.wait, 5)]
        with pytest.raises(ValueError, match="first"):
            wait_all(futures)
        assert futures[2].cancelled()  # never begun: cancelled, not run
        release.set()
