"""The one door to Podman: every container, volume, secret and exec call goes through here.

It speaks to the Podman API socket with podman-py. Callers get plain dataclasses back
(ObservedContainer, ExecResult), never podman-py objects, so the rest of the project can
be tested against real Podman without knowing its client library, and the planner stays
pure. Each method is one small, idempotent-where-possible operation; retries and
ordering belong to the controller.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from podman import PodmanClient, api
from podman.errors import APIError, NotFound

from agentctl_swarm.core.errors import AgentctlError, UnavailableError
from agentctl_swarm.fleet.render import (
    LABEL_AGENT,
    LABEL_FLEET,
    LABEL_KIND,
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    ContainerSpec,
)
from agentctl_swarm.podman.engine import EngineFacts
from agentctl_swarm.podman.types import ContainerStats, ExecResult, ObservedContainer


class PodmanError(AgentctlError):
    """A Podman operation failed; the message says which and why."""


class PodmanUnavailable(PodmanError, UnavailableError):
    """The API socket cannot be reached (exit 3)."""

    exit_code = UnavailableError.exit_code


@dataclass
class CallCounter:
    """Counts API requests (the no-op apply must cost exactly one list call)."""

    count: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        path = response.request.path_url.split("?")[0]
        # /v5.0.0/libpod/containers/json -> containers/json
        key = "/".join(path.split("/")[3:]) or path
        with self._lock:
            self.count += 1
            self.by_path[key] = self.by_path.get(key, 0) + 1


class PodmanBackend:
    """Podman over its API socket (the URL comes from Settings.podman_url at the edge)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = CallCounter()
        self._client: PodmanClient | None = None
        self._lock = threading.Lock()
        self._rootless: bool | None = None

    # -- connection -------------------------------------------------------------------

    @property
    def client(self) -> PodmanClient:
        with self._lock:
            if self._client is None:
                client = PodmanClient(base_url=self.url, timeout=120)
                client.api.hooks["response"].append(self.calls)
                self._client = client
            return self._client

    def ping(self) -> str:
        """The server's Podman version; raises PodmanUnavailable with the fix."""
        try:
            return str(self.client.version()["Version"])
        except Exception as exc:
            raise PodmanUnavailable(
                f"cannot reach the Podman API at {self.url} ({_short(exc)}); "
                "run `agentctl doctor --fix` to start it, or set AGENTCTL_PODMAN_URL"
            ) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- observe ------------------------------------------------------------------------

    def list_owned(self, fleet: str | None = None) -> list[ObservedContainer]:
        """Every container the project owns (of one fleet), in a single API call."""
        label = f"{LABEL_FLEET}={fleet}" if fleet else f"{LABEL_KIND}=agent"
        try:
            raw = self.client.containers.list(all=True, filters={"label": label})
        except APIError as exc:
            raise PodmanError(f"listing containers failed: {_short(exc)}") from exc
        out = [_observed(c.attrs) for c in raw]
        return sorted((o for o in out if o.agent), key=lambda o: o.name)

    def observe(self, name: str) -> ObservedContainer | None:
        """One container by name, as the planner sees it (None when it does not exist)."""
        attrs = self.inspect(name)
        if attrs is None:
            return None
        state = attrs.get("State")
        if isinstance(state, dict):  # inspect shape: State is an object, Config has labels
            config = attrs.get("Config") or {}
            flat = {
                "Id": attrs.get("Id"),
                "Names": [attrs.get("Name", name)],
                "Labels": config.get("Labels") or {},
                "State": state.get("Status", "unknown"),
                "Image": config.get("Image", ""),
                "Created": attrs.get("Created"),
                "StartedAt": state.get("StartedAt"),
                "Exited": state.get("Status") == "exited",
                "ExitCode": state.get("ExitCode", 0),
            }
            observed = _observed(flat)
            return ObservedContainer(
                **{**observed.__dict__, "restarts": int(attrs.get("RestartCount") or 0)}
            )
        return _observed(attrs)

    def inspect(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.containers.get(name).attrs)
        except NotFound:
            return None

    def restart_count(self, name: str) -> int | None:
        attrs = self.inspect(name)
        return None if attrs is None else int(attrs.get("RestartCount") or 0)

    def image_exists(self, image: str) -> bool:
        try:
            return bool(self.client.images.exists(image))
        except APIError:
            return False

    def stats(self, names: list[str]) -> dict[str, ContainerStats]:
        """One resource sample (memory, CPU) per running container of ``names``, by name.

        One API call for all of them (``containers/stats?stream=false``). Podman refuses
        the whole call when one name no longer exists (removed since it was listed); then
        each is asked alone and the vanished ones are left out. Stopped containers are
        left out too (Podman reports zeros for them).
        """
        wanted = list(dict.fromkeys(names))
        found = self._stats(wanted) if wanted else []
        if found is None:
            found = [s for name in wanted for s in (self._stats([name]) or [])]
        return {s.name: s for s in found if s.system_nanos > 0}

    def _stats(self, names: list[str]) -> list[ContainerStats] | None:
        """The samples, or None when Podman answered with an error for the batch."""
        try:
            response = self.client.api.get(
                "/containers/stats", params={"containers": names, "stream": False}
            )
            response.raise_for_status()
            doc = response.json()
        except (APIError, ValueError) as exc:
            raise PodmanError(f"reading container stats failed: {_short(exc)}") from exc
        if not isinstance(doc, dict) or doc.get("Error") is not None:
            return None
        return [_container_stats(s) for s in doc.get("Stats") or [] if isinstance(s, dict)]

    # -- act ----------------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.client.volumes.create(name=name, labels=labels)
        except APIError as exc:
            if getattr(exc, "status_code", None) == 409 or "already exists" in str(exc):
                return
            raise PodmanError(f"creating volume {name} failed: {_short(exc)}") from exc

    def remove_volume(self, name: str) -> bool:
        try:
            self.client.volumes.remove(name, force=True)
            return True
        except NotFound:
            return False
        except APIError as exc:
            raise PodmanError(f"removing volume {name} failed: {_short(exc)}") from exc

    def list_volumes(self, fleet: str) -> list[str]:
        vols = self.client.volumes.list(filters={"label": f"{LABEL_FLEET}={fleet}"})
        return sorted(v.name for v in vols)

    def secret_exists(self, name: str) -> bool:
        try:
            return bool(self.client.secrets.exists(name))
        except APIError:
            return False

    def ensure_secret(self, name: str, value: bytes, *, replace: bool = False) -> None:
        """Create the Podman secret ``name`` (the value is never logged or labelled)."""
        if self.secret_exists(name):
            if not replace:
                return
            self.client.secrets.remove(name)
        try:
            self.client.secrets.create(name, value)
        except APIError as exc:
            raise PodmanError(f"creating secret {name} failed: {_short(exc)}") from exc

    def remove_secret(self, name: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.client.secrets.remove(name)

    def list_secrets(self, prefix: str) -> list[str]:
        """Names of the secrets that start with ``prefix`` (never their values)."""
        try:
            found = self.client.secrets.list()
        except APIError as exc:
            raise PodmanError(f"listing secrets failed: {_short(exc)}") from exc
        return sorted(s.name for s in found if s.name and s.name.startswith(prefix))

    def volume_exists(self, name: str) -> bool:
        try:
            return bool(self.client.volumes.exists(name))
        except APIError:
            return False

    @property
    def rootless(self) -> bool:
        """Whether the engine runs rootless (then it is a user namespace already)."""
        if self._rootless is None:
            try:
                info = self.client.info()
                self._rootless = bool(info.get("host", {}).get("security", {}).get("rootless"))
            except APIError as exc:
                raise PodmanError(f"podman info failed: {_short(exc)}") from exc
        return self._rootless

    @functools.cached_property
    def engine(self) -> EngineFacts:
        """What the engine can enforce (rootless? which cgroup controllers? slirp4netns?).

        One `info` call, made only when asked (apply's preflight asks before it creates
        containers) and kept for this backend's life.
        """
        try:
            return EngineFacts.from_info(self.client.info())
        except APIError as exc:
            raise PodmanError(f"podman info failed: {_short(exc)}") from exc

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container for ``spec``, with its volumes; returns its id."""
        vol_labels = {LABEL_FLEET: spec.fleet, LABEL_AGENT: spec.agent, LABEL_KIND: "volume"}
        volumes: dict[str, dict[str, Any]] = {}
        mounts: list[dict[str, Any]] = [
            {"type": "tmpfs", "source": "tmpfs", "target": "/tmp", "size": "256m", "mode": "1777"}
        ]
        for mount in spec.mounts:
            if mount.kind == "volume":
                self.ensure_volume(mount.source, vol_labels)
                volumes[mount.source] = {
                    "bind": mount.target,
                    "mode": "ro" if mount.read_only else "rw",
                }
            else:
                if mount.create:  # a directory agentctl owns (the runner's control socket)
                    Path(mount.source).mkdir(parents=True, exist_ok=True, mode=0o755)
                mounts.append(
                    {
                        "type": "bind",
                        "source": mount.source,
                        "target": mount.target,
                        "read_only": mount.read_only,
                    }
                )
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "command": spec.command,
            "environment": spec.env,
            "labels": spec.labels,
            "volumes": volumes,
            "mounts": mounts,
            "network_mode": spec.network,
            "user": spec.user,
            "cap_drop": ["ALL"],
            "no_new_privileges": True,
            "stop_timeout": spec.stop_timeout,
            "restart_policy": _restart_policy(spec),
            "hostname": spec.agent,
        }
        if spec.memory_bytes:
            kwargs["mem_limit"] = spec.memory_bytes
        if spec.nano_cpus:  # podman-py ignores nano_cpus; quota/period is what libpod applies
            kwargs["cpu_period"] = 100_000
            kwargs["cpu_quota"] = spec.nano_cpus * 100_000 // 1_000_000_000
        if spec.pids:
            kwargs["pids_limit"] = spec.pids
        if spec.userns == "auto" and not self.rootless:
            # Agents run in their own user namespace: uid 1000 inside is a subordinate id
            # no host user has, so host users cannot read the agent's /proc/PID/environ.
            # With host networking the kernel refuses a fresh sysfs inside a new user
            # namespace; the host's /sys is bound read-only instead (what rootless
            # Podman does). Named volumes get :U so their files follow the mapping.
            kwargs["userns_mode"] = "auto"
            # The API does not derive the id mapping from the mode as the CLI does.
            kwargs["idmappings"] = {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}}
            if spec.network == "host":
                mounts.append(
                    {"type": "bind", "source": "/sys", "target": "/sys", "read_only": True}
                )
            for volume in volumes.values():
                volume["extended_mode"] = ["U"]
        if spec.secrets:  # as files only: env-type secrets show up in `podman inspect`
            kwargs["secrets"] = [
                {"source": s.podman_name, "target": s.name, "uid": 1000, "gid": 1000, "mode": 0o400}
                for s in spec.secrets
            ]
        # podman-py's containers.create() inspects the new container afterwards; we only
        # need its id, so post the rendered payload ourselves (one API call, not two).
        manager = self.client.containers
        payload = manager._render_payload({"image": spec.image, **kwargs})
        try:
            response = self.client.api.post(
                "/containers/create",
                headers={"content-type": "application/json"},
                data=api.prepare_body(payload),
            )
            response.raise_for_status()
        except APIError as exc:
            raise PodmanError(f"creating {spec.name} failed: {_short(exc)}") from exc
        return str(response.json()["Id"])

    def start(self, name: str) -> None:
        """Start by name in one API call (no lookup first)."""
        try:
            response = self.client.api.post(f"/containers/{name}/start")
            if response.status_code == 304:  # already running
                return
            response.raise_for_status()
        except APIError as exc:
            raise PodmanError(f"starting {name} failed: {_short(exc)}") from exc

    def stop(self, name: str, timeout: int | None = None) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``); a no-op when not running."""
        try:
            container = self.client.containers.get(name)
            if container.status not in {"running", "paused", "restarting", "stopping"}:
                return
            container.stop(timeout=timeout) if timeout is not None else container.stop()
        except NotFound:
            return
        except APIError as exc:
            if "not running" in str(exc) or getattr(exc, "status_code", None) == 304:
                return
            raise PodmanError(f"stopping {name} failed: {_short(exc)}") from exc
        except ValueError:  # podman-py parses the empty body of "304 already stopped"
            return

    def restart(self, name: str, timeout: int | None = None) -> None:
        self.stop(name, timeout)
        self.start(name)

    def remove(self, name: str, *, timeout: int | None = None) -> bool:
        """Stop (gracefully) and remove a container; its named volumes stay."""
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return False
        try:
            if container.status == "running":
                self.stop(name, timeout)
            container.remove(force=True)
            return True
        except NotFound:
            return False
        except APIError as exc:
            raise PodmanError(f"removing {name} failed: {_short(exc)}") from exc

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        try:
            container = self.client.containers.get(name)
        except NotFound as exc:
            raise PodmanError(f"no container {name}") from exc
        kwargs: dict[str, Any] = {"stream": True, "follow": follow, "stdout": True, "stderr": True}
        if tail is not None:
            kwargs["tail"] = tail
        yield from container.logs(**kwargs)

    def events(self, fleet: str) -> Iterator[dict[str, Any]]:
        """Podman's container events for ``fleet``, as they happen (blocks; a generator
        the controller reads in a thread to wake up at once when an agent dies)."""
        client = PodmanClient(base_url=self.url, timeout=None)  # no read timeout: a stream
        try:
            filters = {"type": "container", "label": f"{LABEL_FLEET}={fleet}"}
            yield from client.events(filters=filters, decode=True)
        except APIError as exc:
            raise PodmanError(f"watching events failed: {_short(exc)}") from exc
        finally:
            client.close()

    # -- inside containers -------------------------------------------------------------

    def exec_frames(
        self,
        container: str,
        argv: list[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[str, Iterator[tuple[bytes | None, bytes | None]]]:
        """Start ``argv`` in a running container; (exec id, stream of (stdout, stderr) frames).

        Two API calls by name (create, start); podman-py's exec_run looks the container
        up first, which costs a third round-trip on every sync.
        """
        data: dict[str, Any] = {
            "AttachStdout": True,
            "AttachStderr": True,
            "AttachStdin": False,
            "Cmd": argv,
            "Tty": False,
        }
        if user:
            data["User"] = user
        if workdir:
            data["WorkingDir"] = workdir
        if env:
            data["Env"] = [f"{k}={v}" for k, v in env.items()]
        try:
            created = self.client.api.post(f"/containers/{container}/exec", data=json.dumps(data))
            created.raise_for_status()
            exec_id = str(created.json()["Id"])
            started = self.client.api.post(
                f"/exec/{exec_id}/start",
                data=json.dumps({"Detach": False, "Tty": False}),
                stream=True,
            )
            started.raise_for_status()
        except NotFound as exc:
            raise PodmanError(f"no container {container}") from exc
        except APIError as exc:
            raise PodmanError(f"exec in {container} failed: {_short(exc)}") from exc
        return exec_id, api.stream_frames(started, demux=True)

    def exec_exit_code(self, exec_id: str) -> int:
        response = self.client.api.get(f"/exec/{exec_id}/json")
        response.raise_for_status()
        code = response.json().get("ExitCode")
        return -1 if code is None else int(code)

    def exec(
        self,
        container: str,
        argv: list[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``argv`` in a running container and collect its output.

        ``timeout`` bounds the wait: on expiry the exec's process keeps running inside the
        container but the caller is released with PodmanError (the container is untrusted
        and must not hang the host).
        """
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                exec_id, frames = self.exec_frames(
                    container, argv, user=user, workdir=workdir, env=env
                )
                out, err = bytearray(), bytearray()
                for frame_out, frame_err in frames:
                    out += frame_out or b""
                    err += frame_err or b""
                result["value"] = ExecResult(self.exec_exit_code(exec_id), bytes(out), bytes(err))
            except Exception as exc:  # surfaced below in the caller's thread
                result["error"] = exc

        if timeout is None:
            run()
        else:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                raise PodmanError(f"exec in {container} did not finish within {timeout:g}s")
        error = result.get("error")
        if isinstance(error, PodmanError):
            raise error
        if error is not None:
            raise PodmanError(f"exec in {container} failed: {_short(error)}")
        return result["value"]

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        """Unpack a tar stream at ``path`` (works on created, not yet started containers).

        One PUT by name: podman-py's put_archive inspects the container first.
        """
        try:
            response = self.client.api.put(
                f"/containers/{container}/archive", params={"path": path}, data=data
            )
            response.raise_for_status()
        except (NotFound, APIError) as exc:
            raise PodmanError(f"copying into {container}:{path} failed: {_short(exc)}") from exc

    def get_archive(self, container: str, path: str) -> bytes:
        """A tar stream of ``path`` in the container."""
        try:
            chunks, _ = self.client.containers.get(container).get_archive(path)
        except (NotFound, APIError) as exc:
            raise PodmanError(f"copying {container}:{path} out failed: {_short(exc)}") from exc
        return b"".join(chunks)

    def read_file(self, container: str, path: str, *, limit: int = 1 << 20) -> bytes | None:
        """One small regular file out of a container (None when it does not exist)."""
        try:
            data = self.get_archive(container, path)
        except PodmanError:
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None or member.size > limit:
                return None
            handle = tar.extractfile(member)
            return handle.read() if handle else None


def _restart_policy(spec: ContainerSpec) -> dict[str, Any]:
    policy: dict[str, Any] = {"Name": spec.restart}
    if spec.restart == "on-failure" and spec.restart_retries is not None:
        policy["MaximumRetryCount"] = spec.restart_retries
    return policy


def _observed(attrs: dict[str, Any]) -> ObservedContainer:
    labels = attrs.get("Labels") or {}
    names = attrs.get("Names") or [attrs.get("Name", "")]
    started = attrs.get("StartedAt")
    exited = attrs.get("Exited")
    return ObservedContainer(
        id=str(attrs.get("Id", ""))[:12],
        name=str(names[0]).lstrip("/"),
        fleet=labels.get(LABEL_FLEET, ""),
        agent=labels.get(LABEL_AGENT, ""),
        role=labels.get(LABEL_ROLE, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        state=str(attrs.get("State", "unknown")),
        image=str(attrs.get("Image", "")),
        labels=dict(labels),
        created=_parse_time(attrs.get("Created")),
        started_at=_started(started),
        exit_code=int(attrs.get("ExitCode", 0)) if exited else None,
    )


def _container_stats(raw: dict[str, Any]) -> ContainerStats:
    def num(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) else 0

    cpu = raw.get("CPU")
    return ContainerStats(
        name=str(raw.get("Name", "")).lstrip("/"),
        cpu_percent=float(cpu) if isinstance(cpu, int | float) else 0.0,
        cpu_nanos=num("CPUNano"),
        system_nanos=num("SystemNano"),
        mem_usage=num("MemUsage"),
        mem_limit=num("MemLimit"),
        pids=num("PIDs"),
    )


def _started(value: Any) -> datetime | None:
    """StartedAt: epoch seconds in a listing, ISO text in inspect; 0/year 1 = never."""
    if isinstance(value, int | float):
        return _parse_time(value) if value > 0 else None
    parsed = _parse_time(value) if value else None
    return parsed if parsed is not None and parsed.year > 1970 else None


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).astimezone()
    try:
        text = str(value)
        if "." in text:  # Go prints nanoseconds; Python takes micro
            head, tail = text.split(".", 1)
            frac = "".join(ch for ch in tail if ch.isdigit())
            zone = tail[len(frac) :]
            text = f"{head}.{frac[:6]}{zone}"
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__
