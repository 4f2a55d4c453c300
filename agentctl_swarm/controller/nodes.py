"""A fleet over several Podman hosts, behind the one backend interface the controller uses.

Why a composite rather than a node argument on every call: the planner, executor, health
monitor, sync-daemon, `logs`, `restart` and the workspace hooks all address containers by
name. :class:`NodeSet` keeps that: it looks at every node in parallel, remembers which
node each container lives on, and sends a call about a container to that node; a create
goes to the node its spec was placed on (``ContainerSpec.node``). Secrets go to every
reachable node (a Podman secret lives on one host, and any agent there may need it).

A node that cannot be reached is reported in :attr:`NodeSet.unreachable` and left out;
the others carry on. Its agents are neither created elsewhere nor counted as gone: apply
plans only for the nodes it could see (see controller.apply).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from agentctl_swarm.core.files import atomic_write
from agentctl_swarm.fleet.model import Fleet
from agentctl_swarm.fleet.render import LOCAL_NODE, ContainerSpec
from agentctl_swarm.podman.backend import PodmanBackend, PodmanError, PodmanUnavailable
from agentctl_swarm.podman.engine import EngineFacts
from agentctl_swarm.podman.types import ContainerStats, ExecResult, ObservedContainer

T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    """One Podman host: its name in the fleet file and its backend."""

    name: str
    backend: PodmanBackend
    local: bool = True


class NodeSet:
    """Several Podman backends addressed as one (see the module docstring)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        if not nodes:
            raise ValueError("a NodeSet needs at least one node")
        self.nodes = {n.name: n for n in nodes}
        self.unreachable: dict[str, str] = {}  # node -> why, from the last look
        self._where: dict[str, str] = {}  # container name -> node
        self._execs: dict[str, str] = {}  # exec id -> node
        self._lock = threading.Lock()

    @classmethod
    def for_fleet(cls, fleet: Fleet, local_url: str) -> NodeSet:
        """The fleet's nodes, or this machine's Podman (``local_url``) as node "local"."""
        if not fleet.nodes:
            return cls([Node(LOCAL_NODE, PodmanBackend(local_url))])
        return cls([Node(n.name, PodmanBackend(n.url), n.local) for n in fleet.nodes])

    @property
    def url(self) -> str:
        return ", ".join(f"{n.name}={n.backend.url}" for n in self.nodes.values())

    @property
    def reachable(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.name not in self.unreachable]

    # -- routing ------------------------------------------------------------------------

    def on(self, node: str) -> PodmanBackend:
        """The backend of one node by name."""
        return self.nodes[node].backend

    def node_of(self, name: str) -> str | None:
        """The node a container was last seen on (or created on)."""
        with self._lock:
            return self._where.get(name)

    def backend_for(self, name: str) -> PodmanBackend:
        """The backend that holds container ``name`` (looked for when not known yet)."""
        node = self.node_of(name)
        if node is None:
            for candidate in self.reachable:
                try:
                    found = candidate.backend.inspect(name) is not None
                except Exception:
                    continue
                if found:
                    self._remember(name, candidate.name)
                    return candidate.backend
            node = next(iter(self.nodes))  # not anywhere: let the first node say so
        return self.nodes[node].backend

    def _remember(self, name: str, node: str) -> None:
        with self._lock:
            self._where[name] = node

    def _each(self, call: Callable[[Node], T], nodes: Sequence[Node] | None = None) -> dict[str, T]:
        """``call`` on every (reachable) node in parallel; failures mark nodes unreachable."""
        todo = list(nodes if nodes is not None else self.reachable)
        results: dict[str, T] = {}
        if not todo:
            return results

        def one(node: Node) -> tuple[str, T | None, str | None]:
            try:
                return node.name, call(node), None
            except Exception as exc:
                return node.name, None, _why(exc)

        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for name, value, error in pool.map(one, todo):
                if error is None:
                    results[name] = value  # type: ignore[assignment]
                else:
                    self.unreachable[name] = error
        return results

    # -- observe ------------------------------------------------------------------------

    def ping(self) -> str:
        """Every node's Podman version; raises when no node answers at all."""
        self.unreachable = {}
        versions = self._each(lambda n: n.backend.ping(), list(self.nodes.values()))
        if not versions:
            raise PodmanUnavailable(
                "no node's Podman API answers: "
                + "; ".join(f"{k}: {v}" for k, v in self.unreachable.items()),
                hint="check the `nodes:` URLs; `agentctl doctor` on each node",
            )
        return ", ".join(f"{k} {v}" for k, v in versions.items())

    def list_owned(self, fleet: str | None = None) -> list[ObservedContainer]:
        """Every node's containers (each tagged with its node), looking at all nodes again.

        Raises only when no node answers; otherwise :attr:`unreachable` names the rest.
        """
        self.unreachable = {}
        found = self._each(lambda n: n.backend.list_owned(fleet), list(self.nodes.values()))
        if not found:
            raise PodmanUnavailable(
                "cannot reach any node: "
                + "; ".join(f"{k}: {v}" for k, v in self.unreachable.items()),
                hint="check the `nodes:` URLs and that each node's Podman API runs",
            )
        out: list[ObservedContainer] = []
        with self._lock:
            for node, containers in found.items():
                for c in containers:
                    self._where[c.name] = node
                    out.append(replace(c, node=node))
        return sorted(out, key=lambda o: (o.name, o.node))

    def observe(self, name: str) -> ObservedContainer | None:
        seen = self.backend_for(name).observe(name)
        node = self.node_of(name)
        return replace(seen, node=node) if seen is not None and node else seen

    def inspect(self, name: str) -> dict[str, Any] | None:
        return self.backend_for(name).inspect(name)

    def restart_count(self, name: str) -> int | None:
        return self.backend_for(name).restart_count(name)

    def image_exists(self, image: str, node: str | None = None) -> bool:
        """Whether ``image`` is on ``node`` (default: on every reachable node)."""
        targets = [self.nodes[node]] if node else self.reachable
        return all(n.backend.image_exists(image) for n in targets)

    def stats(self, names: list[str]) -> dict[str, ContainerStats]:
        """One resource sample per running container of ``names`` (one call per node)."""
        first = next(iter(self.nodes))
        by_node: dict[str, list[str]] = {}
        for name in names:
            by_node.setdefault(self.node_of(name) or first, []).append(name)
        out: dict[str, ContainerStats] = {}
        for node, group in by_node.items():
            if node not in self.unreachable:
                out.update(self.on(node).stats(group))
        return out

    def engine_of(self, node: str) -> EngineFacts:
        return self.nodes[node].backend.engine

    @property
    def engine(self) -> EngineFacts:
        """The first node's facts (callers that care per node use :meth:`engine_of`)."""
        return next(iter(self.nodes.values())).backend.engine

    @property
    def rootless(self) -> bool:
        return next(iter(self.nodes.values())).backend.rootless

    def events(self, fleet: str) -> Iterator[dict[str, Any]]:
        """Every reachable node's container events, merged (one reader thread per node)."""
        merged: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        nodes = self.reachable

        def pump(node: Node) -> None:
            try:
                for event in node.backend.events(fleet):
                    merged.put({**event, "node": node.name})
            except BaseException as exc:
                merged.put(exc)

        for node in nodes:
            threading.Thread(
                target=pump, args=(node,), daemon=True, name=f"events-{node.name}"
            ).start()
        ended = 0
        while ended < len(nodes):
            item = merged.get()
            if isinstance(item, BaseException):
                ended += 1
                if ended == len(nodes):
                    raise item
                continue
            yield item

    # -- volumes and secrets ------------------------------------------------------------

    def volume_exists(self, name: str) -> bool:
        return any(self._each(lambda n: n.backend.volume_exists(name)).values())

    def remove_volume(self, name: str) -> bool:
        return any(self._each(lambda n: n.backend.remove_volume(name)).values())

    def list_volumes(self, fleet: str) -> list[str]:
        found = self._each(lambda n: n.backend.list_volumes(fleet))
        return sorted({v for vols in found.values() for v in vols})

    def secret_exists(self, name: str) -> bool:
        return all(self._each(lambda n: n.backend.secret_exists(name)).values())

    def ensure_secret(self, name: str, value: bytes, *, replace: bool = False) -> None:
        failed = dict(self.unreachable)
        self._each(lambda n: n.backend.ensure_secret(name, value, replace=replace))
        new = {k: v for k, v in self.unreachable.items() if k not in failed}
        if new:
            raise PodmanError(
                f"creating secret {name} failed on "
                + "; ".join(f"node {k}: {v}" for k, v in new.items())
            )

    def remove_secret(self, name: str) -> None:
        self._each(lambda n: n.backend.remove_secret(name))

    def list_secrets(self, prefix: str) -> list[str]:
        found = self._each(lambda n: n.backend.list_secrets(prefix))
        return sorted({s for names in found.values() for s in names})

    # -- act on containers --------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        node = self.nodes.get(spec.node)
        if node is None:
            raise PodmanError(f"{spec.name} is placed on node {spec.node!r}, which is not listed")
        cid = node.backend.create(spec)
        self._remember(spec.name, spec.node)
        return cid

    def start(self, name: str) -> None:
        self.backend_for(name).start(name)

    def stop(self, name: str, timeout: int | None = None) -> None:
        self.backend_for(name).stop(name, timeout)

    def restart(self, name: str, timeout: int | None = None) -> None:
        self.backend_for(name).restart(name, timeout)

    def remove(self, name: str, *, timeout: int | None = None, node: str | None = None) -> bool:
        """Remove container ``name`` (from ``node`` when given: a copy left on another)."""
        backend = self.nodes[node].backend if node else self.backend_for(name)
        return backend.remove(name, timeout=timeout)

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        return self.backend_for(name).logs(name, follow=follow, tail=tail)

    def exec_frames(self, container: str, argv: list[str], **kwargs: Any) -> Any:
        backend = self.backend_for(container)
        exec_id, frames = backend.exec_frames(container, argv, **kwargs)
        node = self.node_of(container) or next(iter(self.nodes))
        with self._lock:
            self._execs[exec_id] = node
        return exec_id, frames

    def exec_exit_code(self, exec_id: str) -> int:
        with self._lock:
            node = self._execs.pop(exec_id, None)
        backend = self.nodes[node].backend if node else next(iter(self.nodes.values())).backend
        return backend.exec_exit_code(exec_id)

    def exec(self, container: str, argv: list[str], **kwargs: Any) -> ExecResult:
        return self.backend_for(container).exec(container, argv, **kwargs)

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        self.backend_for(container).put_archive(container, path, data)

    def get_archive(self, container: str, path: str) -> bytes:
        return self.backend_for(container).get_archive(container, path)

    def read_file(self, container: str, path: str, *, limit: int = 1 << 20) -> bytes | None:
        return self.backend_for(container).read_file(container, path, limit=limit)

    def close(self) -> None:
        for node in self.nodes.values():
            node.backend.close()


def as_nodes(backend: PodmanBackend | NodeSet) -> NodeSet:
    """A NodeSet for either (one PodmanBackend is this machine's node "local")."""
    return backend if isinstance(backend, NodeSet) else NodeSet([Node(LOCAL_NODE, backend)])


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# -- where agents were put (so a node that is down does not lose its agents' places) --------


def placement_file(state_dir: Path, fleet: str) -> Path:
    return state_dir / "placement" / f"{fleet}.json"


def load_placement(state_dir: Path, fleet: str) -> dict[str, str]:
    """Agent -> node as the last apply left it ({} when never saved or unreadable)."""
    try:
        doc = json.loads(placement_file(state_dir, fleet).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}


def save_placement(state_dir: Path, fleet: str, placement: Mapping[str, str]) -> None:
    """Remember agent -> node (one small JSON file, replaced atomically)."""
    if set(placement.values()) <= {LOCAL_NODE}:
        return  # a one-node fleet has nothing to remember
    path = placement_file(state_dir, fleet)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(dict(sorted(placement.items())), indent=1).encode())
