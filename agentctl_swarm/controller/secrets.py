"""Secret values at apply time: read per role, versioned by a keyed digest, never shown.

Each role gets exactly the values its own entries (or the defaults') name: values are
read per (role, name), so two roles' ``TOKEN`` from different sources stay apart. A
rotated value must reach the agent through a plain apply, without putting the value, or
anything that reveals it, in a label: the Podman secret's name carries an HMAC of the
value under a key kept in the state directory (mode 0600). A plain hash would let anyone
who can list secrets test guesses of a short value; the keyed digest reveals nothing
without the key. A new value → a new secret name → a new spec hash → a recreate.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.core.files import atomic_write, file_lock
from agentctl_swarm.fleet.loader import FleetError, LoadedFleet, Loc, Problem, unique_problems
from agentctl_swarm.fleet.model import SecretSpec
from agentctl_swarm.fleet.render import ContainerSpec, role_secrets

KEY_FILE = "secret-digest.key"
Key = tuple[str, str]  # (role, secret name)


@dataclass(frozen=True)
class SecretValues:
    """The values one apply needs: by (role, name), and the versions derived from them."""

    values: Mapping[Key, bytes]
    versions: Mapping[Key, str]

    def by_podman_name(self, specs: list[ContainerSpec]) -> dict[str, bytes]:
        """Podman secret name -> value, for the secrets these containers mount."""
        out: dict[str, bytes] = {}
        for spec in specs:
            for ref in spec.secrets:
                out[ref.podman_name] = self.values[(spec.role, ref.name)]
        return out


def _entries(loaded: LoadedFleet) -> Iterator[tuple[str, Loc, SecretSpec]]:
    """(role, where the entry is written, entry) for every secret each role receives."""
    fleet = loaded.fleet
    default_locs = {s.name: i for i, s in enumerate(fleet.defaults.secrets or [])}
    for index, agent in enumerate(fleet.agents):
        own = {s.name: i for i, s in enumerate(agent.secrets or [])}
        for secret in role_secrets(fleet, agent):
            if secret.name in own:
                loc: Loc = ("agents", index, "secrets", own[secret.name])
            else:
                loc = ("defaults", "secrets", default_locs[secret.name])
            yield agent.role, loc, secret


def read_values(
    loaded: LoadedFleet, *, environ: Mapping[str, str] | None = None
) -> dict[Key, bytes]:
    """Every secret value, per role; FleetError locating each one that cannot be read."""
    env = os.environ if environ is None else environ
    values: dict[Key, bytes] = {}
    problems: list[Problem] = []
    for role, loc, secret in _entries(loaded):
        if secret.from_env is not None:
            value = env.get(secret.from_env)
            if value is None:
                problems.append(
                    loaded.locate(
                        (*loc, "from_env"),
                        f"environment variable {secret.from_env} is not set; "
                        "export it before applying",
                    )
                )
                continue
            values[(role, secret.name)] = value.encode()
        elif secret.from_file is not None:
            path = Path(secret.from_file).expanduser()
            if not path.is_absolute():
                path = loaded.path.parent / path
            try:
                values[(role, secret.name)] = path.read_bytes()
            except OSError as exc:
                problems.append(
                    loaded.locate((*loc, "from_file"), f"cannot read {path}: {exc.strerror or exc}")
                )
    if problems:
        raise FleetError(unique_problems(problems))
    return values


def digest_key(state_dir: Path) -> bytes:
    """The machine's HMAC key for secret versions (created once, 0600, race-free)."""
    path = Path(state_dir) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    with file_lock(path.with_suffix(".lock"), timeout=30, mode=0o600):
        if not path.exists():
            atomic_write(path, secrets.token_bytes(32), mode=0o600)
        return path.read_bytes()


def versions(values: Mapping[Key, bytes], key: bytes) -> dict[Key, str]:
    """(role, name) -> 10 hex characters of HMAC-SHA256(key, value)."""
    return {k: hmac.new(key, v, hashlib.sha256).hexdigest()[:10] for k, v in values.items()}


def load(
    loaded: LoadedFleet, state_dir: Path, *, environ: Mapping[str, str] | None = None
) -> SecretValues:
    """Read every value and derive its version (no value is ever returned as text)."""
    values = read_values(loaded, environ=environ)
    return SecretValues(values, versions(values, digest_key(state_dir)) if values else {})
