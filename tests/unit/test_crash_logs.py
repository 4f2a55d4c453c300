"""A crash inside the sync-daemon logs only valid JSON lines (issue 7): the crash of one
agent's sync and then of the daemon itself are records with the traceback as a field,
never a broken line followed by a raw traceback. Real process, real logging set-up, the
real SyncDaemon and the CLI's error handler; the fault is injected through the daemon's
own ``targets`` hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, threading
from types import SimpleNamespace
from agentctl_swarm.cli.errors import run
from agentctl_swarm.core.logs import setup_logging
from agentctl_swarm.fleet.source import read_fleet
from agentctl_swarm.sync.daemon import SyncDaemon

setup_logging("sync-daemon")  # stderr is a pipe: JSON lines
passes = []

def targets():
    passes.append(1)
    if len(passes) == 1:
        return [SimpleNamespace(agent="swarm-a-000")]  # its sync hits a bug
    raise RuntimeError("injected: the daemon itself crashes")

daemon = SyncDaemon(read_fleet(sys.argv[1]).fleet, None, state_dir=sys.argv[2],
                    interval=0.05, targets=targets)
run(lambda: daemon.run(threading.Event()))
"""

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: crashlog}
agents:
  - role: a
    command: [sleep, infinity]
"""


def test_every_line_of_a_sync_daemon_crash_is_a_json_record(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "fleet.yaml"), str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 70, proc.stderr  # a bug: the documented exit code
    records = [json.loads(line) for line in proc.stderr.splitlines()]  # every line parses
    agent_crash = [r for r in records if r.get("agent") == "swarm-a-000"]
    assert agent_crash and "Traceback" in agent_crash[0]["exc_info"]
    fatal = [r for r in records if r.get("event") == "agentctl.internal_error"]
    assert len(fatal) == 1 and "injected" in fatal[0]["exc_info"]
    assert fatal[0]["level"] == "CRITICAL"
