"""The lab guest's disks, built from Debian packages without mounting anything.

System disk: an MBR (syslinux's mbr.bin) and one bootable FAT16 partition at 1 MiB holding syslinux,
Debian's cloud kernel (``linux-image-<release>-cloud-amd64``, unpacked from the .deb), an initramfs of
static busybox plus ``guest/init.sh`` (written as a cpio archive here) and the guest's ``identity``
file. The FAT partition is built as a file of its own (mkfs.fat -C, syslinux --install, mcopy: all work
on unmounted images).

A base image is built once per state dir (about a second once the kernel is unpacked) and copied per
guest; the unpacked kernel is cached beside its .deb and shared by every lab of the checkout.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seawall.lab import config as c
from seawall.lab.kvm_records import Identity, RecordScan, scan_file

# The identity writer is product code (offline re-IP of recovered guests); the lab builds its guests with it.
from seawall.sites.kvm.identity import PARTITION_MIB as PARTITION_MIB
from seawall.sites.kvm.identity import PARTITION_OFFSET as PARTITION_OFFSET
from seawall.sites.kvm.identity import image_format as _image_format
from seawall.sites.kvm.identity import read_identity as read_identity
from seawall.sites.kvm.identity import write_identity as write_identity

MIB = 1024 * 1024
SYSTEM_DISK_MIB = 32
DATA_DISK_MIB = 64
KERNEL_PACKAGE_PREFIX = "linux-image-6.1.0-"
# The cloud flavour, not the generic kernel: its image is LZ4-compressed where the generic one is xz, and
# it has fewer built-in drivers to probe. Under TCG (no /dev/kvm) a guest booted from its disk to the
# ready line in 4.1-5.6 CPU-s against 9.6-11.4, and every drill or failover boots three of them. It has
# what the guest uses: virtio, vfat, the serial console, ACPI, PVH.
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
KERNEL_FLAVOUR = "-cloud-amd64"
ENV_KERNEL_DEB = "SEAWALL_KVM_KERNEL_DEB"
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
BUSYBOX = Path("/bin/busybox")
# Dependency order (the .deb carries no modules.dep): the init insmods them in this order too.
MODULES = {
    "virtio_ring": "drivers/virtio",
    "virtio": "drivers/virtio",
    "virtio_pci_modern_dev": "drivers/virtio",
    "virtio_pci_legacy_dev": "drivers/virtio",
    "virtio_pci": "drivers/virtio",
    "virtio_blk": "drivers/block",
    "failover": "net/core",
    "net_failover": "drivers/net",
    "virtio_net": "drivers/net",
    "fat": "fs/fat",
    "vfat": "fs/fat",
    "nls_cp437": "fs/nls",
    "nls_ascii": "fs/nls",
}
SYSLINUX_CFG = """SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 quiet loglevel=3 panic=5
"""


class ImageError(RuntimeError):
    """A tool or package the image build needs is missing, or a tool failed."""


def _run(argv: list[str], **kwargs: object) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise ImageError(f"{argv[0]} is not installed: run scripts/setup.sh") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"{' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc
    return str(done.stdout)


def init_script() -> bytes:
    return resources.files("seawall.lab").joinpath("guest/init.sh").read_bytes()


def shared_cache() -> Path:
    """Downloads and the unpacked kernel: the checkout's ``.seawall/cache`` (shared by its labs)."""
    root = c.repo_root()
    return (root / ".seawall" / "cache") if root else Path.home() / ".cache" / "seawall"


def kernel_package() -> str:
    """The versioned kernel package behind Debian's ``linux-image-cloud-amd64`` metapackage."""
    out = _run(["apt-cache", "depends", KERNEL_METAPACKAGE])
    for line in out.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if name.startswith(KERNEL_PACKAGE_PREFIX) and name.endswith(KERNEL_FLAVOUR):
            return name
    raise ImageError(f"apt-cache names no {KERNEL_PACKAGE_PREFIX}*{KERNEL_FLAVOUR} for {KERNEL_METAPACKAGE}")


def find_kernel_deb(download: bool = True) -> Path:
    """``$SEAWALL_KVM_KERNEL_DEB``, else the newest .deb in the shared cache (scripts/setup.sh puts one
    there), else apt-get download into it."""
    explicit = os.environ.get(ENV_KERNEL_DEB)
    if explicit:
        return Path(explicit)
    debs = shared_cache() / "debs"
    # linux-image-6.1.0-<abi>-cloud-amd64_...: the highest ABI number is the newest kernel. A generic
    # kernel's .deb an older checkout downloaded stays unused.
    found = sorted(debs.glob(f"{KERNEL_PACKAGE_PREFIX}*{KERNEL_FLAVOUR}_*.deb"), key=_kernel_abi)
    if found:
        return found[-1]
    if not download:
        raise ImageError(f"no kernel .deb in {debs}: run scripts/setup.sh")
    debs.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", "-q", kernel_package()], cwd=debs)
    return find_kernel_deb(download=False)


def _kernel_abi(deb: Path) -> int:
    abi = deb.name.removeprefix(KERNEL_PACKAGE_PREFIX).split("-", 1)[0]
    return int(abi) if abi.isdigit() else -1


@dataclass(frozen=True)
class Kernel:
    release: str
    vmlinuz: Path
    modules: Path  # flat directory of the MODULES .ko files

    @property
    def fingerprint(self) -> str:
        return self.release


def unpack_kernel(deb: Path) -> Kernel:
    """The kernel and the few modules the guest needs, unpacked once next to the .deb."""
    dest = deb.parent / deb.name.removesuffix(".deb")
    if not (dest / "release").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=deb.parent))
        try:
            wanted = ["./boot/vmlinuz-*"] + [f"./lib/modules/*/kernel/{d}/{m}.ko" for m, d in MODULES.items()]
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            _run(["tar", "-x", "-C", str(tmp), "--wildcards", *wanted], stdin=tar.stdout)
            if tar.wait() != 0:
                raise ImageError(f"dpkg-deb could not read {deb}")
            (vmlinuz,) = (tmp / "boot").glob("vmlinuz-*")
            mods = tmp / "modules"
            mods.mkdir()
            for ko in (tmp / "lib").rglob("*.ko"):
                ko.rename(mods / ko.name)
            vmlinuz.rename(tmp / "vmlinuz")
            (tmp / "release").write_text(vmlinuz.name.removeprefix("vmlinuz-") + "\n")
            shutil.rmtree(tmp / "boot")
            shutil.rmtree(tmp / "lib")
            try:
                tmp.rename(dest)  # atomic: a lab unpacking the same .deb at once keeps the first copy
            except OSError:
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    missing = [m for m in MODULES if not (dest / "modules" / f"{m}.ko").is_file()]
    if missing:
        raise ImageError(f"{deb.name} lacks modules {', '.join(missing)}")
    return Kernel((dest / "release").read_text().strip(), dest / "vmlinuz", dest / "modules")


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    # The "newc" format the kernel unpacks: a 110-byte ASCII header, the name, data, 4-byte aligned.
    nlink = 2 if mode & 0o040000 else 1
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    header += b"\0" * (-len(header) % 4)
    return header + data + b"\0" * (-len(data) % 4)


def build_initramfs(kernel: Kernel) -> bytes:
    entries = [("bin", 0o040755, b""), ("lib", 0o040755, b""), ("lib/modules", 0o040755, b"")]
    entries.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
    entries.append(("init", 0o100755, init_script()))
    entries += [(f"lib/modules/{m}.ko", 0o100644, (kernel.modules / f"{m}.ko").read_bytes()) for m in MODULES]
    archive = b"".join(_cpio_entry(n, mode, data, i + 1) for i, (n, mode, data) in enumerate(entries))
    archive += _cpio_entry("TRAILER!!!", 0)
    return gzip.compress(archive, compresslevel=6, mtime=0)


def image_fingerprint(kernel: Kernel) -> str:
    blob = json.dumps([kernel.fingerprint, SYSLINUX_CFG, PARTITION_MIB, SYSTEM_DISK_MIB]).encode()
    return hashlib.sha256(blob + init_script() + BUSYBOX.read_bytes()[:4096]).hexdigest()[:16]


def build_base_image(dest_dir: Path, kernel: Kernel | None = None) -> Path:
    """A bootable raw system disk without an identity, reused while nothing it is made of changed."""
    kernel = kernel or unpack_kernel(find_kernel_deb())
    image = dest_dir / "base.raw"
    stamp = dest_dir / "base.json"
    fingerprint = image_fingerprint(kernel)
    if (
        image.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    ):
        return image
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".build-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "initrd.gz").write_bytes(build_initramfs(kernel))
        (tmp / "syslinux.cfg").write_text(SYSLINUX_CFG)
        part = tmp / "part.img"
        _run(["mkfs.fat", "-F", "16", "-n", "SEAWALL", "-C", str(part), str(PARTITION_MIB * 1024)])
        _run(["syslinux", "--install", str(part)])
        mcopy = ["mcopy", "-o", "-i", str(part)]
        _run([*mcopy, str(kernel.vmlinuz), "::vmlinuz"])
        _run([*mcopy, str(tmp / "initrd.gz"), str(tmp / "syslinux.cfg"), "::"])
        disk = tmp / "base.raw"
        with disk.open("wb") as out:
            out.truncate(SYSTEM_DISK_MIB * MIB)
        sectors = f"start={PARTITION_OFFSET // 512}, size={PARTITION_MIB * MIB // 512}"
        table = f"label: dos\n{sectors}, type=6, bootable\n"
        _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], input=table)
        with disk.open("r+b") as out:
            out.write(MBR_BIN.read_bytes()[:440])  # boot code only: the partition table follows at 446
            out.seek(PARTITION_OFFSET)
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, MIB)
        disk.rename(image)
    c.write_json_atomic(stamp, {"fingerprint": fingerprint, "kernel": kernel.release})
    return image


def scan_image(image: Path, lookahead: int = 64) -> RecordScan:
    """The records on a data disk image (raw or qcow2; a running guest's too: read with -U, share mode)."""
    if _image_format(image) == "raw":
        return scan_file(image, lookahead)
    with tempfile.TemporaryDirectory(prefix="seawall-scan-") as tmp_name:
        raw = Path(tmp_name) / "data.raw"
        _run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(image), str(raw)])
        return scan_file(raw, lookahead)


def make_system_disk(base: Path, dest: Path, identity: Identity) -> None:
    """A guest's own qcow2 system disk: the base image with its identity (qcow2 for checkpoints)."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".disk-") as tmp_name:
        raw = Path(tmp_name) / "system.raw"
        shutil.copyfile(base, raw)
        write_identity(raw, identity)
        tmp = Path(tmp_name) / dest.name
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)])
        tmp.rename(dest)


def make_data_disk(dest: Path, size_mib: int = DATA_DISK_MIB) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    _run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), f"{size_mib}M"])
    tmp.rename(dest)
