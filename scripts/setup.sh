#!/usr/bin/env bash
# Bootstrap a Debian/Ubuntu machine for agentctl-swarm; safe to run again and again.
#
#   scripts/setup.sh [--no-build]            as root: rootful Podman (what CI runs)
#   scripts/setup.sh [--no-build]            as a user: that user's rootless Podman
#   scripts/setup.sh --system-for NAME       as root: only root's part of NAME's set-up
#
# As root:
# 1. apt-get installs what is missing (python3-venv git podman runc debootstrap uidmap,
#    and nodejs/npm when npm is absent); skipped entirely when all are present.
# 2. creates .venv and installs the locked dependencies (requirements-dev.lock) and the
#    project when .venv is missing or pyproject.toml / the lock changed since the last
#    install (stamp file .venv/.agentctl-setup).
# 3. `agentctl doctor --fix`: Podman runtime, rlimits, user-namespace ids, API socket.
# 4. `agentctl build`: the offline base image (debootstrap) when missing, and the agent
#    image with Claude Code when its inputs changed (--no-build skips this step).
#
# As a non-root user (rootless Podman; sudo only for what needs root):
# 1. root's part, through sudo and only when something is missing (--system-for): the
#    packages above plus slirp4netns, fuse-overlayfs and dbus-user-session, subordinate
#    uid/gid ranges for the user, its runtime directory /run/user/UID where no login made
#    it, and on cgroup v2 with systemd the delegation of the controllers memory/CPU/pids
#    limits need (shared with the Lima client provisioning: lima/provision/lib/common.sh).
# 2. .venv as the user, as in 2. above.
# 3. `agentctl doctor --fix` as the user: the user's API socket (systemctl --user, or a
#    detached `podman system service`), overlay storage instead of vfs, and whether
#    memory/CPU/pids limits can be enforced. Where they cannot (cgroup v1) it stops here
#    with the fix, unless AGENTCTL_ALLOW_UNENFORCED_LIMITS=1 says to run agents without.
# 4. images: the offline base needs root (debootstrap). When the user's image store has
#    none, `sudo agentctl build --base-only --for-user NAME` makes it in root's store and
#    copies it over; then `agentctl build` as the user builds the agent image.
#
# Needs no terminal: works in CI (CI=true, no stdin); as a user, sudo may ask for a
# password. Set PYTHON to choose the interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.agentctl-setup"
# catatonit: `podman kube play` (checking `agentctl export kube --for podman`) builds its
# pause image with it; tmux: the test that drives `agentctl top` in a real terminal.
PACKAGES=(python3-venv git podman runc debootstrap uidmap catatonit tmux)
# What rootless Podman needs beyond that: bridge networking, overlay storage without
# native support, `systemctl --user` (Podman's API socket unit).
ROOTLESS_PACKAGES=(slirp4netns fuse-overlayfs dbus-user-session)
BUILD=1
SYSTEM_FOR=""

while [ "$#" -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --system-for) SYSTEM_FOR="${2:-}"; [ -n "$SYSTEM_FOR" ] || { echo "setup.sh: --system-for needs a user name" >&2; exit 2; }; shift ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# say/die, apt_ensure, python_check, venv_ensure and the rootless helpers (subids_ensure,
# runtime_dir_ensure, delegate_ensure): shared with the Lima node provisioning.
# shellcheck disable=SC2034 # read by common.sh
LOG_NAME=setup
# shellcheck source-path=SCRIPTDIR source=../lima/provision/lib/common.sh
. "$ROOT/lima/provision/lib/common.sh"

# npm installs Claude Code for the agent image (`agentctl build`). Checked by command, not
# package: NodeSource's nodejs provides npm itself and conflicts with Debian's npm.
npm_ensure() {
    if ! command -v npm >/dev/null; then
        apt_ensure nodejs npm
    fi
}

# The project's virtualenv (as whoever runs this: root, or the user for rootless).
venv_step() {
    local want have
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
}

# rootless_missing USER: what root still has to do for USER's rootless Podman, one word
# each ("" when nothing). Readable without root, so a re-run needs no sudo.
rootless_missing() {
    local user="$1" uid pkg status out=""
    uid="$(id -u "$user")"
    for pkg in "${PACKAGES[@]}" "${ROOTLESS_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || out="$out package:$pkg"
    done
    command -v npm >/dev/null || out="$out package:npm"
    subids_present "$user" || out="$out subids"
    [ -d "/run/user/$uid" ] || out="$out runtime-dir"
    if systemd_running && [ "$(cgroup_mode)" = v2 ] && [ ! -f "$DELEGATE_DROPIN" ]; then
        out="$out cgroup-delegation"
    fi
    printf '%s' "${out# }"
}

# Root's part of USER's rootless Podman (--system-for USER).
system_for() {
    local user="$1" uid
    [ "$(id -u)" -eq 0 ] || die "--system-for needs root (sudo bash $0 --system-for $user)"
    getent passwd "$user" >/dev/null || die "--system-for $user: there is no such user"
    uid="$(id -u "$user")"
    [ "$uid" -ne 0 ] || die "--system-for $user: that is root; run setup.sh without it"
    apt_ensure "${PACKAGES[@]}" "${ROOTLESS_PACKAGES[@]}"
    npm_ensure
    subids_ensure "$user"
    if [ -n "$SUBIDS_ADDED" ]; then
        say "gave $user subordinate ids for rootless Podman:$SUBIDS_ADDED"
    else
        say "$user has subordinate uid/gid ranges"
    fi
    runtime_dir_ensure "$user"
    if [ "$CHANGED" -eq 1 ]; then
        say "created /run/user/$uid for $user (no login session made it)"
    fi
    if systemd_running && [ "$(cgroup_mode)" = v2 ]; then
        delegate_ensure
        if [ "$CHANGED" -eq 1 ]; then
            say "wrote $DELEGATE_DROPIN: user managers get the cpu, memory and pids controllers;" \
                "it takes effect at $user's next login (or: sudo systemctl restart user@$uid.service)"
        fi
    elif [ "$(cgroup_mode)" != v2 ]; then
        warn "cgroups $(cgroup_mode): rootless Podman cannot apply memory/CPU/pids limits on this" \
            "host; \`agentctl apply\` refuses fleets with limits unless" \
            "AGENTCTL_ALLOW_UNENFORCED_LIMITS=1 (see \`agentctl doctor\`)"
    fi
}

if [ -n "$SYSTEM_FOR" ]; then
    system_for "$SYSTEM_FOR"
    say "done (root's part for $SYSTEM_FOR)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    # --- rootless: root's part through sudo, the rest as this user ------------------------
    ME="$(id -un)"
    todo="$(rootless_missing "$ME")"
    if [ -n "$todo" ]; then
        command -v sudo >/dev/null || die "root must set up: $todo; run as root:" \
            "bash $ROOT/scripts/setup.sh --system-for $ME (or install sudo)"
        say "root's part is needed ($todo): sudo bash $ROOT/scripts/setup.sh --system-for $ME"
        sudo -- bash "$ROOT/scripts/setup.sh" --system-for "$ME" </dev/null
    else
        say "root's part for $ME is in place (packages, subordinate ids, /run/user/$(id -u))"
    fi
    venv_step
    cd "$ROOT"
    "$VENV/bin/agentctl" doctor --fix </dev/null
    if [ "$BUILD" -eq 1 ]; then
        BASE_IMAGE="${AGENTCTL_BASE_IMAGE:-localhost/agentctl-base:bookworm}"
        if ! podman image exists "$BASE_IMAGE" 2>/dev/null; then
            say "the base image needs root (debootstrap): sudo agentctl build --base-only --for-user $ME"
            sudo -- env PYTHONDONTWRITEBYTECODE=1 "AGENTCTL_BASE_IMAGE=$BASE_IMAGE" \
                "$VENV/bin/agentctl" build --base-only --for-user "$ME" </dev/null
        fi
        "$VENV/bin/agentctl" build </dev/null
    fi
    say "done (rootless Podman for $ME)"
    exit 0
fi

# --- root: rootful Podman ---------------------------------------------------------------
# --- 1. system packages ------------------------------------------------------------
apt_ensure "${PACKAGES[@]}"
npm_ensure

# --- 2. the project's virtualenv ---------------------------------------------------
venv_step

# --- 3. host checks and fixes ------------------------------------------------------
cd "$ROOT"
"$VENV/bin/agentctl" doctor --fix </dev/null

# --- 4. images ---------------------------------------------------------------------
if [ "$BUILD" -eq 1 ]; then
    "$VENV/bin/agentctl" build </dev/null
fi
say "done"
