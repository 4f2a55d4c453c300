"""agentctl-swarm: keep a fleet of AI coding agents running in Podman containers."""

__version__ = "0.1.0"
