"""Fixtures for the sync tests: real host repos, real agent containers seeded by our code."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.fleet.render import LABEL_AGENT, LABEL_FLEET, LABEL_KIND, LABEL_ROLE
from agentctl_swarm.sync.engine import _SCRIPT

BASE_IMAGE = "localhost/agentctl-base:bookworm"


def git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} -> {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


@pytest.fixture
def host_repo(tmp_path: Path) -> Path:
    """A checked-out host repo with two commits on main and an ignored .env."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / ".gitignore").write_text(".env\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    (repo / "src.py").write_text("print('hi')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "second")
    (repo / ".env").write_text("TOKEN=not-for-git\n")
    return repo


@dataclass
class SpecLike:
    """The fields of a rendered ContainerSpec that seeding reads."""

    name: str
    agent: str
    fleet: str
    role: str
    repo: RepoSpec | None
    state_volume: str = ""
    workspace_volume: str = ""


@dataclass
class Agent:
    backend: object
    spec: SpecLike
    created: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def sh(self, script: str, *, check: bool = True, user: str = "1000:1000") -> str:
        res = self.backend.exec(  # type: ignore[attr-defined]
            self.name, ["sh", "-c", script], user=user, workdir="/workspace",
            env={"HOME": "/tmp", "GIT_AUTHOR_DATE": "", "GIT_PAGER": "cat"},
        )  # fmt: skip
        if check and res.exit_code != 0:
            raise AssertionError(f"{script!r} -> {res.exit_code}: {res.stderr.decode()}")
        return res.stdout.decode()


@pytest.fixture
def make_agent(podman_backend, fleet_name: str, tmp_path: Path) -> Callable[..., Agent]:
    """Create, seed (through sync.hooks.seed_container), start and prepare an agent."""
    from agentctl_swarm.sync.hooks import seed_container

    state_dir = tmp_path / "state"

    def make(role: str = "builder", index: int = 0, repo: RepoSpec | None = None) -> Agent:
        agent = f"swarm-{role}-{index:03d}"
        name = f"agentctl-{fleet_name}-{agent}"
        spec = SpecLike(name, agent, fleet_name, role, repo, f"{name}-state", f"{name}-ws")
        labels = {LABEL_FLEET: fleet_name, LABEL_AGENT: agent, LABEL_ROLE: role,
                  LABEL_KIND: "agent"}  # fmt: skip
        vol_labels = {LABEL_FLEET: fleet_name, LABEL_AGENT: agent, LABEL_KIND: "volume"}
        for vol in (spec.state_volume, spec.workspace_volume):
            podman_backend.ensure_volume(vol, vol_labels)
        podman_backend.client.containers.create(
            BASE_IMAGE, ["sleep", "infinity"], name=name, labels=labels, user="1000:1000",
            network_mode="host", hostname=agent, stop_signal=9,
            environment={"AGENTCTL_AGENT": agent},  # as the renderer sets it
            volumes={spec.workspace_volume: {"bind": "/workspace", "mode": "rw"},
                     spec.state_volume: {"bind": "/state", "mode": "rw"}},
        )  # fmt: skip
        seed_container(spec, podman_backend, state_dir=state_dir)
        podman_backend.start(name)
        res = podman_backend.exec(
            name, ["python3", "-I", "-c", _SCRIPT.read_text(), "prepare"],
            user="1000:1000", env={"HOME": "/tmp"},
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr.decode()
        return Agent(podman_backend, spec)

    make.state_dir = state_dir  # type: ignore[attr-defined]
    return make


def write_fleet(path: Path, fleet: str, repo: Path | None, into: Path, replicas: int = 1) -> Path:
    """A fleet file whose agents match what ``make_agent`` creates."""
    repo_block = f"repo:\n  path: {repo}\n" if repo else ""
    path.write_text(
        "apiVersion: agentctl.io/v1\nkind: Fleet\n"
        f"metadata:\n  name: {fleet}\n"
        "agents:\n  - role: builder\n"
        f"    replicas: {replicas}\n    command: [sleep, infinity]\n"
        f"{repo_block}"
        f"sync:\n  into: {into}\n  interval: 1\n  timeout: 60\n"
    )
    return path
