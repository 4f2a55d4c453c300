# shellcheck shell=bash
# Shell functions shared by the host set-up (scripts/setup.sh) and the Lima node
# provisioning (lima/provision/node.sh): messages, apt packages, the Python check and the
# virtualenv. Source it; it defines functions only and changes no shell option.
#
# It lives under lima/ because a Lima template may only reference files beside it or below
# it (a `file:` locator must not contain `..`), and the templates ship this file into the
# VM as a `mode: data` entry. Lima expands Go templates in `data` content, so this file
# must never contain two opening braces in a row (tests/lima checks that).
#
# Messages start with "$LOG_NAME: "; set LOG_NAME before calling anything.

say() { printf '%s: %s\n' "${LOG_NAME:-agentctl}" "$*"; }
warn() { printf '%s: warning: %s\n' "${LOG_NAME:-agentctl}" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "${LOG_NAME:-agentctl}" "$*" >&2
    exit 1
}

# apt_ensure PKG...: apt-get install the packages that are not installed; nothing (not
# even `apt-get update`) when all are. Sets APT_INSTALLED to the packages it installed.
# shellcheck disable=SC2034 # read by the callers
APT_INSTALLED=()
apt_ensure() {
    local pkg status
    local -a missing=()
    APT_INSTALLED=()
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "system packages present ($*)"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    # shellcheck disable=SC2034
    APT_INSTALLED=("${missing[@]}")
}

# python_check PYTHON: die unless PYTHON exists and is 3.11 or newer.
python_check() {
    local python="$1"
    command -v "$python" >/dev/null || die "$python not found (set PYTHON=/path/to/python3.11+)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$python is $("$python" -V 2>&1); agentctl-swarm needs Python 3.11+ (set PYTHON)"
}

# venv_ensure VENV PYTHON: create the virtualenv VENV with PYTHON unless a working one is
# there; VENV_CREATED says whether it did. (Status goes in a variable, not the exit code:
# a function called as `f || ...` runs with `set -e` off, so failures would pass.)
# shellcheck disable=SC2034 # read by the callers
VENV_CREATED=0
venv_ensure() {
    local venv="$1" python="$2"
    VENV_CREATED=0
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    python_check "$python"
    say "creating $venv with $("$python" -V 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # shellcheck disable=SC2034
    VENV_CREATED=1
}
