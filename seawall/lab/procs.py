"""Detached processes tracked by pid files, and stopped only when they are provably ours.

Each part has ``<state>/run/<part>.pid`` (the pid, as any script expects) and ``<part>.json`` (the exact
argv it was started with). Before a signal is sent, /proc/<pid>/cmdline must equal that argv: a pid the
kernel has since given to another program is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seawall.lab.config import write_json_atomic


@dataclass(frozen=True)
class Tracked:
    """What the pid files say about a part."""

    pid: int
    argv: list[str]
    fingerprint: str


def run_dir(state: Path) -> Path:
    return state / "run"


def log_path(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def pid_path(state: Path, name: str) -> Path:
    return run_dir(state) / f"{name}.pid"


def meta_path(state: Path, name: str) -> Path:
    return run_dir(state) / f"{name}.json"


def read_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, None when there is none (or it is a zombie, whose cmdline is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def is_ours(pid: int, argv: list[str]) -> bool:
    """True only when ``pid`` is alive and runs exactly ``argv`` (the guard against pid reuse)."""
    return pid > 1 and read_cmdline(pid) == argv


def read_tracked(state: Path, name: str) -> Tracked | None:
    try:
        pid = int(pid_path(state, name).read_text().strip())
        meta = json.loads(meta_path(state, name).read_text())
        return Tracked(pid=pid, argv=list(meta["argv"]), fingerprint=str(meta.get("fingerprint", "")))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def live(state: Path, name: str) -> Tracked | None:
    """The tracked process of a part if it is alive and still ours; stale pid files are removed."""
    tracked = read_tracked(state, name)
    if tracked is not None and is_ours(tracked.pid, tracked.argv):
        return tracked
    forget(state, name)
    return None


def find_running(argv: list[str], cwd: Path) -> int | None:
    """A live process running exactly ``argv`` in directory ``cwd``, found by scanning /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and read_cmdline(int(entry.name)) == argv:
            try:
                if Path(os.readlink(entry / "cwd")) == cwd:
                    return int(entry.name)
            except OSError:
                continue
    return None


def adopt(state: Path, name: str, pid: int, argv: list[str], fingerprint: str) -> None:
    """Record an already running process as this part's, as start() would have."""
    run_dir(state).mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path(state, name), {"argv": argv, "fingerprint": fingerprint, "adopted": True})
    tmp = pid_path(state, name).with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, pid_path(state, name))


def forget(state: Path, name: str) -> None:
    for path in (pid_path(state, name), meta_path(state, name)):
        path.unlink(missing_ok=True)


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(
    state: Path,
    name: str,
    argv: list[str],
    *,
    fingerprint: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    launch: list[str] | None = None,
) -> int:
    """Start ``argv`` in a session of its own, output appended to its log; record it. Returns the pid.

    A new session keeps the process alive after the CLI exits and out of the terminal's Ctrl-C. The
    lab runs every part with the state dir as its cwd, which tells its processes from another lab's.
    ``launch`` is a wrapper command that ends by exec'ing ``argv`` in the same process (e.g. `unshare`
    setting up a mount namespace first); the pid is recorded once /proc shows ``argv``.
    """
    log = log_path(state, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    run_dir(state).mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} start: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            launch or argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    # /proc/<pid>/cmdline reads empty for a few ms while exec completes; the pid is recorded only once
    # it shows our argv, so the pid-reuse guard never mistakes a starting child for a dead one.
    deadline = time.monotonic() + 5
    while read_cmdline(proc.pid) != argv:
        if proc.poll() is not None:
            raise OSError(f"{name} exited at once (code {proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            proc.kill()
            raise OSError(f"{name} (pid {proc.pid}) does not show the expected command line; see {log}")
        time.sleep(0.005)
    # The child is not waited for here: it outlives us, and init reaps it. Telling Popen it is done
    # keeps a long-lived caller (a test session) from warning about a "still running" child.
    proc.returncode = 0
    write_json_atomic(meta_path(state, name), {"argv": argv, "fingerprint": fingerprint, "log": str(log)})
    tmp = pid_path(state, name).with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, pid_path(state, name))
    return proc.pid


def stop(state: Path, name: str, timeout: float = 10.0) -> str:
    """SIGTERM the part's process group, SIGKILL after ``timeout``; pid files go either way.

    Returns what happened, for the CLI: "stopped", "killed", "not running" or "stale pid file".
    """
    tracked = read_tracked(state, name)
    if tracked is None:
        forget(state, name)
        return "not running"
    if not is_ours(tracked.pid, tracked.argv):
        forget(state, name)
        return "stale pid file"
    _signal(tracked, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_ours(tracked.pid, tracked.argv):
            forget(state, name)
            return "stopped"
        _reap(tracked.pid)
        time.sleep(0.05)
    _signal(tracked, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_ours(tracked.pid, tracked.argv):
        _reap(tracked.pid)
        time.sleep(0.05)
    forget(state, name)
    return "killed"


def _signal(tracked: Tracked, sig: signal.Signals) -> None:
    # The process leads its own session (start_new_session), so its group is its own helpers only;
    # the group is signalled only while that still holds, else the single pid.
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(tracked.pid) == tracked.pid:
            os.killpg(tracked.pid, sig)
        else:
            os.kill(tracked.pid, sig)


def _reap(pid: int) -> None:
    # When the caller itself started the process (a test session), it stays a zombie until waited on.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def locked(state: Path) -> Iterator[None]:
    """One `lab up`/`lab down` at a time per state dir (two racing `up`s would start two of each)."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / "lab.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(state: Path, name: str, lines: int = 15) -> str:
    try:
        text = log_path(state, name).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
