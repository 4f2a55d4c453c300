"""Kubernetes manifests for a fleet, built from the same rendered specs `apply` uses (pure).

One source of truth: every name, environment variable, command, limit and label comes
from :func:`agentctl_swarm.fleet.render.render_fleet`; this module only translates a
:class:`ContainerSpec` into Kubernetes' vocabulary and refuses what has no translation.

Two flavours, because Podman's ``kube play`` is not Kubernetes:

``kube``    a StatefulSet per role (stable pod names ``<fleet>-swarm-<role>-<N>``, a
            workspace and a state claim per pod), the AgentChat server with its coordinator
            as a Deployment + Service when the fleet names no ``server:``, a headless
            Service for the agents, one NetworkPolicy per role and one for the server.
``podman``  what ``podman kube play`` (4.3) accepts: one Pod per agent, named and labelled
            exactly like the containers `apply` creates, with the same named volumes, host
            networking so everything stays on the host's loopback, and the server as a
            Deployment. StatefulSet, Service and NetworkPolicy are not kinds kube play
            knows (it skips them silently).

Secrets are referenced by name, never valued: the result carries the commands to create
them (:attr:`KubeExport.notes`), and a pod does not start until they exist.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from agentctl_swarm.export import names
from agentctl_swarm.export.errors import ExportError
from agentctl_swarm.fleet.loader import Loc, agent_field_sources
from agentctl_swarm.fleet.model import AgentSpec, Fleet
from agentctl_swarm.fleet.render import (
    AGENT_UID,
    DEFAULT_IMAGE,
    LABEL_AGENT,
    LABEL_FLEET,
    LABEL_KIND,
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    STATE_DIR,
    WORKSPACE_DIR,
    ContainerSpec,
    render_agent,
    render_fleet,
)

Target = Literal["kube", "podman"]
Manifest = dict[str, Any]

SERVER_PORT = 6667  # the Service port; the Deployment listens on it too (kube flavour)
SERVER_DATA_DIR = f"{STATE_DIR}/agentchat"  # /state exists in the image, owned by the agent
SECRETS_DIR = "/run/secrets"
TMP_SIZE = "256Mi"  # the same size as the tmpfs podman/backend.py mounts on /tmp
POD_INDEX_ENV = "AGENTCTL_POD_INDEX"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods since 1.28
MANAGED_BY = {"app.kubernetes.io/managed-by": "agentctl"}
ANTHROPIC_API = "https://api.anthropic.com"
# Addresses that are never "the model API on the internet": private, shared (CGNAT),
# link-local (cloud metadata services live at 169.254.169.254) and loopback ranges.
NON_PUBLIC_V4 = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
NON_PUBLIC_V6 = ("::1/128", "fc00::/7", "fe80::/10")
RUNNER_MARK = "AGENTCTL_RUNNER_CHANNEL"  # in the env of every task-taking agent
COORDINATOR_NOTE = (
    "runners accept an assignment from any member of the work channel: the coordinator's "
    "key is made when its server first starts, so its id is not known at export; pin it "
    "by exporting again with --coordinator-id ID (the server logs it as coordinator.ready)"
)
_RESTART = {
    "no": "Never",
    "on-failure": "OnFailure",
    "always": "Always",
    "unless-stopped": "Always",
}


@dataclass(frozen=True)
class KubeOptions:
    """What only the person exporting knows (the fleet file says what the fleet is)."""

    target: Target = "kube"
    namespace: str | None = None
    storage_class: str | None = None
    workspace_size: str = "10Gi"
    state_size: str = "1Gi"
    server_size: str = "1Gi"
    server_image: str | None = None  # default: the fleet's default image
    model_cidrs: tuple[str, ...] = ()  # narrow the model API egress to these ranges
    coordinators: tuple[str, ...] = ()  # chat ids runners accept assignments from


@dataclass(frozen=True)
class KubeExport:
    """The manifests, what the user must do before applying them, and what was lost."""

    manifests: list[Manifest]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- entry points -------------------------------------------------------------------------


def export_kube(fleet: Fleet, options: KubeOptions | None = None, *, home: Path) -> KubeExport:
    """Render the fleet for ``options.target`` and translate it (ExportError if it can't be).

    ``home`` expands ``~`` like apply does (host paths are refused here, but rendering
    needs it).
    """
    options = options or KubeOptions()
    problems = exportable(fleet, options)
    if problems:
        raise ExportError(_target_name(options), problems)
    url = agent_server_url(fleet, options)
    specs = render_fleet(fleet, home=home, server_url=url, coordinators=options.coordinators)
    templates = {
        agent.role: render_agent(
            fleet, agent, 0, home=home, server_url=url, coordinators=options.coordinators
        )
        for agent in fleet.agents
    }
    return kube_manifests(fleet, specs, templates, options)


def agent_server_url(fleet: Fleet, options: KubeOptions) -> str | None:
    """Where agents find the chat server: the fleet's ``server:``, else the exported one."""
    if fleet.server:
        return None  # render_fleet uses fleet.server itself
    if options.target == "podman":
        host = fleet.embedded.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"ws://{_url_host(host)}:{fleet.embedded.port}"
    return f"ws://{server_name(fleet)}:{SERVER_PORT}"


def kube_manifests(
    fleet: Fleet,
    specs: list[ContainerSpec],
    templates: dict[str, ContainerSpec],
    options: KubeOptions,
) -> KubeExport:
    """Every object the fleet needs, in apply order (server first, then per role).

    ``specs`` is render_fleet's output; ``templates`` holds replica 0 of every role (a
    role with ``replicas: 0`` still needs a pod template).
    """
    out = _Builder(fleet, options)
    if fleet.server is None:
        out.server()
    else:
        out.notes.append(f"agents use the fleet's chat server {fleet.server}; none is exported")
    by_role: dict[str, list[ContainerSpec]] = {}
    for spec in specs:
        by_role.setdefault(spec.role, []).append(spec)
    if options.target == "kube":
        out.add(_headless_service(fleet, options))
    for agent in fleet.agents:
        role_specs = by_role.get(agent.role, [])
        template = templates[agent.role]
        out.role_secrets(agent, template)
        if options.target == "kube":
            out.statefulset(agent, template, role_specs)
            out.network_policy(agent, template)
        else:
            for spec in role_specs:
                out.pod(spec)
    out.named_volumes(specs)
    out.caveats(specs or list(templates.values()))
    return KubeExport(out.manifests, out.notes, out.warnings)


# -- what cannot be exported --------------------------------------------------------------


def exportable(fleet: Fleet, options: KubeOptions) -> list[tuple[Loc, str]]:
    """Every reason the fleet cannot be expressed for ``options.target``, located."""
    problems: list[tuple[Loc, str]] = []
    problems += _label_problems(fleet)
    sts_room = names.STATEFULSET_NAME_MAX - len(f"{fleet.name}-swarm-")
    for index, agent in enumerate(fleet.agents):
        sts = statefulset_name(fleet, agent.role)
        if options.target == "kube" and len(sts) > names.STATEFULSET_NAME_MAX:
            problems.append(
                (
                    ("agents", index, "role"),
                    f"the StatefulSet name {sts!r} would be {len(sts)} characters; Kubernetes "
                    f"allows {names.STATEFULSET_NAME_MAX} (pod labels carry it): shorten the "
                    f"role to at most {max(sts_room, 0)} characters or the fleet name",
                )
            )
    if options.target == "kube" and fleet.server is None:
        problem = names.dns1035_label(server_name(fleet))
        if problem:
            problems.append(
                (("metadata", "name"), f"the server's Service name {problem}; rename the fleet")
            )
    for base, spec in agent_field_sources(fleet):
        for vindex, volume in enumerate(spec.volumes or []):
            loc = (*base, "volumes", vindex, "source")
            if volume.is_host_path:
                problems.append(
                    (
                        loc,
                        f"the host path {volume.source!r} cannot be exported: a cluster node "
                        "(or kube play) has no such directory to give the agent; use a named "
                        "volume (source: NAME), which becomes a PersistentVolumeClaim",
                    )
                )
                continue
            problem = names.dns1123_subdomain(volume.source)
            if problem:
                problems.append(
                    (loc, f"the volume name becomes a PersistentVolumeClaim name, and {problem}")
                )
        if options.target == "podman" and spec.network not in (None, "host"):
            problems.append(
                (
                    (*base, "network"),
                    f"network {spec.network!r} is not exported for kube play: its agents reach "
                    "the chat server on the host's loopback, which needs `network: host` "
                    "(export for Kubernetes instead, where a NetworkPolicy expresses "
                    "`none`)",
                )
            )
    for cidr in options.model_cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            problems.append(((), f"--model-cidr {cidr!r} is not a CIDR like 160.79.104.0/23"))
    return problems


def _label_problems(fleet: Fleet) -> list[tuple[Loc, str]]:
    sources: list[tuple[Loc, dict[str, str]]] = [(("metadata", "labels"), fleet.metadata.labels)]
    sources += [((*base, "labels"), spec.labels or {}) for base, spec in agent_field_sources(fleet)]
    problems: list[tuple[Loc, str]] = []
    for loc, labels in sources:
        for key, value in labels.items():
            problem = names.label_key(key) or names.label_value(value)
            if problem:
                problems.append(((*loc, key), problem))
    return problems


# -- names --------------------------------------------------------------------------------


def statefulset_name(fleet: Fleet, role: str) -> str:
    """``<fleet>-swarm-<role>``: its pods are ``<fleet>-swarm-<role>-<N>``, the container
    names of `apply` without the zero padding Kubernetes cannot do."""
    return f"{fleet.name}-swarm-{role}"


def server_name(fleet: Fleet) -> str:
    return f"{fleet.name}-agentchat"


def secret_object_name(fleet: Fleet, role: str) -> str:
    """One Secret per role (two roles may take a same-named secret from different places)."""
    return f"agentctl-{fleet.name}-{role}"


# -- building -----------------------------------------------------------------------------


class _Builder:
    """Accumulates manifests, notes and warnings for one export."""

    def __init__(self, fleet: Fleet, options: KubeOptions) -> None:
        self.fleet = fleet
        self.options = options
        self.manifests: list[Manifest] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    @property
    def kube(self) -> bool:
        return self.options.target == "kube"

    def add(self, manifest: Manifest) -> None:
        if self.options.namespace:
            manifest["metadata"]["namespace"] = self.options.namespace
        self.manifests.append(manifest)

    # -- the chat server and coordinator ------------------------------------------------

    def server(self) -> None:
        fleet = self.fleet
        name = server_name(fleet)
        labels = {**fleet.metadata.labels, **MANAGED_BY, LABEL_FLEET: fleet.name}
        labels[LABEL_KIND] = "server"
        selector = {LABEL_FLEET: fleet.name, LABEL_KIND: "server"}
        host, port = ("0.0.0.0", SERVER_PORT) if self.kube else _podman_listen(fleet)
        container: Manifest = {
            "name": "server",
            "image": self.options.server_image or fleet.defaults.image or DEFAULT_IMAGE,
            "args": [
                "agentctl",
                "server",
                "--host",
                host,
                "--port",
                str(port),
                *server_args(fleet),
            ],
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "securityContext": _container_security(AGENT_UID, AGENT_UID),
            "volumeMounts": [
                {"name": "data", "mountPath": STATE_DIR},
                {"name": self._tmp_name(name), "mountPath": "/tmp"},
            ],
        }
        if self.kube:  # kube play 4.3 refuses port mappings on the host network
            container["ports"] = [{"name": "chat", "containerPort": port, "protocol": "TCP"}]
            container["readinessProbe"] = {
                "httpGet": {"path": "/health", "port": "chat"},
                "periodSeconds": 10,
            }
        data = f"{name}-data"
        pod: Manifest = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": _pod_security(AGENT_UID, AGENT_UID),
            "containers": [container],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": data}},
                _tmp_volume(self._tmp_name(name)),
            ],
        }
        if not self.kube:
            pod["hostNetwork"] = True
        # kube play 4.3 fails on a PersistentVolumeClaim whose volume exists (a second play,
        # or a fleet `apply` made); for a claim a pod names it creates the volume itself.
        if self.kube:
            self.add(
                _pvc(
                    data,
                    {**labels, LABEL_KIND: "volume"},
                    self.options.server_size,
                    self.options.storage_class,
                )
            )
        self.add(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},  # one writer of its ReadWriteOnce claim
                    "selector": {"matchLabels": selector},
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            }
        )
        if self.kube:
            self.add(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {
                        "selector": selector,
                        "ports": [
                            {
                                "name": "chat",
                                "port": SERVER_PORT,
                                "targetPort": "chat",
                                "protocol": "TCP",
                            }
                        ],
                    },
                }
            )
            self.add(self._server_policy(labels, selector))
        self.notes.append(
            f"the AgentChat server and coordinator run as Deployment {name} "
            + (
                f"behind Service {name}:{SERVER_PORT}"
                if self.kube
                else f"on {host}:{port} (host network)"
            )
        )

    def _server_policy(self, labels: dict[str, str], selector: dict[str, str]) -> Manifest:
        """Anyone may talk to the chat port (people add tasks); the server calls out to
        nothing, not even DNS."""
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": server_name(self.fleet), "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": SERVER_PORT}]}],
                "egress": [],
            },
        }

    # -- agents ---------------------------------------------------------------------------

    def role_secrets(self, agent: AgentSpec, template: ContainerSpec) -> None:
        """The command that creates this role's Secret (names only; values stay local)."""
        if not template.secrets:
            return
        secret = secret_object_name(self.fleet, agent.role)
        if self.kube:
            flags = []
            for ref in template.secrets:
                if ref.source_env is not None:
                    flags.append(f'--from-literal={ref.name}="${ref.source_env}"')
                else:
                    flags.append(f"--from-file={ref.name}={ref.source_file}")
            ns = f" -n {self.options.namespace}" if self.options.namespace else ""
            self.notes.append(
                f"create Secret {secret} before the agents of role {agent.role} can start:\n"
                f"  kubectl{ns} create secret generic {secret} " + " ".join(flags)
            )
        else:
            keys = ", ".join(
                f"{ref.name} (from "
                + (f"${ref.source_env}" if ref.source_env else str(ref.source_file))
                + ")"
                for ref in template.secrets
            )
            self.notes.append(
                f"create the Podman secret {secret} before playing: kube play reads Secret "
                f"volumes only from a Podman secret holding a `kind: Secret` document; its "
                f"`data` needs the keys {keys}:\n"
                f"  podman secret create {secret} SECRET.yaml\n"
                "  (Podman 4.3.1 writes each `data` value into the pod as written, without "
                "base64-decoding it; the secret's files also land in a named volume "
                f"{secret} that `podman kube down` leaves behind: remove it with "
                f"`podman volume rm {secret}`)"
            )

    def statefulset(
        self, agent: AgentSpec, template: ContainerSpec, replicas: list[ContainerSpec]
    ) -> None:
        _check_replicas(template, replicas)
        fleet = self.fleet
        labels = _pod_labels(template, kube=True)
        selector = {LABEL_FLEET: fleet.name, LABEL_ROLE: agent.role, LABEL_KIND: "agent"}
        env = _template_env(template)
        volumes, mounts = self._pod_volumes(template, claims=None)
        pod = self._pod_spec(template, env, mounts, volumes)
        vol_labels = {**selector, **MANAGED_BY, LABEL_KIND: "volume"}
        self.add(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": statefulset_name(fleet, agent.role), "labels": labels},
                "spec": {
                    "serviceName": f"{fleet.name}-agents",
                    "replicas": agent.replicas,
                    # Agents are independent: start and stop them all at once.
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": selector},
                    # Keep the claims (the agents' work) when the set is deleted or scaled
                    # down, as `agentctl delete` keeps volumes unless --volumes.
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": "Retain",
                        "whenScaled": "Retain",
                    },
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                    "volumeClaimTemplates": [
                        _claim_template(
                            "workspace",
                            vol_labels,
                            self.options.workspace_size,
                            self.options.storage_class,
                        ),
                        _claim_template(
                            "state", vol_labels, self.options.state_size, self.options.storage_class
                        ),
                    ],
                },
            }
        )

    def pod(self, spec: ContainerSpec) -> None:
        """One agent as a Pod for kube play: the spec's exact names, env and labels."""
        env = [{"name": k, "value": v} for k, v in spec.env.items()]
        claims = {WORKSPACE_DIR: spec.workspace_volume, STATE_DIR: spec.state_volume}
        volumes, mounts = self._pod_volumes(spec, claims=claims)
        pod = self._pod_spec(spec, env, mounts, volumes)
        pod["hostNetwork"] = True
        pod["hostname"] = spec.agent
        pod["restartPolicy"] = _RESTART[spec.restart]
        self.add(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": spec.name, "labels": _pod_labels(spec, kube=False)},
                "spec": pod,
            }
        )

    def _pod_spec(
        self,
        spec: ContainerSpec,
        env: list[Manifest],
        mounts: list[Manifest],
        volumes: list[Manifest],
    ) -> Manifest:
        uid, gid = (int(x) for x in spec.user.split(":"))
        args = spec.command if not self.kube else [_k8s_escape(a) for a in spec.command]
        container: Manifest = {
            "name": "agent",
            "image": spec.image,
            "args": args,  # the image's entrypoint (tini) stays, as with `apply`
            "env": env,
            "securityContext": _container_security(uid, gid),
            "volumeMounts": mounts,
        }
        resources = _resources(spec)
        if resources:
            container["resources"] = resources
        return {
            "automountServiceAccountToken": False,  # agents have no business with the API
            "enableServiceLinks": False,  # no service env vars next to the fleet's own
            "terminationGracePeriodSeconds": spec.stop_timeout,
            "securityContext": _pod_security(uid, gid),
            "containers": [container],
            "volumes": volumes,
        }

    def _tmp_name(self, pod: str) -> str:
        """The /tmp emptyDir's name. kube play 4.3 makes an emptyDir a named volume
        called after it (on disk, whatever the medium) and shares it between every pod
        that uses the name: under kube play each pod's is named after the pod."""
        if self.kube:
            return "tmp"
        name = f"{pod}-tmp"
        if len(name) > names.LABEL_MAX:
            name = f"tmp-{hashlib.sha256(pod.encode()).hexdigest()[:16]}"
        return name

    def _pod_volumes(
        self, spec: ContainerSpec, *, claims: dict[str, str] | None
    ) -> tuple[list[Manifest], list[Manifest]]:
        """(volumes, volumeMounts). ``claims``: target → claim name for the agent's own
        volumes (podman flavour); None: they come from the StatefulSet's claim templates."""
        tmp = self._tmp_name(spec.name)
        volumes: list[Manifest] = [_tmp_volume(tmp)]
        mounts: list[Manifest] = [{"name": tmp, "mountPath": "/tmp"}]
        extra = 0
        for mount in spec.mounts:
            if mount.kind != "volume":  # refused by exportable(); control sockets are not used
                raise AssertionError(f"bind mount {mount.target} reached the kube exporter")
            if mount.target in (WORKSPACE_DIR, STATE_DIR):
                name = "workspace" if mount.target == WORKSPACE_DIR else "state"
                if claims is not None:
                    claim = {"claimName": claims[mount.target]}
                    volumes.append({"name": name, "persistentVolumeClaim": claim})
            else:
                name = f"volume-{extra}"
                extra += 1
                claim = {"claimName": mount.source, "readOnly": mount.read_only}
                volumes.append({"name": name, "persistentVolumeClaim": claim})
            entry: Manifest = {"name": name, "mountPath": mount.target}
            if mount.read_only:
                entry["readOnly"] = True
            mounts.append(entry)
        if spec.secrets:
            secret_name = secret_object_name(self.fleet, spec.role)
            volumes.append(
                {
                    "name": "secrets",
                    "secret": {
                        "secretName": secret_name,
                        "items": [{"key": s.name, "path": s.name} for s in spec.secrets],
                        # Owner root, group fsGroup (1000): the agent reads, nobody writes.
                        "defaultMode": 0o440,
                        # Explicit: Podman 4.3 crashes on a Secret volume without it.
                        "optional": False,
                    },
                }
            )
            mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        return volumes, mounts

    def network_policy(self, agent: AgentSpec, template: ContainerSpec) -> None:
        """Agents take no connections and reach only DNS, the chat server and the model.

        NetworkPolicy matches pods and IP ranges, never host names: a model or server
        given by name is allowed by port to every public address (or to --model-cidr),
        which still keeps agents away from the cluster, private networks and cloud
        metadata endpoints.
        """
        fleet = self.fleet
        selector = {LABEL_FLEET: fleet.name, LABEL_ROLE: agent.role, LABEL_KIND: "agent"}
        egress: list[Manifest] = []
        if template.network != "none":
            egress.append(_dns_rule())
            egress += self._server_egress()
            egress += self._model_egress(agent)
        self.add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": statefulset_name(fleet, agent.role),
                    "labels": {**_pod_labels(template, kube=True)},
                },
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [],
                    "egress": egress,
                },
            }
        )

    def _server_egress(self) -> list[Manifest]:
        if self.fleet.server is None:
            peer = {
                "podSelector": {"matchLabels": {LABEL_FLEET: self.fleet.name, LABEL_KIND: "server"}}
            }
            return [{"to": [peer], "ports": [{"protocol": "TCP", "port": SERVER_PORT}]}]
        host, port = _host_port(self.fleet.server)
        peers = self._peers("server", self.fleet.server, host, cidrs=(), public_only=False)
        return [{"to": peers, "ports": [{"protocol": "TCP", "port": port}]}] if peers else []

    def _model_egress(self, agent: AgentSpec) -> list[Manifest]:
        if not agent.takes_tasks and self.fleet.model.base_url is None:
            return []  # a plain command talks to no model we know of
        url = self.fleet.model.base_url or ANTHROPIC_API
        host, port = _host_port(url)
        peers = self._peers(
            "model API", url, host, cidrs=self.options.model_cidrs, public_only=True
        )
        return [{"to": peers, "ports": [{"protocol": "TCP", "port": port}]}] if peers else []

    def _peers(
        self, what: str, url: str, host: str, *, cidrs: tuple[str, ...], public_only: bool
    ) -> list[Manifest]:
        """The ``to:`` of an egress rule for ``host``; [] (with a warning) for loopback."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if host == "localhost" or (address is not None and address.is_loopback):
            _once(
                self.warnings,
                f"the {what} at {url} is on loopback: inside a pod that is the pod itself, so "
                "it works only with a sidecar listening there; no egress rule is needed for it",
            )
            return []
        if address is not None:
            prefix = 32 if address.version == 4 else 128
            return [{"ipBlock": {"cidr": f"{address}/{prefix}"}}]
        if cidrs:
            return [{"ipBlock": {"cidr": c}} for c in cidrs]
        if public_only:
            _once(
                self.notes,
                f"NetworkPolicy cannot match host names: agents may reach the {what} "
                f"({host}) port on any public address (private, link-local and loopback "
                "ranges excluded); pass --model-cidr with its published ranges to narrow it, "
                "or use your CNI's FQDN policies (Cilium, Calico)",
            )
            return [
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NON_PUBLIC_V4)}},
                {"ipBlock": {"cidr": "::/0", "except": list(NON_PUBLIC_V6)}},
            ]
        _once(
            self.notes,
            f"NetworkPolicy cannot match host names: agents may reach the {what} port "
            f"({host}) on any address",
        )
        return [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]

    # -- shared volumes and what could not be said ----------------------------------------

    def named_volumes(self, specs: list[ContainerSpec]) -> None:
        """A claim per named volume the fleet shares (Podman: one volume, many mounts)."""
        users: dict[str, list[bool]] = {}
        for spec in specs:
            for mount in spec.mounts:
                if mount.kind == "volume" and mount.target not in (WORKSPACE_DIR, STATE_DIR):
                    users.setdefault(mount.source, []).append(mount.read_only)
        if not self.kube:
            return  # kube play creates a named volume for a claim that names one
        for source, read_only in sorted(users.items()):
            if len(read_only) == 1:
                mode = "ReadWriteOnce"
            elif all(read_only):
                mode = "ReadOnlyMany"
            else:
                mode = "ReadWriteMany"
            labels = {**MANAGED_BY, LABEL_FLEET: self.fleet.name, LABEL_KIND: "volume"}
            self.add(_pvc(source, labels, "1Gi", self.options.storage_class, mode=mode))
            self.notes.append(
                f"PersistentVolumeClaim {source} ({mode}, 1Gi) stands for the named volume "
                "of the same name; resize it, or fill it before the agents need it"
            )

    def caveats(self, specs: list[ContainerSpec]) -> None:
        if not self.options.coordinators and any(RUNNER_MARK in s.env for s in specs):
            self.notes.append(COORDINATOR_NOTE)
        local = sorted({s.image for s in specs if s.image.startswith("localhost/")})
        if self.kube and local:
            self.warnings.append(
                f"image {', '.join(local)} exists only in a local Podman store: push it to a "
                "registry the cluster pulls from and set defaults.image (and --server-image)"
            )
        pids = sorted({s.pids for s in specs if s.pids})
        if pids:
            self.warnings.append(
                f"pids limit {', '.join(map(str, pids))} is not expressible in a pod: "
                + (
                    "set the kubelet's podPidsLimit"
                    if self.kube
                    else "kube play has no field for it (apply sets it)"
                )
            )
        if self.kube:
            self.notes.append(
                "agents are named swarm-<role>-<N> (no zero padding) from the pod-index "
                "label, Kubernetes 1.28 or newer; io.agentctl.agent is not a pod label "
                "(a StatefulSet has one template), statefulset.kubernetes.io/pod-name is"
            )
            restarts = sorted({s.restart for s in specs if s.restart != "always"})
            if restarts:
                self.warnings.append(
                    f"restart: {', '.join(restarts)} is not expressible in a StatefulSet "
                    "(its pods always restart); the in-container supervisor still backs off"
                )
        else:
            self.notes.append(
                "kube play runs the agents in the host's user namespace (apply gives each its "
                "own); `podman kube down` keeps their volumes, as `agentctl delete` does"
            )
        if any(s.repo for s in specs):
            self.warnings.append(
                "repo: is not exported: seeding a workspace is a host-side step of apply; "
                "exported agents start with an empty git repository"
            )
        if self.kube:
            self.warnings.append(
                "the sync-daemon pulls work out of Podman containers only: agents' work stays "
                "in their workspace claims"
            )


# -- pieces -------------------------------------------------------------------------------


def server_args(fleet: Fleet) -> list[str]:
    """`agentctl server` flags for the fleet's coordinator (what `up` configures in process)."""
    work = fleet.work
    args = [
        "--data-dir",
        SERVER_DATA_DIR,
        "--channel",
        work.channel,
        "--max-active",
        str(work.max_active),
        "--heartbeat-interval",
        _fmt(work.heartbeat_interval),
        "--probe-interval",
        _fmt(work.probe_interval),
        "--task-timeout",
        str(int(work.task_timeout)),
        "--task-retries",
        str(work.retries),
    ]
    if work.budget.tokens:
        args += ["--token-budget", str(work.budget.tokens)]
    if work.budget.cost_usd:
        args += ["--cost-budget", _fmt(work.budget.cost_usd)]
    return args


def _podman_listen(fleet: Fleet) -> tuple[str, int]:
    return fleet.embedded.host, fleet.embedded.port


def _pod_labels(spec: ContainerSpec, *, kube: bool) -> dict[str, str]:
    """The spec's labels minus what a pod cannot honestly carry.

    The spec hash describes `apply`'s container and would make `apply` take a pod's
    container for one of its own; a StatefulSet's template is shared by every replica,
    so it cannot name one agent.
    """
    drop = {LABEL_SPEC_HASH, LABEL_AGENT} if kube else {LABEL_SPEC_HASH}
    labels = {k: v for k, v in spec.labels.items() if k not in drop}
    return {**labels, **MANAGED_BY}


def _template_env(template: ContainerSpec) -> list[Manifest]:
    """Replica 0's env with its agent name made per pod.

    Kubernetes expands ``$(VAR)`` in env values and args, so every literal ``$`` is
    doubled; the agent name ``swarm-<role>-000`` becomes ``swarm-<role>-$(INDEX)`` with
    INDEX from the pod-index label.
    """
    per_pod = f"swarm-{template.role}-$({POD_INDEX_ENV})"
    env: list[Manifest] = [
        {
            "name": POD_INDEX_ENV,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
        }
    ]
    for key, value in template.env.items():
        env.append({"name": key, "value": _k8s_escape(value).replace(template.agent, per_pod)})
    return env


def _check_replicas(template: ContainerSpec, replicas: Iterable[ContainerSpec]) -> None:
    """Every replica must equal replica 0 except for its own name (one pod template)."""
    want = _shape(template)
    for spec in replicas:
        if _shape(spec) != want:
            raise AssertionError(
                f"{spec.agent} differs from {template.agent} in more than its name; "
                "a StatefulSet cannot express that (a renderer change?)"
            )


def _shape(spec: ContainerSpec) -> str:
    data = asdict(spec)
    for key in ("spec_hash", "index"):
        data.pop(key)
    data["labels"].pop(LABEL_SPEC_HASH, None)
    return json.dumps(data, sort_keys=True, default=str).replace(spec.agent, "{agent}")


def _k8s_escape(value: str) -> str:
    return value.replace("$", "$$")


def _pod_security(uid: int, gid: int) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security(uid: int, gid: int) -> Manifest:
    """What `apply` gives a container (uid 1000, no capabilities, no-new-privileges), plus
    a read-only root: agents write only to their volumes and /tmp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec: ContainerSpec) -> Manifest:
    """Limits as `apply` sets them; requests equal to them (Guaranteed QoS): the fleet
    gives one number, and a scheduler that books less than an agent may use overcommits."""
    limits: dict[str, str] = {}
    if spec.memory_bytes:
        limits["memory"] = names.memory_quantity(spec.memory_bytes)
    if spec.nano_cpus:
        limits["cpu"] = names.cpu_quantity(spec.nano_cpus)
    return {"requests": dict(limits), "limits": limits} if limits else {}


def _tmp_volume(name: str) -> Manifest:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}}


def _dns_rule() -> Manifest:
    """Cluster DNS, where nearly every distribution runs it (kube-system, k8s-app=kube-dns)."""
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _headless_service(fleet: Fleet, options: KubeOptions) -> Manifest:
    """The StatefulSets' governing Service: gives each agent pod a stable DNS name."""
    labels = {**MANAGED_BY, LABEL_FLEET: fleet.name, LABEL_KIND: "agent"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{fleet.name}-agents", "labels": labels},
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_FLEET: fleet.name, LABEL_KIND: "agent"},
        },
    }


def _claim_spec(size: str, storage_class: str | None, mode: str) -> Manifest:
    spec: Manifest = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def _claim_template(name: str, labels: dict[str, str], size: str, sc: str | None) -> Manifest:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": _claim_spec(size, sc, "ReadWriteOnce"),
    }


def _pvc(
    name: str, labels: dict[str, str], size: str, sc: str | None, *, mode: str = "ReadWriteOnce"
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": _claim_spec(size, sc, mode),
    }


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("https", "wss") else 80
    return parts.hostname or "", parts.port or default


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _target_name(options: KubeOptions) -> str:
    return "Kubernetes" if options.target == "kube" else "podman kube play"


def _once(items: list[str], line: str) -> None:
    if line not in items:
        items.append(line)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
