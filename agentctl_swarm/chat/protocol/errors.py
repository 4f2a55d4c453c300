"""The error side of the wire: ``ERROR.code`` values, close codes, and the exception a frame
that breaks a rule raises (owl/reference/agentchat-protocol.md, "Errors")."""

from __future__ import annotations

from agentctl_swarm.core.errors import AgentctlError

# Close codes the server uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class ErrorCode:
    """``ERROR.code`` values."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"
    NOT_INVITED = "NOT_INVITED"
    INVALID_MSG = "INVALID_MSG"
    RATE_LIMITED = "RATE_LIMITED"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    CHANNEL_EXISTS = "CHANNEL_EXISTS"
    INVALID_NAME = "INVALID_NAME"
    PROPOSAL_NOT_FOUND = "PROPOSAL_NOT_FOUND"
    PROPOSAL_EXPIRED = "PROPOSAL_EXPIRED"
    INVALID_PROPOSAL = "INVALID_PROPOSAL"
    SIGNATURE_REQUIRED = "SIGNATURE_REQUIRED"
    NOT_PROPOSAL_PARTY = "NOT_PROPOSAL_PARTY"
    INSUFFICIENT_REPUTATION = "INSUFFICIENT_REPUTATION"
    INVALID_STAKE = "INVALID_STAKE"
    VERIFICATION_FAILED = "VERIFICATION_FAILED"
    VERIFICATION_EXPIRED = "VERIFICATION_EXPIRED"
    NO_PUBKEY = "NO_PUBKEY"
    NOT_ALLOWED = "NOT_ALLOWED"
    DISPUTE_NOT_FOUND = "DISPUTE_NOT_FOUND"
    DISPUTE_INVALID_PHASE = "DISPUTE_INVALID_PHASE"
    DISPUTE_COMMITMENT_MISMATCH = "DISPUTE_COMMITMENT_MISMATCH"
    DISPUTE_NOT_PARTY = "DISPUTE_NOT_PARTY"
    DISPUTE_NOT_ARBITER = "DISPUTE_NOT_ARBITER"
    DISPUTE_DEADLINE_PASSED = "DISPUTE_DEADLINE_PASSED"
    DISPUTE_ALREADY_EXISTS = "DISPUTE_ALREADY_EXISTS"
    INSUFFICIENT_ARBITERS = "INSUFFICIENT_ARBITERS"
    BANNED = "BANNED"
    LURK_MODE = "LURK_MODE"
    CAPTCHA_FAILED = "CAPTCHA_FAILED"
    CAPTCHA_EXPIRED = "CAPTCHA_EXPIRED"
    DM_AGE_GATE = "DM_AGE_GATE"


class ProtocolError(AgentctlError):
    """A frame broke a wire rule; ``code``/``message`` are what goes into ``ERROR``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def one_line(self) -> str:
        return str(self)
