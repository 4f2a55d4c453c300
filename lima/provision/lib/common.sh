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

# --- files -----------------------------------------------------------------------------

# install_file SRC DEST MODE: copy when the content or mode differs; CHANGED=1 if it did.
CHANGED=0
install_file() {
    local src="$1" dest="$2" mode="$3"
    CHANGED=0
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "$mode" ]; then
        return 0
    fi
    install -D -m "$mode" "$src" "$dest"
    # shellcheck disable=SC2034 # read by the callers
    CHANGED=1
}

# write_file DEST MODE CONTENT: install_file for generated content.
write_file() {
    local tmp
    tmp="$(mktemp)"
    printf '%s' "$3" >"$tmp"
    install_file "$tmp" "$1" "$2"
    rm -f "$tmp"
}

# snapshot_files DIR: the files of an agentctl-swarm clone that an install or a copy
# needs, relative and sorted: no VCS data, virtualenvs, build output or caches (those
# belong to the clone's owner and may not even work elsewhere).
snapshot_files() {
    (cd "$1" && find . \( -path ./.git -o -path ./.venv -o -path ./build -o -path ./dist \
        -o -path ./.cache -o -path ./examples/demo/project -o -path ./bench/results \
        -o -name '*.egg-info' -o -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache \) \
        -prune -o -type f -print | LC_ALL=C sort)
}

# --- rootless Podman for a user (root's part) -----------------------------------------
# Shared by the Lima client provisioning and scripts/setup.sh for a non-root user: what
# only root can give a user so that the user's own (rootless) Podman works and enforces
# limits. Each function changes nothing when its part is in place.

# The controllers rootless Podman needs for memory/CPU/pids limits (cgroup v2 only).
DELEGATE_DROPIN=/etc/systemd/system/user@.service.d/50-agentctl-delegate.conf
DELEGATE_CONTENT="# Written by agentctl-swarm (lima/provision/lib/common.sh): delegate the cgroup v2
# controllers rootless Podman needs for memory/cpu/pids limits on containers.
[Service]
Delegate=cpu cpuset io memory pids
"

# cgroup_mode: v2, hybrid or v1 (the layout of /sys/fs/cgroup).
cgroup_mode() {
    if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        echo v2
    elif grep -qs ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
        echo hybrid
    else
        echo v1
    fi
}

# systemd_running: true when systemd is the init (units, user managers, logind).
systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# subid_free_start FILE: the lowest id >= 100000 where 65536 ids are free in FILE
# (/etc/subuid or /etc/subgid), after every range already handed out, also the large one
# rootful Podman's --userns=auto uses.
subid_free_start() {
    awk -F: 'NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { print $2, $2 + $3 }' "$1" \
        | sort -n \
        | awk 'BEGIN { c = 100000 } { if ($1 >= c + 65536) exit; if ($2 > c) c = $2 } END { printf "%d\n", c }'
}

# subids_ensure USER: subordinate uid and gid ranges (65536 ids each) for USER when it
# has none; SUBIDS_ADDED lists what was added ("" when nothing).
SUBIDS_ADDED=""
subids_ensure() {
    local user="$1" uid file start
    uid="$(id -u "$user")"
    SUBIDS_ADDED=""
    for file in /etc/subuid /etc/subgid; do
        touch "$file"
        if grep -q "^$user:" "$file" || grep -q "^$uid:" "$file"; then
            continue
        fi
        start="$(subid_free_start "$file")"
        [ "$start" -le $((4294967295 - 65536)) ] || die "no free range of 65536 ids left in $file"
        # the file may lack its last newline (a hand edit)
        if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
            printf '\n' >>"$file"
        fi
        printf '%s:%s:65536\n' "$user" "$start" >>"$file"
        SUBIDS_ADDED="$SUBIDS_ADDED $file:$start-$((start + 65535))"
    done
}

# subids_present USER: true when USER has ranges in both files.
subids_present() {
    local uid file
    uid="$(id -u "$1")"
    for file in /etc/subuid /etc/subgid; do
        grep -qs "^$1:" "$file" || grep -qs "^$uid:" "$file" || return 1
    done
}

# runtime_dir_ensure USER: /run/user/UID, which systemd-logind makes at login and
# rootless Podman keeps its runtime state and API socket in; made here (0700, the
# user's) where no login made it (hosts without systemd, `su` without pam_systemd).
# CHANGED=1 when it made it.
runtime_dir_ensure() {
    local uid gid dir
    uid="$(id -u "$1")"
    gid="$(id -g "$1")"
    dir="/run/user/$uid"
    CHANGED=0
    if [ ! -d "$dir" ]; then
        install -d -m 755 /run/user
        install -d -m 700 -o "$uid" -g "$gid" "$dir"
        # shellcheck disable=SC2034 # read by the callers
        CHANGED=1
    fi
}

# delegate_ensure: the drop-in delegating the controllers to user managers; CHANGED=1
# (and systemd reloaded) when it wrote it. Only meaningful where systemd runs.
delegate_ensure() {
    write_file "$DELEGATE_DROPIN" 644 "$DELEGATE_CONTENT"
    if [ "$CHANGED" -eq 1 ] && systemd_running; then
        systemctl daemon-reload
    fi
}

# user_controllers_file UID: where the user's manager lists its cgroup v2 controllers.
user_controllers_file() {
    printf '/sys/fs/cgroup/user.slice/user-%s.slice/user@%s.service/cgroup.controllers\n' "$1" "$1"
}
