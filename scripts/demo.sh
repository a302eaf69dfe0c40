#!/usr/bin/env bash
# The demo: bring up the lab (Temporal + UI, two vCenter sites, AWS and Azure emulators) and say where
# to look. Leaves the lab running; `make lab-down` (or `.venv/bin/seawall lab down`) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/seawall ] || bash scripts/setup.sh
V=.venv/bin

$V/seawall lab up
STATE=$($V/python -c 'from seawall.lab import load_lab; print(load_lab().state_dir)')
UI=$($V/python -c 'from seawall.lab import load_lab; print(load_lab().temporal.ui_url)')

cat <<MSG

Seawall demo lab is up.
  Temporal UI (workflows, schedules, search by SeawallPlan / SeawallVM):  $UI
  Endpoints for scripts and tests:  $STATE/lab.json   (shell: . $STATE/lab.env)
  Logs of every part:               $STATE/logs/
  Health:                           $V/seawall lab status
  Stop it:                          $V/seawall lab down
MSG
