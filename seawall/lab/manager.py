"""`lab up`, `lab down`, `lab status`: the parts (Temporal, vcsim x2, moto, Azurite, BIND), started in
parallel, checked, bootstrapped.

The KVM sites (seawall.lab.kvm_lab) run as one more job of the same pool: their daemons have no TCP
port, so they are not `Part`s, but their pid files, logs and status rows follow the same rules.

What each part runs is in ``parts.py``, starting one in ``partstart.py``, the credential files in
``labsecrets.py``; this module is the whole lab's up, status and down.
"""

from __future__ import annotations

import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from pydantic import BaseModel

from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.lab import config as c
from seawall.lab import kvm, kvm_lab, procs, temporal
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
from seawall.lab.labsecrets import replica_key_path, write_secrets
from seawall.lab.parts import LabError, Part, parts
from seawall.lab.partstart import Started, ensure_running

PROCESS_PARTS = ("temporal", "vcsim-primary", "vcsim-dr", "moto", "azurite", "bind")
# Every part with a pid file: the processes above, then virtlogd/libvirtd of kvm-a and kvm-b.
PART_NAMES = (*PROCESS_PARTS, *kvm.part_names())


class PartStatus(BaseModel):
    name: str
    pid: int | None
    port: int | None  # None: listens on no TCP port (the libvirt daemons use unix sockets)
    healthy: bool
    detail: str
    log: str
    # set by `up`: "running" (left alone), "adopted", "started in 1.2s", "restarted in 0.3s"
    action: str | None = None


def _write_env(state: Path, info: LabInfo) -> None:
    lines = ["# Source this to point clients at the lab: . " + str(state / "lab.env")]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(info.env().items())]
    (state / "lab.env").write_text("\n".join(lines) + "\n")


def _lab_info(
    state: Path, cfg: c.LabConfig, started: dict[str, Started], kvm_sites: dict[str, KvmSiteInfo]
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
        write_secrets(state)
        todo = parts(state, cfg, for_start=True)
        with ThreadPoolExecutor(max_workers=len(todo) + 1) as pool:
            kvm_future = pool.submit(kvm_lab.up, state, cfg)
            futures = {part.name: pool.submit(ensure_running, state, part) for part in todo}
            errors: list[str] = []
            started: dict[str, Started] = {}
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
