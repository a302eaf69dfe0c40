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
# Lab tests share one lab (its VMs, buckets and site task queues), so they run one after another in
# one process. Most tests wait (on servers, workers, guests) rather than compute: the tests that bring
# their own servers run beside them on pytest-xdist workers. (xdist's loadgroup cannot keep a group
# on one worker with this pytest, hence two runs.) Either run's failure fails the suite.
workers="${SEAWALL_TEST_WORKERS:-2}"
lab_log=$(mktemp)
set +e
$V/python -m pytest -p no:cacheprovider -m lab "$@" >"$lab_log" 2>&1 &
lab_pid=$!
trap 'kill "$lab_pid" 2>/dev/null; cleanup' EXIT
$V/python -m pytest -p no:cacheprovider -m "not lab" -n "$workers" "$@"
rc_rest=$?
wait "$lab_pid"
rc_lab=$?
echo "[test] lab tests (one after another)"
cat "$lab_log"
rm -f "$lab_log"
# 5: nothing collected (a path or -k that selects only one kind) is no failure.
[ "$rc_rest" = 5 ] && rc_rest=0
[ "$rc_lab" = 5 ] && rc_lab=0
if [ "$rc_rest" != 0 ]; then exit "$rc_rest"; fi
exit "$rc_lab"
