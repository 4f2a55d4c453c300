#!/usr/bin/env bash
# Set up this machine (idempotent), then run the demo fleet end to end and tear it down.
# Usage: sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
agentctl=.venv/bin/agentctl
fleet=examples/demo/fleet.yaml
export AGENTCTL_STATE_DIR="${AGENTCTL_STATE_DIR:-$PWD/.cache/demo-state}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { step "tear down"; $agentctl delete -f "$fleet" --volumes --force || true; }
trap cleanup EXIT

step "validate $fleet"
$agentctl validate "$fleet"
step "apply"
$agentctl apply -f "$fleet"
step "apply again (nothing to do)"
$agentctl apply -f "$fleet"
step "get"
sleep 3
$agentctl get -f "$fleet"
step "logs of swarm-builder-000"
$agentctl logs swarm-builder-000 --fleet demo --tail 5
