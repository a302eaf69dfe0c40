"""The lab guest's disk helpers, domain XML and init script, without a hypervisor.

Needs mtools, dosfstools, qemu-utils and busybox-static (scripts/setup.sh installs them).
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from seawall.lab import kvm_image
from seawall.lab.kvm_domain import GuestSpec, domain_xml, spare_addresses, user_netdev
from seawall.lab.kvm_records import RECORD_SIZE, Identity, make_record, scan_file

MIB = 1024 * 1024
IDENT = Identity("kdb-01", "10.40.1.11", 24, "10.40.1.1")


def _fat_disk(path: Path) -> None:
    """A raw disk with a FAT partition at 1 MiB, as the lab's system disk has (without a kernel)."""
    part = path.with_suffix(".part")
    subprocess.run(["mkfs.fat", "-C", str(part), str(8 * 1024)], check=True, capture_output=True)
    with path.open("wb") as out:
        out.truncate(10 * MIB)
        out.seek(kvm_image.PARTITION_OFFSET)
        out.write(part.read_bytes())
    part.unlink()


def test_identity_into_raw_image(tmp_path: Path) -> None:
    disk = tmp_path / "system.raw"
    _fat_disk(disk)
    kvm_image.write_identity(disk, IDENT)
    assert kvm_image.read_identity(disk) == IDENT
    moved = Identity("kdb-01", "10.41.100.11", 24, "10.41.100.1")
    kvm_image.write_identity(disk, moved)  # -o: an existing file is replaced
    assert kvm_image.read_identity(disk) == moved


def test_identity_into_qcow2_writes_only_changed_pieces(tmp_path: Path) -> None:
    raw = tmp_path / "system.raw"
    _fat_disk(raw)
    kvm_image.write_identity(raw, IDENT)
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(base)], check=True)
    overlay = tmp_path / "drill.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)], check=True
    )
    moved = Identity("kdb-01", "10.41.100.11", 24, "10.41.100.1")
    kvm_image.write_identity(overlay, moved)
    assert kvm_image.read_identity(overlay) == moved
    assert kvm_image.read_identity(base) == IDENT  # the backing file is untouched
    top = subprocess.run(
        ["qemu-img", "map", "--output=json", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    in_overlay = sum(e["length"] for e in json.loads(top) if e["data"] and e["depth"] == 0)
    assert 0 < in_overlay <= 4 * 64 * 1024  # directory, both FATs, the file's cluster: not 8 MiB


def test_scan_image_reads_qcow2(tmp_path: Path) -> None:
    raw = tmp_path / "data.raw"
    raw.write_bytes(b"".join(make_record(n) for n in range(1, 51)) + bytes(RECORD_SIZE * 100))
    qcow = tmp_path / "data.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)], check=True)
    assert kvm_image.scan_image(qcow).last == 50
    assert kvm_image.scan_image(raw).last == 50


def test_initramfs_cpio_entries() -> None:
    entry = kvm_image._cpio_entry("init", 0o100755, b"#!/bin/sh\n", 7)
    assert entry.startswith(b"070701") and len(entry) % 4 == 0
    assert entry[110:115] == b"init\0"
    assert int(entry[54:62], 16) == 10  # c_filesize


def test_spare_addresses_avoid_guest_and_gateway() -> None:
    top = Identity("kweb-01", "10.0.0.254", 24, "10.0.0.253")
    dhcp, dns = spare_addresses(top)
    assert {dhcp, dns}.isdisjoint({"10.0.0.254", "10.0.0.253"}) and dhcp != dns
    netdev = user_netdev(IDENT, 9401)
    assert "restrict=on" in netdev and "hostfwd=tcp:127.0.0.1:9401-10.40.1.11:80" in netdev
    assert "net=10.40.1.0/24" in netdev and "host=10.40.1.1" in netdev


def test_domain_xml(tmp_path: Path) -> None:
    spec = GuestSpec(
        name="kdb-01",
        domain_type="qemu",
        system_disk=tmp_path / "s.qcow2",
        data_disk=tmp_path / "d.qcow2",
        console_log=tmp_path / "c.log",
        identity=IDENT,
        health_port=9401,
        network="kvm-a-prod",
    )
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "qemu" and root.findtext("name") == "kdb-01"
    # Without ACPI libvirt passes -no-acpi and a running TCG guest costs 10 % of a core, not 2 %.
    assert root.find("features/acpi") is not None
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    assert all(d.find("driver").get("type") == "qcow2" for d in disks)  # type: ignore[union-attr]
    nic = root.find("devices/interface")
    assert nic is not None and nic.find("source").get("network") == "kvm-a-prod"  # type: ignore[union-attr]
    # A tap name of its own: labs starting guests side by side never race for libvirt's vnetN.
    assert nic.find("target").get("dev") == "swtap9401"  # type: ignore[union-attr]
    assert root.find("devices/serial/source").get("path") == str(tmp_path / "c.log")  # type: ignore[union-attr]
    qemu_args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "virtio-net-pci,netdev=swmgmt,addr=0x10" in qemu_args
    with pytest.raises(ValueError):
        domain_xml(GuestSpec(**{**spec.__dict__, "domain_type": "xen"}))


def _guest_awk() -> str:
    """The data-disk check of guest/init.sh, as the guest runs it."""
    script = kvm_image.init_script().decode()
    match = re.search(r"awk '(.*?)'\)", script, re.S)
    assert match, "init.sh has no awk scan"
    return match.group(1)


@pytest.mark.parametrize("case", ["empty", "clean", "torn", "hole"])
def test_guest_scan_agrees_with_python(tmp_path: Path, case: str) -> None:
    """busybox's dd | tr | awk pass in the guest and kvm_records find the same last record."""
    sectors = [make_record(n) for n in range(1, 31)] if case != "empty" else []
    if case == "torn":
        sectors[-1] = sectors[-1][:200] + bytes(RECORD_SIZE - 200)
    if case == "hole":
        sectors[10] = bytes(RECORD_SIZE)
    disk = tmp_path / "data.raw"
    disk.write_bytes(b"".join(sectors) + bytes(RECORD_SIZE * 256))
    pipeline = (
        f"busybox dd if={disk} bs=64k 2>/dev/null | busybox tr '\\000' '\\n' | busybox awk '{_guest_awk()}'"
    )
    out = subprocess.run(["/bin/busybox", "sh", "-c", pipeline], capture_output=True, text=True, check=True)
    last, trailing = map(int, out.stdout.split())
    scan = scan_file(disk)
    if case == "torn":
        # awk sees a complete-looking line only for whole records: the torn one fails its length test.
        assert (last, trailing) == (29, 0) and scan.last == 29 and scan.torn
    elif case == "hole":
        assert last == scan.last == 10
        assert trailing == 0 and not scan.contiguous  # the guest sees the hole as the end of its data
    else:
        assert (last, trailing) == (scan.last, 0)


def test_newest_cloud_kernel_deb_by_abi_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    for abi in (9, 57, 100):
        (debs / f"linux-image-6.1.0-{abi}-cloud-amd64_6.1.{abi}-1_amd64.deb").touch()
    # A newer generic kernel (an older checkout's download) is not the guest's: its xz image boots slower.
    (debs / "linux-image-6.1.0-200-amd64_6.1.200-1_amd64.deb").touch()
    monkeypatch.setattr(kvm_image, "shared_cache", lambda: tmp_path)
    monkeypatch.delenv(kvm_image.ENV_KERNEL_DEB, raising=False)
    assert kvm_image.find_kernel_deb(download=False).name.startswith("linux-image-6.1.0-100-cloud-amd64_")


def test_only_generic_kernels_in_the_cache_is_no_guest_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb").touch()
    monkeypatch.setattr(kvm_image, "shared_cache", lambda: tmp_path)
    monkeypatch.delenv(kvm_image.ENV_KERNEL_DEB, raising=False)
    with pytest.raises(kvm_image.ImageError, match=r"no kernel \.deb"):
        kvm_image.find_kernel_deb(download=False)
