"""Seeding: deliver a repo's history into an agent's state volume, as a git bundle.

The container never sees a host path or a host credential: a host repo is read here,
on the host, and only a bundle of the base branch (plus a JSON description and any
ignored files the fleet asks to copy) goes into ``/state/seed/`` of the created-but-not-
started container. A URL is cloned (or fetched) on the host first, into a bare cache
under the state dir. The agent's supervisor then runs ``agent/workspace.prepare``.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.hostrepo import HostRepo
from agentctl_swarm.sync.refs import valid_branch_name
from agentctl_swarm.sync.targets import url_cache_path

AGENT_UID = 1000
MAX_COPY_FILE_BYTES = 10 * 1024**2
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]


@dataclass(frozen=True)
class Seed:
    """What goes into ``/state/seed/``."""

    description: dict[str, object]
    bundle: bytes | None
    files: dict[str, bytes]  # relative path -> content
    commit: str | None  # the base commit (a known tip for the first sync)


def source_repo(repo: RepoSpec, state_dir: Path, base_dir: Path | None = None) -> Path:
    """The host repo to read: the path itself, or the (refreshed) host clone of the URL."""
    if repo.path:
        path = Path(repo.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise SyncError(
                f"repo.path {repo.path!r} is not a git repository on this host; "
                "fix the path in the fleet file"
            ) from exc
        return path.absolute()
    assert repo.url is not None
    cache = url_cache_path(state_dir, repo.url)
    try:
        if cache.exists():
            git.Repo(cache).git.execute(
                ["git", *_SAFE, "fetch", "--quiet", "--prune", repo.url,
                 "+refs/heads/*:refs/heads/*"],
                env=_ENV, kill_after_timeout=600,
            )  # fmt: skip
        else:
            # Clone next to the cache and rename, so a failed clone leaves no half cache.
            cache.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
                git.Git().execute(
                    ["git", *_SAFE, "clone", "--bare", "--quiet", "--", repo.url, f"{tmp}/c.git"],
                    env=_ENV, kill_after_timeout=600,
                )  # fmt: skip
                Path(tmp, "c.git").rename(cache)
    except git.GitCommandError as exc:
        err = (exc.stderr or "").strip().splitlines()
        raise SyncError(
            f"cannot clone repo.url {repo.url!r} on the host: {err[-1] if err else exc.status}; "
            "check the URL and the host's git credentials"
        ) from exc
    return cache


def _copy_ignored(root: Path, entries: list[str]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in entries:
        rel = PurePosixPath(entry)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] == ".git":
            raise SyncError(f"repo.copy_ignored entry {entry!r} must be a path inside the repo")
        path = root / rel
        resolved = path.resolve()
        if not resolved.is_relative_to(root.resolve()):
            raise SyncError(f"repo.copy_ignored entry {entry!r} leads outside the repo")
        if path.is_symlink() or not path.is_file():
            raise SyncError(f"repo.copy_ignored entry {entry!r} is not a regular file in {root}")
        if path.stat().st_size > MAX_COPY_FILE_BYTES:
            raise SyncError(f"repo.copy_ignored entry {entry!r} is over 10 MB")
        files[str(rel)] = path.read_bytes()
    return files


def build_seed(
    agent: str, repo: RepoSpec | None, state_dir: Path, base_dir: Path | None = None
) -> Seed:
    """Everything ``prepare`` needs, read from the host (nothing is written anywhere)."""
    work = (repo.work_branch if repo else "swarm/{agent}/work").replace("{agent}", agent)
    if not valid_branch_name(work):
        raise SyncError(f"repo.work_branch gives {work!r}, which is not a valid branch name")
    desc: dict[str, object] = {
        "agent": agent,
        "work_branch": work,
        "base_branch": repo.branch if repo else "main",
        "user_name": agent,
        "user_email": f"{agent}@agentctl.local",
        "ignore": [],
        "has_bundle": False,
    }
    if repo is None:
        return Seed(desc, None, {}, None)
    src = source_repo(repo, state_dir, base_dir)
    host = HostRepo(src)
    try:
        commit = host.git("rev-parse", "--verify", f"refs/heads/{repo.branch}^{{commit}}")
    except SyncError as exc:
        raise SyncError(
            f"repo {repo.path or repo.url}: branch {repo.branch!r} does not exist; "
            "fix repo.branch in the fleet file"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="agentctl-seed-") as tmp:
        out = Path(tmp) / "seed.bundle"
        host.git("bundle", "create", "-q", str(out), f"refs/heads/{repo.branch}", timeout=600)
        bundle = out.read_bytes()
    files: dict[str, bytes] = {}
    if repo.copy_ignored:
        if not repo.path or host.repo.bare:
            raise SyncError("repo.copy_ignored needs repo.path pointing at a checked-out repo")
        files = _copy_ignored(Path(host.repo.working_tree_dir or src), repo.copy_ignored)
        desc["ignore"] = list(repo.copy_ignored)
    desc["has_bundle"] = True
    return Seed(desc, bundle, files, commit)


def seed_tar(seed: Seed) -> bytes:
    """A tar for ``put_archive(container, "/state", ...)``: ``seed/...`` owned by the agent."""
    buf = io.BytesIO()
    now = time.time()

    def add(name: str, data: bytes | None, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.uid = info.gid = AGENT_UID
        info.uname = info.gname = ""
        info.mtime = now
        info.mode = mode
        if data is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        add("seed", None, 0o700)
        add("seed/seed.json", json.dumps(seed.description, indent=2).encode(), 0o600)
        if seed.bundle is not None:
            add("seed/seed.bundle", seed.bundle, 0o600)
        if seed.files:
            add("seed/files", None, 0o700)
            made = {"seed/files"}
            for rel, data in sorted(seed.files.items()):
                parts = PurePosixPath(rel).parts
                for i in range(1, len(parts)):
                    d = "seed/files/" + "/".join(parts[:i])
                    if d not in made:
                        add(d, None, 0o700)
                        made.add(d)
                add(f"seed/files/{rel}", data, 0o600)
    return buf.getvalue()
