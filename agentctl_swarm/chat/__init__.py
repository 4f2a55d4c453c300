"""AgentChat: the wire protocol, identities, the server, the asyncio client, agentchat-mcp.

- :mod:`.protocol` — the wire contract (pure): frames, validation, JSON rules, signing;
  owl/reference/agentchat-protocol.md is its prose form.
- :mod:`.text`, :mod:`.identity` — wire text and Ed25519 identities, shared by both sides.
- :mod:`.server` — the server: a sans-I/O core in a thin ``websockets`` shell.
- :mod:`.client`, :mod:`.ratelimit` — the asyncio client and its pacing.
- :mod:`.mcp_server`, :mod:`.inbox` — agentchat-mcp, the stdio MCP server agents use.
"""
