"""Rules for host paths mounted into agents (pure: text in, verdict out).

A mount of a credential store or a host control path hands the agent the keys to
something outside its box, so it needs an explicit ``allow_sensitive``. Paths are compared
after normalising (``//etc``, ``/tmp/../etc`` → ``/etc``); ``~`` stays symbolic for the
applying user, ``~name`` is read as some user's home, and any path through a credential
directory (``.ssh``, ``.aws``, ...) counts wherever it lies. At apply time the controller
checks again after resolving symlinks on the host (controller/preflight.py).
"""

from __future__ import annotations

import posixpath

# Directories (and files) that hold credentials, wherever a home directory is.
CREDENTIAL_NAMES = (
    ".ssh",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".agentchat",
    ".config/gcloud",
    ".config/gh",
    ".config/containers",
    ".local/share/containers",
)

# Absolute host paths that control the host or hold its secrets.
HOST_CONTROL = (
    "/",
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run/user",
    "/run/podman",
    "/var/run/podman",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd",
    "/var/lib/containers",
    "/var/lib/docker",
    "/var/lib/agentctl",
    "/run/secrets",
)

# Where an agent's own mounts are; nothing may be mounted over or inside them.
RESERVED_TARGETS = ("/", "/workspace", "/state", "/run/secrets")


def normalise_host_path(path: str) -> str:
    """Lexically clean ``path``: collapse ``//``, ``.`` and ``..``; ``~name`` → home of name.

    ``~`` and ``~/x`` stay symbolic (the applying user's home is only known at apply).
    """
    if path.startswith("~") and not path.startswith("~/") and path != "~":
        user, _, rest = path[1:].partition("/")
        home = "/root" if user == "root" else f"/home/{user}"
        path = f"{home}/{rest}" if rest else home
    if path.startswith("~"):
        return "~" + _clean(path[1:] or "/").rstrip("/") if path != "~" else "~"
    return _clean(path)


def _clean(path: str) -> str:
    clean = posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else path
    return "/" + clean.lstrip("/") if clean.startswith("/") else clean


def _within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def sensitive_match(
    path: str, *, extra: tuple[str, ...] = (), home: str | None = None
) -> str | None:
    """The sensitive place ``path`` (normalised) is, lies in, or contains; else None.

    ``extra``: more absolute paths to protect (the project's state directory, the Podman
    socket's directory), known only on the host. ``home``: the applying user's home once
    resolved; a path inside it (``/root/datasets`` for root) is judged like ``~/datasets``.
    """
    if home and path != home and _within(path, home):
        path = "~" + path[len(home.rstrip("/")) :]
    parts = [p for p in path.split("/") if p]
    for name in CREDENTIAL_NAMES:
        first = name.split("/")
        for i in range(len(parts) - len(first) + 1):
            if parts[i : i + len(first)] == first:
                head = "/".join(parts[: i + len(first)])
                return head if head.startswith("~") else "/" + head
    home_like = path == "~" or (path.startswith(("/home", "/root")) and len(parts) <= 2)
    if home_like:
        return f"{path} (a home directory holds credential stores such as .ssh)"
    if path.startswith("~"):
        return None
    for root in (*HOST_CONTROL, *extra):
        if root == "/":
            if path == "/":
                return "/"
            continue
        if _within(path, root) or _within(root, path if path != "/" else "/"):
            return root
    return None


def shadows_reserved(target: str) -> bool:
    """Whether a mount at ``target`` would hide (or sit inside) the agent's own mounts."""
    clean = _clean(target)
    return any(
        clean == "/" if reserved == "/" else _within(clean, reserved)
        for reserved in RESERVED_TARGETS
    )
