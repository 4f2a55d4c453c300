#!/usr/bin/env bash
# Bootstrap a Debian/Ubuntu machine for agentctl-swarm; safe to run again and again.
#
#   scripts/setup.sh [--no-build]
#
# 1. apt-get installs what is missing (python3-venv git podman runc debootstrap uidmap,
#    and nodejs/npm when npm is absent); skipped entirely when all are present.
# 2. creates .venv and installs the locked dependencies (requirements-dev.lock) and the
#    project when .venv is missing or pyproject.toml / the lock changed since the last
#    install (stamp file .venv/.agentctl-setup).
# 3. `agentctl doctor --fix`: Podman runtime, rlimits, user-namespace ids, API socket.
# 4. `agentctl build`: the offline base image (debootstrap) when missing, and the agent
#    image with Claude Code when its inputs changed (--no-build skips this step).
#
# Runs as root (rootful Podman); re-executes itself with sudo otherwise. Needs no
# terminal: works in CI (CI=true, no stdin). Set PYTHON to choose the interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.agentctl-setup"
PACKAGES=(python3-venv git podman runc debootstrap uidmap)
BUILD=1

for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

# say/die, apt_ensure, python_check, venv_ensure: shared with the Lima node provisioning.
# shellcheck disable=SC2034 # read by common.sh
LOG_NAME=setup
# shellcheck source-path=SCRIPTDIR source=../lima/provision/lib/common.sh
. "$ROOT/lima/provision/lib/common.sh"

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "run as root, or install sudo"
    say "re-running as root with sudo"
    exec sudo -E --non-interactive bash "$0" "$@"
fi

# --- 1. system packages ------------------------------------------------------------
apt_ensure "${PACKAGES[@]}"
# npm installs Claude Code for the agent image (`agentctl build`). Checked by command, not
# package: NodeSource's nodejs provides npm itself and conflicts with Debian's npm.
if ! command -v npm >/dev/null; then
    apt_ensure nodejs npm
fi

# --- 2. the project's virtualenv ---------------------------------------------------
PYTHON="${PYTHON:-python3}"
venv_ensure "$VENV" "$PYTHON"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements-dev.lock" <("$VENV/bin/python" -V 2>&1) \
    | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    # The versions the tests passed with (requirements-dev.lock, with hashes; refresh it
    # with scripts/lock.sh), then the project itself on top, without re-resolving.
    say "installing the locked dependencies and the project into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
        -r "$ROOT/requirements-dev.lock" </dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT" </dev/null
    printf '%s\n' "$want" >"$STAMP"
else
    say "project already installed in $VENV (pyproject.toml and the lock file unchanged)"
fi

# --- 3. host checks and fixes ------------------------------------------------------
cd "$ROOT"
"$VENV/bin/agentctl" doctor --fix </dev/null

# --- 4. images ---------------------------------------------------------------------
if [ "$BUILD" -eq 1 ]; then
    "$VENV/bin/agentctl" build </dev/null
fi
say "done"
