"""What the lab puts into each KVM site's libvirtd: a pool, two networks, and (at kvm-a) three guests.

Every object is looked up before it is made, and a running guest is never touched: `lab up` on a
running lab changes nothing. Disks outlive `lab down` (like vcsim's datastores): a guest defined again
finds its records and continues after the last one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from seawall.lab import config as c
from seawall.lab import kvm_image, procs
from seawall.lab.info import KvmGuestInfo, KvmNetworkInfo, KvmSiteInfo
from seawall.lab.kvm import SiteDirs, bridge_prefix, site_dirs
from seawall.lab.kvm_domain import GuestSpec, define_and_start, domain_xml, probe_kvm, remove_domain
from seawall.lab.kvm_records import ConsoleReport, Identity, last_console_report

ENV_ACCEL = "SEAWALL_KVM_ACCEL"  # "kvm" or "tcg": skip the probe (e.g. a CI that knows its machine)
SUBNETS = {  # the guests' address plans; the host has no address on any of these networks
    ("kvm-a", "prod"): "10.40.1.0/24",
    ("kvm-a", "drill"): "10.40.100.0/24",
    ("kvm-b", "prod"): "10.41.1.0/24",
    ("kvm-b", "drill"): "10.41.100.0/24",
}
GUEST_HOST_OCTET = 11  # kdb-01 .11, kapp-01 .12, kweb-01 .13
SITE_PORTS = {"kvm-a": (1, 20), "kvm-b": (21, 40)}  # offsets from LabConfig.kvm_health_port_base


@dataclass(frozen=True)
class Accel:
    accel: str  # "kvm" | "tcg"
    reason: str

    @property
    def domain_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"


def pool_name(site: str) -> str:
    return f"{site}-pool"


def network_name(site: str, purpose: str) -> str:
    return f"{site}-{purpose}"


def bridge_name(state: Path, site: str, purpose: str) -> str:
    return f"{bridge_prefix(state)}{site[-1]}{purpose[0]}"  # e.g. "sw3f9c1ap": at most 15 characters


def networks(state: Path, site: str) -> list[KvmNetworkInfo]:
    out = []
    for purpose in ("prod", "drill"):
        subnet = SUBNETS[(site, purpose)]
        out.append(
            KvmNetworkInfo(
                name=network_name(site, purpose),
                bridge=bridge_name(state, site, purpose),
                purpose="production" if purpose == "prod" else "drill",
                isolated=purpose == "drill",
                subnet=subnet,
                gateway=subnet.rsplit(".", 1)[0] + ".1",
            )
        )
    return out


def guest_infos(state: Path, cfg: c.LabConfig, site: str) -> list[KvmGuestInfo]:
    if site != "kvm-a":
        return []
    dirs = site_dirs(state, site)
    prod = networks(state, site)[0]
    base = prod.subnet.rsplit(".", 1)[0]
    first_port = cfg.kvm_health_port_base + SITE_PORTS[site][0]
    return [
        KvmGuestInfo(
            name=name,
            hostname=name,
            address=f"{base}.{GUEST_HOST_OCTET + i}",
            prefix=int(prod.subnet.rsplit("/", 1)[1]),
            gateway=prod.gateway,
            network=prod.name,
            health_port=first_port + i,
            console_log=dirs.consoles / f"{name}.console",
            system_volume=f"{name}-system.qcow2",
            data_volume=f"{name}-data.qcow2",
            system_disk=dirs.pool / f"{name}-system.qcow2",
            data_disk=dirs.pool / f"{name}-data.qcow2",
        )
        for i, name in enumerate(c.KVM_GUESTS)
    ]


def identity_of(guest: KvmGuestInfo) -> Identity:
    return Identity(guest.hostname, guest.address, guest.prefix, guest.gateway)


def image_dir(state: Path) -> Path:
    return state / "kvm" / "image"


def _accel_key() -> str:
    qemu = Path("/usr/bin/qemu-system-x86_64")
    mtime = int(qemu.stat().st_mtime) if qemu.exists() else 0
    return f"{os.uname().release}|{mtime}|{Path('/dev/kvm').exists()}"


def _cached_accel(path: Path) -> Accel | None:
    try:
        saved = json.loads(path.read_text())
        return Accel(saved["accel"], saved["reason"]) if saved.get("key") == _accel_key() else None
    except (FileNotFoundError, ValueError, KeyError):
        return None


def decide_accel(state: Path, conn: Any, base_image: Path) -> Accel:
    """kvm when a kvm guest really boots here, else tcg.

    Remembered per host kernel and QEMU build, in the state dir (what `lab status` shows) and in the
    checkout's shared cache, so a second lab on the machine (a test's) does not probe again.
    """
    forced = os.environ.get(ENV_ACCEL, "") in ("kvm", "tcg")
    shared = kvm_image.shared_cache() / "kvm-accel.json"
    if forced:
        found: Accel | None = Accel(os.environ[ENV_ACCEL], f"forced by {ENV_ACCEL}")
    else:
        found = _cached_accel(state / "kvm" / "accel.json") or _cached_accel(shared)
    if found is None:
        if not Path("/dev/kvm").exists():
            found = Accel("tcg", "no /dev/kvm")
        else:
            ok, why = probe_kvm(conn, base_image, site_dirs(state, "kvm-a").consoles / ".kvm-probe.console")
            found = Accel("kvm" if ok else "tcg", why)
        c.write_json_atomic(shared, {"accel": found.accel, "reason": found.reason, "key": _accel_key()})
    # A forced choice is shown by `lab status` but never reused as a probe result.
    record = {"accel": found.accel, "reason": found.reason, "key": "forced" if forced else _accel_key()}
    c.write_json_atomic(state / "kvm" / "accel.json", record)
    return found


def ensure_pool(conn: Any, site: str, dirs: SiteDirs) -> Any:
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(pool_name(site))
    except libvirt.libvirtError:
        xml = (
            f"<pool type='dir'><name>{pool_name(site)}</name><target><path>{dirs.pool}</path></target></pool>"
        )
        pool = conn.storagePoolDefineXML(xml, 0)
    if not pool.isActive():
        pool.create(0)
    return pool


# libvirt adds its isolation rules for a bridge (REJECT forwarding in and out) to the host's iptables,
# creating its LIBVIRT_* chains on first use with a check-then-create that is not atomic between two
# daemons: both sites (and other labs) start their networks one at a time, machine-wide.
_FIREWALL_LOCK = Path("/run/lock/seawall-libvirt-networks.lock")


@contextlib.contextmanager
def _networks_lock() -> Iterator[None]:
    _FIREWALL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _FIREWALL_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_networks(conn: Any, nets: list[KvmNetworkInfo]) -> None:
    with _networks_lock():
        _ensure_networks(conn, nets)


def _ensure_networks(conn: Any, nets: list[KvmNetworkInfo]) -> None:
    import libvirt

    for net in nets:
        try:
            handle = conn.networkLookupByName(net.name)
        except libvirt.libvirtError:
            # No <forward>: isolated. No <ip>: no host address, no dnsmasq.
            xml = (
                f"<network><name>{net.name}</name><bridge name='{net.bridge}' stp='off' delay='0'/></network>"
            )
            handle = conn.networkDefineXML(xml)
        if not handle.isActive():
            handle.create()


def _stamps(dirs: SiteDirs) -> dict[str, str]:
    try:
        return dict(json.loads((dirs.root / "guests.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def ensure_guests(
    state: Path,
    conn: Any,
    site: str,
    guests: list[KvmGuestInfo],
    accel: Accel,
    want: c.GuestState = "running",
) -> list[str]:
    """Define and start each guest that is not running, and run or pause each as `want` says (a
    guest started paused never boots); returns what was done, one phrase per guest."""
    import libvirt

    dirs = site_dirs(state, site)
    if not guests:
        return []
    base = kvm_image.build_base_image(image_dir(state))
    fingerprint = json.loads((image_dir(state) / "base.json").read_text())["fingerprint"]
    stamps = _stamps(dirs)

    def ensure_one(guest: KvmGuestInfo) -> tuple[str, str | None]:
        try:
            dom = conn.lookupByName(guest.name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None and dom.isActive():
            # Its image is the one it booted. Paused (scripts/test.sh, or `--guests paused`) to spare
            # the CPU while nobody needs it: `up` makes it what the lab's config asks for.
            paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
            if paused and want == "running":
                dom.resume()
                return f"{guest.name} resumed", stamps.get(guest.name)
            if not paused and want == "paused":
                dom.suspend()
                return f"{guest.name} paused", stamps.get(guest.name)
            return f"{guest.name} {want}", stamps.get(guest.name)
        # A guest that is not running gets today's image (its data disk, and so its records, stay).
        if not guest.system_disk.exists() or stamps.get(guest.name) != fingerprint:
            guest.system_disk.unlink(missing_ok=True)
            kvm_image.make_system_disk(base, guest.system_disk, identity_of(guest))
        if not guest.data_disk.exists():
            kvm_image.make_data_disk(guest.data_disk)
        guest.console_log.unlink(missing_ok=True)  # the console file then holds this boot only
        spec = GuestSpec(
            name=guest.name,
            domain_type=accel.domain_type,
            system_disk=guest.system_disk,
            data_disk=guest.data_disk,
            console_log=guest.console_log,
            identity=identity_of(guest),
            health_port=guest.health_port,
            network=guest.network,
        )
        if procs.port_open(c.HOST, guest.health_port):
            raise RuntimeError(
                f"{guest.name}: port {c.HOST}:{guest.health_port} is in use by another program"
            )
        define_and_start(conn, domain_xml(spec), paused=want == "paused")
        return f"{guest.name} started{' paused' if want == 'paused' else ''}", fingerprint

    # In parallel: each start is a few libvirt round trips and a QEMU launch (~0.5-2 s).
    with ThreadPoolExecutor(max_workers=len(guests)) as pool:
        results = dict(zip([g.name for g in guests], pool.map(ensure_one, guests), strict=True))
    c.write_json_atomic(dirs.root / "guests.json", {name: stamp for name, (_, stamp) in results.items()})
    return [phrase for phrase, _ in results.values()]


def site_info(state: Path, cfg: c.LabConfig, site: str, accel: Accel) -> KvmSiteInfo:
    dirs = site_dirs(state, site)
    nets = networks(state, site)
    first, last = SITE_PORTS[site]
    return KvmSiteInfo(
        site=site,
        uri=dirs.uri,
        socket=dirs.socket,
        accel=accel.accel,
        domain_type=accel.domain_type,
        pool=pool_name(site),
        pool_dir=dirs.pool,
        networks=nets,
        production_network=nets[0].name,
        drill_network=nets[1].name,
        console_dir=dirs.consoles,
        qemu_log_dir=dirs.qemu_logs,
        base_image=image_dir(state) / "base.raw",
        health_ports=[cfg.kvm_health_port_base + first, cfg.kvm_health_port_base + last],
        guests=guest_infos(state, cfg, site),
    )


def bootstrap_site(state: Path, cfg: c.LabConfig, conn: Any, site: str, accel: Accel) -> KvmSiteInfo:
    dirs = site_dirs(state, site)
    pool = ensure_pool(conn, site, dirs)
    ensure_networks(conn, networks(state, site))
    info = site_info(state, cfg, site, accel)
    ensure_guests(state, conn, site, info.guests, accel, cfg.guests)
    pool.refresh(0)  # the guests' new volume files become visible in the pool's inventory
    return info


def guest_report(guest: KvmGuestInfo) -> ConsoleReport | None:
    try:
        return last_console_report(guest.console_log.read_text(errors="replace"))
    except FileNotFoundError:
        return None


def guest_health(guest: KvmGuestInfo, timeout: float = 2.0) -> dict[str, Any]:
    """The guest's own HTTP health answer (through its 127.0.0.1 forward)."""
    resp = requests.get(guest.health_url, timeout=timeout)
    resp.raise_for_status()
    return dict(resp.json())


def wait_ready(guest: KvmGuestInfo, timeout: float = 120.0) -> ConsoleReport:
    """Block until the guest's console says it is ready (or said anything else final)."""
    deadline = time.monotonic() + timeout
    while True:
        report = guest_report(guest)
        if report is not None:
            return report
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{guest.name} printed no SEAWALL-GUEST line in {timeout:.0f}s ({guest.console_log})"
            )
        time.sleep(0.2)


def teardown_site(state: Path, site: str, conn: Any | None) -> str:
    """Remove every domain, network and pool of the site's daemon (the daemon is the lab's alone).

    Without a daemon to ask, QEMU processes it left are stopped by the pid files in its run dir (only
    when /proc shows a QEMU of this site's directory), and the lab's bridges are deleted by name.
    """
    dirs = site_dirs(state, site)
    if conn is not None:
        doms = conn.listAllDomains(0)
        # In parallel: destroying a domain waits ~2 s for its QEMU to exit.
        with ThreadPoolExecutor(max_workers=max(1, len(doms))) as pool:
            list(pool.map(remove_domain, doms))
        for net in conn.listAllNetworks(0):
            if net.isActive():
                net.destroy()
            net.undefine()
        for pool in conn.listAllStoragePools(0):
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        return f"removed {len(doms)} domains, networks, pool"
    killed = 0
    for pidfile in (dirs.run / "qemu").glob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        argv = procs.read_cmdline(pid)
        if argv and "qemu-system" in argv[0] and str(dirs.root) in " ".join(argv):
            os.kill(pid, 9)
            killed += 1
    prefix = bridge_prefix(state) + site[-1]
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True)
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(prefix):
            subprocess.run(["ip", "link", "delete", name, "type", "bridge"], capture_output=True)
    return f"no daemon: killed {killed} QEMU processes, removed bridges"
