"""Many agents' final syncs may create the fleet's landing repo at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

import git

from agentctl_swarm.sync.hostrepo import open_or_init


def test_concurrent_init_yields_one_valid_repo(tmp_path: Path) -> None:
    target = tmp_path / "repos" / "fleet.git"
    errors: list[BaseException] = []

    def init() -> None:
        try:
            open_or_init(target)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=init) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in target.parent.iterdir()] == ["fleet.git"]  # no scratch dirs left
    assert git.Repo(target).bare
