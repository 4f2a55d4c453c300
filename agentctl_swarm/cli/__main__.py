"""``python -m agentctl_swarm.cli`` runs the agentctl command."""

from agentctl_swarm.cli import main

main()
