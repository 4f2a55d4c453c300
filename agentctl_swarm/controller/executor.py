"""Carry out a plan against Podman, in parallel, one outcome per action.

Each action is independent (one container), so they run on a bounded thread pool; a
failing action is reported and the others go on. Ordering inside an action keeps work
safe: a recreate runs the final-sync hook before removing anything, and a create
delivers the workspace seed before the container starts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agentctl_swarm.controller.lifecycle import LifecycleHooks, NoHooks
from agentctl_swarm.controller.nodes import NodeSet, as_nodes
from agentctl_swarm.controller.planner import Action, Kind, Plan
from agentctl_swarm.fleet.render import ContainerSpec
from agentctl_swarm.podman.backend import PodmanBackend


@dataclass(frozen=True)
class Outcome:
    action: Action
    ok: bool
    seconds: float
    error: str | None = None


EventSink = Callable[[Outcome], None]


class Executor:
    """Runs plans; ``on_done`` is called once per finished action (for progress bars)."""

    def __init__(
        self,
        backend: PodmanBackend | NodeSet,
        *,
        hooks: LifecycleHooks | None = None,
        secrets: Mapping[str, bytes] | None = None,
        concurrency: int = 8,
        force: bool = False,
        on_done: EventSink | None = None,
    ) -> None:
        self.backend = as_nodes(backend)
        self.hooks = hooks or NoHooks()
        self.secrets = dict(secrets or {})
        self.concurrency = max(1, concurrency)
        self.force = force
        self.on_done = on_done

    def run(self, plan: Plan) -> list[Outcome]:
        todo = plan.changes
        if not todo:
            return []
        for name, value in sorted(self.secrets.items()):
            self.backend.ensure_secret(name, value)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:
            return list(pool.map(self._run_one, todo))

    def _run_one(self, action: Action) -> Outcome:
        started = time.monotonic()
        try:
            self._do(action)
            outcome = Outcome(action, True, time.monotonic() - started)
        except Exception as exc:  # reported per action; the rest of the plan goes on
            outcome = Outcome(action, False, time.monotonic() - started, _describe(exc))
        if self.on_done is not None:
            self.on_done(outcome)
        return outcome

    def _do(self, action: Action) -> None:
        if action.kind in {Kind.RECREATE, Kind.DELETE} and action.observed is not None:
            self.hooks.before_remove(action.observed, self.backend, force=self.force)
            timeout = action.spec.stop_timeout if action.spec else None
            self.backend.remove(action.name, timeout=timeout, node=action.observed.node)
        if action.kind in {Kind.CREATE, Kind.RECREATE}:
            assert action.spec is not None
            self._create(action.spec)
        elif action.kind is Kind.START:
            self.backend.start(action.name)

    def _create(self, spec: ContainerSpec) -> None:
        """Create, seed, start; on any failure leave nothing half-made behind.

        A container Podman created but could not seed or start (runc refusing a limit)
        is removed, and so are the volumes this create made (they hold nothing yet);
        volumes that existed before (a recreate's workspace) are kept with their work.
        """
        node = self.backend.on(spec.node)
        fresh = [
            m.source for m in spec.mounts if m.kind == "volume" and not node.volume_exists(m.source)
        ]
        try:
            self.backend.create(spec)
            self.hooks.after_create(spec, self.backend)
            self.backend.start(spec.name)
        except Exception:
            with contextlib.suppress(Exception):
                self.backend.remove(spec.name)
            for volume in fresh:
                with contextlib.suppress(Exception):
                    node.remove_volume(volume)
            raise


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if len(text) > 500 else text
