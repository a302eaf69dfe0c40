"""A second, private lab through its whole life: up, a crashed part, up again, down, purge.

It runs beside the shared lab (its own state dir, ports moved by --port-offset), so killing its
processes disturbs no other test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import libvirt
import pytest
import requests
from pyVmomi import vim

from seawall.lab import LabInfo, load_lab
from seawall.lab.config import LabConfig
from seawall.lab.disks import disk_pattern, write_blocks
from seawall.lab.manager import PART_NAMES
from seawall.lab.procs import port_open, read_cmdline, read_tracked
from seawall.lab.vsphere_api import collect, connect
from seawall.model import Rfc2136Zone
from seawall.sites.rfc2136 import Rfc2136Dns

SEAWALL = str(Path(sys.executable).parent / "seawall")
MIB = 1024 * 1024


def _offsets() -> list[int]:
    """Port offsets whose ports are free now, in random order.

    Every port stays below the kernel's ephemeral range (32768+), where Temporal's randomly chosen
    HTTP and metrics ports and every client socket live; the random order keeps two runs of this
    test (two engineers, one machine) from racing for the same ports.
    """
    candidates = list(range(11000, 12700, 50))
    random.shuffle(candidates)
    free = []
    for offset in candidates:
        cfg = LabConfig(port_offset=offset)
        ports = [
            cfg.temporal_port,
            cfg.temporal_ui_port,
            cfg.vcsim_primary_port,
            cfg.vcsim_dr_port,
            cfg.moto_port,
            cfg.azurite_port,
            cfg.dns_port,
            *(cfg.kvm_health_port_base + i for i in (1, 2, 3)),  # the KVM guests' health forwards
        ]
        if not any(port_open("127.0.0.1", p) for p in ports):
            free.append(offset)
    return free


@pytest.fixture
def private_lab(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "lab"
    yield state
    # Whatever the test did, nothing it started outlives it.
    subprocess.run(
        [SEAWALL, "lab", "down", "--state-dir", str(state), "--purge"], capture_output=True, timeout=60
    )


def _lab(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEAWALL, "lab", *args, "--state-dir", str(state)], capture_output=True, text=True, timeout=180
    )


def _running(argv: list[str]) -> list[int]:
    # The argv names this lab's ports (and, for some parts, its state dir): no other lab runs it.
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and read_cmdline(int(p.name)) == argv
    ]


def _aws_args(lab: LabInfo) -> dict[str, str]:
    return {
        "endpoint_url": lab.aws.endpoint_url,
        "region_name": lab.aws.region,
        "aws_access_key_id": lab.aws.access_key_id,
        "aws_secret_access_key": lab.aws.secret_access_key,
    }


def _s3(lab: LabInfo) -> Any:
    return boto3.client("s3", **_aws_args(lab))


def _bind(lab: LabInfo) -> Rfc2136Dns:
    zone = Rfc2136Zone(
        name=lab.dns.zone,
        server=lab.dns.server,
        port=lab.dns.port,
        tsig_key_name=lab.dns.tsig_key_name,
        credentials=f"file:{lab.dns.tsig_key_file}",
    )
    return Rfc2136Dns.from_zone(zone)


def _status(state: Path) -> dict[str, dict[str, object]]:
    result = _lab(state, "status", "--json")
    return {p["name"]: p for p in json.loads(result.stdout)["parts"]}


def test_crash_restart_down_purge(private_lab: Path) -> None:
    state = private_lab
    for offset in _offsets()[:3]:
        began = time.monotonic()
        # Its guests start paused: none of this needs them booted, which under TCG costs a minute of
        # a core each (the first lab's KVM tests check booted guests).
        up = _lab(
            state,
            "up",
            "--port-offset",
            str(offset),
            "--vms",
            "6",
            "--disk-mib",
            "1",
            "--guests",
            "paused",
            "--json",
        )
        # The lab's words for a port another program took meanwhile (seawall.lab.partstart): this
        # check once looked for other words, so a lost race failed the test instead of moving on.
        if up.returncode == 0 or "is in use by" not in up.stderr:
            break
        _lab(state, "down", "--purge")  # lost a race for a port: another range
    assert up.returncode == 0, up.stderr
    cold = time.monotonic() - began
    lab = load_lab(state)
    assert lab.primary.vm_names == ["web-01", "web-02", "app-01", "app-02", "db-01", "vm-06"]
    assert lab.primary.port == 8989 + offset and lab.disk_size == MIB
    # A hang, not a speed target (benchmarks measure speed): a loaded CI machine took 70 s once.
    assert cold < 300, f"lab up took {cold:.0f}s"
    with connect(lab.primary.port) as si:
        rows = collect(si, vim.VirtualMachine, ["name", "runtime.powerState", "config.hardware.device"])
    # Nobody else uses this lab, so what `up` did is still there to see: every VM on, db-01 with the
    # data disk that ReconfigVM added.
    assert {r["name"] for r in rows} == set(lab.primary.vm_names)
    for row in rows:
        assert row["runtime.powerState"] == "poweredOn", row["name"]
        disks = [d for d in row["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualDisk)]
        assert [d.capacityInBytes for d in disks] == [MIB] * (2 if row["name"] == "db-01" else 1)

    # A guest writes, a replica lands in S3, a DNS record changes; then the primary vCenter, moto and
    # BIND die without warning.
    write_blocks(lab, "primary", "web-01", 4096, b"\x5a" * 4096)
    s3 = _s3(lab)
    s3.put_object(Bucket=lab.s3.bucket, Key="points/kept.bin", Body=b"\xa5" * 70000)
    s3.create_bucket(Bucket="second-bucket")
    dns_change = _bind(lab).upsert(lab.dns.zone, f"web-01.{lab.dns.zone}", "A", ["10.2.1.21"], 60)
    killed = ("vcsim-primary", "moto", "bind")
    pids = {name: read_tracked(state, name) for name in PART_NAMES}
    for name in killed:
        tracked = pids[name]
        assert tracked is not None
        os.kill(tracked.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while read_cmdline(tracked.pid) == tracked.argv and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _lab(state, "status", "--quiet").returncode == 1
    assert "stale pid file" in str(_status(state)["vcsim-primary"]["detail"])

    # up again: only the dead parts are started; the datastore kept the guest's write, S3 its bucket
    # and objects (moto writes S3 through to the state dir), the zone its update (BIND's journal).
    again = _lab(state, "up", "--json")
    assert again.returncode == 0, again.stderr
    for name, tracked in pids.items():
        now = read_tracked(state, name)
        assert now is not None and tracked is not None
        assert (now.pid != tracked.pid) if name in killed else (now.pid == tracked.pid), name
    lab = load_lab(state)
    s3 = _s3(lab)
    assert s3.get_object(Bucket=lab.s3.bucket, Key="points/kept.bin")["Body"].read() == b"\xa5" * 70000
    assert {"second-bucket", lab.s3.bucket} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert _bind(lab).get(lab.dns.zone, dns_change.name, "A") == dns_change.new
    assert _bind(lab).restore(dns_change) == dns_change.previous
    # EC2 is not kept: the lab's bootstrap made its VPC again, and lab.json names the new one.
    ec2 = boto3.client("ec2", **_aws_args(lab))
    assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[lab.aws.vpc_id])["Vpcs"]] == [lab.aws.vpc_id]
    disk = lab.primary.vm("web-01").disks[0]
    image = requests.get(lab.primary.datastore_url(disk.flat_name), timeout=10).content
    expected = bytearray(disk_pattern("web-01", MIB))
    expected[4096:8192] = b"\x5a" * 4096
    assert image == bytes(expected)
    assert _lab(state, "status", "--quiet").returncode == 0

    # The KVM sites came up too: their daemons, and kvm-a's guests as QEMU processes of this state dir,
    # still paused as the first `up` was told (the choice is kept), and `status` says so.
    assert set(lab.kvm) == {"kvm-a", "kvm-b"} and len(lab.kvm["kvm-a"].guests) == 3
    assert len(_qemus(state)) == 3
    assert _guest_states(lab) == {g.name: libvirt.VIR_DOMAIN_PAUSED for g in lab.kvm["kvm-a"].guests}
    listed = json.loads(_lab(state, "status", "--json").stdout)["kvm"]["guests"]
    assert sorted((g["name"], g["running"], g["paused"]) for g in listed) == sorted(
        (g.name, True, True) for g in lab.kvm["kvm-a"].guests
    )
    bridges = {n.bridge for site in lab.kvm.values() for n in site.networks}
    assert bridges <= _bridges()

    # kvm-a's libvirtd dies: down still removes its guests (QEMU by the daemon's pid files) and bridges.
    libvirtd = read_tracked(state, "libvirtd-kvm-a")
    assert libvirtd is not None
    os.kill(libvirtd.pid, signal.SIGKILL)

    # down stops exactly what it started; a second down has nothing to do; purge removes the state.
    argvs = {name: t.argv for name, t in ((n, read_tracked(state, n)) for n in PART_NAMES) if t}
    down = _lab(state, "down", "--purge")
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    for name, argv in argvs.items():
        assert _running(argv) == [], name
    assert _qemus(state) == [] and not bridges & _bridges()
    assert _lab(state, "down").returncode == 0


def _guest_states(lab: LabInfo) -> dict[str, int]:
    conn = libvirt.open(lab.kvm["kvm-a"].uri)
    try:
        return {g.name: conn.lookupByName(g.name).state()[0] for g in lab.kvm["kvm-a"].guests}
    finally:
        conn.close()


def _qemus(state: Path) -> list[int]:
    """QEMU processes whose command line names this lab's state dir (its disks live there)."""
    found = []
    for entry in Path("/proc").iterdir():
        argv = read_cmdline(int(entry.name)) if entry.name.isdigit() else None
        if argv and "qemu-system" in argv[0] and str(state) in " ".join(argv):
            found.append(int(entry.name))
    return found


def _bridges() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True)
    return {line.split(":")[1].strip() for line in out.stdout.splitlines()}
