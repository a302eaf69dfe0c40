"""The pid-file guard: only a live process running exactly the recorded argv is ever signalled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.lab import procs
from seawall.lab.config import write_json_atomic

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
# Prints "armed" (spelled apart so the command line echoed in the log does not contain it) once
# SIGTERM is ignored.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ar' + 'med', flush=True); time.sleep(60)",
]


@pytest.fixture
def stray() -> Iterator[subprocess.Popen[bytes]]:
    """A process this test starts itself, to point a forged pid file at."""
    proc = subprocess.Popen(SLEEP)
    yield proc
    proc.kill()
    proc.wait()


def test_read_cmdline_of_self() -> None:
    cmdline = procs.read_cmdline(os.getpid())
    assert (cmdline is not None and cmdline[0].endswith(("python", "python3", "python3.11"))) or cmdline


def test_read_cmdline_of_missing_pid() -> None:
    assert procs.read_cmdline(2**22 + 12345) is None


def test_is_ours_needs_the_exact_argv(stray: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 5
    while procs.read_cmdline(stray.pid) != SLEEP and time.monotonic() < deadline:
        time.sleep(0.01)
    assert procs.is_ours(stray.pid, SLEEP)
    assert not procs.is_ours(stray.pid, [*SLEEP[:-1], "import time; time.sleep(61)"])
    assert not procs.is_ours(stray.pid, SLEEP[:-1])
    assert not procs.is_ours(1, SLEEP)


def test_stop_leaves_a_reused_pid_alone(tmp_path: Path, stray: subprocess.Popen[bytes]) -> None:
    # The pid file names a live pid, but that pid now runs another command: it must not be killed.
    procs.run_dir(tmp_path).mkdir(parents=True)
    procs.pid_path(tmp_path, "moto").write_text(f"{stray.pid}\n")
    write_json_atomic(
        procs.meta_path(tmp_path, "moto"), {"argv": ["moto_server", "-p", "5000"], "fingerprint": ""}
    )
    assert procs.stop(tmp_path, "moto", timeout=1) == "stale pid file"
    assert stray.poll() is None
    assert not procs.pid_path(tmp_path, "moto").exists()
    assert not procs.meta_path(tmp_path, "moto").exists()


def test_live_cleans_stale_pid_files(tmp_path: Path) -> None:
    procs.run_dir(tmp_path).mkdir(parents=True)
    procs.pid_path(tmp_path, "vcsim-dr").write_text("999999999\n")
    write_json_atomic(procs.meta_path(tmp_path, "vcsim-dr"), {"argv": ["vcsim"], "fingerprint": "x"})
    assert procs.live(tmp_path, "vcsim-dr") is None
    assert not procs.pid_path(tmp_path, "vcsim-dr").exists()


def test_start_then_stop(tmp_path: Path) -> None:
    pid = procs.start(tmp_path, "sleeper", SLEEP, fingerprint="f1")
    tracked = procs.live(tmp_path, "sleeper")
    assert (
        tracked is not None and tracked.pid == pid and tracked.argv == SLEEP and tracked.fingerprint == "f1"
    )
    assert procs.pid_path(tmp_path, "sleeper").read_text().strip() == str(pid)
    assert os.getpgid(pid) == pid  # its own session: it outlives the CLI that started it
    assert procs.stop(tmp_path, "sleeper", timeout=5) == "stopped"
    assert not procs.is_ours(pid, SLEEP)
    assert procs.stop(tmp_path, "sleeper") == "not running"
    assert "start:" in procs.log_path(tmp_path, "sleeper").read_text()


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    pid = procs.start(tmp_path, "stubborn", STUBBORN, fingerprint="")
    log = procs.log_path(tmp_path, "stubborn")
    deadline = time.monotonic() + 10
    while "armed" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert procs.stop(tmp_path, "stubborn", timeout=0.5) == "killed"
    assert not procs.is_ours(pid, STUBBORN)


def test_find_running_needs_argv_and_cwd(tmp_path: Path) -> None:
    # A lab adopts a process whose pid files were lost only when it runs in that lab's state dir.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    argv = [*SLEEP[:-1], f"import time; time.sleep(60)  # {tmp_path}"]
    pid = procs.start(tmp_path / "a", "sleeper", argv, fingerprint="", cwd=tmp_path / "a")
    try:
        assert procs.find_running(argv, cwd=tmp_path / "a") == pid
        assert procs.find_running(argv, cwd=tmp_path / "b") is None
        assert procs.find_running([*argv, "x"], cwd=tmp_path / "a") is None
    finally:
        assert procs.stop(tmp_path / "a", "sleeper", timeout=5) == "stopped"
