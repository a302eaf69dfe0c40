"""`lab up`, `lab down`, `lab status`: the parts (Temporal, vcsim x2, moto, Azurite, BIND), started in
parallel, checked, bootstrapped.

The KVM sites (seawall.lab.kvm_lab) run as one more job of the same pool: their daemons have no TCP
port, so they are not `Part`s, but their pid files, logs and status rows follow the same rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pydantic import BaseModel

from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.lab import bind, cloud, kvm, kvm_lab, moto_server, procs, temporal, vsphere
from seawall.lab import config as c
from seawall.lab.info import (
    AwsInfo,
    AzureInfo,
    DnsInfo,
    KvmSiteInfo,
    LabInfo,
    S3Info,
    TemporalInfo,
    VSphereSiteInfo,
    lab_json_path,
)

PROCESS_PARTS = ("temporal", "vcsim-primary", "vcsim-dr", "moto", "azurite", "bind")
# Every part with a pid file: the processes above, then virtlogd/libvirtd of kvm-a and kvm-b.
PART_NAMES = (*PROCESS_PARTS, *kvm.part_names())


class LabError(RuntimeError):
    """A part could not be started, did not become healthy, or could not be set up."""


class PartStatus(BaseModel):
    name: str
    pid: int | None
    port: int | None  # None: listens on no TCP port (the libvirt daemons use unix sockets)
    healthy: bool
    detail: str
    log: str
    # set by `up`: "running" (left alone), "adopted", "started in 1.2s", "restarted in 0.3s"
    action: str | None = None


@dataclass
class Part:
    name: str
    port: int
    argv: list[str]
    ping: Callable[[], str]  # ready to be set up (the service answers)
    check: Callable[[], str]  # ready for Seawall (answers and holds the lab's objects)
    start_timeout: float
    # Sets up what the lab needs inside the part (idempotent); runs as soon as the part answers, so
    # one part's set-up overlaps the others' start-up. Its result goes into LabInfo.
    bootstrap: Callable[[], object] | None = None
    fingerprint_extra: str = ""

    @property
    def fingerprint(self) -> str:
        # A part whose command or built inventory would differ is restarted rather than reused.
        blob = json.dumps([self.argv, self.fingerprint_extra]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def vcsim_binary() -> Path | None:
    """An upstream `vcsim` on PATH, else ``$SEAWALL_VCSIM_BIN``, else ours in ``.seawall/bin/vcsim``."""
    found = shutil.which("vcsim")
    if found:
        return Path(found)
    explicit = os.environ.get("SEAWALL_VCSIM_BIN")
    if explicit:
        return Path(explicit)
    root = c.repo_root()
    return root / ".seawall" / "bin" / "vcsim" if root else None


def ensure_vcsim() -> Path:
    binary = vcsim_binary()
    root = c.repo_root()
    ours = root / ".seawall" / "bin" / "vcsim" if root else None
    if root is not None and binary == ours:
        # Cheap when up to date; rebuilds after main.go changed. Its output goes to stderr so that
        # `lab up --json` stays parseable.
        build = root / "deploy" / "lab" / "vcsim" / "build.sh"
        subprocess.run(["bash", str(build)], check=True, stdout=sys.stderr)
    if binary is None or not binary.is_file():
        raise LabError(
            "no vcsim: put one on PATH, set SEAWALL_VCSIM_BIN, or build ours with deploy/lab/vcsim/build.sh"
        )
    return binary


def azurite_argv(state: Path, cfg: c.LabConfig) -> list[str]:
    root = c.repo_root()
    script = root / "deploy" / "lab" / "node_modules" / ".bin" / "azurite-blob" if root else None
    node = shutil.which("node")
    if script is None or not script.exists() or node is None:
        raise LabError("Azurite is not installed: run scripts/setup.sh (npm install in deploy/lab)")
    return [
        node,
        str(script),
        "--blobHost",
        c.HOST,
        "--blobPort",
        str(cfg.azurite_port),
        "--location",
        str(state / "azurite"),
        "--skipApiVersionCheck",
        "--loose",
        # Telemetry would phone home and, with no network, hold the process open after SIGTERM.
        "--disableTelemetry",
    ]


def parts(state: Path, cfg: c.LabConfig, *, for_start: bool) -> list[Part]:
    """The six process parts. ``for_start`` resolves binaries (and may build vcsim); status does not.

    Longer than 80 lines on purpose: it is the lab's table of parts (argv, ping, check, timeouts),
    one literal entry per part, read best side by side rather than spread over six helpers.
    """
    specs = vsphere.site_specs(state, cfg)
    vcsim = str(ensure_vcsim() if for_start else (vcsim_binary() or "vcsim"))
    try:
        temporal_argv = temporal.argv(state, cfg)
    except FileNotFoundError as exc:
        if for_start:
            raise LabError(str(exc)) from exc
        temporal_argv = ["temporal"]
    try:
        blob_argv = azurite_argv(state, cfg)
    except LabError:
        if for_start:
            raise
        blob_argv = ["azurite-blob"]
    try:
        named_argv = bind.argv(state)
    except FileNotFoundError as exc:
        if for_start:
            raise LabError(str(exc)) from exc
        named_argv = ["named"]
    # Its files are written before it starts; its config's text decides whether a running one is reused.
    named_conf = bind.prepare(state, cfg) if for_start else ""

    def build_site(spec: vsphere.SiteSpec) -> VSphereSiteInfo:
        vsphere.build(spec)
        vsphere.fill_disks(spec)
        return vsphere.describe(spec)

    def vcsim_part(site: str) -> Part:
        spec = specs[site]
        return Part(
            name=f"vcsim-{site}",
            port=spec.port,
            # -dc 0: an empty vCenter; the lab builds the named inventory (see seawall.lab.vsphere).
            argv=[vcsim, "-l", f"{c.HOST}:{spec.port}", "-tls=false", "-dc", "0"],
            ping=lambda: vsphere.ping(spec.port),
            check=lambda: vsphere.check(spec),
            start_timeout=20,
            bootstrap=lambda: build_site(spec),
            fingerprint_extra=repr(spec),
        )

    return [
        Part(
            name="temporal",
            port=cfg.temporal_port,
            argv=temporal_argv,
            ping=lambda: temporal.ping(cfg),
            check=lambda: temporal.ping(cfg),
            start_timeout=40,
        ),
        vcsim_part("primary"),
        vcsim_part("dr"),
        Part(
            name="moto",
            port=cfg.moto_port,
            # moto.server with S3 written through to the state dir (seawall/lab/moto_server.py).
            argv=[
                sys.executable,
                moto_server.__file__,
                "--data",
                str(state / "s3"),
                "-H",
                c.HOST,
                "-p",
                str(cfg.moto_port),
            ],
            ping=lambda: cloud.ping_moto(cfg.moto_port),
            check=lambda: cloud.check_moto(cfg.moto_port),
            start_timeout=40,
            bootstrap=lambda: cloud.bootstrap_moto(cfg.moto_port, credentials_path(state, "aws")),
        ),
        Part(
            name="azurite",
            port=cfg.azurite_port,
            argv=blob_argv,
            ping=lambda: cloud.ping_azurite(cfg.azurite_port),
            check=lambda: cloud.check_azurite(cfg.azurite_port),
            start_timeout=40,
            bootstrap=lambda: cloud.bootstrap_azurite(cfg.azurite_port, credentials_path(state, "azure")),
        ),
        Part(
            name="bind",
            port=cfg.dns_port,
            argv=named_argv,
            ping=lambda: bind.ping(state, cfg),
            check=lambda: bind.check(state, cfg),
            start_timeout=20,
            bootstrap=lambda: bind.info(state, cfg),
            fingerprint_extra=named_conf,
        ),
    ]


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
class _Started:
    pid: int
    action: str
    result: object


def _ensure_running(state: Path, part: Part) -> _Started:
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
        if action not in ("running", "adopted") or not isinstance(exc, vsphere.IncompleteSiteError):
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
    return _Started(pid=pid, action=action, result=result)


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


def credentials_path(state: Path, name: str) -> Path:
    return state / "credentials" / f"{name}.json"


def replica_key_path(state: Path) -> Path:
    return state / "keys" / "replica.key"


def _write_secrets(state: Path) -> None:
    """Lab credentials as files, so inventories reference them (``file:``) instead of holding them."""
    files = {
        "primary": {"user": c.VSPHERE_USER, "password": c.VSPHERE_PASSWORD},
        "dr": {"user": c.VSPHERE_USER, "password": c.VSPHERE_PASSWORD},
        "aws": {"aws_access_key_id": c.AWS_KEY_ID, "aws_secret_access_key": c.AWS_SECRET},
        "azure": {"account_name": c.AZURITE_ACCOUNT, "account_key": c.AZURITE_KEY},
    }
    for name, data in files.items():
        c.write_json_atomic(credentials_path(state, name), data, mode=0o600)
    key = replica_key_path(state)
    if not key.exists():
        # Made once and kept: a new key would make every replica already written unreadable.
        key.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")


def _write_env(state: Path, info: LabInfo) -> None:
    lines = ["# Source this to point clients at the lab: . " + str(state / "lab.env")]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(info.env().items())]
    (state / "lab.env").write_text("\n".join(lines) + "\n")


def _lab_info(
    state: Path, cfg: c.LabConfig, started: dict[str, _Started], kvm_sites: dict[str, KvmSiteInfo]
) -> LabInfo:
    s3_info, aws_info = cast(tuple[S3Info, AwsInfo], started["moto"].result)
    return LabInfo(
        state_dir=state,
        temporal=TemporalInfo(
            address=f"{c.HOST}:{cfg.temporal_port}",
            host=c.HOST,
            port=cfg.temporal_port,
            ui_url=temporal.ui_url(cfg),
            namespace=temporal.NAMESPACE,
            search_attributes=[key.name for key in SEARCH_ATTRIBUTES],
            db_file=state / "temporal.db",
        ),
        vsphere={
            "primary": cast(VSphereSiteInfo, started["vcsim-primary"].result),
            "dr": cast(VSphereSiteInfo, started["vcsim-dr"].result),
        },
        s3=s3_info,
        aws=aws_info,
        azure=cast(AzureInfo, started["azurite"].result),
        dns=cast(DnsInfo, started["bind"].result),
        disk_size=cfg.disk_size,
        replica_key_file=replica_key_path(state),
        kvm=kvm_sites,
    )


def up(state: Path, cfg: c.LabConfig) -> tuple[LabInfo, list[PartStatus]]:
    """Start what is not running (in parallel), wait for health, build the inventory, write lab.json."""
    state.mkdir(parents=True, exist_ok=True)
    with procs.locked(state):
        c.save_config(state, cfg)
        _write_secrets(state)
        todo = parts(state, cfg, for_start=True)
        with ThreadPoolExecutor(max_workers=len(todo) + 1) as pool:
            kvm_future = pool.submit(kvm_lab.up, state, cfg)
            futures = {part.name: pool.submit(_ensure_running, state, part) for part in todo}
            errors: list[str] = []
            started: dict[str, _Started] = {}
            for name, fut in futures.items():
                try:
                    started[name] = fut.result()
                except Exception as exc:
                    errors.append(
                        str(exc) if isinstance(exc, LabError) else f"{name}: {type(exc).__name__}: {exc}"
                    )
            kvm_sites: dict[str, KvmSiteInfo] = {}
            kvm_actions: dict[str, str] = {}
            try:
                kvm_sites, kvm_actions = kvm_future.result()
            except Exception as exc:
                errors.append(f"kvm: {type(exc).__name__}: {exc}")
        if errors:
            raise LabError("\n".join(errors))
        info = _lab_info(state, cfg, started, kvm_sites)
        c.write_json_atomic(lab_json_path(state), info.model_dump(mode="json"))
        _write_env(state, info)
    statuses = status(state, cfg)
    for st in statuses:
        st.action = started[st.name].action if st.name in started else kvm_actions.get(st.name)
    return info, statuses


def _status_of(state: Path, part: Part) -> PartStatus:
    tracked = procs.read_tracked(state, part.name)
    pid = tracked.pid if tracked and procs.is_ours(tracked.pid, tracked.argv) else None
    log = str(procs.log_path(state, part.name))
    if pid is None:
        detail = "not running" if tracked is None else f"stale pid file (pid {tracked.pid} is gone)"
        if procs.port_open(c.HOST, part.port):
            detail += f"; port {part.port} is held by a process this lab did not start"
        return PartStatus(name=part.name, pid=None, port=part.port, healthy=False, detail=detail, log=log)
    try:
        detail = part.check()
        healthy = True
    except Exception as exc:
        detail, healthy = f"{type(exc).__name__}: {exc}", False
    return PartStatus(name=part.name, pid=pid, port=part.port, healthy=healthy, detail=detail, log=log)


def status(state: Path, cfg: c.LabConfig | None = None) -> list[PartStatus]:
    """Health of every part, checked in parallel. Never starts or stops anything."""
    cfg = cfg or c.resolve_config(state)
    todo = parts(state, cfg, for_start=False)
    with ThreadPoolExecutor(max_workers=len(todo) + len(kvm.SITES)) as pool:
        kvm_rows = [pool.submit(kvm_lab.site_status, state, cfg, site) for site in kvm.SITES]
        rows = list(pool.map(lambda part: _status_of(state, part), todo))
        rows += [PartStatus(**row) for fut in kvm_rows for row in fut.result()]
    return rows


def down(state: Path, *, purge: bool = False, timeout: float = 10.0) -> dict[str, str]:
    """Stop every part this state dir started (by pid file, never by name). Idempotent."""
    if not state.exists():
        return dict.fromkeys(PART_NAMES, "not running")
    with procs.locked(state):
        with ThreadPoolExecutor(max_workers=len(PROCESS_PARTS) + 1) as pool:
            kvm_future = pool.submit(kvm_lab.down, state, timeout)
            results = dict(
                zip(
                    PROCESS_PARTS,
                    pool.map(lambda n: procs.stop(state, n, timeout), PROCESS_PARTS),
                    strict=True,
                )
            )
            results.update(kvm_future.result())
        lab_json_path(state).unlink(missing_ok=True)
        (state / "lab.env").unlink(missing_ok=True)
        if purge:
            shutil.rmtree(state)
    return results
