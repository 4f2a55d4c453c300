"""The supervisor inside the real agent image, under tini, through the Podman API.

The image's installed package may predate the checkout, so the checkout's
``agentctl_swarm`` is bind-mounted read-only and put first on PYTHONPATH: the code under
test is this tree, running with the image's Python, tini and user.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl_swarm.fleet.render import (
    LABEL_AGENT,
    LABEL_FLEET,
    LABEL_KIND,
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    ContainerSpec,
    Mount,
)
from agentctl_swarm.podman.backend import PodmanBackend, PodmanError
from tests.conftest import SETTINGS

pytestmark = pytest.mark.podman

IMAGE = "localhost/agentctl-agent:latest"
SRC = Path(__file__).resolve().parents[2] / "agentctl_swarm"
WAIT_LIMIT = 90.0


@pytest.fixture(scope="module")
def backend() -> Iterator[PodmanBackend]:
    be = PodmanBackend(SETTINGS.podman_url)
    try:
        be.ping()
    except PodmanError as exc:
        pytest.skip(f"Podman API not available: {exc}")
    if not be.image_exists(IMAGE):
        pytest.skip(f"{IMAGE} is absent (build it with `agentctl build`)")
    yield be
    be.close()


class Agent:
    """One supervised container plus helpers to read its state.json."""

    def __init__(self, backend: PodmanBackend, spec: ContainerSpec) -> None:
        self.be = backend
        self.spec = spec
        self.name = spec.name

    def state(self) -> dict[str, Any] | None:
        raw = self.be.read_file(self.name, "/state/state.json")
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return None

    def logs(self) -> str:
        return b"".join(self.be.logs(self.name)).decode(errors="replace")

    def wait_for(self, what: str, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        end = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < end:
            s = self.state()
            if s and pred(s):
                return s
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; state {self.state()}; logs:\n{self.logs()}")

    def sh(self, script: str) -> str:
        res = self.be.exec(self.name, ["sh", "-c", script], timeout=30)
        assert res.exit_code == 0, res.stderr
        return res.stdout.decode()


@pytest.fixture
def make_agent(backend: PodmanBackend) -> Iterator[Callable[..., Agent]]:
    """Create + start a supervised container; removed with its volume afterwards."""
    made: list[ContainerSpec] = []

    def make(child: str, *opts: str, grace: float = 3.0) -> Agent:
        tag = uuid.uuid4().hex[:8]
        fleet, agent = f"t-sup-{tag}", "swarm-sup-000"
        state_vol = f"agentctl-test-sup-{tag}-state"
        spec = ContainerSpec(
            fleet=fleet,
            role="sup",
            index=0,
            agent=agent,
            name=f"agentctl-test-sup-{tag}",
            image=IMAGE,
            command=[
                "agentctl-agent",
                "supervise",
                "--state-dir",
                "/state",
                "--prepare",
                "none",
                "--grace",
                f"{grace:g}",
                "--poll-interval",
                "0.2",
                *opts,
                "--",
                "sh",
                "-c",
                child,
            ],
            env={"PYTHONPATH": "/opt/src"},
            labels={
                LABEL_FLEET: fleet,
                LABEL_AGENT: agent,
                LABEL_ROLE: "sup",
                LABEL_KIND: "agent",
                LABEL_SPEC_HASH: "test",
            },
            mounts=[
                Mount(source=state_vol, target="/state"),
                Mount(
                    source=str(SRC), target="/opt/src/agentctl_swarm", read_only=True, kind="bind"
                ),
            ],
            secrets=[],
            network="host",
            memory_bytes=256 * 1024 * 1024,
            nano_cpus=None,
            pids=128,
            restart="no",
            restart_retries=None,
            grace_seconds=grace,
        )
        made.append(spec)
        backend.create(spec)
        backend.start(spec.name)
        return Agent(backend, spec)

    yield make
    for spec in made:
        try:
            backend.remove(spec.name, timeout=0)
        finally:
            for vol in backend.list_volumes(spec.fleet):
                backend.remove_volume(vol)


def test_killed_agent_process_is_restarted_with_backoff(make_agent: Callable[..., Agent]) -> None:
    a = make_agent(
        "echo agent up; exec sleep 3600",
        "--initial-backoff",
        "0.5",
        "--max-quick-crashes",
        "100",
    )
    assert a.sh("cat /proc/1/comm").strip() == "tini"
    seen: list[int] = []
    for _ in range(2):
        s = a.wait_for("a new child", lambda s: s["status"] == "running" and s["pid"] not in seen)
        seen.append(s["pid"])
        a.sh(f"kill -9 {s['pid']}")
    s = a.wait_for("third child", lambda s: s["status"] == "running" and s["pid"] not in seen)
    assert s["restarts"] == 2
    assert [e["delay_seconds"] for e in s["recent_exits"]] == [0.5, 1.0]
    assert {e["signal_name"] for e in s["recent_exits"]} == {"SIGKILL"}
    logs = a.logs()
    assert "restarting in 0.5s" in logs
    assert "restarting in 1s" in logs
    assert "agent up" in logs

    # A container restart resumes the backoff instead of resetting it.
    a.be.restart(a.name, timeout=a.spec.stop_timeout)
    s = a.wait_for(
        "the new supervisor", lambda s: s["status"] == "running" and s["pid"] not in seen
    )
    assert s["restarts"] == 2
    assert s["backoff_seconds"] == 2.0
    assert "resuming state: status stopped, 2 restarts, backoff 2s" in a.logs()


def test_podman_stop_ends_within_the_grace_period(make_agent: Callable[..., Agent]) -> None:
    # The agent ignores SIGTERM: the supervisor must SIGKILL it after its own grace and
    # exit 0 before Podman's stop timeout (grace + 5 s) would SIGKILL everything (137).
    a = make_agent("trap '' TERM; echo stubborn; exec sleep 3600", grace=2.0)
    a.wait_for("running", lambda s: s["status"] == "running" and s["pid"] is not None)
    a.be.stop(a.name, timeout=a.spec.stop_timeout)
    attrs = a.be.inspect(a.name)
    assert attrs is not None
    assert attrs["State"]["ExitCode"] == 0, a.logs()
    logs = a.logs()
    assert "still alive after 2s: SIGKILL" in logs
    assert "SIGTERM to process group" in logs
