"""Fixtures shared by every test directory.

Podman tests run against the real API socket and the real agent image. When either is
missing they are skipped on a developer's machine, but fail under CI
(AGENTCTL_REQUIRE_PODMAN=1), so a broken setup can never pass as green.
Every fixture that creates Podman objects removes them by label afterwards, even when
the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATE = Path(os.environ.get("AGENTCTL_TEST_STATE", f"/tmp/agentctl-test-state-{os.getpid()}"))
os.environ.setdefault("AGENTCTL_STATE_DIR", str(_STATE))

from agentctl_swarm.config import Settings, load_settings  # noqa: E402

SETTINGS: Settings = load_settings(Settings)
AGENT_IMAGE = SETTINGS.agent_image
REPO = Path(__file__).resolve().parent.parent
AGENTCTL = [sys.executable, "-m", "agentctl_swarm.cli"]


def _unavailable(reason: str) -> None:
    if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
        pytest.fail(f"Podman is required here but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_backend():
    """A PodmanBackend on the configured socket (skips or fails when unreachable)."""
    from agentctl_swarm.podman.backend import PodmanBackend, PodmanUnavailable

    backend = PodmanBackend(SETTINGS.podman_url)
    try:
        backend.ping()
    except PodmanUnavailable as exc:
        _unavailable(str(exc))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def agent_image(podman_backend) -> str:
    if not podman_backend.image_exists(AGENT_IMAGE):
        _unavailable(f"the agent image {AGENT_IMAGE} is missing (run `agentctl build`)")
    return AGENT_IMAGE


def cleanup_fleet(backend, fleet: str) -> None:
    """Remove every container, volume and secret labelled with ``fleet``."""
    for observed in backend.list_owned(fleet):
        with contextlib.suppress(Exception):
            backend.client.containers.get(observed.name).remove(force=True)
    for volume in backend.list_volumes(fleet):
        backend.remove_volume(volume)
    for secret in backend.client.secrets.list():
        if secret.name.startswith(f"agentctl-{fleet}-"):
            backend.remove_secret(secret.name)


@pytest.fixture
def fleet_name(podman_backend) -> Iterator[str]:
    """A unique fleet name whose Podman objects are all removed after the test."""
    name = f"t{secrets.token_hex(4)}"
    yield name
    cleanup_fleet(podman_backend, name)


def run_agentctl(
    *args: str, check: bool = False, timeout: float = 300, env: dict[str, str] | None = None
):
    """Run the real `agentctl` CLI in a subprocess (what a user types)."""
    proc = subprocess.run(
        [*AGENTCTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"agentctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc
