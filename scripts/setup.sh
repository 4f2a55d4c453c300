#!/usr/bin/env bash
# Bootstrap a Debian/Ubuntu machine for agentctl-swarm; safe to run again and again.
#
#   scripts/setup.sh [--no-build]
#
# 1. apt-get installs what is missing (python3-venv git podman runc debootstrap uidmap);
#    skipped entirely when all are present.
# 2. creates .venv and runs `pip install -e '.[dev]'` when .venv is missing or
#    pyproject.toml changed since the last install (stamp file .venv/.agentctl-setup).
# 3. `agentctl doctor --fix`: Podman runtime/rlimit fixes and the API socket.
# 4. `agentctl build`: the offline base image (debootstrap) when missing, and the agent
#    image when its inputs changed (--no-build skips this step).
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
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "run as root, or install sudo"
    say "re-running as root with sudo"
    exec sudo -E --non-interactive bash "$0" "$@"
fi

# --- 1. system packages ------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
    say "system packages present (${PACKAGES[*]})"
fi

# --- 2. the project's virtualenv ---------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); agentctl-swarm needs Python 3.11+ (set PYTHON)"
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
want="$(cat "$ROOT/pyproject.toml" <("$VENV/bin/python" -V 2>&1) | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    say "installing the project into $VENV (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev]" </dev/null
    printf '%s\n' "$want" >"$STAMP"
else
    say "project already installed in $VENV (pyproject.toml unchanged)"
fi

# --- 3. host checks and fixes ------------------------------------------------------
cd "$ROOT"
"$VENV/bin/agentctl" doctor --fix </dev/null

# --- 4. images ---------------------------------------------------------------------
if [ "$BUILD" -eq 1 ]; then
    "$VENV/bin/agentctl" build </dev/null
fi
say "done"
