"""restic and borg on the data-path benchmark's old/new image pair (``benchmarks.datapath``).

Each peer gets a fresh repository in the work directory, backs up the old image (the seed), then
the new one (the 1 % incremental) under the same path -- a hard link that is switched from the old
file to the new one, so each tool sees one file whose inode, ctime and mtime changed, as a VM disk
would between two cycles, and neither copy costs a byte. Wall time of each backup command is
measured, and the repository's growth with ``du -sb`` (apparent bytes, as Seawall's store is
counted). Settings follow their own documentation for the closest like-for-like to Seawall
(compressed with zstd, encrypted):

- restic: ``init --repository-version 2``, ``backup --compression auto`` (zstd), password from a
  file in the work directory, cache in the work directory.
- borg: ``init -e repokey-blake2`` (passphrase from ``BORG_PASSPHRASE``), ``create --compression
  zstd,1``, config and cache in the work directory (``BORG_BASE_DIR``).

A peer whose binary is missing is reported as ``{"error": "not installed"}``, a failing command as
``{"error": "<command> failed: <last lines of its stderr>"}``; the benchmark runs on either way.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEERS = ("restic", "borg")
PASSWORD = "seawall-benchmark"  # a throwaway repository in a temporary directory


class PeerError(RuntimeError):
    pass


def du_bytes(path: Path) -> int:
    """Apparent size of a directory tree in bytes (``du -sb``)."""
    r = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True)
    return int(r.stdout.split()[0])


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Runs ``argv``; returns its wall seconds and CPU seconds (all threads, user + system)."""
    t, c = time.perf_counter(), _children_cpu()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    dt, dc = time.perf_counter() - t, _children_cpu() - c
    if r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise PeerError(f"{' '.join(argv[:2])} failed (exit {r.returncode}): {tail}")
    return dt, dc


def _version(binary: str) -> str:
    r = subprocess.run(
        [binary, "version" if binary == "restic" else "--version"], capture_output=True, text=True
    )
    return (r.stdout.strip().splitlines() or ["?"])[0]


class _Peer:
    name = ""
    settings = ""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.repo = home / "repo"
        self.env = dict(os.environ)

    def init(self) -> None:
        raise NotImplementedError

    def backup(self, src_dir: Path, label: str) -> tuple[float, float]:
        raise NotImplementedError


class _Restic(_Peer):
    name = "restic"
    settings = "init --repository-version 2; backup --compression auto (zstd); password file"

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        pw = home / "password"
        pw.write_text(PASSWORD)
        self.env.update(RESTIC_REPOSITORY=str(self.repo), RESTIC_PASSWORD_FILE=str(pw))
        self.env.pop("RESTIC_PASSWORD", None)
        self.env.pop("RESTIC_PASSWORD_COMMAND", None)
        self.common = ["--cache-dir", str(home / "cache"), "--quiet"]

    def init(self) -> None:
        _run(["restic", "init", "--repository-version", "2", *self.common], self.env)

    def backup(self, src_dir: Path, label: str) -> tuple[float, float]:
        # The same path and host every time, so the incremental finds the seed as its parent.
        argv = ["restic", "backup", "--compression", "auto", "--host", "bench", "--tag", label, *self.common]
        return _run([*argv, str(src_dir)], self.env)


class _Borg(_Peer):
    name = "borg"
    settings = "init -e repokey-blake2 (BORG_PASSPHRASE); create --compression zstd,1"

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.env.update(
            BORG_PASSPHRASE=PASSWORD,
            BORG_BASE_DIR=str(home / "base"),
            BORG_DISPLAY_PASSPHRASE="no",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        self.env.pop("BORG_REPO", None)

    def init(self) -> None:
        _run(["borg", "init", "-e", "repokey-blake2", str(self.repo)], self.env)

    def backup(self, src_dir: Path, label: str) -> tuple[float, float]:
        return _run(
            ["borg", "create", "--compression", "zstd,1", f"{self.repo}::{label}", str(src_dir)], self.env
        )


_CLASSES: dict[str, Callable[[Path], _Peer]] = {"restic": _Restic, "borg": _Borg}
_SETTINGS = {"restic": _Restic.settings, "borg": _Borg.settings}


def _link(target: Path, link: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    os.link(target, tmp)
    os.replace(tmp, link)


def measure(name: str, old: Path, new: Path, workdir: Path, repeat: int = 1) -> dict[str, Any]:
    """Seed (``old``) and incremental (``new``) by peer ``name``; best of ``repeat`` fresh repositories.

    Returns seconds, repository bytes and the version, or ``{"error": ...}``.
    """
    if name not in _CLASSES:
        return {"error": f"unknown peer {name!r}"}
    if shutil.which(name) is None:
        return {"error": "not installed"}
    home = workdir / f"peer-{name}"
    src = home / "src"
    disk = src / "disk0.raw"
    best: dict[str, Any] | None = None
    try:
        for r in range(max(1, repeat)):
            shutil.rmtree(home, ignore_errors=True)
            src.mkdir(parents=True)
            peer = _CLASSES[name](home)
            peer.init()
            empty = du_bytes(peer.repo)
            _link(old, disk)
            seed_s, seed_cpu = peer.backup(src, f"seed-{r}")
            after_seed = du_bytes(peer.repo)
            _link(new, disk)
            inc_s, inc_cpu = peer.backup(src, f"incremental-{r}")
            after_inc = du_bytes(peer.repo)
            this = {
                "seed_s": round(seed_s, 4),
                "incremental_s": round(inc_s, 4),
                # CPU seconds, as Seawall's seed_cpu_s: what a busy shared machine cannot distort.
                "seed_cpu_s": round(seed_cpu, 3),
                "incremental_cpu_s": round(inc_cpu, 3),
                "seed_stored_bytes": after_seed - empty,
                "stored_bytes_incremental": after_inc - after_seed,
            }
            if best is None:
                best = this
            else:  # best time of each phase; stored bytes barely vary (the first run's are kept)
                for k in ("seed_s", "incremental_s", "seed_cpu_s", "incremental_cpu_s"):
                    best[k] = min(best[k], this[k])
    except (PeerError, OSError, subprocess.CalledProcessError) as e:
        return {"error": str(e)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert best is not None
    size = new.stat().st_size
    best["seed_mb_s"] = round(size / best["seed_s"] / 1e6, 1)
    best["runs"] = max(1, repeat)
    best["version"] = _version(name)
    best["settings"] = _SETTINGS[name]
    return best
