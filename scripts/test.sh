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
# Lab tests share one lab (its VMs, zone and site task queues), so the ones that use the vSphere and
# cloud sites run one after another in one process; the ones that share nothing with them (the KVM
# sites' own VMs, plans and queues; stores under their own prefixes; a private lab: marker
# `lab_side`, tests/conftest.py) run in another beside it. The few that stop a shared part (Temporal,
# moto: marker `lab_exclusive`) run alone afterwards. The tests that bring their own servers run
# beside them all on pytest-xdist workers. (xdist's loadgroup cannot keep
# a group on one worker with this pytest, hence separate runs.) Any run's failure fails the suite.
workers="${SEAWALL_TEST_WORKERS:-2}"
logs=$(mktemp -d)
pids=()
stop_runs() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
  cleanup
}
trap stop_runs EXIT
set +e
lab_run() {  # name, marker expression, pytest arguments...
  local name=$1 expr=$2
  shift 2
  $V/python -m pytest -p no:cacheprovider --durations=15 -m "$expr" "$@" >"$logs/$name.log" 2>&1
  echo $? >"$logs/$name.rc"
}
(
  lab_run shared "lab and not lab_side and not lab_exclusive" "$@" &
  lab_run side "lab_side and not lab_exclusive" "$@" &
  wait
  lab_run exclusive "lab_exclusive" "$@"
) &
pids+=($!)
$V/python -m pytest -p no:cacheprovider -m "not lab" -n "$workers" "$@"
rc=$?
wait "${pids[@]}"
# 5: nothing collected (a path or -k that selects only one kind) is no failure.
[ "$rc" = 5 ] && rc=0
for name in shared side exclusive; do
  echo "[test] lab tests: $name"
  cat "$logs/$name.log"
  run_rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  [ "$run_rc" = 5 ] && run_rc=0
  if [ "$rc" = 0 ] && [ "$run_rc" != 0 ]; then rc=$run_rc; fi
done
exit "$rc"
