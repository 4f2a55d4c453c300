"""Restarting the server with --data-dir loses nothing; the CLI runs it as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl_swarm.chat import protocol as p
from agentctl_swarm.chat.server import ServerConfig, ThreadedServer

pytestmark = pytest.mark.timeout(90)


async def test_restart_with_data_dir_keeps_everything(tmp_path, raw_connect):
    cfg = ServerConfig(port=0, data_dir=tmp_path / "data", complete_min_age_ms=0,
                       admin_key="adm-key-persist")  # fmt: skip
    srv = ThreadedServer(cfg).start()
    try:
        a = await raw_connect(srv.url, "alice")
        b = await raw_connect(srv.url, "bob")
        skills = [{"capability": "review"}]
        await a.send({"type": "REGISTER_SKILLS", "skills": skills,
                      "sig": a.identity.sign(p.sign_string_register_skills(skills))})  # fmt: skip
        await a.expect("SKILLS_REGISTERED")
        task = "persist me"
        await a.send({"type": "PROPOSAL", "to": b.agent_id, "task": task,
                      "sig": a.identity.sign(p.sign_string_proposal(b.agent_id, task))})  # fmt: skip
        pid = (await b.expect("PROPOSAL"))["id"]
        await b.send({"type": "ACCEPT", "proposal_id": pid,
                      "sig": b.identity.sign(p.sign_string_accept(pid))})  # fmt: skip
        await a.expect("ACCEPT")
        await a.send({"type": "COMPLETE", "proposal_id": pid,
                      "sig": a.identity.sign(p.sign_string_complete(pid))})  # fmt: skip
        done = await a.expect("COMPLETE")
        new_rating = done["rating_changes"][a.agent_id]["newRating"]
        await a.send({"type": "MSG", "to": "#help", "content": "remember this"})
        await b.expect("MSG", content="remember this")
        await a.send({"type": "ADMIN_BAN", "agent_id": "@badbadbadbadbad0",
                      "admin_key": "adm-key-persist"})  # fmt: skip
        await a.expect("ADMIN_RESULT", action="ban")
        ident_a, ident_b = a.identity, b.identity
        await a.close()
        await b.close()
    finally:
        srv.stop()

    srv2 = ThreadedServer(cfg).start()
    try:
        a2 = await raw_connect(srv2.url)
        await a2.login("alice", ident_a)
        await a2.send({"type": "JOIN", "channel": "#help"})
        await a2.expect("JOINED", channel="#help")
        replayed = await a2.expect("MSG", content="remember this")
        assert replayed["replay"] is True
        await a2.send({"type": "SEARCH_SKILLS", "query": {"capability": "review"}})
        res = await a2.expect("SEARCH_RESULTS")
        assert res["total"] == 1 and res["results"][0]["agent_rating"] == new_rating
        await a2.send({"type": "COMPLETE", "proposal_id": pid,
                       "sig": ident_a.sign(p.sign_string_complete(pid))})  # fmt: skip
        # the proposal survived the restart (it exists, and is completed)
        assert (await a2.error("INVALID_PROPOSAL"))["message"] == "PROPOSAL_NOT_ACCEPTED"
        b2 = await raw_connect(srv2.url)
        await b2.login("bob", ident_b)
        health = await asyncio.to_thread(srv2.call, lambda: srv2.handle.core.health(0))
        assert health["proposals"]["byStatus"] == {"completed": 1}
        bans = await asyncio.to_thread(srv2.call, lambda: dict(srv2.handle.core.bans))
        assert "badbadbadbadbad0" in bans
    finally:
        srv2.stop()


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AGENTCHAT_ADMIN_KEY", None)
    return env


def test_cli_server_runs_and_stops_cleanly_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentctl_swarm.cli", "server", "--port", "0",
         "--data-dir", str(tmp_path / "d"), "--buffer-size", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(),
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("AgentChat server running on ws://127.0.0.1:"), line
        url = line.split()[-1]

        async def ping() -> dict:
            from websockets.asyncio.client import connect

            async with connect(url) as ws:
                await ws.send('{"type":"PING"}')
                return p.decode_server_frame(await ws.recv())

        assert asyncio.run(ping())["type"] == "PONG"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (tmp_path / "d" / "agentchat.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "70000"], "--port 70000: must be between 0 and 65535"),
        (["--buffer-size", "0"], "--buffer-size 0: must be at least 1"),
        (["--data-dir", "FILE"], "exists and is not a directory"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, args, fragment):
    file = tmp_path / "f"
    file.write_text("x")
    args = [str(file) if a == "FILE" else a for a in args]
    out = subprocess.run(
        [sys.executable, "-m", "agentctl_swarm.cli", "server", *args],
        capture_output=True, text=True, timeout=60, env=_cli_env(),
    )  # fmt: skip
    assert out.returncode == 2
    assert fragment in out.stderr and "Traceback" not in out.stderr


def test_cli_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "agentctl_swarm.cli", "server", "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=_cli_env(),
        )  # fmt: skip
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_corrupt_database_is_a_clear_error(tmp_path: Path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "agentchat.db").write_text("this is not sqlite" * 100)
    out = subprocess.run(
        [sys.executable, "-m", "agentctl_swarm.cli", "server", "--port", "0", "--data-dir", str(d)],
        capture_output=True, text=True, timeout=60, env=_cli_env(),
    )  # fmt: skip
    assert out.returncode == 2
    assert "is not a usable SQLite database" in out.stderr and "Traceback" not in out.stderr
