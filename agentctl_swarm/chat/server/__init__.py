"""The AgentChat server: a pure core (:mod:`.core`) inside a thin asyncio shell.

Public API::

    from agentctl_swarm.chat.server import ServerConfig, serve, run_in_thread

    handle = await serve(ServerConfig(port=0))      # in a running loop
    handle.url, handle.port; await handle.close()

    srv = run_in_thread(ServerConfig(port=0))       # own loop in a daemon thread
    srv.url; srv.stop()
"""

from __future__ import annotations

from agentctl_swarm.chat.server.config import ServerConfig
from agentctl_swarm.chat.server.core import ServerCore
from agentctl_swarm.chat.server.store import Store, StoreError
from agentctl_swarm.chat.server.transport import (
    ServerHandle,
    ThreadedServer,
    run_forever,
    run_in_thread,
    serve,
)

__all__ = [
    "ServerConfig",
    "ServerCore",
    "ServerHandle",
    "Store",
    "StoreError",
    "ThreadedServer",
    "run_forever",
    "run_in_thread",
    "serve",
]
