#!/usr/bin/env bash
# Run the apply and supervisor integration tests as a non-root user, against that user's
# rootless Podman, set up the way the README tells a non-root user to. Run as root (CI:
# scripts/test.sh calls it after the main suite):
#
#   sudo bash scripts/test-rootless.sh [pytest args for the user's run...]
#
# 1. the CI user ($AGENTCTL_CI_USER, default agentctl-ci; a locked account, no password)
#    is created when missing, and kept: its virtualenv and image store make the next run
#    fast. Remove it with: userdel -r agentctl-ci
# 2. root's part of its rootless Podman: scripts/setup.sh --system-for USER (packages,
#    subordinate ids, /run/user/UID, cgroup delegation where systemd and cgroup v2 are).
# 3. a copy of this checkout in ~USER/agentctl-swarm, standing in for the user's own clone
#    (the checkout may not be readable by others), refreshed every run; .venv is kept.
# 4. as USER: scripts/setup.sh --no-build (its venv, `agentctl doctor --fix`: the API
#    socket, overlay storage, the limits check). No sudo is needed: 2. did root's part.
# 5. as root: agentctl build --for-user USER (root's images, copied where they differ),
#    then the as-root half of tests/rootless (the copy's failure paths, doctor for a user
#    with nothing set up).
# 6. as USER: tests/integration/test_apply.py, tests/agent/test_supervisor_podman.py and
#    tests/rootless/test_as_user.py.
#
# On a host where rootless Podman cannot enforce memory/CPU/pids limits (cgroup v1, as on
# the CI machines) steps 4 and 6 run with AGENTCTL_ALLOW_UNENFORCED_LIMITS=1; the tests
# then check the refusal and the warning instead of the limits (see tests/rootless).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI_USER="${AGENTCTL_CI_USER:-agentctl-ci}"
# shellcheck disable=SC2034 # read by common.sh
LOG_NAME=rootless
# shellcheck source-path=SCRIPTDIR source=../lima/provision/lib/common.sh
. "$ROOT/lima/provision/lib/common.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (it creates and sets up the user $CI_USER)"
START=$SECONDS

# --- 1. the user ----------------------------------------------------------------------
if ! getent passwd "$CI_USER" >/dev/null; then
    useradd --create-home --shell /bin/bash --comment "agentctl-swarm CI, rootless Podman tests" "$CI_USER"
    say "created the user $CI_USER"
fi
CI_UID="$(id -u "$CI_USER")"
CI_HOME="$(getent passwd "$CI_USER" | cut -d: -f6)"
case "$CI_HOME" in /?*/?*) ;; *) die "$CI_USER's home '$CI_HOME' is not a directory of its own" ;; esac
COPY="$CI_HOME/agentctl-swarm"

# --- 2. root's part -------------------------------------------------------------------
bash "$ROOT/scripts/setup.sh" --system-for "$CI_USER"

# --- 3. the user's clone --------------------------------------------------------------
install -d -m 755 -o "$CI_USER" -g "$CI_USER" "$COPY"
find "$COPY" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
(cd "$ROOT" && snapshot_files "$ROOT" | tar -cf - --no-recursion -T -) \
    | runuser -u "$CI_USER" -- tar -C "$COPY" -xf -
say "copied the checkout to $COPY"

# as_user CMD...: run CMD as the CI user with a login's environment (and what pip and
# the tests need from ours), in the copy.
as_user() {
    local -a keep=()
    local name
    for name in $(compgen -e); do
        case "$name" in
            PIP_* | *_PROXY | *_proxy | SSL_CERT_* | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE \
                | NODE_EXTRA_CA_CERTS | CI | AGENTCTL_*) keep+=("$name=${!name}") ;;
        esac
    done
    (cd "$COPY" && runuser -u "$CI_USER" -- env -i HOME="$CI_HOME" USER="$CI_USER" \
        LOGNAME="$CI_USER" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        XDG_RUNTIME_DIR="/run/user/$CI_UID" "${keep[@]}" "$@")
}

# Where rootless Podman cannot apply limits the doctor and apply refuse them; the tests
# here must run there too, so they opt out and check the warning instead.
export AGENTCTL_ALLOW_UNENFORCED_LIMITS=1
export AGENTCTL_REQUIRE_PODMAN=1

# --- 4. the user's own set-up -----------------------------------------------------------
as_user bash scripts/setup.sh --no-build

# --- 5. images, and the as-root tests ---------------------------------------------------
"$ROOT/.venv/bin/agentctl" build --for-user "$CI_USER" </dev/null
say "images ready after $((SECONDS - START)) s"
AGENTCTL_CI_USER="$CI_USER" AGENTCTL_CI_VENV="$COPY/.venv" \
    "$ROOT/.venv/bin/pytest" -q -ra -p no:cacheprovider "$ROOT/tests/rootless/test_as_root.py"

# --- 6. the tests, as the user ----------------------------------------------------------
state="$(as_user mktemp -d /tmp/agentctl-rootless-state.XXXXXX)"
status=0
as_user env AGENTCTL_TEST_STATE="$state" .venv/bin/pytest -q -ra \
    tests/integration/test_apply.py tests/agent/test_supervisor_podman.py \
    tests/rootless/test_as_user.py "$@" || status=$?
rm -rf "$state"
say "done in $((SECONDS - START)) s (exit $status)"
exit "$status"
