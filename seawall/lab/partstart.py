"""Starting one lab part: reuse a healthy one, adopt an orphan, else start it; wait for health; set it up.

``manager.up`` runs ``ensure_running`` for every part in parallel. Separate from ``parts.py`` (what
each part is) and ``manager.py`` (the whole lab's up, status and down).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from seawall.lab import config as c
from seawall.lab import procs, vsphere_build
from seawall.lab.parts import LabError, Part


def _wait_ready(state: Path, part: Part, pid: int) -> str:
    deadline = time.monotonic() + part.start_timeout
    last = "no answer yet"
    while True:
        # A closed port fails fast here; the clients' own retries (Azure's back off 15 s) would not.
        if procs.port_open(c.HOST, part.port):
            try:
                return part.ping()
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
        else:
            last = f"port {part.port} not open"
        if not procs.is_ours(pid, part.argv):
            procs.forget(state, part.name)
            raise LabError(
                f"{part.name} exited during start-up; see {procs.log_path(state, part.name)}:\n"
                + procs.log_tail(state, part.name)
            )
        if time.monotonic() > deadline:
            raise LabError(
                f"{part.name} did not become healthy within {part.start_timeout:.0f}s ({last}); "
                f"see {procs.log_path(state, part.name)}"
            )
        time.sleep(0.1)


@dataclass
class Started:
    pid: int
    action: str
    result: object


def ensure_running(state: Path, part: Part) -> Started:
    began = time.monotonic()
    tracked = procs.live(state, part.name)
    pid, action = None, "started"
    if tracked is not None:
        if tracked.argv == part.argv and tracked.fingerprint == part.fingerprint:
            try:
                part.ping()
                pid, action = tracked.pid, "running"
            except Exception:
                action = "restarted"  # alive but not answering: replace it
        else:
            action = "restarted"
        if pid is None:
            procs.stop(state, part.name)
    if pid is None and tracked is None and procs.port_open(c.HOST, part.port):
        # Our exact command line, running in this state dir (every part's cwd), but no pid file: the
        # files were removed under a running lab. Adopt it rather than fail on the port it holds.
        orphan = procs.find_running(part.argv, cwd=state)
        if orphan is not None:
            try:
                part.ping()
                procs.adopt(state, part.name, orphan, part.argv, part.fingerprint)
                pid, action = orphan, "adopted"
            except Exception:
                pass
    if pid is None:
        pid = _start(state, part)
        action = f"{action} in {time.monotonic() - began:.1f}s"
    try:
        result = part.bootstrap() if part.bootstrap else None
    except Exception as exc:
        if action not in ("running", "adopted") or not isinstance(exc, vsphere_build.IncompleteSiteError):
            raise _setup_failed(state, part, exc) from exc
        # A reused vcsim left half-built by an interrupted `up` is replaced once: its inventory is in
        # memory and the lab's to rebuild. Nothing else is replaced on a set-up error, since a slow
        # answer under load must not wipe what other tests keep there.
        procs.stop(state, part.name)
        pid = _start(state, part)
        action = f"replaced in {time.monotonic() - began:.1f}s"
        try:
            result = part.bootstrap() if part.bootstrap else None
        except Exception as again:
            raise _setup_failed(state, part, again) from again
    return Started(pid=pid, action=action, result=result)


def _start(state: Path, part: Part) -> int:
    if procs.port_open(c.HOST, part.port):
        raise LabError(
            f"{part.name}: port {c.HOST}:{part.port} is in use by a process this lab did not start "
            f"(state dir {state}); stop it, or run this lab with --port-offset"
        )
    pid = procs.start(state, part.name, part.argv, fingerprint=part.fingerprint, cwd=state)
    _wait_ready(state, part, pid)
    return pid


def _setup_failed(state: Path, part: Part, exc: Exception) -> LabError:
    return LabError(
        f"{part.name} is up but setting it up failed: {type(exc).__name__}: {exc}; "
        f"see {procs.log_path(state, part.name)}"
    )
