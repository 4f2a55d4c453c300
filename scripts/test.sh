#!/usr/bin/env bash
# Set up this machine (idempotent) and run the whole test suite against real Podman.
# Usage: sudo bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AGENTCTL_REQUIRE_PODMAN=1
export AGENTCTL_TEST_STATE="${AGENTCTL_TEST_STATE:-$(mktemp -d /tmp/agentctl-test-state.XXXXXX)}"
echo "== ruff"
.venv/bin/ruff check agentctl_swarm tests bench
echo "== pytest"
exec .venv/bin/pytest -q -ra "$@"
