"""Secrets mounted as files become env vars of the agent process only."""

from __future__ import annotations

from pathlib import Path

from agentctl_swarm.agent.secret_env import secret_env


def test_maps_files_to_vars(tmp_path: Path) -> None:
    (tmp_path / "API_KEY").write_text("value-1\n")
    (tmp_path / "TOKEN").write_text("t")
    env = {"AGENTCTL_SECRET_ENV": "ANTHROPIC_API_KEY=API_KEY,TOKEN=TOKEN"}
    assert secret_env(env, tmp_path) == {"ANTHROPIC_API_KEY": "value-1", "TOKEN": "t"}


def test_ignores_missing_and_escaping_names(tmp_path: Path) -> None:
    (tmp_path.parent / "outside").write_text("nope")
    env = {"AGENTCTL_SECRET_ENV": "A=missing,B=../outside,C=.hidden,garbage,=X"}
    assert secret_env(env, tmp_path) == {}
    assert secret_env({}, tmp_path) == {}
