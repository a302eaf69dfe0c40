#!/usr/bin/env bash
# The whole suite: set-up, lint and types, the lab, every test, then stop what this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
V=.venv/bin
# The Go servers the suite starts (each lab's Temporal and vcsim, the workflow tests' Temporal) run on
# one OS thread of Go code each. With two, an idle Go scheduler spins and wakes threads looking for work
# on a machine whose two cores the suite already keeps busy: 150 workflows of 5 activities cost a dev
# server 12.0 CPU-s (10.0-13.1) with two and 9.6 (8.3-11.1) with one, in the same wall time. Only the
# suite's servers: `seawall lab up` and the benchmarks run by hand keep Go's default.
export GOMAXPROCS="${SEAWALL_TEST_GOMAXPROCS:-1}"

# Lint and types run while the labs start (half a minute of CPU beside mostly waiting); their verdict
# is read before any test runs.
echo "[test] $(date +%T) ruff + mypy, beside the labs' start"
lint_log=$(mktemp)
($V/ruff check . && $V/ruff format --check . && $V/mypy) >"$lint_log" 2>&1 &
lint_pid=$!
# The lab runs below ("pytest"), each by its marker expression.
declare -A stream_expr=(
  [shared]="lab and not lab_side and not lab_exclusive and not lab_b and not lab_c"
  [side-kvm]="lab_kvm and not lab_exclusive"
  [side]="lab_side and not lab_kvm and not lab_exclusive"
  [shared-b]="lab_b and not lab_side and not lab_exclusive"
  [shared-c]="lab_c and not lab_side and not lab_exclusive"
  [exclusive]="lab_exclusive"
)
# Pytest rewrites each test module's asserts as it imports it, and keeps the rewritten bytecode only
# where Python may write bytecode. These machines set PYTHONDONTWRITEBYTECODE, so each of the eight
# pytest processes below rewrote all the test modules again: 19.5 CPU-s to collect, 7 with the
# rewritten modules on disk (pytest reads them either way). One collection that may write them, beside
# the labs' start, does it for all; it also lists each lab run's test files, so that a run imports
# only its own modules, not all ~200 to evaluate its marker expression.
streams_dir=$(mktemp -d)
stream_args=()
for name in "${!stream_expr[@]}"; do stream_args+=("$name=${stream_expr[$name]}"); done
env -u PYTHONDONTWRITEBYTECODE $V/python scripts/collect_streams.py "$streams_dir" "${stream_args[@]}" \
  -- "$@" >/dev/null 2>&1 &
rewrite_pid=$!

# Three labs: the lab tests of the shared sites are split between them (markers `lab_b`, `lab_c`:
# tests/conftest.py), so three of those run at a time, each on a lab of its own (own state dir and
# ports). The first is the checkout's lab, the one `seawall lab up` starts.
extra_labs=(b c)
declare -A lab_dir=(
  [b]="${SEAWALL_TEST_LAB_B_DIR:-$PWD/.seawall/lab-b}"
  [c]="${SEAWALL_TEST_LAB_C_DIR:-$PWD/.seawall/lab-c}"
)
# Offsets whose ports meet no other lab's (the first's KVM health ports are 9101-9140).
declare -A lab_offset=([b]="${SEAWALL_TEST_LAB_B_OFFSET:-50}" [c]="${SEAWALL_TEST_LAB_C_OFFSET:-250}")
on_lab() {  # lab name (b, c), command...
  local name=$1
  shift
  # A test that runs `lab up` again on it keeps its guests paused too.
  SEAWALL_LAB_DIR="${lab_dir[$name]}" SEAWALL_LAB_PORT_OFFSET="${lab_offset[$name]}" SEAWALL_LAB_GUESTS=paused "$@"
}
# A lab's KVM guests, when no test needs them, are paused: QEMU without /dev/kvm emulates them in
# software at 4-8 % of a core each, all the time. The first lab's `lab up --guests running` (and any
# `lab up` of a lab whose kept choice is running) resumes them (test_lab_kvm checks it).
pause_guests() {  # lab state dir: kvm-a's guests, and what a failover test left running at kvm-b
  local site kvm guest
  for site in kvm-a kvm-b; do
    kvm="qemu:///system?socket=$1/kvm/$site/run/libvirt-sock"
    for guest in $(virsh -c "$kvm" list --name --state-running 2>/dev/null); do
      virsh -c "$kvm" suspend "$guest" >/dev/null || true
    done
  done
}
lab_dir_of_first() { $V/python -c 'from seawall.lab import config; print(config.state_dir())'; }
started_lab=0
declare -A started=()
if ! $V/seawall lab status --quiet >/dev/null 2>&1; then
  started_lab=1
  # A lab this script starts starts clean: disks a demo's guest writer changed would fail the tests
  # that compare them with the lab's images (CI's fresh clone starts clean anyway).
  $V/seawall lab down --purge >/dev/null 2>&1 || true
fi
for name in "${extra_labs[@]}"; do
  if ! on_lab "$name" $V/seawall lab status --quiet >/dev/null 2>&1; then
    started[$name]=1
    on_lab "$name" $V/seawall lab down --purge >/dev/null 2>&1 || true
  fi
done
cleanup() {
  kill "$lint_pid" "$rewrite_pid" 2>/dev/null || true
  rm -rf "$streams_dir"
  if [ "$started_lab" = 1 ]; then $V/seawall lab down || true; fi
  for name in "${!started[@]}"; do on_lab "$name" $V/seawall lab down || true; done
}
trap cleanup EXIT
declare -A up_pid=()
# No test on the other labs uses their KVM guests (the KVM tests run on the first): they start paused
# and never boot, which spares the minute of a core each guest's boot costs under TCG.
for name in "${extra_labs[@]}"; do
  mkdir -p "$(dirname "${lab_dir[$name]}")"  # its log sits beside it, written before `lab up` runs
  on_lab "$name" $V/seawall lab up --guests paused >"${lab_dir[$name]}.up.log" 2>&1 &
  up_pid[$name]=$!
done
$V/seawall lab up --guests running
for name in "${extra_labs[@]}"; do
  if ! wait "${up_pid[$name]}"; then
    cat "${lab_dir[$name]}.up.log"
    echo "[test] lab $name did not come up" >&2
    exit 1
  fi
  echo "[test] lab $name: ${lab_dir[$name]} (ports +${lab_offset[$name]})"
  # A demo worker would take site tasks meant for the tests' own workers.
  on_lab "$name" $V/seawall demo down
done
$V/seawall demo down
if ! wait "$lint_pid"; then
  cat "$lint_log"
  echo "[test] ruff or mypy failed" >&2
  exit 1
fi
cat "$lint_log"
rm -f "$lint_log"
# Its verdict is the runs' own: a module that fails to import fails them, with its error (without the
# lists, each lab run collects the whole suite as before).
wait "$rewrite_pid" || rm -f "$streams_dir"/*.files

echo "[test] $(date +%T) pytest"
# Lab tests share a lab (its VMs, zone and site task queues), so the ones that use the vSphere and
# cloud sites run one after another in one process per lab: those marked `lab_b` on the second lab,
# `lab_c` on the third, the rest on the first. The ones that share nothing with them (the KVM sites'
# own VMs, plans and queues; stores under their own prefixes; a private lab: marker `lab_side`) run
# in another process beside them on the first lab. The few that stop a shared part (Temporal, moto:
# marker `lab_exclusive`) run alone on the third lab after its other tests. The tests that bring
# their own servers run beside them all on pytest-xdist workers. (xdist's loadgroup cannot keep a
# group on one worker with this pytest, hence separate runs.) Any run's failure fails the suite.
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
lab_run() {  # name (of stream_expr), pytest arguments...
  local name=$1
  shift
  local files=()
  # The whole suite: the run's own files, as the collection listed them (arguments select otherwise).
  if [ $# -eq 0 ] && [ -f "$streams_dir/$name.files" ]; then
    mapfile -t files <"$streams_dir/$name.files"
    if [ ${#files[@]} -eq 0 ]; then
      echo "no test selected" >"$logs/$name.log"
      echo 5 >"$logs/$name.rc"
      return
    fi
  fi
  $V/python -m pytest -p no:cacheprovider --durations=20 -m "${stream_expr[$name]}" "${files[@]}" "$@" \
    >"$logs/$name.log" 2>&1
  echo $? >"$logs/$name.rc"
}
lab_run shared "$@" &
pids+=($!)
(
  lab_run side-kvm "$@"
  # The KVM tests are done with the first lab's guests: pause them too (see above).
  pause_guests "$(lab_dir_of_first)"
  lab_run side "$@"
) &
pids+=($!)
on_lab b lab_run shared-b "$@" &
pids+=($!)
(
  on_lab c lab_run shared-c "$@"
  on_lab c lab_run exclusive "$@"
) &
pids+=($!)
# The lab streams are the longest runs and most of their time is waiting on their lab's servers, so
# when both cores are busy they go first: the tests without the lab yield to them (nice), and fill
# the cores while the lab streams wait. They end about when the lab streams do. Nice 10 (9:31 against
# the longest lab stream's 10:58) beat nice 5 (10:05 / 11:28) by 30 s, but in CI it starved a workflow
# worker past three 10 s workflow task timeouts (the server then refuses updates): nice 5.
nice -n "${SEAWALL_TEST_NICE:-5}" $V/python -m pytest -p no:cacheprovider --durations=20 -m "not lab" -n "$workers" "$@"
rc=$?
wait "${pids[@]}"
# 5: nothing collected (a path or -k that selects only one kind) is no failure.
[ "$rc" = 5 ] && rc=0
echo "[test] $(date +%T) every run has ended"
for name in shared side-kvm side shared-b shared-c exclusive; do
  echo "[test] lab tests: $name"
  cat "$logs/$name.log"
  run_rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  [ "$run_rc" = 5 ] && run_rc=0
  if [ "$rc" = 0 ] && [ "$run_rc" != 0 ]; then rc=$run_rc; fi
done
exit "$rc"
