"""Every exported manifest validates against the Kubernetes OpenAPI schemas, strictly.

The schemas come from the `kubernetes-validate` package (pinned as a dev dependency; it
ships the JSON schemas of each Kubernetes release, so nothing is fetched at test time).
Strict mode refuses unknown fields, so a misspelt key fails here, not at `kubectl apply`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from agentctl_swarm.export.kube import KubeOptions, export_kube
from tests.export.fleets import CLAUDE, EXTERNAL, demo, loaded

HOME = Path("/home/exporter")
# 1.28: the oldest release whose StatefulSet pods carry the pod-index label the agents'
# names come from; and the newest schema the package ships.
VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())

FLEETS = {
    "demo": lambda: demo().fleet,
    "claude": lambda: loaded(CLAUDE).fleet,
    "external": lambda: loaded(EXTERNAL).fleet,
}
CASES = [
    ("demo", KubeOptions()),
    ("demo", KubeOptions(target="podman")),
    (
        "claude",
        KubeOptions(namespace="agents", storage_class="fast", model_cidrs=("160.79.104.0/23",)),
    ),
    ("external", KubeOptions()),
    ("external", KubeOptions(target="podman")),
]


def _manifests(fleet_name: str, options: KubeOptions) -> list[dict]:
    return export_kube(FLEETS[fleet_name](), options, home=HOME).manifests


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("fleet_name", "options"), CASES, ids=lambda c: getattr(c, "target", c))
def test_every_manifest_validates(fleet_name, options, version):
    manifests = _manifests(fleet_name, options)
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_claude_fleet_with_podman_flavour_validates():
    fleet = loaded(CLAUDE.replace("    network: none\n", "")).fleet
    for manifest in export_kube(fleet, KubeOptions(target="podman"), home=HOME).manifests:
        kubernetes_validate.validate(manifest, VERSIONS[-1], strict=True)


def test_the_validator_is_not_a_no_op():
    manifest = copy.deepcopy(
        next(m for m in _manifests("claude", KubeOptions()) if m["kind"] == "NetworkPolicy")
    )
    manifest["spec"]["egres"] = manifest["spec"].pop("egress")  # a typo strict mode refuses
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, VERSIONS[-1], strict=True)
    statefulset = copy.deepcopy(
        next(m for m in _manifests("claude", KubeOptions()) if m["kind"] == "StatefulSet")
    )
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[-1], strict=True)
