"""Host setup for Podman (`agentctl doctor`): observe, diagnose, fix.

Split in three so the decisions can be tested without a machine to break:

* ``observe()`` gathers facts (is podman there, which OCI runtime, cgroup layout, rlimits,
  containers.conf values, is the API socket answering, optionally a test container start);
* ``diagnose(obs)`` is pure: it turns those facts into findings and the actions that fix
  them. A healthy host yields no actions, so ``doctor`` changes nothing there;
* ``apply(action)`` performs one action (apt-get install, write the containers.conf drop-in,
  start the API service).

The two problems this automates come from real machines: crun refuses to start containers
on a cgroup v1/v2 *hybrid* host ("cgroups in hybrid mode"), and rootful Podman asks every
container for nofile/nproc = 1048576, which fails ("error setting rlimit type 7") when the
host's hard limits are lower and the engine lacks CAP_SYS_RESOURCE (nested containers, CI
sandboxes). Both are fixed in one drop-in file that this module owns.

For rootless Podman (a non-root user) it also checks what rootless needs and what silently
degrades without it: subordinate ids, the user's runtime directory, the storage driver
(Debian 12's Podman picks vfs for users without a storage.conf: a full copy of the image
per container), the cgroup controllers that memory/CPU/pids limits need (they are dropped
without a word otherwise; see podman/engine.py), slirp4netns and /dev/net/tun for bridge
networking. Problems fail the doctor; warnings (things only some fleets need, or an
explicit opt-out) are printed but do not.

For both it checks that `/` is a shared mount (systemd makes it one at boot; containers
and CI sandboxes without systemd do not). Where it is private, a rootful container's
mounts copied into the mount namespace of a `podman exec` conmon (which lingers for five
minutes) are never unmounted there, and removing the container fails with "device or
resource busy"; as root the doctor makes it shared, for a user it says how.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentctl_swarm.core import proc
from agentctl_swarm.core.backoff import BackoffCurve
from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.core.retry import retrying
from agentctl_swarm.podman import engine as eng
from agentctl_swarm.podman.engine import EngineFacts

DROPIN_NAME = "50-agentctl.conf"
# What rootful Podman requests for nofile and nproc when containers.conf sets nothing.
PODMAN_DEFAULT_RLIMIT = 1_048_576
# nproc counts every process of the agent uid on the host, across all containers; the
# per-container limit is the pids cgroup, so this only needs to be generous, not exact.
NPROC_CAP = 4096
CAP_SYS_RESOURCE = 24
RLIMIT_NAMES = ("nofile", "nproc")
# Rootful Podman's --userns=auto takes per-container uid/gid ranges from the subordinate
# ids of the user "containers"; the upper half of the 32-bit id space is what Podman's
# documentation suggests and no login user has.
USERNS_SUBID_LINE = "containers:2147483647:2147483648"
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
TUN_DEVICE = Path("/dev/net/tun")
# Rootless overlay without fuse-overlayfs needs this kernel (containers/storage's own rule).
NATIVE_OVERLAY_KERNEL = (5, 13)

CgroupMode = Literal["v2", "hybrid", "v1", "unknown"]
Severity = Literal["ok", "warning", "problem"]


# ---------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of starting a throw-away container (`podman run --rm IMAGE true`)."""

    image: str
    ok: bool
    output: str = ""


@dataclass(frozen=True)
class Observation:
    """Facts about the host; everything ``diagnose`` needs and nothing it must fetch."""

    is_root: bool
    podman_path: str | None
    podman_version: str | None = None
    podman_error: str | None = None  # `podman info` failed: its message
    apt_available: bool = False
    cgroup_mode: CgroupMode = "unknown"
    runtime: str | None = None  # the OCI runtime podman uses now
    runtimes_installed: tuple[str, ...] = ()
    rlimit_hard: Mapping[str, int] = field(default_factory=dict)  # nofile/nproc hard
    can_raise_rlimits: bool = False  # CAP_SYS_RESOURCE in the effective set
    configured_ulimits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    dropin_path: Path = Path("/etc/containers/containers.conf.d") / DROPIN_NAME
    dropin_content: str | None = None
    conf_override: str | None = None  # $CONTAINERS_CONF: Podman then reads only that file
    socket_url: str = "unix:///run/podman/podman.sock"
    socket_ok: bool = False
    systemd: bool = False
    probe: ProbeResult | None = None
    subid_files: Mapping[str, str] = field(default_factory=dict)  # /etc/subuid -> its text
    # what the engine itself reports (`podman info`), None when it could not be asked
    engine: EngineFacts | None = None
    user: str = ""
    uid: int = 0
    runtime_dir_ok: bool = True  # rootless: $XDG_RUNTIME_DIR or /run/user/UID is there
    root_propagation: str = "shared"  # of `/`: shared, slave, private, unbindable
    tun_usable: bool = True  # /dev/net/tun opens read-write (slirp4netns needs it)
    kernel: tuple[int, int] = (0, 0)
    fuse_overlayfs: str | None = None
    storage_conf: Path = Path("/etc/containers/storage.conf")  # the one we would write
    storage_conf_exists: bool = False
    storage_override: str | None = None  # $CONTAINERS_STORAGE_CONF
    store_empty: bool = False  # no images, containers, volumes or secrets (vfs case only)


@dataclass(frozen=True)
class Finding:
    """One thing doctor checked: fine or a problem, with the fix when there is no action."""

    check: str
    severity: Severity
    message: str
    hint: str = ""


@dataclass(frozen=True)
class InstallPackages:
    """apt-get install these packages."""

    packages: tuple[str, ...]

    def describe(self) -> str:
        return "apt-get install -y " + " ".join(self.packages)


@dataclass(frozen=True)
class WriteDropin:
    """Write the containers.conf drop-in that carries the runtime and ulimit fixes."""

    path: Path
    content: str

    def describe(self) -> str:
        return f"write {self.path}"


@dataclass(frozen=True)
class AddSubids:
    """Give the `containers` user a subordinate id range, which `--userns=auto` takes
    its per-container ranges from (agents then run as uids no host user has)."""

    paths: tuple[Path, ...]
    line: str = USERNS_SUBID_LINE

    def describe(self) -> str:
        return f"append '{self.line}' to {', '.join(str(p) for p in self.paths)}"


@dataclass(frozen=True)
class StartApiService:
    """Start the Podman API service on ``url`` (systemd socket unit or a detached process)."""

    url: str
    method: Literal["systemd", "process"]
    rootless: bool = False

    def describe(self) -> str:
        if self.method == "systemd":
            user = "--user " if self.rootless else ""
            return f"systemctl {user}enable --now podman.socket"
        return f"setsid podman system service --time=0 {self.url}"


@dataclass(frozen=True)
class UseOverlayStorage:
    """Move an *empty* rootless store from vfs to overlay: `podman system reset` (it
    deletes nothing, the store is empty), then write the user's storage.conf with the
    first candidate (native overlay, then fuse-overlayfs) that Podman can really use.

    When none works (a file system overlay cannot stack on, such as a container's own
    overlay root without /dev/fuse), the file is written saying vfs and why, so the
    doctor reports it and does not try again on every run."""

    path: Path
    candidates: tuple[tuple[str, str], ...]  # (label, storage.conf text)

    def describe(self) -> str:
        labels = " or ".join(label for label, _ in self.candidates)
        return (
            f"podman system reset --force (the store is empty); overlay ({labels}) in {self.path}"
        )


@dataclass(frozen=True)
class ShareRootMount:
    """`mount --make-rshared /`: what systemd does at boot, and what hosts without it
    (containers, CI sandboxes) lack. Lost at reboot: doctor finds it again then."""

    def describe(self) -> str:
        return "mount --make-rshared /"


Action = (
    InstallPackages | WriteDropin | AddSubids | UseOverlayStorage | ShareRootMount | StartApiService
)


@dataclass(frozen=True)
class Diagnosis:
    """What doctor found and what it would do about it."""

    findings: tuple[Finding, ...]
    actions: tuple[Action, ...]

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "problem")

    @property
    def healthy(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------
# Pure helpers


def parse_cgroup_mode(mounts: str) -> CgroupMode:
    """Classify the cgroup layout from /proc/self/mounts text."""
    root_type = None
    unified = False
    v1 = False
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        target, fstype = parts[1], parts[2]
        if target == "/sys/fs/cgroup":
            root_type = fstype
        elif fstype == "cgroup2" and target.startswith("/sys/fs/cgroup/"):
            unified = True
        elif fstype == "cgroup":
            v1 = True
    if root_type == "cgroup2":
        return "v2"
    if v1 and unified:
        return "hybrid"
    if v1:
        return "v1"
    return "unknown"


def parse_ulimits(entries: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Parse containers.conf ``default_ulimits`` entries ("nofile=1024:2048")."""
    out: dict[str, tuple[int, int]] = {}
    for entry in entries:
        name, _, value = str(entry).partition("=")
        soft, _, hard = value.partition(":")
        try:
            soft_i = int(soft)
            hard_i = int(hard) if hard else soft_i
        except ValueError:
            continue
        out[name.strip()] = (soft_i, hard_i)
    return out


def read_conf_values(texts: Iterable[str]) -> tuple[str | None, dict[str, tuple[int, int]]]:
    """Merge containers.conf files (in precedence order) into (runtime, ulimits).

    Later files override earlier ones key by key, as Podman does.
    """
    runtime: str | None = None
    ulimits: dict[str, tuple[int, int]] = {}
    for text in texts:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        engine = data.get("engine", {})
        if isinstance(engine, dict) and isinstance(engine.get("runtime"), str):
            runtime = engine["runtime"]
        containers = data.get("containers", {})
        if isinstance(containers, dict) and isinstance(containers.get("default_ulimits"), list):
            ulimits = parse_ulimits(containers["default_ulimits"])
    return runtime, ulimits


def render_dropin(runtime: str | None, ulimits: Mapping[str, tuple[int, int]]) -> str:
    """The drop-in file text for these settings (stable, so rewriting it is a no-op)."""
    lines = [
        "# Written by `agentctl doctor`; it rewrites this file only when a check fails.",
        "# Delete it and run `agentctl doctor --fix` to regenerate it.",
    ]
    if ulimits:
        items = ", ".join(f'"{k}={s}:{h}"' for k, (s, h) in sorted(ulimits.items()))
        lines += ["[containers]", f"default_ulimits = [{items}]"]
    if runtime:
        lines += ["[engine]", f'runtime = "{runtime}"']
    return "\n".join(lines) + "\n"


def wanted_ulimits(rlimit_hard: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Ulimits that fit under the host's hard limits (nproc also capped, see NPROC_CAP)."""
    out: dict[str, tuple[int, int]] = {}
    for name in RLIMIT_NAMES:
        hard = min(rlimit_hard.get(name, PODMAN_DEFAULT_RLIMIT), PODMAN_DEFAULT_RLIMIT)
        if name == "nproc":
            hard = min(hard, NPROC_CAP)
        out[name] = (hard, hard)
    return out


def classify_probe(output: str) -> str:
    """Name the known failure in a container start's output: rlimit, runtime or other."""
    text = output.lower()
    if "rlimit" in text:
        return "rlimit"
    if "hybrid mode" in text or ("crun" in text and "cgroup" in text):
        return "runtime"
    return "other"


def parse_root_propagation(mountinfo: str) -> str:
    """Propagation of the mount at `/` from /proc/self/mountinfo text (the last one wins:
    it is the one on top). shared, slave, unbindable or private."""
    found = "private"
    for line in mountinfo.splitlines():
        head, _, _ = line.partition(" - ")
        parts = head.split()
        if len(parts) < 6 or parts[4] != "/":
            continue
        optional = parts[6:]
        if any(f.startswith("shared:") for f in optional):
            found = "shared"
        elif any(f.startswith("master:") for f in optional):
            found = "slave"
        elif "unbindable" in optional:
            found = "unbindable"
        else:
            found = "private"
    return found


def parse_kernel(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as 6.1.0-18-amd64; (0, 0) if odd."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


_STORAGE_HEAD = [
    "# Written by `agentctl doctor --fix`: overlay instead of vfs (which copies the",
    "# whole image for every container). Delete it and run the doctor again to redo.",
    "[storage]",
]


def storage_candidates(
    kernel: tuple[int, int], fuse_overlayfs: str | None
) -> tuple[tuple[str, str], ...]:
    """storage.conf texts selecting overlay, best first: native (Linux 5.13+), then
    through fuse-overlayfs (when installed)."""
    out = []
    if kernel >= NATIVE_OVERLAY_KERNEL:
        out.append(("native", "\n".join([*_STORAGE_HEAD, 'driver = "overlay"']) + "\n"))
    if fuse_overlayfs:
        lines = [*_STORAGE_HEAD, 'driver = "overlay"', "[storage.options.overlay]",
                 f'mount_program = "{fuse_overlayfs}"']  # fmt: skip
        out.append(("fuse-overlayfs", "\n".join(lines) + "\n"))
    return tuple(out)


def render_vfs_conf(reason: str) -> str:
    """The storage.conf that records why this store stays on vfs."""
    why = " ".join(reason.split())[:300]
    return (
        "# Written by `agentctl doctor --fix`: overlay does not work for this store, so it\n"
        f"# stays on vfs. Podman said: {why}\n"
        "# Delete this file and run `agentctl doctor --fix` to try again.\n"
        '[storage]\ndriver = "vfs"\n'
    )


def _socket_path(url: str) -> str | None:
    return url[len("unix://") :] if url.startswith("unix://") else None


# ---------------------------------------------------------------------------------------
# Diagnosis (pure)


def _rlimit_problems(obs: Observation) -> list[str]:
    """Which rlimits would make container starts fail, as readable reasons."""
    if not obs.is_root or obs.can_raise_rlimits:
        return []  # rootless Podman clamps to the caller's limits; CAP_SYS_RESOURCE can raise
    reasons = []
    for name in RLIMIT_NAMES:
        hard = obs.rlimit_hard.get(name)
        if hard is None or hard >= PODMAN_DEFAULT_RLIMIT:
            continue
        conf = obs.configured_ulimits.get(name)
        if conf is None:
            reasons.append(
                f"{name}: host hard limit {hard} < {PODMAN_DEFAULT_RLIMIT} that Podman requests"
            )
        elif conf[1] > hard or conf[0] > conf[1]:
            reasons.append(f"{name}: configured {conf[0]}:{conf[1]} exceeds host hard limit {hard}")
    return reasons


def diagnose(
    obs: Observation, *, allow_install: bool = True, allow_unenforced: bool = False
) -> Diagnosis:
    """Turn observations into findings and the actions that fix them (pure).

    Actions come in the order they must run: packages, then the drop-in (the API service
    reads containers.conf only when it starts), then the storage, then the service.
    Problems that need a person (not root, apt missing, unknown failures) become findings
    with a hint. ``allow_unenforced`` (AGENTCTL_ALLOW_UNENFORCED_LIMITS) turns limits the
    engine cannot apply from a problem into a warning.
    """
    findings: list[Finding] = []
    actions: list[Action] = []
    packages: list[str] = []
    can_install = allow_install and obs.is_root and obs.apt_available

    def problem(check: str, message: str, hint: str = "") -> None:
        findings.append(Finding(check, "problem", message, hint))

    def ok(check: str, message: str) -> None:
        findings.append(Finding(check, "ok", message))

    def warning(check: str, message: str, hint: str = "") -> None:
        findings.append(Finding(check, "warning", message, hint))

    # podman itself
    if obs.podman_path is None:
        if can_install:
            packages += ["podman", "runc"]
            problem("podman", "podman is not installed", "installing it with apt-get")
        else:
            why = "--no-install was given" if not allow_install else "needs root and apt-get"
            problem(
                "podman",
                f"podman is not installed ({why})",
                "install it: sudo apt-get install -y podman runc",
            )
    elif obs.podman_error:
        problem("podman", f"`podman info` fails: {obs.podman_error}", "see the message above")
    else:
        ok("podman", f"podman {obs.podman_version or '?'} at {obs.podman_path}")

    # OCI runtime
    runtime_fix: str | None = None
    probe_kind = classify_probe(obs.probe.output) if obs.probe and not obs.probe.ok else None
    crun_broken = obs.runtime == "crun" and (obs.cgroup_mode == "hybrid" or probe_kind == "runtime")
    if obs.podman_path and not obs.podman_error:
        if crun_broken:
            runtime_fix = "runc"
            if "runc" not in obs.runtimes_installed:
                if can_install:
                    packages.append("runc")
                else:
                    problem("runtime", "runc is needed but not installed", "apt-get install runc")
            problem(
                "runtime",
                f"crun cannot start containers on this {obs.cgroup_mode} cgroup host",
                "switching the engine runtime to runc",
            )
        else:
            ok("runtime", f"OCI runtime {obs.runtime or '?'} (cgroups {obs.cgroup_mode})")

    # rlimits
    reasons = _rlimit_problems(obs)
    if not reasons and probe_kind == "rlimit":
        reasons = ["a test container failed to set rlimits"]
    ulimit_fix: dict[str, tuple[int, int]] = {}
    if reasons:
        ulimit_fix = wanted_ulimits(obs.rlimit_hard)
        shown = ", ".join(f"{k}={s}:{h}" for k, (s, h) in sorted(ulimit_fix.items()))
        problem("rlimits", "; ".join(reasons), f"capping default_ulimits to {shown}")
    else:
        ok("rlimits", "container rlimits fit the host's limits")

    # the drop-in carrying both fixes (keeping what it already says)
    if runtime_fix or ulimit_fix:
        old_runtime, old_ulimits = read_conf_values([obs.dropin_content or ""])
        new_ulimits = {**old_ulimits, **ulimit_fix}
        content = render_dropin(runtime_fix or old_runtime, new_ulimits)
        if obs.conf_override:
            problem(
                "config",
                f"CONTAINERS_CONF={obs.conf_override} makes Podman ignore drop-ins",
                f"add these settings to {obs.conf_override} yourself:\n"
                + render_dropin(runtime_fix, ulimit_fix),
            )
        elif content != obs.dropin_content:
            if obs.is_root or not str(obs.dropin_path).startswith("/etc/"):
                actions.append(WriteDropin(obs.dropin_path, content))
            else:
                problem("config", f"{obs.dropin_path} needs root to write", content)

    # user namespaces for agents (rootful only: rootless Podman is a user namespace)
    if obs.is_root and obs.subid_files:
        lacking = [
            Path(name)
            for name, text in sorted(obs.subid_files.items())
            if not any(line.split(":", 1)[0] == "containers" for line in text.splitlines())
        ]
        if lacking:
            problem(
                "userns",
                "no subordinate id range for `containers` in "
                + ", ".join(str(p) for p in lacking)
                + " (agents run in user namespaces, --userns=auto)",
                f"adding '{USERNS_SUBID_LINE}'",
            )
            actions.append(AddSubids(tuple(lacking)))
        else:
            ok("userns", "agents get their own user namespace ranges (--userns=auto)")

    # what the engine reports: storage, limits, and what rootless Podman needs
    facts = obs.engine
    if facts is not None and obs.podman_path and not obs.podman_error:
        storage = _storage_check(obs, facts)
        if isinstance(storage, Finding):
            findings.append(storage)
        else:
            warning("storage", VFS_MESSAGE, "switching this empty store to overlay")
            actions.append(storage)
        _limits_check(facts, allow_unenforced, ok, warning, problem)
        if facts.rootless:
            _rootless_checks(obs, facts, ok, warning, problem)
        if obs.root_propagation == "shared":
            ok("mounts", "`/` is a shared mount")
        elif obs.is_root:
            problem(
                "mounts",
                f"`/` is a {obs.root_propagation} mount, not shared: a container's mounts "
                "copied into other mount namespaces (conmon of `podman exec`) are never "
                "unmounted there, so removing it fails with 'device or resource busy'",
                "making it shared, as systemd does at boot",
            )
            actions.append(ShareRootMount())
        else:
            warning(
                "mounts",
                f"`/` is a {obs.root_propagation} mount, not shared: Podman warns on every "
                "command, host mounts made later do not reach rootless containers, and "
                "removing containers can fail with 'device or resource busy'",
                "sudo mount --make-rshared / (systemd does this at boot; on hosts without "
                "systemd, add it to the boot scripts)",
            )

    # the API socket
    path = _socket_path(obs.socket_url)
    if obs.socket_ok:
        ok("socket", f"API socket answers at {obs.socket_url}")
    elif (
        path is not None
        and not obs.is_root
        and not obs.runtime_dir_ok
        and (path.startswith(f"/run/user/{obs.uid}/"))
    ):
        problem(
            "socket",
            f"API socket {obs.socket_url} cannot be started: /run/user/{obs.uid} is missing",
            "create the runtime directory first (see `rundir`)",
        )
    elif path is None:
        problem(
            "socket",
            f"API endpoint {obs.socket_url} does not answer",
            "start the service there or set AGENTCTL_PODMAN_URL",
        )
    else:
        default_path = "/run/podman/podman.sock" if obs.is_root else None
        method: Literal["systemd", "process"] = "process"
        if obs.systemd and (path == default_path or path.endswith("/podman/podman.sock")):
            method = "systemd"
        problem("socket", f"API socket {obs.socket_url} is not listening", "starting it")
        actions.append(StartApiService(obs.socket_url, method, rootless=not obs.is_root))

    if packages:
        actions.insert(0, InstallPackages(tuple(dict.fromkeys(packages))))
    return Diagnosis(tuple(findings), tuple(actions))


Report = Callable[..., None]


VFS_MESSAGE = (
    "Podman uses the vfs storage driver: every container gets a full copy of its image "
    "(slow to start, gigabytes of disk per agent)"
)


def _storage_check(obs: Observation, facts: EngineFacts) -> Finding | UseOverlayStorage:
    """vfs works but costs a full image copy per container: a warning. An empty rootless
    store without a storage.conf is moved to overlay; otherwise the hint has the manual
    steps (they delete the store, so the doctor never takes them itself)."""
    driver = facts.graph_driver or "?"
    if driver != "vfs":
        return Finding("storage", "ok", f"storage driver {driver}")
    candidates = storage_candidates(obs.kernel, obs.fuse_overlayfs)
    if not facts.rootless:
        hint = 'set driver = "overlay" in /etc/containers/storage.conf'
        return Finding("storage", "warning", VFS_MESSAGE, hint)
    if not candidates:
        return Finding(
            "storage",
            "warning",
            VFS_MESSAGE,
            "install fuse-overlayfs (sudo apt-get install fuse-overlayfs; this kernel is "
            "too old for native rootless overlay), then run `agentctl doctor --fix` again",
        )
    if obs.storage_override or obs.storage_conf_exists or not obs.store_empty:
        where = obs.storage_override or str(obs.storage_conf)
        why = (
            f"CONTAINERS_STORAGE_CONF={obs.storage_override} is set"
            if obs.storage_override
            else f"{obs.storage_conf} exists (see what it says)"
            if obs.storage_conf_exists
            else "the store is not empty"
        )
        return Finding(
            "storage",
            "warning",
            VFS_MESSAGE,
            f"not changed automatically ({why}): put these lines into {where}:\n"
            f"{candidates[0][1]}then run `podman system reset` (it DELETES this user's "
            "containers, images and volumes), restart the API service and copy the images "
            f"again (sudo agentctl build --for-user {obs.user or '$USER'})",
        )
    return UseOverlayStorage(obs.storage_conf, candidates)


def _limits_check(
    facts: EngineFacts, allow_unenforced: bool, ok: Report, warning: Report, problem: Report
) -> None:
    missing = eng.unenforced(facts, eng.LIMIT_CONTROLLERS)
    if not missing:
        ok(
            "limits",
            "memory/CPU/pids limits are enforced (cgroups "
            f"{facts.cgroup_version or '?'}: cpu memory pids controllers)",
        )
        return
    reason = eng.limits_reason(facts, missing)
    if allow_unenforced:
        warning(
            "limits",
            f"{reason}: agents run WITHOUT limits ({eng.OPT_OUT_ENV}=1 is set)",
            eng.limits_fix(facts).rsplit(";", 1)[0],
        )
    else:
        problem(
            "limits",
            f"{reason}: `agentctl apply` refuses fleets with limits here",
            eng.limits_fix(facts),
        )


def _rootless_checks(
    obs: Observation, facts: EngineFacts, ok: Report, warning: Report, problem: Report
) -> None:
    """What only rootless Podman needs from the host."""
    who = obs.user or f"uid {obs.uid}"
    if facts.subordinate_ids:
        ok("userns", f"{who} has subordinate uid/gid ranges for containers")
    else:
        problem(
            "userns",
            f"{who} has no subordinate uid/gid range: images with users other than root "
            "(the agent runs as uid 1000) cannot be unpacked or run",
            f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who} "
            "(pick a range no one else has; scripts/setup.sh does this), then "
            "`podman system migrate`",
        )
    if not obs.runtime_dir_ok:
        problem(
            "rundir",
            f"no runtime directory for {who}: XDG_RUNTIME_DIR is unset and "
            f"/run/user/{obs.uid} does not exist (systemd-logind makes it at login)",
            f"sudo install -d -m 700 -o {who} -g {who} /run/user/{obs.uid} "
            "(scripts/setup.sh does this)",
        )
    reasons = []
    if not facts.slirp4netns:
        reasons.append("slirp4netns is not installed (sudo apt-get install slirp4netns)")
    if not obs.tun_usable:
        reasons.append(
            f"{TUN_DEVICE} cannot be opened (sudo chmod 0666 {TUN_DEVICE}: its usual mode, "
            "which udev sets at boot)"
        )
    if reasons:
        warning(
            "network",
            "fleets with `network: bridge` will fail: " + "; ".join(reasons),
            "needed only for `network: bridge`; `network: host` (the default) works",
        )
    else:
        ok("network", f"bridge networking can work (slirp4netns {facts.slirp4netns})")


# ---------------------------------------------------------------------------------------
# Observation (I/O)


def _which(name: str) -> str | None:
    """Find a command on PATH, also in sbin (non-login root shells often lack it)."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("PATH", "") and name in {"runc", "crun"}:
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"):
            if os.access(f"{d}/{name}", os.X_OK):
                return f"{d}/{name}"
    return None


def _conf_files(is_root: bool) -> list[Path]:
    """containers.conf files in the order Podman reads them (later wins)."""
    override = os.environ.get("CONTAINERS_CONF")
    if override:
        return [Path(override)]
    files = [Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf")]
    dirs = [
        Path("/usr/share/containers/containers.conf.d"),
        Path("/etc/containers/containers.conf.d"),
    ]
    if not is_root:
        cfg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "containers"
        files.append(cfg / "containers.conf")
        dirs.append(cfg / "containers.conf.d")
    for d in dirs:
        if d.is_dir():
            files += sorted(d.glob("*.conf"))
    return files


def dropin_path(is_root: bool) -> Path:
    """Where our drop-in lives: system-wide for root, the user's config dir otherwise."""
    if is_root:
        return Path("/etc/containers/containers.conf.d") / DROPIN_NAME
    cfg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return cfg / "containers" / "containers.conf.d" / DROPIN_NAME


def _hard_limits() -> dict[str, int]:
    import resource

    out = {}
    for name, res in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(res)[1]
        out[name] = PODMAN_DEFAULT_RLIMIT if hard == resource.RLIM_INFINITY else int(hard)
    return out


def _has_cap(cap: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    except OSError:
        pass
    return False


def ping_socket(url: str, timeout: float = 2.0) -> bool:
    """True when a Podman API answers ``GET /_ping`` with OK on this unix socket."""
    path = _socket_path(url)
    if path is None or not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/") and b" 200 " in data.split(b"\r\n", 1)[0]


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A short command whose exit code the caller reads (CommandFailed only on timeout)."""
    return proc.run(argv, timeout=timeout, check=False)


def _image_exists(podman: str, image: str) -> bool:
    return _run([podman, "image", "exists", image]).returncode == 0


def probe_container(podman: str, images: Iterable[str]) -> ProbeResult | None:
    """Start a throw-away container from the first local image found; None if none is."""
    for image in images:
        if not _image_exists(podman, image):
            continue
        try:
            r = _run(
                [podman, "run", "--rm", "--network", "host", "--pull=never", image, "true"],
                timeout=120,
            )
        except proc.CommandFailed as exc:
            return ProbeResult(image, False, str(exc))
        return ProbeResult(image, r.returncode == 0, (r.stderr or r.stdout).strip()[-2000:])
    return None


def observe(
    socket_url: str, *, probe_images: Iterable[str] = (), systemd: bool | None = None
) -> Observation:
    """Gather the facts ``diagnose`` needs. Runs `podman info` and, with images, a probe."""
    is_root = os.geteuid() == 0
    podman = shutil.which("podman")
    version = error = runtime = None
    facts: EngineFacts | None = None
    if podman:
        try:
            r = _run([podman, "info", "--format", "json"])
            if r.returncode == 0:
                facts = EngineFacts.from_info(json.loads(r.stdout))
                version, runtime = facts.version or None, facts.runtime or None
            else:
                error = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        except proc.CommandFailed as exc:
            error = str(exc)
        except (ValueError, TypeError) as exc:
            error = f"`podman info --format json` printed something unexpected ({exc})"
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        mounts = ""
    texts = []
    for f in _conf_files(is_root):
        with contextlib.suppress(OSError):
            texts.append(f.read_text())
    _, ulimits = read_conf_values(texts)
    dp = dropin_path(is_root)
    try:
        dropin = dp.read_text()
    except OSError:
        dropin = None
    probe = None
    if podman and not error:
        probe = probe_container(podman, probe_images)
    uid = os.getuid()
    storage_conf = _user_config_dir() / "containers" / "storage.conf"
    store_empty = False
    if podman and facts is not None and facts.rootless and facts.graph_driver == "vfs":
        store_empty = (
            facts.images == 0 and facts.containers == 0 and _store_has_nothing_else(podman)
        )
    return Observation(
        is_root=is_root,
        podman_path=podman,
        podman_version=version,
        podman_error=error,
        apt_available=shutil.which("apt-get") is not None,
        cgroup_mode=parse_cgroup_mode(mounts),
        runtime=runtime,
        runtimes_installed=tuple(r for r in ("runc", "crun") if _which(r)),
        rlimit_hard=_hard_limits(),
        can_raise_rlimits=_has_cap(CAP_SYS_RESOURCE),
        configured_ulimits=ulimits,
        dropin_path=dp,
        dropin_content=dropin,
        conf_override=os.environ.get("CONTAINERS_CONF") or None,
        socket_url=socket_url,
        socket_ok=ping_socket(socket_url),
        systemd=Path("/run/systemd/system").is_dir() if systemd is None else systemd,
        probe=probe,
        subid_files=_read_subids() if is_root else {},
        engine=facts,
        user=_user_name(uid),
        uid=uid,
        runtime_dir_ok=is_root or _runtime_dir_ok(uid),
        root_propagation=parse_root_propagation(_read("/proc/self/mountinfo")),
        tun_usable=_opens_rw(TUN_DEVICE),
        kernel=parse_kernel(os.uname().release),
        fuse_overlayfs=shutil.which("fuse-overlayfs"),
        storage_conf=storage_conf,
        storage_conf_exists=storage_conf.exists(),
        storage_override=os.environ.get("CONTAINERS_STORAGE_CONF") or None,
        store_empty=store_empty,
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _user_config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def _runtime_dir_ok(uid: int) -> bool:
    """Podman's rule: $XDG_RUNTIME_DIR, else /run/user/UID when it exists and is ours."""
    given = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(given or f"/run/user/{uid}")
    try:
        info = path.stat()
    except OSError:
        return False
    return bool(given) or info.st_uid == uid


def _opens_rw(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _store_has_nothing_else(podman: str) -> bool:
    """No volumes and no secrets either (`podman system reset` would delete them)."""
    for argv in (["volume", "ls", "--quiet"], ["secret", "ls", "--format", "{{.ID}}"]):
        r = _run([podman, *argv])
        if r.returncode != 0 or r.stdout.strip():
            return False
    return True


def _read_subids() -> dict[str, str]:
    out = {}
    for path in SUBID_FILES:
        try:
            out[str(path)] = path.read_text()
        except FileNotFoundError:
            out[str(path)] = ""
        except OSError:
            continue
    return out


# ---------------------------------------------------------------------------------------
# Actions (I/O)


class ActionFailed(AgentctlError):
    """An action did not work; the message says what and how to fix it by hand."""


def apply(action: Action, *, log_dir: Path | None = None) -> str:
    """Perform one action; return a line saying what changed."""
    if isinstance(action, InstallPackages):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *action.packages],
        ):
            try:
                proc.run(argv, timeout=900, env=env)
            except proc.CommandFailed as exc:
                raise ActionFailed(str(exc), hint="install the packages by hand") from exc
        return f"installed {' '.join(action.packages)}"
    if isinstance(action, WriteDropin):
        atomic_write(action.path, action.content)
        return f"wrote {action.path}"
    if isinstance(action, AddSubids):
        for path in action.paths:
            try:
                old = path.read_text()
            except FileNotFoundError:
                old = ""
            sep = "" if not old or old.endswith("\n") else "\n"
            atomic_write(path, f"{old}{sep}{action.line}\n")
        return action.describe().replace("append", "appended", 1)
    if isinstance(action, UseOverlayStorage):
        return _use_overlay(action)
    if isinstance(action, ShareRootMount):
        r = _run(["mount", "--make-rshared", "/"])
        if r.returncode != 0:
            raise ActionFailed(
                f"`mount --make-rshared /` failed: {r.stderr.strip()[-300:]}",
                hint="run it by hand as root",
            )
        return "made `/` a shared mount (mount --make-rshared /)"
    if isinstance(action, StartApiService):
        return _start_service(action, log_dir)
    raise TypeError(action)  # pragma: no cover


def _use_overlay(action: UseOverlayStorage) -> str:
    podman = shutil.which("podman")
    if podman is None:
        raise ActionFailed("podman is not installed; cannot reset its store")
    # Reset first, while the configuration still says vfs: Podman refuses to open a
    # store whose recorded driver differs from the configured one.
    r = _run([podman, "system", "reset", "--force"], timeout=300)
    if r.returncode != 0:
        raise ActionFailed(
            f"`podman system reset --force` failed: {r.stderr.strip()[-500:]}",
            hint=f"write {action.path} by hand:\n{action.candidates[0][1]}",
        )
    failures = []
    for label, content in action.candidates:
        atomic_write(action.path, content)
        check = _run([podman, "info", "--format", "{{.Store.GraphDriverName}}"])
        if check.returncode == 0 and check.stdout.strip() == "overlay":
            return f"switched the empty store from vfs to overlay ({label}): wrote {action.path}"
        failures.append(f"{label}: " + (check.stderr.strip().splitlines() or ["?"])[-1])
    reason = "; ".join(failures)
    atomic_write(action.path, render_vfs_conf(reason))
    if _run([podman, "info", "--format", "{{.Store.GraphDriverName}}"]).returncode != 0:
        action.path.unlink(missing_ok=True)
        raise ActionFailed(f"Podman does not work with vfs either after trying overlay ({reason})")
    return f"kept vfs: overlay does not work for this store ({reason}); recorded in {action.path}"


def _start_service(action: StartApiService, log_dir: Path | None) -> str:
    if action.method == "systemd":
        argv = ["systemctl", *(["--user"] if action.rootless else []), "enable", "--now"]
        r = _run([*argv, "podman.socket"])
        if r.returncode != 0:
            raise ActionFailed(f"`{' '.join(argv)} podman.socket` failed: {r.stderr.strip()}")
        pid = None
    else:
        podman = shutil.which("podman")
        if podman is None:
            raise ActionFailed("podman is not installed; cannot start its API service")
        path = _socket_path(action.url)
        assert path is not None
        log_dir = log_dir or Path(path).parent
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ActionFailed(
                f"cannot create {exc.filename} for the Podman API service: {exc.strerror}",
                hint="create it (a user's /run/user/UID comes from systemd-logind or "
                "scripts/setup.sh), or set AGENTCTL_PODMAN_URL to a socket you can create",
            ) from exc
        log_file = log_dir / "podman-service.log"
        with open(log_file, "ab") as log:
            service = subprocess.Popen(
                [podman, "system", "service", "--time=0", action.url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                # not the caller's directory: the service outlives it, and once a checkout
                # it was started from is deleted every container start fails in runc
                # ("write child: broken pipe")
                cwd="/",
            )
        pid = service.pid
    try:
        for attempt in retrying(
            curve=BackoffCurve(initial=0.1, cap=1.0), retry_on=_not_up, deadline=20
        ):
            with attempt:
                if not ping_socket(action.url):
                    raise _NotUp(action.url)
    except _NotUp as exc:
        raise ActionFailed(
            f"the Podman API service did not answer at {action.url} within 20 s"
            + (f"; see {log_dir}/podman-service.log" if pid else "")
        ) from exc
    return f"started the Podman API service at {action.url}" + (
        f" (pid {pid})" if pid else " (systemd podman.socket)"
    )


class _NotUp(Exception):
    """The socket does not answer yet (retried until the deadline)."""


def _not_up(exc: BaseException) -> bool:
    return isinstance(exc, _NotUp)


@dataclass
class DoctorReport:
    """Everything one doctor run saw and did, for the CLI to print."""

    diagnosis: Diagnosis
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    socket_url: str = ""

    @property
    def ok(self) -> bool:
        return self.diagnosis.healthy and not self.failures


def doctor(
    socket_url: str,
    *,
    fix: bool = True,
    allow_install: bool = True,
    probe_images: Iterable[str] = (),
    log_dir: Path | None = None,
    on_change: Callable[[str], None] | None = None,
    allow_unenforced: bool = False,
) -> DoctorReport:
    """Observe, diagnose and (with ``fix``) apply, re-observing until nothing is left to do.

    Re-observing after each round matters: installing podman reveals its runtime, which
    may need the drop-in, which must exist before the API service starts.
    """
    images = tuple(probe_images)
    first = observe(socket_url, probe_images=images)
    report = DoctorReport(
        diagnose(first, allow_install=allow_install, allow_unenforced=allow_unenforced),
        socket_url=socket_url,
    )
    if not fix:
        return report
    done: set[Action] = set()
    for _ in range(4):
        todo = [a for a in report.diagnosis.actions if a not in done]
        if not todo:
            break
        for action in todo:
            done.add(action)
            try:
                line = apply(action, log_dir=log_dir)
            except ActionFailed as exc:
                report.failures.append(str(exc))
                break
            report.changes.append(line)
            if isinstance(action, WriteDropin | UseOverlayStorage) and first.socket_ok:
                note = (
                    "the running Podman API service still uses the old configuration: "
                    f"restart it (systemctl {'' if first.is_root else '--user '}restart "
                    "podman.service, or stop the `podman system service` process and run "
                    "`agentctl doctor` again)"
                )
                if note not in report.notes:
                    report.notes.append(note)
            if on_change is not None:
                on_change(line)
        if report.failures:
            break
        report.diagnosis = diagnose(
            observe(socket_url, probe_images=images),
            allow_install=allow_install,
            allow_unenforced=allow_unenforced,
        )
    return report
