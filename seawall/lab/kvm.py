"""The lab's KVM sites' daemons: a virtlogd and a libvirtd per site, each lab and site on its own.

Debian's libvirtd run as root is the "system" daemon, whose paths (/etc/libvirt, /var/lib/libvirt,
/run/libvirt, /var/log/libvirt) are compiled in, so two daemons would share definitions, sockets and
QEMU state. Each daemon here therefore starts in a private mount namespace (``unshare --mount``) in
which those four directories are bind mounts of ``<state>/kvm/<site>/{etc,lib,run,log}``: every
definition, socket, pid file and QEMU log of a site lives in the lab's state dir, and a client reaches
the site at ``qemu:///system?socket=<state>/kvm/<site>/run/libvirt-sock``. A daemon per *site* (not
one per lab with a naming prefix) makes "nothing of kvm-a is visible at kvm-b" structural: later code
lists everything its connection returns, with no filter to forget. Only the QEMU capability cache
(/var/cache/libvirt) stays shared, so the ~10 s first probe is paid once per machine, not per lab.

virtlogd and libvirtd of one site sit in separate but identical namespaces: the bind mounts point at
the same directories, so libvirtd finds virtlogd's socket. Nothing listens on TCP.
"""

from __future__ import annotations

import grp
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.lab import procs

SITES = ("kvm-a", "kvm-b")
BOUND = ("/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/log/libvirt")
VIRTLOGD = "/usr/sbin/virtlogd"
LIBVIRTD = "/usr/sbin/libvirtd"
# Binds the site's four directories over the compiled-in ones, then becomes the daemon (same pid).
_NS_SCRIPT = (
    'mount --bind "$1" /etc/libvirt && mount --bind "$2" /var/lib/libvirt && '
    'mount --bind "$3" /run/libvirt && mount --bind "$4" /var/log/libvirt && shift 4 && exec "$@"'
)
_MAX_SOCKET_PATH = 107  # sun_path

LIBVIRTD_CONF = """# Written by seawall lab: root-only unix sockets, no TCP, log to stderr.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""
# QEMU runs as root without relabelling (the disks live in the lab's state dir, which the
# libvirt-qemu user may not reach) and without cgroups: two labs' daemons would both name their
# first guest's cgroup "machine/qemu-1-<name>", and there is no systemd to hand out scopes.
QEMU_CONF = """# Written by seawall lab.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""
VIRTLOGD_CONF = 'log_outputs = "3:stderr"\n'


class KvmError(RuntimeError):
    """A KVM site's daemon could not be started or does not answer."""


@dataclass(frozen=True)
class SiteDirs:
    site: str
    root: Path  # <state>/kvm/<site>

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def consoles(self) -> Path:
        return self.root / "consoles"

    @property
    def socket(self) -> Path:
        return self.run / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def qemu_logs(self) -> Path:
        return self.log / "qemu"

    def bound(self) -> list[Path]:
        return [self.etc, self.lib, self.run, self.log]


def site_dirs(state: Path, site: str) -> SiteDirs:
    return SiteDirs(site=site, root=state / "kvm" / site)


def bridge_prefix(state: Path) -> str:
    """``sw`` + 5 hex digits of the state dir: bridges are host-wide, so each lab's names differ."""
    return "sw" + hashlib.sha256(str(state).encode()).hexdigest()[:5]


def daemon_names(site: str) -> tuple[str, str]:
    return f"virtlogd-{site}", f"libvirtd-{site}"


def part_names() -> list[str]:
    return [name for site in SITES for name in daemon_names(site)]


def daemon_argv(dirs: SiteDirs, which: str) -> list[str]:
    """What /proc shows for the daemon: unique per lab and site (its config and pid file paths)."""
    if which == "virtlogd":
        return [
            VIRTLOGD,
            "--config",
            str(dirs.etc / "virtlogd.conf"),
            "--pid-file",
            str(dirs.run / "virtlogd.pid"),
        ]
    return [
        LIBVIRTD,
        "--config",
        str(dirs.etc / "libvirtd.conf"),
        "--pid-file",
        str(dirs.run / "libvirtd.pid"),
    ]


def launch_argv(dirs: SiteDirs, argv: list[str]) -> list[str]:
    unshare = ["unshare", "--mount", "--propagation", "private", "--"]
    return [*unshare, "/bin/sh", "-c", _NS_SCRIPT, "seawall-kvm-ns", *map(str, dirs.bound()), *argv]


def fix_dev_kvm() -> str:
    """Give /dev/kvm to group kvm, mode 0660 (udev's rule; there is no udev here). As root only.

    With /dev/kvm left at 0600 root, libvirt sees its capability cache as stale at every domain start
    and re-probes QEMU: 52 s per start.
    """
    dev = Path("/dev/kvm")
    if not dev.exists():
        return "no /dev/kvm"
    st = dev.stat()
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return "no group kvm (libvirt packages missing?)"
    if st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660:
        return "ok"
    if os.geteuid() != 0:
        return f"/dev/kvm is {stat.S_IMODE(st.st_mode):o} gid {st.st_gid}; run scripts/setup.sh as root"
    os.chown(dev, 0, gid)
    dev.chmod(0o660)
    return "fixed"


def write_config(dirs: SiteDirs) -> str:
    """The site's config files (rewritten each up); returns their fingerprint."""
    for path in [*dirs.bound(), dirs.pool, dirs.consoles]:
        path.mkdir(parents=True, exist_ok=True)
    files = {"libvirtd.conf": LIBVIRTD_CONF, "qemu.conf": QEMU_CONF, "virtlogd.conf": VIRTLOGD_CONF}
    for name, text in files.items():
        target = dirs.etc / name
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    return hashlib.sha256("".join(files.values()).encode()).hexdigest()[:16]


def _check_host() -> None:
    for binary in (VIRTLOGD, LIBVIRTD, "/usr/bin/unshare"):
        if not Path(binary).exists():
            raise KvmError(f"{binary} is missing: run scripts/setup.sh (installs libvirt and QEMU)")
    if os.geteuid() != 0:
        raise KvmError("the KVM sites need root (libvirt's system daemon in a private mount namespace)")
    for mountpoint in BOUND:
        Path(mountpoint).mkdir(parents=True, exist_ok=True)  # /run/libvirt is gone after a reboot


def connect(uri: str, timeout: float = 30.0) -> Any:
    """A libvirt connection, retried until the daemon answers (its first start probes QEMU ~10 s)."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed too
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = libvirt.open(uri)
            conn.getLibVersion()
            return conn
        except libvirt.libvirtError as exc:
            if time.monotonic() > deadline:
                raise KvmError(f"libvirt at {uri} does not answer: {exc.get_error_message()}") from exc
            time.sleep(0.1)


def ensure_daemons(state: Path, site: str, timeout: float = 60.0) -> dict[str, str]:
    """virtlogd then libvirtd of one site, started unless running; returns what was done per part."""
    _check_host()
    dirs = site_dirs(state, site)
    if len(str(dirs.socket)) > _MAX_SOCKET_PATH:
        raise KvmError(f"state dir too deep for a unix socket: {dirs.socket}")
    fingerprint = write_config(dirs)
    actions: dict[str, str] = {}
    for which, name in zip(("virtlogd", "libvirtd"), daemon_names(site), strict=True):
        argv = daemon_argv(dirs, which)
        began = time.monotonic()
        tracked = procs.live(state, name)
        if tracked is not None and tracked.argv == argv and tracked.fingerprint == fingerprint:
            actions[name] = "running"
            continue
        action = "started"
        if tracked is not None:
            procs.stop(state, name)
            action = "restarted"
        orphan = procs.find_running(argv, cwd=state)
        if orphan is not None:
            # Our exact daemon (its argv names this state dir) whose pid files were removed.
            procs.adopt(state, name, orphan, argv, fingerprint)
            actions[name] = "adopted"
            continue
        sock = dirs.run / ("virtlogd-sock" if which == "virtlogd" else "libvirt-sock")
        sock.unlink(missing_ok=True)  # a stale socket of a killed daemon would look like an answer
        pid = procs.start(
            state, name, argv, fingerprint=fingerprint, cwd=state, launch=launch_argv(dirs, argv)
        )
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if not procs.is_ours(pid, argv):
                procs.forget(state, name)
                raise KvmError(
                    f"{name} exited during start-up; see {procs.log_path(state, name)}:\n"
                    + procs.log_tail(state, name)
                )
            if time.monotonic() > deadline:
                raise KvmError(f"{name} made no socket in {timeout:.0f}s; see {procs.log_path(state, name)}")
            time.sleep(0.02)
        actions[name] = f"{action} in {time.monotonic() - began:.1f}s"
    return actions


def daemon_status(state: Path, site: str) -> dict[str, tuple[int | None, str]]:
    """pid (None when not running) and a word per daemon of the site."""
    out: dict[str, tuple[int | None, str]] = {}
    for name in daemon_names(site):
        tracked = procs.read_tracked(state, name)
        if tracked is None:
            out[name] = (None, "not running")
        elif not procs.is_ours(tracked.pid, tracked.argv):
            out[name] = (None, f"stale pid file (pid {tracked.pid} is gone)")
        else:
            out[name] = (tracked.pid, "running")
    return out


def stop_daemons(state: Path, site: str, timeout: float = 10.0) -> dict[str, str]:
    # libvirtd first: it may still write to virtlogd while shutting down.
    virtlogd, libvirtd = daemon_names(site)
    return {libvirtd: procs.stop(state, libvirtd, timeout), virtlogd: procs.stop(state, virtlogd, timeout)}
