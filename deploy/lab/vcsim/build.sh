#!/usr/bin/env bash
# Build the lab's vCenter simulator from Debian's golang-go + golang-github-vmware-govmomi-dev.
# Idempotent: does nothing when a vcsim is on PATH or the binary is newer than main.go.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
OUT=$ROOT/.seawall/bin/vcsim
SRC=$ROOT/deploy/lab/vcsim

if command -v vcsim >/dev/null 2>&1; then
  exit 0
fi
if [ -x "$OUT" ] && [ "$OUT" -nt "$SRC/main.go" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "vcsim build: 'go' not found; install golang-go (scripts/setup.sh does)" >&2
  exit 1
fi
GOPATH_DIR=${SEAWALL_GOPATH:-/usr/share/gocode}
if [ ! -d "$GOPATH_DIR/src/github.com/vmware/govmomi/simulator" ]; then
  echo "vcsim build: govmomi simulator sources not in $GOPATH_DIR; install golang-github-vmware-govmomi-dev" >&2
  exit 1
fi

mkdir -p "$(dirname "$OUT")" "$ROOT/.seawall/cache/go-build"
printf '\033[1m[setup]\033[0m %s\n' "building vcsim -> $OUT"
# GOPATH mode: imports resolve under $GOPATH_DIR/src, exactly the tree the Debian package installs.
# The build cache stays inside .seawall so a read-only HOME does not matter.
GOPATH=$GOPATH_DIR GO111MODULE=off GOFLAGS= GOCACHE=$ROOT/.seawall/cache/go-build \
  go build -o "$OUT.tmp" "$SRC/main.go"
mv -f "$OUT.tmp" "$OUT"
