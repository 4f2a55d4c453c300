"""The chaos suite's reduced set for CI (issue 10): one real fleet (an `agentctl server`
with the coordinator inside, the scripted model, two builders running the real Claude
Code under `agentctl up`), and the cheapest faults that still cover both sides — on the
agent side kill -9 of Claude Code and of the runner and a container removed behind the
controller's back, on the control plane kill -9 of `agentctl up` and of the server.
Each must converge with no task and no commit lost and no task run twice at once.

The scenarios live in bench/chaos/scenarios.py (the full set is
`.venv/bin/python bench/chaos/run.py`); times are printed there, never asserted here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos.scenarios import BY_NAME, ChaosFleet, chaos_fleet, run_scenario
from tests.conftest import cleanup_fleet

pytestmark = pytest.mark.podman

CI_SET = ["kill-claude", "kill-runner", "podman-rm", "kill-up", "kill-server"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, podman_backend, agent_image) -> Iterator[ChaosFleet]:
    tmp: Path = tmp_path_factory.mktemp("chaos")
    name = f"x{os.getpid() % 100000}"
    try:
        with chaos_fleet(tmp, name=name) as running:
            yield running
    finally:
        cleanup_fleet(podman_backend, name)  # whatever the teardown above could not remove


@pytest.mark.parametrize("name", CI_SET)
def test_the_fleet_converges_without_losing_or_duplicating_work(
    fleet: ChaosFleet, name: str
) -> None:
    result = run_scenario(fleet, BY_NAME[name], timeout=180)
    assert result.error is None, result.error
    assert result.converged, result.notes
    assert result.tasks_lost == 0, result.notes
    assert result.commits_lost == 0, result.notes
    assert result.duplicates == 0, result.notes
