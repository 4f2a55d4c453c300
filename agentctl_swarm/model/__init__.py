"""A scripted stand-in for the Anthropic Messages API: deterministic, zero-cost runs of
the real Claude Code binary (``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``).

- ``script``: the YAML script's schema (what the "model" answers, turn by turn);
  ``script_file``: loading it with ``FILE:LINE:COL`` errors.
- ``wire``: the Messages API's shapes (SSE events, error bodies); ``engine``: one
  request in, one reply out (pure); ``server``: the HTTP shell and request recording.

    from agentctl_swarm.model import ScriptedModel
    with ScriptedModel.from_yaml("turns: [Hello.]").serve() as url:
        ...  # run claude with ANTHROPIC_BASE_URL=url
"""

from agentctl_swarm.model.engine import Reply, answer
from agentctl_swarm.model.script import Conversation, ErrorReply, Script, ToolCall, Turn
from agentctl_swarm.model.script_file import ScriptError, parse_script, read_script
from agentctl_swarm.model.server import RecordedRequest, ScriptedModel, is_loopback

__all__ = [
    "Conversation",
    "ErrorReply",
    "RecordedRequest",
    "Reply",
    "Script",
    "ScriptError",
    "ScriptedModel",
    "ToolCall",
    "Turn",
    "answer",
    "is_loopback",
    "parse_script",
    "read_script",
]
