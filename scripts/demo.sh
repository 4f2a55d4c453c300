#!/usr/bin/env bash
# Set up this machine (idempotent), then run the demo fleet end to end and tear it down:
# seeded workspaces, agents committing and reporting on AgentChat, the sync-daemon
# bringing their work out into a host git repo, and the final sync on delete.
# Usage: sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
agentctl=.venv/bin/agentctl
fleet=examples/demo/fleet.yaml
project=examples/demo/project
export AGENTCTL_STATE_DIR="${AGENTCTL_STATE_DIR:-$PWD/.cache/demo-state}"
export HOME_FOR_CHAT="$PWD/.cache/demo-chat"
mkdir -p "$HOME_FOR_CHAT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
server_pid=""
cleanup() {
  step "tear down (final sync, then remove containers and volumes)"
  $agentctl delete -f "$fleet" --volumes || $agentctl delete -f "$fleet" --volumes --force || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "host repo $project (where agents' work lands)"
if [ ! -d "$project/.git" ]; then
  mkdir -p "$project"
  git -C "$project" init -q -b main
  echo "# demo project" > "$project/README.md"
  git -C "$project" add README.md
  git -C "$project" -c user.name=demo -c user.email=demo@example.invalid commit -qm "initial commit"
fi
git -C "$project" log --oneline -1 main

step "AgentChat server on 127.0.0.1:16667"
$agentctl server --host 127.0.0.1 --port 16667 --data-dir "$AGENTCTL_STATE_DIR/chat" \
  > "$AGENTCTL_STATE_DIR.server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/16667) 2>/dev/null && break
  sleep 0.2
done

step "validate $fleet"
$agentctl validate "$fleet"
step "apply"
$agentctl apply -f "$fleet"
step "apply again (nothing to do)"
$agentctl apply -f "$fleet"
step "let the agents work for 15 s"
sleep 15
step "get"
$agentctl get -f "$fleet"
step "what the agents said on #general"
HOME="$HOME_FOR_CHAT" $agentctl chat tail --server ws://127.0.0.1:16667 '#general' -n 6
step "sync once: agents' work into $project"
$agentctl sync -f "$fleet" --once
$agentctl sync status -f "$fleet"
git -C "$project" branch --list 'swarm/*'
git -C "$project" log --oneline -3 swarm/swarm-builder-000/work
step "logs of swarm-builder-000"
$agentctl logs swarm-builder-000 --fleet demo --tail 4
