"""Secret values per role and their keyed versions; the status `get` shows (pure parts)."""

from __future__ import annotations

import stat
from pathlib import Path

from agentctl_swarm.controller import secrets
from agentctl_swarm.controller.status import true_status
from agentctl_swarm.fleet.loader import parse_fleet
from agentctl_swarm.fleet.render import render_fleet
from agentctl_swarm.podman.types import ObservedContainer

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: demo}
defaults:
  secrets: [{name: SHARED, from_env: S_SHARED}]
agents:
  - role: alpha
    command: [sleep, "1"]
    secrets: [{name: TOKEN, from_env: S_ALPHA}]
  - role: beta
    command: [sleep, "1"]
    secrets: [{name: TOKEN, from_env: S_BETA}, {name: SHARED, from_env: S_OWN}]
"""
ENV = {"S_SHARED": "shared", "S_ALPHA": "a", "S_BETA": "b", "S_OWN": "own"}


def test_each_role_gets_the_values_its_own_entries_name(tmp_path: Path) -> None:
    loaded = parse_fleet(FLEET, "f.yaml")
    values = secrets.load(loaded, tmp_path, environ=ENV)
    assert values.values == {
        ("alpha", "SHARED"): b"shared",
        ("alpha", "TOKEN"): b"a",
        ("beta", "SHARED"): b"own",
        ("beta", "TOKEN"): b"b",
    }
    specs = render_fleet(loaded.fleet, home=Path("/h"), secret_versions=values.versions)
    by_name = values.by_podman_name(specs)
    assert len(by_name) == 4 and sorted(by_name.values()) == [b"a", b"b", b"own", b"shared"]


def test_a_new_value_is_a_new_version_and_the_key_file_is_private(tmp_path: Path) -> None:
    loaded = parse_fleet(FLEET, "f.yaml")
    first = secrets.load(loaded, tmp_path, environ=ENV)
    again = secrets.load(loaded, tmp_path, environ=ENV)
    rotated = secrets.load(loaded, tmp_path, environ={**ENV, "S_ALPHA": "a2"})
    assert first.versions == again.versions
    assert rotated.versions[("alpha", "TOKEN")] != first.versions[("alpha", "TOKEN")]
    assert rotated.versions[("beta", "TOKEN")] == first.versions[("beta", "TOKEN")]
    mode = stat.S_IMODE((tmp_path / secrets.KEY_FILE).stat().st_mode)
    assert mode == 0o600
    # Another machine (another key) gives other versions: a version reveals nothing alone.
    other = secrets.load(loaded, tmp_path / "other", environ=ENV)
    assert other.versions[("alpha", "TOKEN")] != first.versions[("alpha", "TOKEN")]


def _observed(state: str, exit_code: int | None) -> ObservedContainer:
    return ObservedContainer(
        id="x", name="n", fleet="f", agent="a", role="r", spec_hash="h", state=state,
        image="i", labels={}, created=None, started_at=None, exit_code=exit_code,
    )  # fmt: skip


def test_status_never_claims_a_dead_container_is_running() -> None:
    assert true_status(_observed("running", None), "running") == "running"
    assert true_status(_observed("exited", 137), "running") == "killed (SIGKILL)"
    assert true_status(_observed("exited", 1), "backoff") == "exited (1)"
    assert true_status(_observed("exited", 3), "degraded") == "degraded"
    assert true_status(_observed("created", None), None) == "not started"
