"""The KVM part of `lab up | status | down`: both sites' daemons, their objects, kvm-a's guests.

`up` starts the daemons of kvm-a and kvm-b and builds the guest image in parallel (the first libvirt
call of a fresh machine waits ~10 s for QEMU's capability probe), decides kvm or TCG, then fills each
site. It does not wait for the guests to boot: `status` reports what each guest's console says.
"""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from seawall.lab import config as c
from seawall.lab import kvm, kvm_image, kvm_site, procs
from seawall.lab.info import KvmSiteInfo

CONNECT_TIMEOUT = 60.0  # a cold machine's capability probe, two daemons probing at once


def up(state: Path, cfg: c.LabConfig) -> tuple[dict[str, KvmSiteInfo], dict[str, str]]:
    """Everything KVM the lab needs, idempotently; returns LabInfo.kvm and an action per daemon."""
    kvm.fix_dev_kvm()
    began = time.monotonic()
    actions: dict[str, str] = {}

    def start_site(site: str) -> Any:
        actions.update(kvm.ensure_daemons(state, site))
        return kvm.connect(kvm.site_dirs(state, site).uri, timeout=CONNECT_TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(kvm.SITES) + 1) as pool:
        image = pool.submit(kvm_image.build_base_image, kvm_site.image_dir(state))
        conn_futures = {site: pool.submit(start_site, site) for site in kvm.SITES}
        conns = {site: fut.result() for site, fut in conn_futures.items()}
        base = image.result()
        try:
            accel = kvm_site.decide_accel(state, conns["kvm-a"], base)
            fill = {
                site: pool.submit(kvm_site.bootstrap_site, state, cfg, conns[site], site, accel)
                for site in kvm.SITES
            }
            infos = {site: fut.result() for site, fut in fill.items()}
            # The daemon rows of `lab up` also say when their site was complete (guests started).
            for site in kvm.SITES:
                name = kvm.daemon_names(site)[1]
                actions[name] = (
                    f"{actions.get(name, 'running')}, {site} set up at {time.monotonic() - began:.1f}s"
                )
        finally:
            for conn in conns.values():
                with contextlib.suppress(Exception):
                    conn.close()
    return infos, actions


def saved_accel(state: Path) -> kvm_site.Accel | None:
    try:
        saved = json.loads((state / "kvm" / "accel.json").read_text())
        return kvm_site.Accel(saved["accel"], saved["reason"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


def _guest_summary(conn: Any, guest: Any) -> dict[str, Any]:
    import libvirt

    try:
        dom = conn.lookupByName(guest.name)
        running = bool(dom.isActive())
        paused = running and dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    except libvirt.libvirtError:
        running = paused = False
    report = kvm_site.guest_report(guest)
    row: dict[str, Any] = {
        "name": guest.name,
        "running": running,
        "paused": paused,
        "ready": bool(report and report.ready),
        "console": report.line if report else None,
        "health_port": guest.health_port,
        "last_record": None,
    }
    if running and not paused and report is not None:
        with contextlib.suppress(Exception):
            row["last_record"] = kvm_site.guest_health(guest, timeout=1.0).get("last_record")
    return row


def site_status(state: Path, cfg: c.LabConfig, site: str) -> list[dict[str, Any]]:
    """Rows for the lab's status table (PartStatus fields), one per daemon of the site."""
    dirs = kvm.site_dirs(state, site)
    daemons = kvm.daemon_status(state, site)
    virtlogd, libvirtd = kvm.daemon_names(site)
    rows = []
    pid, word = daemons[virtlogd]
    sock = dirs.run / "virtlogd-sock"
    ok = pid is not None and sock.exists()
    rows.append(_row(state, virtlogd, pid, ok, f"socket {sock}" if ok else word))
    pid, word = daemons[libvirtd]
    if pid is None:
        rows.append(_row(state, libvirtd, None, False, word))
        return rows
    try:
        healthy, detail = _libvirtd_health(state, cfg, site)
    except Exception as exc:
        healthy, detail = False, f"{type(exc).__name__}: {exc}"
    rows.append(_row(state, libvirtd, pid, healthy, detail))
    return rows


def _libvirtd_health(state: Path, cfg: c.LabConfig, site: str) -> tuple[bool, str]:
    accel = saved_accel(state)
    conn = kvm.connect(kvm.site_dirs(state, site).uri, timeout=5)
    try:
        problems = []
        pool = conn.storagePoolLookupByName(kvm_site.pool_name(site))
        if not pool.isActive():
            problems.append(f"pool {pool.name()} inactive")
        for net in kvm_site.networks(state, site):
            if not conn.networkLookupByName(net.name).isActive():
                problems.append(f"network {net.name} inactive")
        guests = [_guest_summary(conn, g) for g in kvm_site.guest_infos(state, cfg, site)]
        words = [accel.accel if accel else "accel unknown", f"pool {pool.name()}"]
        if guests:
            # Guests are workload, not lab health: a failover test may well shut one down on purpose
            # (`lab up` starts it again). The row says how many run and are ready.
            running = sum(g["running"] for g in guests)
            ready = sum(g["ready"] and g["running"] for g in guests)
            paused = sum(g["paused"] for g in guests)
            words.append(
                f"{running}/{len(guests)} guests running, {ready} ready"
                + (f", {paused} paused" if paused else "")
            )
        return not problems, "; ".join(problems or words)
    finally:
        conn.close()


def _row(state: Path, name: str, pid: int | None, healthy: bool, detail: str) -> dict[str, Any]:
    return {
        "name": name,
        "pid": pid,
        "port": None,
        "healthy": healthy,
        "detail": detail,
        "log": str(procs.log_path(state, name)),
    }


def summary(state: Path, cfg: c.LabConfig) -> dict[str, Any]:
    """What `lab status --json` says about KVM: kvm or tcg, and each guest's own word."""
    accel = saved_accel(state)
    guests: list[dict[str, Any]] = []
    for site in kvm.SITES:
        infos = kvm_site.guest_infos(state, cfg, site)
        if not infos or kvm.daemon_status(state, site)[kvm.daemon_names(site)[1]][0] is None:
            continue
        try:
            conn = kvm.connect(kvm.site_dirs(state, site).uri, timeout=5)
        except kvm.KvmError:
            continue
        try:
            guests += [{"site": site, **_guest_summary(conn, g)} for g in infos]
        finally:
            conn.close()
    return {
        "accel": accel.accel if accel else None,
        "accel_reason": accel.reason if accel else None,
        "guests": guests,
    }


def down(state: Path, timeout: float = 10.0) -> dict[str, str]:
    """Remove the sites' objects, then stop their daemons (by pid file). Disks stay unless purged."""

    def down_site(site: str) -> dict[str, str]:
        conn = None
        if kvm.daemon_status(state, site)[kvm.daemon_names(site)[1]][0] is not None:
            with contextlib.suppress(kvm.KvmError):
                conn = kvm.connect(kvm.site_dirs(state, site).uri, timeout=10)
        failed = ""
        try:
            done = kvm_site.teardown_site(state, site, conn)
        except Exception as exc:
            failed = done = f"libvirt teardown failed ({type(exc).__name__}: {exc})"
        finally:
            if conn is not None:
                conn.close()
        stopped = kvm.stop_daemons(state, site, timeout)
        if failed:
            # The daemons still stop; what they left (QEMU processes, bridges) goes by pid file and name.
            done = f"{failed}; {kvm_site.teardown_site(state, site, None)}"
        return {site: done, **stopped}

    results: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=len(kvm.SITES)) as pool:
        for done in pool.map(down_site, kvm.SITES):
            results.update(done)
    return results
