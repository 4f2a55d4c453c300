"""The Kubernetes exporter as a pure function: fleet in, manifests out (no cluster, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentctl_swarm.export import names
from agentctl_swarm.export.errors import ExportError
from agentctl_swarm.export.kube import (
    NON_PUBLIC_V4,
    KubeOptions,
    export_kube,
    statefulset_name,
)
from agentctl_swarm.export.yamltext import dump_documents
from agentctl_swarm.fleet.loader import FleetError
from agentctl_swarm.fleet.render import render_fleet
from tests.export.fleets import CLAUDE, EXTERNAL, SENTINEL_ENV, SENTINEL_FILE, demo, loaded

HOME = Path("/home/exporter")


def _export(text: str, **options):
    return export_kube(loaded(text).fleet, KubeOptions(**options), home=HOME)


def _by(manifests, kind, name=None):
    found = [m for m in manifests if m["kind"] == kind]
    if name is not None:
        found = [m for m in found if m["metadata"]["name"] == name]
    return found


def _one(manifests, kind, name):
    (found,) = _by(manifests, kind, name)
    return found


def _env(container) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- names, labels, structure --------------------------------------------------------------


def test_statefulset_per_role_with_stable_names_and_claims():
    result = _export(CLAUDE)
    sets = _by(result.manifests, "StatefulSet")
    assert [s["metadata"]["name"] for s in sets] == [
        "prod-swarm-builder",
        "prod-swarm-reviewer",
        "prod-swarm-janitor",
    ]
    builder = sets[0]["spec"]
    assert builder["replicas"] == 3
    assert sets[2]["spec"]["replicas"] == 0  # a role with no replicas still has a template
    assert builder["serviceName"] == "prod-agents"
    assert _one(result.manifests, "Service", "prod-agents")["spec"]["clusterIP"] == "None"
    claims = {c["metadata"]["name"]: c["spec"] for c in builder["volumeClaimTemplates"]}
    assert claims["workspace"]["resources"]["requests"]["storage"] == "10Gi"
    assert claims["state"]["resources"]["requests"]["storage"] == "1Gi"
    mounts = {
        m["name"]: m["mountPath"]
        for m in builder["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["workspace"] == "/workspace" and mounts["state"] == "/state"
    assert mounts["tmp"] == "/tmp" and mounts["secrets"] == "/run/secrets"
    # Keep the agents' work when the set goes, as `agentctl delete` keeps volumes.
    assert builder["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


def test_labels_match_ours_and_user_labels_carry_over():
    result = _export(CLAUDE)
    pod = _one(result.manifests, "StatefulSet", "prod-swarm-builder")["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["io.agentctl.fleet"] == "prod"
    assert labels["io.agentctl.role"] == "builder"
    assert labels["io.agentctl.kind"] == "agent"
    assert labels["tier"] == "gold" and labels["team"] == "platform"
    # One template for every replica: no per-agent label, and no spec hash (apply's).
    assert "io.agentctl.agent" not in labels and "io.agentctl.spec-hash" not in labels
    for manifest in result.manifests:
        for key, value in manifest["metadata"].get("labels", {}).items():
            assert names.label_key(key) is None and names.label_value(value) is None


def test_env_and_command_come_from_the_renderer():
    fleet = loaded(CLAUDE).fleet
    result = export_kube(fleet, KubeOptions(), home=HOME)
    spec = render_fleet(fleet, home=HOME, server_url="ws://prod-agentchat:6667")[0]
    container = _one(result.manifests, "StatefulSet", "prod-swarm-builder")["spec"]["template"][
        "spec"
    ]["containers"][0]
    env = _env(container)
    assert env["AGENTCHAT_URL"] == "ws://prod-agentchat:6667"
    assert env["AGENT_NAME"] == env["AGENTCTL_AGENT"] == "swarm-builder-$(AGENTCTL_POD_INDEX)"
    assert env["AGENTCTL_POD_INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    # Kubernetes expands $(VAR) in values and args: literal dollars are doubled.
    assert env["PRICE"] == "$$5 or 50%"
    for key, value in spec.env.items():
        if key not in ("AGENT_NAME", "AGENTCTL_AGENT"):
            assert env[key] == value.replace("$", "$$"), key
    assert container["args"] == spec.command
    assert container["image"] == "registry.example.com/agentctl-agent:1.2"
    janitor = _one(result.manifests, "StatefulSet", "prod-swarm-janitor")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert janitor["args"][-1] == 'echo "$$(date) cleaning $$HOME"; sleep infinity'


def test_security_context_is_the_hardened_one():
    result = _export(CLAUDE)
    for kind in ("StatefulSet", "Deployment"):
        for manifest in _by(result.manifests, kind):
            pod = manifest["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"] == {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            (container,) = pod["containers"]
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 1000
            tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
            assert tmp["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}


def test_resources_from_the_fleet():
    result = _export(CLAUDE)
    container = _one(result.manifests, "StatefulSet", "prod-swarm-builder")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["resources"] == {
        "requests": {"memory": "2Gi", "cpu": "1500m"},
        "limits": {"memory": "2Gi", "cpu": "1500m"},
    }
    assert any("pids limit 512" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("size", "want"), [(512 * 1024**2, "512Mi"), (1024**3, "1Gi"), (6291457, "6291457")]
)
def test_memory_quantity(size, want):
    assert names.memory_quantity(size) == want


@pytest.mark.parametrize(
    ("nano", "want"), [(1_000_000_000, "1"), (500_000_000, "500m"), (1_000_001, "2m")]
)
def test_cpu_quantity_rounds_up(nano, want):
    assert names.cpu_quantity(nano) == want


# -- secrets --------------------------------------------------------------------------------


def test_secrets_are_referenced_never_valued(monkeypatch, tmp_path):
    token = tmp_path / "gh-token"
    token.write_text(SENTINEL_FILE)
    monkeypatch.setenv("EXPORT_TEST_KEY", SENTINEL_ENV)
    text = CLAUDE.replace("/etc/agentctl/gh-token", str(token))
    for target in ("kube", "podman"):
        fleet_text = text if target == "kube" else text.replace("    network: none\n", "")
        result = _export(fleet_text, target=target)
        dumped = dump_documents(result.manifests, [*result.notes, *result.warnings])
        assert SENTINEL_ENV not in dumped and SENTINEL_FILE not in dumped
        assert "kind: Secret\n" not in dumped  # no Secret object, placeholder or otherwise
    result = _export(text)
    volume = next(
        v
        for v in _one(result.manifests, "StatefulSet", "prod-swarm-builder")["spec"]["template"][
            "spec"
        ]["volumes"]
        if v["name"] == "secrets"
    )
    assert volume["secret"] == {
        "secretName": "agentctl-prod-builder",
        "items": [
            {"key": "ANTHROPIC_API_KEY", "path": "ANTHROPIC_API_KEY"},
            {"key": "GH_TOKEN", "path": "GH_TOKEN"},
        ],
        "defaultMode": 0o440,
        "optional": False,
    }
    hint = next(n for n in result.notes if "agentctl-prod-builder" in n)
    assert '--from-literal=ANTHROPIC_API_KEY="$EXPORT_TEST_KEY"' in hint
    assert f"--from-file=GH_TOKEN={token}" in hint


# -- the server ------------------------------------------------------------------------------


def test_server_deployment_and_service_when_the_fleet_names_none():
    result = _export(CLAUDE)
    deploy = _one(result.manifests, "Deployment", "prod-agentchat")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:6] == ["agentctl", "server", "--host", "0.0.0.0", "--port", "6667"]
    flags = dict(zip(args[6::2], args[7::2], strict=True))
    assert flags["--data-dir"] == "/state/agentchat"
    assert flags["--channel"] == "#build" and flags["--max-active"] == "3"
    assert flags["--token-budget"] == "100000" and flags["--cost-budget"] == "12.5"
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    service = _one(result.manifests, "Service", "prod-agentchat")
    assert service["spec"]["ports"][0]["port"] == 6667
    assert _one(result.manifests, "PersistentVolumeClaim", "prod-agentchat-data")


def test_an_external_server_is_used_and_not_exported():
    result = _export(EXTERNAL)
    assert not _by(result.manifests, "Deployment")
    container = _one(result.manifests, "StatefulSet", "ext-swarm-worker")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert _env(container)["AGENTCHAT_URL"] == "wss://chat.example.com:7443"


# -- NetworkPolicy -------------------------------------------------------------------------


def _egress(result, role):
    return _one(result.manifests, "NetworkPolicy", f"prod-swarm-{role}")["spec"]


def test_network_policy_limits_agents_to_dns_server_and_model():
    result = _export(CLAUDE)
    spec = _egress(result, "builder")
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    dns, server, model = spec["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert server["to"] == [
        {
            "podSelector": {
                "matchLabels": {"io.agentctl.fleet": "prod", "io.agentctl.kind": "server"}
            }
        }
    ]
    assert server["ports"] == [{"protocol": "TCP", "port": 6667}]
    # api.anthropic.com by name: NetworkPolicy cannot; public addresses on 443 only.
    assert model["ports"] == [{"protocol": "TCP", "port": 443}]
    v4 = model["to"][0]["ipBlock"]
    assert v4["cidr"] == "0.0.0.0/0" and set(NON_PUBLIC_V4) <= set(v4["except"])
    assert "169.254.0.0/16" in v4["except"]  # cloud metadata endpoints
    assert any("cannot match host names" in n for n in result.notes)


def test_network_none_means_no_egress_at_all():
    spec = _egress(_export(CLAUDE), "janitor")
    assert spec["egress"] == [] and spec["policyTypes"] == ["Ingress", "Egress"]


def test_model_cidr_narrows_the_model_egress():
    result = _export(CLAUDE, model_cidrs=("160.79.104.0/23", "2607:6bc0::/48"))
    model = _egress(result, "builder")["egress"][2]
    assert model["to"] == [
        {"ipBlock": {"cidr": "160.79.104.0/23"}},
        {"ipBlock": {"cidr": "2607:6bc0::/48"}},
    ]


def test_ip_literal_endpoints_become_exact_ip_blocks():
    result = _export(EXTERNAL)
    egress = _one(result.manifests, "NetworkPolicy", "ext-swarm-worker")["spec"]["egress"]
    server, model = egress[1], egress[2]
    assert server["ports"] == [{"protocol": "TCP", "port": 7443}]
    assert model == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }


def test_loopback_model_is_a_warning_not_a_rule():
    result = export_kube(demo().fleet, KubeOptions(), home=HOME)
    egress = _one(result.manifests, "NetworkPolicy", "demo-swarm-builder")["spec"]["egress"]
    assert len(egress) == 2  # DNS and the server; nothing for 127.0.0.1:18080
    assert any("loopback" in w for w in result.warnings)


# -- the podman flavour -------------------------------------------------------------------


def test_podman_flavour_is_one_pod_per_agent_with_apply_names():
    fleet = loaded(CLAUDE.replace("    network: none\n", "")).fleet
    result = export_kube(fleet, KubeOptions(target="podman"), home=HOME)
    kinds = {m["kind"] for m in result.manifests}
    assert kinds == {"Pod", "Deployment"}  # what kube play 4.3 runs
    specs = render_fleet(fleet, home=HOME, server_url="ws://127.0.0.1:6667")
    pods = _by(result.manifests, "Pod")
    assert [p["metadata"]["name"] for p in pods] == [s.name for s in specs]
    for pod, spec in zip(pods, specs, strict=True):
        assert pod["metadata"]["labels"]["io.agentctl.agent"] == spec.agent
        assert pod["spec"]["hostNetwork"] is True and pod["spec"]["hostname"] == spec.agent
        (container,) = pod["spec"]["containers"]
        assert _env(container) == spec.env  # literal: kube play does not expand $(VAR)
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims["workspace"] == spec.workspace_volume
        assert claims["state"] == spec.state_volume
        # kube play shares an emptyDir by name between pods: each pod's is its own.
        tmp = [v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v]
        assert tmp == [f"{spec.name}-tmp"]
    restart = {p["metadata"]["name"]: p["spec"]["restartPolicy"] for p in pods}
    assert restart["prod-swarm-reviewer-000"] == "Always"
    assert restart["prod-swarm-builder-000"] == "OnFailure"
    deploy = _one(result.manifests, "Deployment", "prod-agentchat")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2:6] == ["--host", "127.0.0.1", "--port", "6667"]


# -- what cannot be exported, located --------------------------------------------------------


BAD = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata:
  name: bad-fleet-with-a-long-name
  labels: {"team name": x}
agents:
  - role: role-with-a-long-name
    command: [sleep, infinity]
    labels: {note: "has spaces"}
    volumes:
      - {source: /srv/data, target: /data}
      - {source: Data_Set, target: /more}
"""


def test_unexportable_fleet_is_a_located_error():
    with pytest.raises(ExportError) as info:
        _export(BAD)
    located = info.value.located(loaded(BAD, "bad.yaml"))
    assert isinstance(located, FleetError) and located.exit_code == 2
    lines = [str(p) for p in located.problems]
    assert any(line.startswith("bad.yaml:5:") and "team name" in line for line in lines)
    assert any(line.startswith("bad.yaml:7:") and "StatefulSet name" in line for line in lines)
    assert any(line.startswith("bad.yaml:9:") and "has spaces" in line for line in lines)
    assert any(
        line.startswith("bad.yaml:11:") and "host path '/srv/data' cannot be exported" in line
        for line in lines
    )
    assert any(
        line.startswith("bad.yaml:12:") and "PersistentVolumeClaim" in line for line in lines
    )
    assert "nothing was written" in located.one_line()


def test_service_names_must_start_with_a_letter():
    text = EXTERNAL.replace("server: wss://chat.example.com:7443\n", "").replace(
        "name: ext", "name: 9lives"
    )
    with pytest.raises(ExportError) as info:
        _export(text)
    assert [loc for loc, _ in info.value.problems] == [("metadata", "name")]


def test_statefulset_name_limit():
    assert statefulset_name(loaded(CLAUDE).fleet, "builder") == "prod-swarm-builder"
    assert names.STATEFULSET_NAME_MAX == 52


def test_label_syntax():
    assert names.label_key("io.agentctl.fleet") is None
    assert names.label_key("example.com/tier") is None
    assert names.label_key("app.kubernetes.io/managed-by") is None
    assert names.label_key("bad key") is not None
    assert names.label_key("/x") is not None
    assert names.label_key("x" * 64) is not None
    assert names.label_value("") is None
    assert names.label_value("-x") is not None
    assert names.label_value("x" * 64) is not None


def test_coordinator_id_pins_who_may_assign():
    result = _export(CLAUDE, coordinators=("0123456789abcdef",))
    container = _one(result.manifests, "StatefulSet", "prod-swarm-builder")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert _env(container)["AGENTCTL_RUNNER_COORDINATORS"] == "0123456789abcdef"
    assert not any("--coordinator-id" in n for n in result.notes)
    assert any("--coordinator-id" in n for n in _export(CLAUDE).notes)


def test_a_local_image_is_a_warning_for_a_cluster_only():
    kube = export_kube(demo().fleet, KubeOptions(), home=HOME)
    assert any("localhost/agentctl-agent:latest" in w for w in kube.warnings)
    podman = export_kube(demo().fleet, KubeOptions(target="podman"), home=HOME)
    assert not any("local Podman store" in w for w in podman.warnings)
