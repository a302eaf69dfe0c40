#!/usr/bin/env bash
# The demo: bring up the lab (Temporal + UI, two vCenter sites, AWS and Azure emulators) and say where
# to look. Leaves the lab running; `make lab-down` (or `.venv/bin/seawall lab down`) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/seawall ] || bash scripts/setup.sh
V=.venv/bin

# The demo protects and drills kvm-a's guests: running, whatever an earlier `lab up --guests` chose.
$V/seawall lab up --guests running
# A worker for every lab site, each primary VM protected at a 30 s RPO, a guest writing between cycles;
# the KVM guests protected too; then a drill of erp-dr and one of kvm-dr (real guests boot at kvm-b).
$V/seawall demo up
STATE=$($V/python -c 'from seawall.lab import load_lab; print(load_lab().state_dir)')
UI=$($V/python -c 'from seawall.lab import load_lab; print(load_lab().temporal.ui_url)')

cat <<MSG

Seawall demo lab is up.
  Temporal UI (workflows, schedules, search by SeawallPlan / SeawallVM):  $UI
  Replication cycles:  $UI/namespaces/default/workflows?query=WorkflowType%3D%22ReplicationCycle%22
  Schedules:           $UI/namespaces/default/schedules
  Endpoints for scripts and tests:  $STATE/lab.json   (shell: . $STATE/lab.env)
  Logs of every part:               $STATE/logs/
  Replication (RPO, last points):   $V/seawall status
  Health:                           $V/seawall lab status
  Stop it:                          $V/seawall demo down && $V/seawall lab down
MSG
