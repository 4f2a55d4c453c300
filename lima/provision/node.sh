#!/usr/bin/env bash
# Provision an agentctl-swarm node: a Lima VM made from lima/server.yaml or
# lima/client.yaml, or any systemd Debian/Ubuntu machine. Safe to run again and again
# (Lima runs it at every boot); a run that finds everything in place changes nothing.
#
#   node.sh server|client --user NAME [--source DIR] [--server-url URL] [--images yes|no]
#           [--allow-unenforced-limits yes|no]
#
# both:   apt packages (Python, git, dbus-user-session), linger and a running systemd
#         user manager for NAME, agentctl installed from a snapshot of the read-only
#         source clone into /opt/agentctl-swarm (venv; /usr/local/bin/agentctl), and
#         /etc/agentctl/node.env (where things are: never a credential).
# server: the user unit agentctl-server.service (AgentChat server on 127.0.0.1:6667,
#         which lima/server.yaml forwards to the host), started and checked (GET /health).
# client: rootless Podman for NAME (crun and runc, uidmap, slirp4netns/passt), cgroup
#         controllers delegated to user managers, NAME's Podman API socket,
#         `agentctl doctor --fix` as NAME (picks runc where crun cannot run, fixes
#         rlimits, overlay storage, checks that limits can be enforced), the agent image
#         in NAME's image store (--images yes, the default: `agentctl build --for-user`),
#         and the user unit agentctl-up.service (`agentctl up -f
#         ~/.config/agentctl/fleet.yaml`, started once that file exists).
#
# --server-url   the AgentChat server of a client (default: the one in /etc/agentctl/node.env,
#                else ws://host.lima.internal:6667, the server node's port on the host).
# --allow-unenforced-limits  yes: let fleets run although rootless Podman cannot apply
#                their memory/CPU/pids limits here (cgroup v1, controllers not delegated);
#                written to /etc/agentctl/node.env for agentctl-up. Default: what the node
#                has, else no (then provisioning stops on such a node, as `apply` would).
#                Also AGENTCTL_ALLOW_UNENFORCED_LIMITS=1 in the environment.
# --source DIR   the agentctl-swarm clone, mounted read-only (default /mnt/agentctl-swarm);
#                waited for up to AGENTCTL_NODE_SOURCE_WAIT seconds (default 300), since
#                Lima may mount it while provisioning already runs.
# Environment:   AGENTCTL_NODE_PORT (the server's port, default 6667: the port the server
#                template forwards); pip's own PIP_* settings (PIP_NO_INDEX=1
#                PIP_FIND_LINKS=DIR installs from a wheel directory, offline).
#
# Credentials never pass through here. Keys reach agents as Podman secrets when
# `agentctl up`/`apply` runs, from the environment of that process or from files the user
# places (see lima/README.md); nothing this script writes holds one.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_NAME=provision
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

ROLE=""
NODE_USER=""
SOURCE=/mnt/agentctl-swarm
SERVER_URL=""
IMAGES=yes
UNENFORCED="${AGENTCTL_ALLOW_UNENFORCED_LIMITS:-}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        server | client) ROLE="$1" ;;
        --user) NODE_USER="${2:-}"; shift ;;
        --source) SOURCE="${2:-}"; shift ;;
        --server-url) SERVER_URL="${2:-}"; shift ;;
        --images) IMAGES="${2:-}"; shift ;;
        --allow-unenforced-limits) UNENFORCED="${2:-}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "node.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$ROLE" ] || { echo "node.sh: say server or client (see --help)" >&2; exit 2; }
[ -n "$NODE_USER" ] || { echo "node.sh: --user NAME is required (see --help)" >&2; exit 2; }
case "$IMAGES" in
    yes | true | 1) IMAGES=yes ;;
    no | false | 0) IMAGES=no ;;
    *) echo "node.sh: --images takes yes or no, not '$IMAGES'" >&2; exit 2 ;;
esac
# Without the flag (or its variable), keep what this node has.
if [ -z "$UNENFORCED" ] && [ -r /etc/agentctl/node.env ]; then
    UNENFORCED="$(sed -n 's/^AGENTCTL_ALLOW_UNENFORCED_LIMITS=//p' /etc/agentctl/node.env | tail -n 1)"
fi
case "${UNENFORCED:-no}" in
    yes | true | 1) UNENFORCED=1 ;;
    no | false | 0) UNENFORCED=0 ;;
    *) echo "node.sh: --allow-unenforced-limits takes yes or no, not '$UNENFORCED'" >&2; exit 2 ;;
esac
PORT="${AGENTCTL_NODE_PORT:-6667}"
case "$PORT" in '' | *[!0-9]*) die "AGENTCTL_NODE_PORT='$PORT' is not a port number" ;; esac
if [ "$ROLE" = client ]; then
    # Without --server-url, keep the one this node has (a re-run by hand keeps settings).
    if [ -z "$SERVER_URL" ] && [ -r /etc/agentctl/node.env ]; then
        SERVER_URL="$(sed -n 's/^AGENTCTL_SERVER_URL=//p' /etc/agentctl/node.env | tail -n 1)"
    fi
    SERVER_URL="${SERVER_URL:-ws://host.lima.internal:6667}"
    case "$SERVER_URL" in
        *[[:space:]\"\'\\]*) die "--server-url '$SERVER_URL' has spaces, quotes or backslashes" ;;
        ws://?* | wss://?*) ;;
        *) die "--server-url '$SERVER_URL' must be a ws:// or wss:// URL" ;;
    esac
fi

[ "$(id -u)" -eq 0 ] || die "run as root (Lima runs this as a 'system' provisioning script)"
if ! command -v systemctl >/dev/null || [ ! -d /run/systemd/system ]; then
    die "systemd is not running: the node's services are systemd user units"
fi
getent passwd "$NODE_USER" >/dev/null || die "user '$NODE_USER' does not exist"
USER_UID="$(id -u "$NODE_USER")"
USER_GID="$(id -g "$NODE_USER")"
USER_HOME="$(getent passwd "$NODE_USER" | cut -d: -f6)"
RUNTIME_DIR="/run/user/$USER_UID"

PREFIX=/opt/agentctl-swarm
VENV="$PREFIX/venv"
SRC_COPY="$PREFIX/src"
STAMP="$VENV/.agentctl-node-install"
NODE_ENV=/etc/agentctl/node.env
UNIT_DIR=/etc/systemd/user

CHANGES=0
changed() { CHANGES=$((CHANGES + 1)); say "$1: $2"; }
unchanged() { say "$1: unchanged ($2)"; }

# Run a command as the node user, with the environment a login would give it.
as_user() {
    (cd "$USER_HOME" && runuser -u "$NODE_USER" -- env HOME="$USER_HOME" USER="$NODE_USER" \
        LOGNAME="$NODE_USER" XDG_RUNTIME_DIR="$RUNTIME_DIR" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=$RUNTIME_DIR/bus" "$@")
}
user_systemctl() { as_user systemctl --user "$@"; }

# install_file, write_file, cgroup_mode, snapshot_files, subids_ensure, delegate_ensure:
# lib/common.sh (scripts/setup.sh does the same for a non-root user on a host).

# --- 1. the source clone --------------------------------------------------------------
wait_for_source() {
    local waited=0 limit="${AGENTCTL_NODE_SOURCE_WAIT:-300}"
    until [ -f "$SOURCE/pyproject.toml" ] && [ -d "$SOURCE/agentctl_swarm" ]; do
        if [ "$waited" -ge "$limit" ]; then
            die "no agentctl-swarm clone at $SOURCE after ${limit}s. Start the VM with the" \
                "clone's path: limactl start --set '.param.source=\"/path/to/agentctl-swarm\"'" \
                "lima/$ROLE.yaml (see lima/README.md)"
        fi
        if [ $((waited % 30)) -eq 0 ]; then
            say "waiting for the source clone at $SOURCE (mounted by Lima)"
        fi
        sleep 2
        waited=$((waited + 2))
    done
}

# --- 2. packages --------------------------------------------------------------------
packages() {
    local -a pkgs=(python3 python3-venv git ca-certificates dbus-user-session)
    if [ "$ROLE" = client ]; then
        pkgs+=(podman crun runc uidmap slirp4netns passt fuse-overlayfs)
        if [ "$IMAGES" = yes ]; then
            pkgs+=(debootstrap)
        fi
    fi
    apt_ensure "${pkgs[@]}"
    if [ "${#APT_INSTALLED[@]}" -gt 0 ]; then
        changed packages "installed ${APT_INSTALLED[*]}"
    fi
}

# --- 3. the user: subordinate ids, cgroup delegation, a running user manager ----------
subids() {
    subids_ensure "$NODE_USER"
    if [ -n "$SUBIDS_ADDED" ]; then
        changed subids "gave $NODE_USER the ids$SUBIDS_ADDED for rootless Podman"
    fi
}

delegate() {
    # Rootless Podman puts memory/cpu/pids limits on containers only where the user's
    # systemd manager was delegated those controllers (cgroup v2); without them the limits
    # are silently dropped (and `agentctl apply` refuses fleets with limits).
    delegate_ensure
    if [ "$CHANGED" -eq 1 ]; then
        changed "$DELEGATE_DROPIN" "delegates cpu cpuset io memory pids to user managers"
        DELEGATION_CHANGED=1
    else
        unchanged "$DELEGATE_DROPIN" "controllers delegated"
    fi
}

journal_access() {
    # `journalctl --user-unit agentctl-...` as the user: a user with a uid below 1000 (as
    # Lima makes for macOS users) logs into the system journal, readable by this group.
    if getent group systemd-journal >/dev/null \
        && ! id -nG "$NODE_USER" | tr ' ' '\n' | grep -qx systemd-journal; then
        usermod -aG systemd-journal "$NODE_USER"
        changed journal "$NODE_USER may read the services' logs (group systemd-journal)"
    fi
}

user_manager() {
    if [ ! -e "/var/lib/systemd/linger/$NODE_USER" ]; then
        loginctl enable-linger "$NODE_USER"
        changed linger "$NODE_USER's services run without a login session"
    fi
    systemctl start "user@$USER_UID.service"
    local i
    for i in $(seq 1 50); do
        [ -S "$RUNTIME_DIR/bus" ] && break
        [ "$i" -eq 50 ] && die "$NODE_USER's user bus ($RUNTIME_DIR/bus) did not appear; is dbus-user-session installed?"
        sleep 0.2
    done
}

check_controllers() {
    # Without the controllers `agentctl apply` refuses fleets with limits; with the
    # opt-out they run unlimited. Either way say it here, loudly.
    local mode file want accepted absent=""
    local -a report=(die)
    accepted=" Or accept running agents without limits: --allow-unenforced-limits yes."
    if [ "$UNENFORCED" -eq 1 ]; then
        report=(warn)
        accepted=" Agents on this node run WITHOUT limits (--allow-unenforced-limits yes)."
    fi
    mode="$(cgroup_mode)"
    if [ "$mode" != v2 ]; then
        if systemd-detect-virt --container -q; then
            "${report[@]}" "cgroups $mode in this container: rootless Podman cannot apply" \
                "memory/cpu/pids limits here (a Lima VM boots with cgroup v2).$accepted"
        else
            "${report[@]}" "cgroups $mode: rootless Podman cannot apply memory/cpu/pids limits." \
                "Boot with cgroup v2 (kernel argument systemd.unified_cgroup_hierarchy=1) and" \
                "run this again.$accepted"
        fi
        return 0
    fi
    file="$(user_controllers_file "$USER_UID")"
    if [ "${DELEGATION_CHANGED:-0}" -eq 1 ] && [ -r "$file" ]; then
        for want in cpu memory pids; do
            grep -qw "$want" "$file" || absent="$absent $want"
        done
        if [ -n "$absent" ]; then
            # The manager started before the drop-in existed (first provisioning only).
            systemctl restart "user@$USER_UID.service"
            changed "user@$USER_UID.service" "restarted to take the delegated controllers"
            user_manager
        fi
    fi
    absent=""
    for want in cpu memory pids; do
        grep -qsw "$want" "$file" || absent="$absent $want"
    done
    if [ -n "$absent" ]; then
        "${report[@]}" "cgroup controllers not delegated to $NODE_USER:$absent (see $file).$accepted"
        return 0
    fi
    say "cgroups: v2, $NODE_USER's manager has $(tr '\n' ' ' <"$file")"
}

# --- 4. agentctl ----------------------------------------------------------------------
# What goes into the install: snapshot_files (lib/common.sh) of the clone.

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print("agentctl-swarm", m.version("agentctl-swarm"))' \
        2>/dev/null || echo "agentctl-swarm (version unknown)"
}

install_agentctl() {
    local want have tmp
    venv_ensure "$VENV" python3
    if [ "$VENV_CREATED" -eq 1 ]; then
        changed "$VENV" "created"
    fi
    want="$(cd "$SOURCE" && { snapshot_files "$SOURCE" | tr '\n' '\0' | xargs -0 sha256sum; \
        "$VENV/bin/python" -V 2>&1; } | sha256sum | cut -d' ' -f1)"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    if [ "$want" = "$have" ] && [ -d "$SRC_COPY" ]; then
        unchanged agentctl "$(installed_version) from $SOURCE"
    else
        say "installing agentctl from $SOURCE into $VENV"
        tmp="$(mktemp -d "$PREFIX/.src.XXXXXX")"
        (cd "$SOURCE" && snapshot_files "$SOURCE" | tar -cf - --no-recursion -T -) \
            | tar -C "$tmp" --no-same-owner -xf -
        chmod 755 "$tmp"
        rm -rf "$SRC_COPY.old"
        [ -d "$SRC_COPY" ] && mv "$SRC_COPY" "$SRC_COPY.old"
        mv "$tmp" "$SRC_COPY"
        rm -rf "$SRC_COPY.old"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SRC_COPY" </dev/null
        printf '%s\n' "$want" >"$STAMP"
        changed agentctl "$(installed_version) installed from $SOURCE"
        AGENTCTL_CHANGED=1
    fi
    local bin
    for bin in agentctl agentctl-agent; do
        if [ "$(readlink "/usr/local/bin/$bin" 2>/dev/null)" != "$VENV/bin/$bin" ]; then
            ln -sfn "$VENV/bin/$bin" "/usr/local/bin/$bin"
            changed "/usr/local/bin/$bin" "-> $VENV/bin/$bin"
        fi
    done
}

# --- 5. node settings and units -------------------------------------------------------
node_env() {
    local body="# Written by agentctl-swarm's lima/provision/node.sh at every boot: where things
# are, for the agentctl user units. Never put a credential here (see lima/README.md).
AGENTCTL_NODE_ROLE=$ROLE
"
    if [ "$ROLE" = server ]; then
        body+="AGENTCTL_NODE_PORT=$PORT
"
    else
        body+="AGENTCTL_SERVER_URL=$SERVER_URL
"
        if [ "$UNENFORCED" -eq 1 ]; then
            body+="# chosen with --allow-unenforced-limits: agents may run without limits here
AGENTCTL_ALLOW_UNENFORCED_LIMITS=1
"
        fi
    fi
    write_file "$NODE_ENV" 644 "$body"
    if [ "$CHANGED" -eq 1 ]; then
        changed "$NODE_ENV" "$(grep -v '^#' "$NODE_ENV" | tr '\n' ' ')"
        SETTINGS_CHANGED=1
    else
        unchanged "$NODE_ENV" "$(grep -v '^#' "$NODE_ENV" | tr '\n' ' ')"
    fi
}

UNIT=""
units() {
    UNIT=agentctl-up.service
    [ "$ROLE" = server ] && UNIT=agentctl-server.service
    install_file "$HERE/units/$UNIT" "$UNIT_DIR/$UNIT" 644
    if [ "$CHANGED" -eq 1 ]; then
        changed "$UNIT_DIR/$UNIT" "installed"
        SETTINGS_CHANGED=1
        user_systemctl daemon-reload
    fi
    # where the user puts the fleet file and the env file (see the unit)
    if [ ! -d "$USER_HOME/.config" ]; then
        install -d -m 700 -o "$USER_UID" -g "$USER_GID" "$USER_HOME/.config"
    fi
    if [ ! -d "$USER_HOME/.config/agentctl" ]; then
        install -d -m 700 -o "$USER_UID" -g "$USER_GID" "$USER_HOME/.config/agentctl"
        changed "$USER_HOME/.config/agentctl" "created (for fleet.yaml and env)"
    fi
    if [ "$(user_systemctl is-enabled "$UNIT" 2>/dev/null || true)" != enabled ]; then
        user_systemctl enable "$UNIT" 2>&1 | sed "s/^/$LOG_NAME: /"
        changed "$UNIT" "enabled for $NODE_USER"
    fi
}

# --- 6. Podman for the user (client) --------------------------------------------------
podman_user() {
    if [ "$(user_systemctl is-enabled podman.socket 2>/dev/null || true)" != enabled ]; then
        user_systemctl enable podman.socket 2>&1 | sed "s/^/$LOG_NAME: /"
        changed podman.socket "enabled for $NODE_USER"
    fi
    user_systemctl start podman.socket
    # The runtime and rlimit checks and fixes the host set-up uses (scripts/setup.sh).
    say "agentctl doctor --fix (as $NODE_USER)"
    local report
    if ! report="$(as_user env "AGENTCTL_ALLOW_UNENFORCED_LIMITS=$UNENFORCED" \
        /usr/local/bin/agentctl doctor --fix </dev/null 2>&1)"; then
        printf '%s\n' "$report" | sed "s/^/$LOG_NAME:   /"
        die "\`agentctl doctor --fix\` found problems it could not fix for $NODE_USER (above;" \
            "where limits cannot be enforced and you accept that: --allow-unenforced-limits yes)"
    fi
    printf '%s\n' "$report" | sed "s/^/$LOG_NAME:   /"
    if ! grep -q '^changed: nothing' <<<"$report"; then
        # The API service reads containers.conf when it starts: restart it if it runs.
        user_systemctl try-restart podman.service
        changed "podman (rootless)" "doctor fixed the configuration; restarted $NODE_USER's API service"
    fi
}

images() {
    if [ "$IMAGES" = no ]; then
        say "images: skipped (--images no); build them later with: sudo $0 client --user $NODE_USER --images yes"
        return 0
    fi
    # agentctl build makes the offline base with debootstrap, which needs root, so the
    # images are built in root's store and copied into the user's where they differ
    # (`--for-user`: the same step scripts/setup.sh uses for a non-root user).
    local report
    say "agentctl doctor --fix and agentctl build --for-user $NODE_USER (as root, in $SRC_COPY)"
    if ! report="$(cd "$SRC_COPY" && { /usr/local/bin/agentctl doctor --fix </dev/null \
        && /usr/local/bin/agentctl build --for-user "$NODE_USER" </dev/null; } 2>&1)"; then
        printf '%s\n' "$report" | sed "s/^/$LOG_NAME:   /"
        die "building the images or copying them to $NODE_USER failed (above)"
    fi
    printf '%s\n' "$report" | sed "s/^/$LOG_NAME:   /"
    if grep -q "^copied .* into $NODE_USER's image store" <<<"$report"; then
        changed images "copied into $NODE_USER's image store"
    else
        unchanged images "in $NODE_USER's image store"
    fi
}

# --- 7. start -----------------------------------------------------------------------
start_unit() {
    local state
    state="$(user_systemctl is-active "$UNIT" 2>/dev/null || true)"
    if [ "$state" = failed ]; then
        user_systemctl reset-failed "$UNIT"
    fi
    if [ "$state" = active ] && [ "${SETTINGS_CHANGED:-0}${AGENTCTL_CHANGED:-0}" != 00 ]; then
        user_systemctl restart "$UNIT"
        changed "$UNIT" "restarted (new settings or agentctl)"
    elif [ "$state" != active ]; then
        user_systemctl start "$UNIT"
        state="$(user_systemctl is-active "$UNIT" 2>/dev/null || true)"
        if [ "$state" = active ]; then
            changed "$UNIT" "started"
        else
            say "$UNIT: not running ($state)"
        fi
    else
        unchanged "$UNIT" "running"
    fi
}

check_server() {
    local url="http://127.0.0.1:$PORT/health"
    if python3 - "$url" <<'EOF'; then
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            sys.exit(0 if r.status == 200 else 1)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
EOF
        say "agentctl-server answers GET $url"
    else
        journalctl "_SYSTEMD_USER_UNIT=$UNIT" "_UID=$USER_UID" -n 20 --no-pager 2>&1 | sed "s/^/$LOG_NAME:   /" || true
        die "agentctl-server does not answer GET $url (its log above)"
    fi
}

say "provisioning a $ROLE node for $NODE_USER (uid $USER_UID, home $USER_HOME)"
install -d -m 755 "$PREFIX" /etc/agentctl
wait_for_source
packages
if [ "$ROLE" = client ]; then
    subids
    delegate
fi
journal_access
user_manager
if [ "$ROLE" = client ]; then
    check_controllers
fi
install_agentctl
node_env
units
if [ "$ROLE" = client ]; then
    podman_user
    images
    if [ -f "$USER_HOME/.config/agentctl/fleet.yaml" ]; then
        start_unit
    else
        say "$UNIT: waits for a fleet file at $USER_HOME/.config/agentctl/fleet.yaml (see lima/README.md)"
    fi
else
    start_unit
    check_server
fi
say "done: $CHANGES change(s)"
