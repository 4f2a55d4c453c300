"""Fleets the export tests share, as text (parsed with the real loader, so locations work)."""

from __future__ import annotations

from pathlib import Path

from agentctl_swarm.fleet.loader import LoadedFleet, parse_fleet
from agentctl_swarm.fleet.source import read_fleet

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo" / "fleet.yaml"

# Values that must never appear in any exported text.
SENTINEL_ENV = "sentinel-env-value-7f3a9c"
SENTINEL_FILE = "sentinel-file-value-51be02"

CLAUDE = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata:
  name: prod
  labels: {team: platform, cost-center: "42"}
defaults:
  image: registry.example.com/agentctl-agent:1.2
  resources: {memory: 2g, cpus: 1.5, pids: 512}
  env: {LOG_LEVEL: debug, PRICE: "$5 or 50%"}
  secrets:
    - {name: ANTHROPIC_API_KEY, from_env: EXPORT_TEST_KEY}
model: {name: claude-sonnet-4-5}
work: {channel: "#build", max_active: 3, budget: {tokens: 100000, cost_usd: 12.5}}
agents:
  - role: builder
    replicas: 3
    runtime: claude
    personality: You build.
    labels: {tier: gold}
    volumes:
      - {source: datasets, target: /data, read_only: true}
    secrets:
      - {name: GH_TOKEN, from_file: /etc/agentctl/gh-token}
  - role: reviewer
    replicas: 1
    runtime: claude
    restart: always
    volumes:
      - {source: datasets, target: /data, read_only: true}
  - role: janitor
    replicas: 0
    network: none
    command: [sh, -c, 'echo "$(date) cleaning $HOME"; sleep infinity']
"""

EXTERNAL = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {name: ext}
server: wss://chat.example.com:7443
model: {base_url: "http://10.1.2.3:8080"}
agents:
  - role: worker
    replicas: 2
    command: [agentctl-agent, demo, "{prompt}"]
"""


def loaded(text: str, name: str = "fleet.yaml") -> LoadedFleet:
    return parse_fleet(text, name)


def demo() -> LoadedFleet:
    return read_fleet(DEMO)


TOKEN = "placeholder-not-a-secret"


def runner_fleet(name: str, port: int, image: str) -> str:
    """Two task-taking agents whose command checks what an export must get right inside
    the container: the secret's value, and a literal `$` and `%` in the environment."""
    return f"""\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}, labels: {{team: export-test}}}}
defaults:
  image: {image}
  resources: {{memory: 256m, cpus: 0.5, pids: 128}}
embedded: {{host: 127.0.0.1, port: {port}}}
work: {{channel: "#work", heartbeat_interval: 2, task_timeout: 60, retries: 0}}
agents:
  - role: worker
    replicas: 2
    runtime: command
    env: {{GREETING: "50% of $HOME"}}
    command:
      - sh
      - -c
      - 'test "$EXPORT_TOKEN" = {TOKEN} && test "$GREETING" = "50% of \\$HOME" && echo "did: {{prompt}}"'
    secrets:
      - {{name: EXPORT_TOKEN, from_env: EXPORT_TOKEN}}
"""
