"""The sync engine: bring each running agent's work out as git objects, land it, record it.

One agent's sync (``sync_agent``):

1. ask the container (one exec, running ``agent/workspace.py`` from *this* host's copy via
   ``python3 -I -c``) to snapshot uncommitted work off to the side and write one bundle
   of every branch + the snapshot, with the tips the host already has as prerequisites;
2. stream the manifest line and the bundle out on that exec's stdout
   (``podman/transfer.py``: byte cap, deadline; nothing is extracted on the host);
3. ``git bundle verify``, index the pack with full fsck (``index-pack --strict``), check
   every named tip is a complete commit;
4. move the host refs in one transaction (fast-forward only; rewrites keep the old tip
   under a dated name; see ``refs.py``), then record the new tips in the state file.

A crash between any two steps leaves the host repo consistent; the worst case is a
bigger bundle next time. ``sync/daemon.py`` runs it for every running agent of a fleet.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from agentctl_swarm.core.files import LockBusy, file_lock
from agentctl_swarm.core.logs import log_event
from agentctl_swarm.podman.backend import PodmanBackend, PodmanError
from agentctl_swarm.podman.transfer import exec_stream
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.hostrepo import HostRepo
from agentctl_swarm.sync.refs import SHA_RE, host_branch_refs
from agentctl_swarm.sync.state import AgentSyncState, SyncStateStore
from agentctl_swarm.sync.types import SyncLimits, SyncResult, SyncTarget

log = logging.getLogger("agentctl.sync")

WORKSPACE = "/workspace"
STATE = "/state"
MAX_MANIFEST_BYTES = 1 << 20
_SCRIPT = Path(__file__).resolve().parent.parent / "agent" / "workspace.py"
_repo_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _repo_lock(path: Path) -> threading.Lock:
    with _repo_locks_guard:
        return _repo_locks.setdefault(str(path.resolve()), threading.Lock())


def export_argv(known: list[str], known_wip: str | None, limits: SyncLimits) -> list[str]:
    """The exec argv: this host's workspace.py, run by the container's python3."""
    argv = [
        "python3", "-I", "-S", "-c", _SCRIPT.read_text(), "export",
        "--workspace", WORKSPACE, "--state-dir", STATE,
        "--known", ",".join(known),
        "--max-bytes", str(limits.max_bundle_bytes),
        "--max-file-bytes", str(limits.max_file_bytes),
        "--emit", "stdout",
    ]  # fmt: skip
    if known_wip:
        argv += ["--known-wip", known_wip]
    return argv


class _Receiver:
    """Splits the export's stream: the manifest line, then the bundle bytes to a file."""

    def __init__(self, bundle: Path) -> None:
        self.head = b""
        self.in_head = True
        self.bundle_bytes = 0
        self._file = bundle.open("wb")
        self._bundle = bundle

    def feed(self, chunk: bytes) -> None:
        if self.in_head:
            newline = chunk.find(b"\n")
            if newline < 0:
                self.head += chunk
                if len(self.head) > MAX_MANIFEST_BYTES:
                    raise SyncError("the export's manifest line is too long; refusing it")
                return
            self.head += chunk[:newline]
            self.in_head = False
            chunk = chunk[newline + 1 :]
        if chunk:
            self._file.write(chunk)
            self.bundle_bytes += len(chunk)

    def close(self) -> None:
        self._file.close()
        if not self.bundle_bytes:
            self._bundle.unlink(missing_ok=True)


def parse_manifest(head: bytes, container: str, stderr: bytes = b"") -> dict:
    """The export's JSON manifest, checked for shape (it comes from an untrusted box)."""
    try:
        data = json.loads(head.decode(errors="replace")) if head.strip() else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        why = stderr.decode(errors="replace").strip().splitlines()
        raise SyncError(
            f"{container}: export did not print a manifest"
            + (f" ({why[-1][:300]})" if why else " (is python3 installed in the image?)")
        )
    if data.get("error"):
        raise SyncError(f"{container}: export failed: {str(data['error'])[:400]}")
    branches = data.get("branches")
    wip = data.get("wip")
    if not isinstance(branches, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and SHA_RE.match(v) for k, v in branches.items()
    ):
        raise SyncError(f"{container}: manifest has a malformed branch list")
    if wip is not None and not (isinstance(wip, str) and SHA_RE.match(wip)):
        raise SyncError(f"{container}: manifest has a malformed wip id")
    if not isinstance(data.get("commits", 0), int) or not isinstance(data.get("skipped", []), list):
        raise SyncError(f"{container}: manifest is malformed")
    return data


def sync_agent(
    backend: PodmanBackend,
    target: SyncTarget,
    store: SyncStateStore,
    limits: SyncLimits | None = None,
) -> SyncResult:
    """Sync one agent; never raises for the agent's own failures (they go in the result)."""
    limits = limits or SyncLimits()
    started = time.monotonic()
    deadline = started + limits.timeout
    result = SyncResult(agent=target.agent, ok=False)
    try:
        with file_lock(
            store.lock_path(target.fleet, target.agent),
            timeout=0,
            what=f"the sync of {target.agent}",
            mode=0o600,
        ):
            state = store.load(target.fleet, target.agent)
            state.container, state.into = target.container, str(target.into)
            state.last_attempt = _now()
            try:
                _sync_locked(backend, target, state, limits, deadline, result)
                result.ok = True
                state.last_error = None
            except (SyncError, PodmanError) as exc:
                result.error = str(exc)
                state.last_error = result.error
            result.duration = time.monotonic() - started
            state.last_duration = round(result.duration, 3)
            store.save(state)
    except LockBusy as exc:  # another daemon is syncing this agent right now
        result.error = f"another sync of this agent is running ({exc})"
    if result.ok:
        quiet = not result.commits and not result.updates  # nothing new: not worth a line
        log_event(
            log, "sync.ok", level=logging.DEBUG if quiet else logging.INFO,
            agent=target.agent, commits=result.commits, bytes=result.bytes,
            refs=[u.ref for u in result.updates], seconds=round(result.duration, 3),
            phases=result.phases,
        )  # fmt: skip
    else:
        log_event(log, "sync.error", level=logging.WARNING, agent=target.agent, error=result.error)
    return result


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise SyncError(f"sync ran out of time before {what} (sync.timeout)")
    return left


def _sync_locked(
    backend: PodmanBackend,
    target: SyncTarget,
    state: AgentSyncState,
    limits: SyncLimits,
    deadline: float,
    result: SyncResult,
) -> None:
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.phases[name] = round(now - clock, 4)
        clock = now

    host = HostRepo(target.into)
    lock = _repo_lock(host.path)
    with lock:
        known = sorted(host.has_commits(state.known_tips()))
    phase("prepare")
    known_wip = state.wip if state.wip in known else None
    with tempfile.TemporaryDirectory(prefix="agentctl-sync-") as tmp:
        bundle = Path(tmp) / "export.bundle"
        receiver = _Receiver(bundle)
        try:
            stderr = exec_stream(
                backend, target.container, export_argv(known, known_wip, limits), receiver.feed,
                max_bytes=limits.max_bundle_bytes + MAX_MANIFEST_BYTES,
                timeout=_remaining(deadline, "the export"),
                user=limits.exec_user, env={"HOME": "/tmp"},
            )  # fmt: skip
        finally:
            receiver.close()
        phase("export")
        manifest = parse_manifest(receiver.head, target.container, stderr)
        result.bytes = receiver.bundle_bytes
        if manifest.get("bundle") and receiver.bundle_bytes != manifest.get("bundle_bytes"):
            raise SyncError(
                f"{target.container}: bundle stream was cut short "
                f"({receiver.bundle_bytes} of {manifest.get('bundle_bytes')} bytes)"
            )
        branches: dict[str, str] = manifest["branches"]
        wip: str | None = manifest.get("wip")
        with lock:
            if manifest.get("bundle"):
                host.verify_bundle(bundle, _remaining(deadline, "verify"))
                host.unpack_bundle(bundle, _remaining(deadline, "unpack"))
            phase("unpack")
            tips = [*branches.values(), *([wip] if wip else [])]
            host.check_complete(tips, _remaining(deadline, "the connectivity check"))
            plan = host.plan(target.agent, branches, wip)
            phase("check")
            _remaining(deadline, "the ref update")
            host.apply(target.agent, plan.updates)
            phase("apply")
    mapped, _ = host_branch_refs(target.agent, branches)
    result.updates, result.rejected = plan.updates, plan.rejected
    result.commits = int(manifest.get("commits") or 0)
    state.tips = {b: branches[b] for b in mapped}
    state.wip = wip
    state.skipped_files = [str(s) for s in manifest.get("skipped", [])][:50]
    state.syncs += 1
    state.commits_total += result.commits
    state.bytes_total += result.bytes
    state.last_commits, state.last_bytes = result.commits, result.bytes
    state.last_sync = _now()
    if plan.rejected:
        log_event(log, "sync.rejected", agent=target.agent, branches=plan.rejected)
    if target.push_remote and plan.updates:
        try:
            host.push(target.push_remote, target.agent, _remaining(deadline, "the push"))
            state.last_push_error = None
        except SyncError as exc:
            state.last_push_error = str(exc)
            log_event(
                log, "sync.push_error", level=logging.WARNING, agent=target.agent, error=str(exc)
            )
