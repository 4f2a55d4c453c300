#!/usr/bin/env bash
# Set up this machine (idempotent) and run the whole test suite against real Podman.
# Usage: sudo bash scripts/test.sh [pytest args...]
#
# Without pytest arguments (CI) it then runs the apply and supervisor integration tests
# once more as a non-root user against rootless Podman (scripts/test-rootless.sh, a few
# minutes the first time on a machine). AGENTCTL_TEST_ROOTLESS=0 skips that stage, =1
# runs it also with arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AGENTCTL_REQUIRE_PODMAN=1
export AGENTCTL_TEST_STATE="${AGENTCTL_TEST_STATE:-$(mktemp -d /tmp/agentctl-test-state.XXXXXX)}"
echo "== ruff"
.venv/bin/ruff check agentctl_swarm tests bench
echo "== pytest"
rootless="${AGENTCTL_TEST_ROOTLESS:-$([ "$#" -eq 0 ] && echo 1 || echo 0)}"
if [ "$rootless" != 1 ]; then
    exec .venv/bin/pytest -q -ra "$@"
fi
status=0
.venv/bin/pytest -q -ra "$@" || status=$?
echo "== rootless (the apply and supervisor tests as a non-root user)"
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the rootless stage needs root (it sets up a CI user); skipped" >&2
else
    bash scripts/test-rootless.sh || status=$?
fi
exit "$status"
