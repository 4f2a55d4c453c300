"""Errors of the sync package: one type, with a message that names the place and the fix."""

from __future__ import annotations

from agentctl_swarm.core.errors import AgentctlError


class SyncError(AgentctlError):
    """A sync (or seed) step failed; the message says where and what to do about it."""
