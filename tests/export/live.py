"""Helpers of the tests that run exported fleets on this host's Podman (loopback only)."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from tests.conftest import run_agentctl
from tests.integration.helpers import free_port, wait

__all__ = ["free_port", "get", "podman", "run_task"]


def get(http: str, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{http}/api/v1/{path}", timeout=3) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def podman(*args: str, input: str | None = None, timeout: float = 120):
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, input=input, timeout=timeout
    )


def run_task(port: int, role: str = "worker") -> dict:
    """Wait for two idle agents on the server, add a task, return it once it ended."""
    http = f"http://127.0.0.1:{port}"
    wait("the chat server", lambda: get(http, "status"), timeout=60)

    def idle() -> bool:
        agents = (get(http, "agents") or {}).get("agents", [])
        return sum(a["state"] == "idle" and a["alive"] for a in agents) == 2

    wait("two idle agents on the server", idle, timeout=60)
    added = run_agentctl(
        "task", "add", "hello from an exported fleet", "--role", role,
        "--server", f"ws://127.0.0.1:{port}", check=True, timeout=60,
    )  # fmt: skip
    tid = added.stdout.strip().splitlines()[-1]
    return wait(
        "the task to end",
        lambda: (t := get(http, f"tasks/{tid}")) and t["state"] in ("done", "failed") and t,
        timeout=60,
    )
