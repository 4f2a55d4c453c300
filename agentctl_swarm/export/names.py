"""Kubernetes' syntax rules for names, labels and quantities (pure: text in, verdict out).

A fleet file is validated against Podman's rules, which are looser than Kubernetes' (a
Podman label value may hold spaces and be 1000 characters long; a Kubernetes one may
not). The exporter checks every name and label it writes here, so a fleet that cannot be
expressed is refused at export with the place to fix, instead of by the API server at
``kubectl apply`` time. The rules are those of k8s.io/apimachinery's validation package.
"""

from __future__ import annotations

import re

_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+\Z")
_QUANTITY_RE = re.compile(r"(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?\Z")

LABEL_MAX = 63
# A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>`, a label value
# (at most 63), so names over 52 characters make every pod creation fail.
STATEFULSET_NAME_MAX = 52


def dns1123_label(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (pod, PVC template, port names), or None."""
    if len(value) > LABEL_MAX:
        return f"{value!r} is longer than {LABEL_MAX} characters"
    if not _DNS1123_LABEL_RE.match(value):
        return f"{value!r} must be lowercase letters, digits and '-', alphanumeric at both ends"
    return None


def dns1035_label(value: str) -> str | None:
    """Why ``value`` is not a DNS-1035 label (Service names: must start with a letter)."""
    problem = dns1123_label(value)
    if problem:
        return problem
    if not _DNS1035_LABEL_RE.match(value):
        return f"{value!r} must start with a letter (Kubernetes Service names are DNS-1035)"
    return None


def dns1123_subdomain(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (most object names), or None."""
    if not value or len(value) > 253:
        return f"{value!r} must be 1-253 characters"
    for part in value.split("."):
        if not _DNS1123_LABEL_RE.match(part):
            return (
                f"{value!r} must be lowercase letters, digits, '-' and '.', "
                "alphanumeric at both ends of each part"
            )
    return None


def label_key(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {key!r} has an empty prefix before '/'"
        problem = dns1123_subdomain(prefix)
        if problem:
            return f"label key {key!r}: the prefix {problem}"
    if not name or len(name) > LABEL_MAX or not _LABEL_NAME_RE.match(name):
        return (
            f"label key {key!r}: the name must be 1-{LABEL_MAX} letters, digits, '-', '_' "
            "or '.', alphanumeric at both ends (Kubernetes label syntax)"
        )
    return None


def label_value(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value (empty is allowed), or None."""
    if value == "":
        return None
    if len(value) > LABEL_MAX or not _LABEL_NAME_RE.match(value):
        return (
            f"label value {value!r} must be at most {LABEL_MAX} letters, digits, '-', '_' "
            "or '.', alphanumeric at both ends (Kubernetes label syntax)"
        )
    return None


def secret_key(key: str) -> str | None:
    """Why ``key`` cannot be a key of a Secret's data, or None."""
    if len(key) > 253 or not _SECRET_KEY_RE.match(key):
        return f"{key!r} is not a Secret key (letters, digits, '-', '_', '.')"
    return None


def quantity(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes quantity like ``10Gi`` or ``500m``, or None."""
    if not _QUANTITY_RE.match(value):
        return f"{value!r} is not a Kubernetes quantity; write it like 10Gi or 512Mi"
    return None


def memory_quantity(size: int) -> str:
    """Bytes as the most readable exact quantity (``1073741824`` → ``1Gi``)."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def cpu_quantity(nano_cpus: int) -> str:
    """Podman's nano-CPUs as a Kubernetes CPU quantity (``1500000000`` → ``1500m``).

    Kubernetes resolves CPU to millicores; a finer Podman value is rounded up, never
    down, so the limit is not tighter than the fleet asked for.
    """
    milli = -(-nano_cpus // 1_000_000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
