#!/usr/bin/env bash
# One set-up for a fresh Debian/Ubuntu machine (as root) or an already prepared one:
# system packages, the virtualenv, Azurite from npm, and the vCenter simulator. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${SEAWALL_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || need_apt+=(golang-github-vmware-govmomi-dev)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
# Peers of the data-path benchmark (benchmarks/datapath.py runs them on the same images).
command -v restic >/dev/null 2>&1 || need_apt+=(restic)
command -v borg >/dev/null 2>&1 || need_apt+=(borgbackup)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The console's browser tests drive Debian's Chromium through Playwright (no browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The lab's authoritative DNS server (named, in /usr/sbin) and dig/nsupdate for looking at it.
[ -x /usr/sbin/named ] || need_apt+=(bind9)
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
# The KVM sites: libvirt + QEMU (libvirt-dev and pkg-config build libvirt-python into the venv),
# libnbd for the NBD data path, and the tools that build the lab guest's disk image unmounted.
kvm_pkgs=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  libvirt-dev pkg-config python3-libnbd libnbd-bin dnsmasq-base iptables iproute2 busybox-static
  syslinux syslinux-common syslinux-utils dosfstools mtools fdisk)
need_norec=()
# The data path's C extension (setup.py) links Debian's XXH3 library; apt itself depends on it.
dpkg-query -W -f='${Status}' libxxhash0 2>/dev/null | grep -q 'install ok installed' || need_norec+=(libxxhash0)
# promtool checks deploy/monitoring's alert rules in make test. Debian ships it only in the prometheus
# package (no smaller one), installed without recommends (node-exporter) and never started (below).
command -v promtool >/dev/null 2>&1 || need_norec+=(prometheus)
for pkg in "${kvm_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_norec+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_norec[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing system packages: ${need_apt[*]} ${need_norec[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  apt-get update -qq
  # Packages with a service (bind9, libvirt) must not start it: the lab runs its own named and
  # libvirtd on 127.0.0.1 / unix sockets only, and a system named would answer on port 53 of every
  # interface. policy-rc.d (exit 101) forbids starting services while we install.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  installed=1
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null || installed=
  fi
  if [ -n "$installed" ] && [ ${#need_norec[@]} -gt 0 ]; then
    log "apt-get install --no-install-recommends ${need_norec[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_norec[@]}" >/dev/null \
      || installed=
  fi
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ -n "$installed" ] || exit 1
  # Only promtool is wanted: where systemd runs, keep the packaged server disabled across reboots too.
  if [[ " ${need_norec[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# The guest's kernel: the versioned package behind the linux-image-cloud-amd64 metapackage, kept as a
# .deb (the lab unpacks the kernel and a few modules from it; nothing is installed on the host). The
# cloud flavour boots a TCG guest in half the CPU of the generic one (seawall/lab/kvm_image.py).
debs=.seawall/cache/debs
kernel_of() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-6\.1\.0-.*-cloud-amd64\)$/\1/p' | head -n 1; }
if ! compgen -G "$debs/linux-image-6.1.0-*-cloud-amd64_*.deb" >/dev/null; then
  kernel=$(kernel_of)
  if [ -z "$kernel" ]; then
    apt-get update -qq
    kernel=$(kernel_of)
  fi
  [ -n "$kernel" ] || { echo "setup: apt-cache names no linux-image-6.1.0-*-cloud-amd64" >&2; exit 1; }
  log "apt-get download $kernel (the KVM lab guest's kernel)"
  mkdir -p "$debs"
  (cd "$debs" && apt-get download -qq "$kernel" 2>/dev/null)
fi

# udev would give /dev/kvm to group kvm, mode 0660; without it libvirt re-probes QEMU at every domain
# start (52 s each). The lab re-applies this at `lab up` (a reboot resets the node).
if [ -e /dev/kvm ] && getent group kvm >/dev/null && [ "$(id -u)" = 0 ]; then
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi

stamp="$VENV/.seawall-installed"
# The C extension's sources count too: an edit to them must rebuild it.
want=$(cat pyproject.toml setup.py seawall/blockstore/_hashes.c | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "pip install -e .[dev]"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  # pip compiles what it installs one file at a time: 68 s of a fresh clone's install, 27 without;
  # compileall on both cores does the same in 18. Like pip, it leaves a package's file that is not
  # Python 3 (test data, templates) uncompiled.
  "$VENV/bin/pip" install -q --no-compile -e ".[dev]"
  "$VENV/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
  # The extension is optional for pip (a user without gcc still gets a working Seawall), not here.
  if ! "$VENV/bin/python" -c 'import seawall.blockstore._hashes' 2>/dev/null; then
    echo "setup: the C extension seawall.blockstore._hashes did not build (gcc, python3-dev, libxxhash0);" \
      "see: $VENV/bin/pip install -v --no-deps -e ." >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# libnbd's Python bindings exist only as Debian's python3-libnbd (PyPI "nbd" is something else). The
# venv sees just those two files, through a .pth naming a directory of links to them; the extension is
# built for Debian's python3, so the venv's Python must share its ABI tag: checked, loudly.
nbd_dir="$VENV/lib/debian-libnbd"
suffix=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
so="/usr/lib/python3/dist-packages/libnbdmod$suffix"
if [ ! -f "$so" ]; then
  echo "setup: python3-libnbd has no $(basename "$so") for the venv's Python ($("$VENV/bin/python" -V));" \
    "found: $(ls /usr/lib/python3/dist-packages/libnbdmod* 2>/dev/null)" >&2
  exit 1
fi
mkdir -p "$nbd_dir"
ln -sf /usr/lib/python3/dist-packages/nbd.py "$nbd_dir/nbd.py"
ln -sf "$so" "$nbd_dir/$(basename "$so")"
echo "$nbd_dir" > "$site/seawall-debian-libnbd.pth"
if ! "$VENV/bin/python" -c 'import nbd; nbd.NBD().get_version()' >/dev/null 2>&1; then
  echo "setup: Debian's libnbd bindings do not load in $VENV:" >&2
  "$VENV/bin/python" -c 'import nbd; nbd.NBD()' >&2 || true
  exit 1
fi

if [ -f deploy/lab/package.json ] && [ ! -x deploy/lab/node_modules/.bin/azurite-blob ]; then
  log "npm install (Azurite)"
  (cd deploy/lab && npm install --no-audit --no-fund --loglevel=error)
fi

if [ -x deploy/lab/vcsim/build.sh ]; then
  deploy/lab/vcsim/build.sh
fi
# With PYTHONDONTWRITEBYTECODE set (these machines set it), an editable install's own modules were
# compiled from source by every process, and the workflow sandbox compiled the workflow modules again
# for every workflow run. Bytecode written once here is read by all of them (stale files are ignored).
"$VENV/bin/python" -m compileall -q -j 0 seawall workflows activities workers benchmarks tests >/dev/null
log "ready: $VENV"
