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
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The console's browser tests drive Debian's Chromium through Playwright (no browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The lab's authoritative DNS server (named, in /usr/sbin) and dig/nsupdate for looking at it.
[ -x /usr/sbin/named ] || need_apt+=(bind9)
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing system packages: ${need_apt[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  # Packages with a service (bind9) must not start it: the lab runs its own named on 127.0.0.1 only,
  # and a system one would answer on port 53 of every interface. policy-rc.d (exit 101) forbids it.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || { [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

stamp="$VENV/.seawall-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "pip install -e .[dev]"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

if [ -f deploy/lab/package.json ] && [ ! -x deploy/lab/node_modules/.bin/azurite-blob ]; then
  log "npm install (Azurite)"
  (cd deploy/lab && npm install --no-audit --no-fund --loglevel=error)
fi

if [ -x deploy/lab/vcsim/build.sh ]; then
  deploy/lab/vcsim/build.sh
fi
log "ready: $VENV"
