"""Landing bundles in a host repository, safely (GitPython on the host side).

Everything that arrives comes from an untrusted container, so this module never checks
anything out, never runs a hook (``core.hooksPath=/dev/null`` on every call), fscks every
fetched object, verifies the bundle before fetching, bounds every git call in time, and
moves refs in a single ``git update-ref --stdin`` transaction with expected old values.
New objects are indexed (and fscked) before any ref points at them; if the process dies
at any point the repo stays consistent: at worst some unreferenced objects are left,
which the next sync re-sends and ``git gc`` eventually prunes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import git

from agentctl_swarm.core import proc
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.refs import (
    REWRITTEN_ROOT,
    SHA_RE,
    Plan,
    RefUpdate,
    agent_prefix,
    plan_updates,
)

MAX_HEADER_LINE = 4096
MAX_HEADER_BYTES = 1 << 20
_SAFE = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "transfer.fsckObjects=true",
    "-c", "fetch.fsckObjects=true",
    "-c", "fetch.writeCommitGraph=false",
    "-c", "core.logAllRefUpdates=always",
)  # fmt: skip
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1"}


def open_or_init(path: Path) -> git.Repo:
    """The host repo at ``path``; a bare one is created when nothing is there yet."""
    path = Path(path).expanduser()
    if path.exists():
        try:
            return git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise SyncError(
                f"{path} exists but is not a git repository; point sync.into at a repo "
                "or at a path that does not exist yet (a bare repo is created there)"
            ) from exc
    # Several agents' syncs (threads or processes) may create the fleet's repo at once:
    # build it in a private sibling directory and rename it into place, so a reader never
    # sees a half-made repo and the loser of the race simply opens the winner's.
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.init-", dir=path.parent))
    try:
        git.Repo.init(scratch, bare=True, initial_branch="main")
        try:
            os.rename(scratch, path)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return open_or_init(path)


class HostRepo:
    """One host repository that agents' work lands in."""

    def __init__(self, path: Path) -> None:
        self.repo = open_or_init(path)
        self.path = Path(self.repo.git_dir if self.repo.bare else self.repo.working_tree_dir)

    # -- low level ---------------------------------------------------------------------

    def git(
        self,
        *args: str,
        timeout: float = 60,
        stdin: bytes | None = None,
        stdin_file: BinaryIO | None = None,
    ) -> str:
        """Run one git command in this repo with the safety flags; raise SyncError."""
        argv = ["git", *_SAFE, *args]
        with contextlib.ExitStack() as stack:
            istream = stdin_file
            if stdin is not None:
                istream = stack.enter_context(tempfile.TemporaryFile())
                istream.write(stdin)
                istream.seek(0)
            try:
                out = self.repo.git.execute(
                    argv,
                    istream=istream,
                    kill_after_timeout=max(timeout, 0.1),
                    env=_ENV,
                    strip_newline_in_stdout=True,
                )
            except git.GitCommandError as exc:
                err = (exc.stderr or "").strip().replace("\n", " ")[:400]
                raise SyncError(
                    f"git {args[0]} in {self.path} failed: {err or exc.status}"
                ) from exc
        return str(out)

    def refs(self, *prefixes: str) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", *prefixes)
        result: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            result[ref] = sha
        return result

    def has_commits(self, shas: Iterable[str]) -> set[str]:
        """Which of ``shas`` are commits present in this repo (one batch call)."""
        wanted = [s for s in shas if SHA_RE.match(s)]
        if not wanted:
            return set()
        out = self.git("cat-file", "--batch-check", stdin=("\n".join(wanted) + "\n").encode())
        present = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "commit":
                present.add(parts[0])
        return present

    def is_ancestor(self, old: str, new: str) -> bool:
        try:
            self.git("merge-base", "--is-ancestor", old, new)
            return True
        except SyncError:
            return False

    def checked_out(self) -> set[str]:
        """Branches checked out in this repo's worktrees (never moved under a user).

        Read from the HEAD files directly: one file read instead of a git process.
        """
        common = Path(self.repo.common_dir)
        heads = [common / "HEAD", *(common / "worktrees").glob("*/HEAD")]
        out = set()
        for head in heads:
            try:
                text = head.read_text().strip()
            except OSError:
                continue
            if text.startswith("ref: "):
                out.add(text[5:].strip())
        return out

    # -- landing -----------------------------------------------------------------------

    def verify_bundle(self, bundle: Path, timeout: float) -> None:
        """``git bundle verify``: well-formed, and every prerequisite is in this repo."""
        self.git("bundle", "verify", "-q", str(bundle), timeout=timeout)

    def unpack_bundle(self, bundle: Path, timeout: float) -> None:
        """Index the bundle's pack with full fsck (``index-pack --strict``).

        ``git fetch`` from a bundle does not fsck objects on git < 2.46, so the pack is
        fed to ``index-pack --strict`` directly: broken objects, ``.git`` tree entries
        and the like are refused before any ref can point at them. Until the ref
        transaction runs, the new objects are unreferenced (a crash leaves garbage,
        never an inconsistency).
        """
        with bundle.open("rb") as fh:
            first = fh.readline(256)
            if first not in (b"# v2 git bundle\n", b"# v3 git bundle\n"):
                raise SyncError("the container's bundle has no valid header")
            while True:
                line = fh.readline(MAX_HEADER_LINE)
                if not line.endswith(b"\n") or fh.tell() > MAX_HEADER_BYTES:
                    raise SyncError("the container's bundle header is malformed or too long")
                if line == b"\n":
                    break
            offset = fh.tell()
        # A fresh unbuffered handle: the child reads the pack from the OS file position.
        with bundle.open("rb", buffering=0) as raw:
            raw.seek(offset)
            self.git(
                "index-pack", "--stdin", "--fix-thin", "--strict",
                stdin_file=raw, timeout=timeout,
            )  # fmt: skip

    def check_complete(self, shas: Iterable[str], timeout: float) -> None:
        """Every sha is a commit whose whole history is present (no holes)."""
        wanted = sorted(set(shas))
        if not wanted:
            return
        try:
            self.git(
                "rev-list", "--objects", "--quiet", "--stdin", "--not", "--all",
                stdin=("\n".join(wanted) + "\n").encode(), timeout=timeout,
            )  # fmt: skip
        except SyncError as exc:
            present = self.has_commits(wanted)
            missing = [s[:12] for s in wanted if s not in present]
            if missing:
                raise SyncError(
                    f"the container named commits it did not send: {', '.join(missing)}"
                ) from exc
            raise SyncError(f"the container sent incomplete history: {exc}") from exc

    def plan(self, agent: str, branches: dict[str, str], wip: str | None) -> Plan:
        host = self.refs(agent_prefix(agent), f"{REWRITTEN_ROOT}/{agent}/")
        return plan_updates(agent, branches, wip, host, self.is_ancestor, datetime.now(UTC))

    def apply(self, agent: str, updates: list[RefUpdate]) -> None:
        """All ref moves in one atomic transaction, each checked against its old value."""
        busy = self.checked_out()
        blocked = [u.ref for u in updates if u.ref in busy]
        if blocked:
            raise SyncError(
                f"{', '.join(blocked)} is checked out in {self.path}; switch that worktree to "
                "another branch so the sync can move it"
            )
        zero = "0" * 40
        lines = ["start"]
        for u in updates:
            lines.append(f"update {u.ref} {u.new} {u.old or zero}")
        lines += ["prepare", "commit", ""]
        self.git(
            "update-ref", "--create-reflog", "-m", f"agentctl sync {agent}", "--stdin",
            stdin="\n".join(lines).encode(),
        )  # fmt: skip

    def push(self, remote: str, agent: str, timeout: float) -> None:
        """Push the agent's synced branches on (never forced, except the wip snapshot)."""
        if remote not in {r.name for r in self.repo.remotes}:
            raise SyncError(f"{self.path} has no remote {remote!r} (sync.push.remote)")
        prefix = agent_prefix(agent)
        specs = []
        for ref in self.refs(prefix):
            force = "+" if ref == prefix + "wip" else ""
            specs.append(f"{force}{ref}:{ref}")
        if specs:
            self.git("push", "--quiet", "--no-verify", remote, *specs, timeout=timeout)

    def fsck(self) -> tuple[int, str]:
        """``git fsck`` exit code and output (used by tests and `sync status --fsck`)."""
        result = proc.run(
            ["git", "-C", str(self.path), "fsck", "--no-dangling"], timeout=600, check=False
        )
        return result.returncode, result.stdout + result.stderr
