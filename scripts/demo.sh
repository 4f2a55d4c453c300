#!/usr/bin/env bash
# Set up this machine (idempotent), then show the whole product offline:
#   `agentctl up` runs two builders (real Claude Code in each container, idle until a task
#   comes) with an embedded AgentChat server and coordinator; a task is added; one
#   builder claims it and becomes a Claude Code session that edits README.md through its
#   tools and posts on #work through agentchat-mcp; its runner commits the work and
#   reports DONE with the tokens spent; the sync-daemon brings the commit into the host
#   repo; the other builder never started Claude Code. Then everything is torn down.
# The model is scripted (`agentctl model serve --script examples/demo/model.yaml`), so it
# costs nothing and needs no key. To use the real API instead: delete `model.base_url`
# from examples/demo/fleet.yaml, export ANTHROPIC_API_KEY and run this again.
# Usage: sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
agentctl=.venv/bin/agentctl
fleet=examples/demo/fleet.yaml
project=examples/demo/project
server=ws://127.0.0.1:16667
export AGENTCTL_STATE_DIR="${AGENTCTL_STATE_DIR:-$PWD/.cache/demo-state}"
export ANTHROPIC_API_KEY="${ANTHROPIC_API_KEY:-scripted-model-needs-no-key}"
export AGENTCTL_LOG_FORMAT=text
logs="$AGENTCTL_STATE_DIR/logs"
mkdir -p "$logs"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
model_pid="" up_pid=""
cleanup() {
  step "tear down (up stops the agents gracefully; delete syncs once more and removes all)"
  [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
  $agentctl delete -f "$fleet" --volumes || $agentctl delete -f "$fleet" --volumes --force || true
  [ -n "$model_pid" ] && kill "$model_pid" 2>/dev/null || true
}
trap cleanup EXIT

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "demo: gave up waiting for $what" >&2
  tail -n 30 "$logs/up.log" >&2 || true
  return 1
}

step "leftovers of an earlier demo run, if any"
$agentctl delete -f "$fleet" --volumes --force 2>/dev/null | tail -n 1 || true

step "host repo $project (where the agents' work lands)"
if [ ! -d "$project/.git" ]; then
  mkdir -p "$project"
  git -C "$project" init -q -b main
  echo "# demo project" > "$project/README.md"
  git -C "$project" add README.md
  git -C "$project" -c user.name=demo -c user.email=demo@example.invalid commit -qm "initial commit"
fi
git -C "$project" log --oneline -1 main

step "the scripted model on 127.0.0.1:18080 (examples/demo/model.yaml)"
$agentctl model serve --script examples/demo/model.yaml --port 18080 > "$logs/model.log" 2>&1 &
model_pid=$!
wait_for 30 "the scripted model" bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080'

step "validate $fleet"
$agentctl validate "$fleet"

step "agentctl up: embedded server + coordinator, two idle builders, sync-daemon"
$agentctl up -f "$fleet" > "$logs/up.log" 2>&1 &
up_pid=$!
idle_builders() {  # the coordinator's view: both builders heartbeating "idle"
  .venv/bin/python - <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:16667/api/v1/agents", timeout=5) as r:
    agents = json.load(r)["agents"]
sys.exit(0 if sum(a["state"] == "idle" and a["alive"] for a in agents) == 2 else 1)
PY
}
wait_for 120 "two idle builders" idle_builders
$agentctl get -f "$fleet"

step "add a task"
task=$($agentctl task add "Add a section on how this was written to README.md" \
  --role builder --server "$server")
echo "task $task"
wait_for 180 "the task to be done" bash -c \
  "$agentctl task show $task --server $server -o json | grep -q '\"state\": \"done\"'"
$agentctl task show "$task" --server "$server"

step "what happened on #work"
$agentctl chat tail --server "$server" '#work' -n 30 | grep -v HEARTBEAT

step "the commit, brought out by the sync-daemon into $project"
synced() {  # the task's branch on the host, with the agent's edit in it
  branch=$(git -C "$project" for-each-ref --format='%(refname:short)' \
    "refs/heads/swarm/*/task/$task")
  [ -n "$branch" ] && git -C "$project" show "$branch:README.md" | grep -q "How this was written"
}
wait_for 60 "the synced commit" synced
branch=$(git -C "$project" for-each-ref --format='%(refname:short)' "refs/heads/swarm/*/task/$task")
git -C "$project" log --oneline -2 "$branch"
git -C "$project" show "$branch:README.md"

step "the other builder never started Claude Code"
for agent in swarm-builder-000 swarm-builder-001; do
  runs=$($agentctl logs "$agent" --fleet demo | grep -c '"runner.started"' || true)
  echo "$agent: $runs Claude Code run(s)"
done
