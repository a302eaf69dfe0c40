#!/usr/bin/env bash
# The whole suite: set-up, lint and types, the lab, every test, then stop what this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
V=.venv/bin

echo "[test] ruff + mypy"
$V/ruff check .
$V/ruff format --check .
$V/mypy

started_lab=0
if ! $V/seawall lab status --quiet >/dev/null 2>&1; then
  started_lab=1
  # A lab this script starts starts clean: disks a demo's guest writer changed would fail the tests
  # that compare them with the lab's images (CI's fresh clone starts clean anyway).
  $V/seawall lab down --purge >/dev/null 2>&1 || true
fi
cleanup() {
  if [ "$started_lab" = 1 ]; then $V/seawall lab down || true; fi
}
trap cleanup EXIT
$V/seawall lab up
# A demo worker would take site tasks meant for the tests' own workers.
$V/seawall demo down

echo "[test] pytest"
# Most tests wait (on servers, workers, guests) rather than compute: three pytest-xdist workers
# overlap the waits. Lab tests all run on one of them (xdist_group "lab", tests/conftest.py).
workers="${SEAWALL_TEST_WORKERS:-3}"
set +e
$V/python -m pytest -p no:cacheprovider -n "$workers" --dist loadgroup "$@"
rc=$?
set -e
exit $rc
