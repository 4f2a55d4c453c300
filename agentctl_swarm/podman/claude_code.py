"""The Claude Code binary that goes into the agent image, fetched with npm on the host.

Why this way: registries are often unreachable from *inside* a build, so the image
never downloads anything. ``npm install @anthropic-ai/claude-code@VERSION`` runs on the
host, into a cache directory outside the repository (``~/.cache/agentctl/claude-code/
VERSION``); the package's optional dependency for this platform
(``@anthropic-ai/claude-code-linux-x64``) carries a native executable that runs without
Node, and that one file is handed to ``podman build`` through the build context.

Install scripts are not run (``--ignore-scripts``): the wrapper's postinstall only links
the native file, which we take directly. Checked with npm 11 and with npm 9.2 (what
Debian 12's ``apt-get install npm`` gives) under Node 20; the package asks for Node 22
but no Node code of it runs here (``--engine-strict=false``).

The version is pinned (no ``latest``): the version and the binary's SHA-256 are inputs
of the image's build hash, so a new version is a deliberate rebuild. An install is
complete only when its marker file exists (written last, after the binary proved it
runs), so an interrupted install is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.core.errors import AgentctlError, UnavailableError, UsageError
from agentctl_swarm.core.files import atomic_write, file_lock
from agentctl_swarm.core.proc import CommandFailed, run, stream_lines

CLAUDE_CODE_VERSION = "2.1.332"
PACKAGE = "@anthropic-ai/claude-code"
MARKER = ".agentctl-installed.json"
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?\Z")
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
# npm's words for "the registry cannot be reached" (used only to pick the hint).
_NETWORK_ERRORS = ("ENOTFOUND", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "ECONNRESET",
                   "ENETUNREACH", "EHOSTUNREACH", "network", "proxy", "certificate")  # fmt: skip
NPM_TIMEOUT = 1800.0


class ClaudeInstallError(AgentctlError):
    """Claude Code could not be installed on the host; the message says why and the fix."""


@dataclass(frozen=True)
class ClaudeBinary:
    """An installed native Claude Code executable."""

    version: str
    path: Path
    sha256: str
    size: int


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/agentctl`` (``~/.cache/agentctl``): outside the repository and
    outside the state dir, so test runs with their own state dir share one download."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "agentctl"


def native_package(machine: str | None = None) -> str:
    """The optional dependency holding the native binary for this machine."""
    machine = (machine or platform.machine()).lower()
    arch = _ARCH.get(machine)
    if arch is None:
        raise ClaudeInstallError(
            f"Claude Code ships no native Linux binary for {machine!r} (only x64 and arm64)",
            hint="build the slim image with `agentctl build --slim`",
        )
    return f"{PACKAGE}-linux-{arch}"


def check_version(version: str) -> str:
    """A pinned version (``2.1.332``); tags such as ``latest`` would make builds drift."""
    if not _VERSION_RE.match(version):
        raise UsageError(
            f"Claude Code version {version!r} is not a pinned version like {CLAUDE_CODE_VERSION}",
            hint="pass an exact version (npm view @anthropic-ai/claude-code versions)",
        )
    return version


def install_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / "claude-code" / version


def installed(cache_dir: Path, version: str, machine: str | None = None) -> ClaudeBinary | None:
    """The binary of a complete install in the cache, or None.

    The digest is read from the marker written at install time, and trusted only while
    the file keeps the size and modification time it had then (hashing 400 MB on every
    `agentctl build` would cost a second each time).
    """
    root = install_dir(cache_dir, version)
    try:
        marker = json.loads((root / MARKER).read_text())
        path = root / marker["path"]
        info = path.stat()
        if (
            marker["version"] == version
            and marker["package"] == native_package(machine)
            and info.st_size == marker["size"]
            and info.st_mtime_ns == marker["mtime_ns"]
            and os.access(path, os.X_OK)
        ):
            return ClaudeBinary(version, path, marker["sha256"], info.st_size)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def ensure_claude(
    cache_dir: Path,
    version: str = CLAUDE_CODE_VERSION,
    *,
    progress: Progress = _quiet,
    npm: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ClaudeBinary:
    """The cached binary of ``version``, installing it with npm first when missing.

    ``npm``: the npm executable (default: found on PATH). ``env``: extra environment for
    npm (e.g. ``npm_config_registry`` for a mirror). Concurrent calls are serialised by a
    lock in the cache, so two builds never download into the same place.
    """
    check_version(version)
    package = native_package()
    found = installed(cache_dir, version)
    if found is not None:
        return found
    npm_path = npm or shutil.which("npm")
    if npm_path is None or not os.access(npm_path, os.X_OK):
        raise ClaudeInstallError(
            "npm is not installed; it is needed to fetch Claude Code for the agent image",
            hint="apt-get install -y nodejs npm (scripts/setup.sh does this), "
            "or build without Claude Code: agentctl build --slim",
        )
    root = install_dir(cache_dir, version)
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(
        root.parent / f".{version}.lock",
        what=f"the Claude Code {version} download",
        on_wait=progress,
    ):
        found = installed(cache_dir, version)  # another build finished it while we waited
        if found is not None:
            return found
        return _install(root, version, package, npm_path, env, progress)


def _install(
    root: Path,
    version: str,
    package: str,
    npm: str,
    env: Mapping[str, str] | None,
    progress: Progress,
) -> ClaudeBinary:
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root.parent))
    try:
        progress(f"npm install {PACKAGE}@{version} (about 230 MB download, once per version)")
        # The native package is named explicitly and the wrapper's other optional
        # dependencies (seven platforms) are omitted: npm 9 (Debian 12's) would otherwise
        # also fetch the musl build, another 400 MB.
        argv = [npm, "install", "--prefix", str(tmp), "--no-save", "--no-package-lock",
                "--ignore-scripts", "--no-audit", "--no-fund", "--engine-strict=false",
                "--omit=optional", "--loglevel=http",
                f"{PACKAGE}@{version}", f"{package}@{version}"]  # fmt: skip
        npm_env = {**os.environ, **(env or {}), "NO_UPDATE_NOTIFIER": "1"}
        code, tail = stream_lines(argv, lambda line: progress(_short(line)), env=npm_env)
        if code != 0:
            raise _npm_failed(code, tail, version)
        rel = Path("node_modules", *package.split("/"), "claude")
        binary = tmp / rel
        if not binary.is_file():
            raise ClaudeInstallError(
                f"npm installed {PACKAGE}@{version} but not its native binary "
                f"{package} (expected {rel})",
                hint="check that this version ships a native Linux build "
                "(npm view @anthropic-ai/claude-code optionalDependencies)",
            )
        binary.chmod(0o755)
        _check_runs(binary, version)
        progress("hashing the Claude Code binary")
        digest = _sha256(binary)
        info = binary.stat()
        marker = {
            "version": version,
            "package": package,
            "path": rel.as_posix(),
            "sha256": digest,
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
        }
        atomic_write(tmp / MARKER, json.dumps(marker, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)  # an incomplete earlier install (no marker)
        tmp.chmod(0o755)  # mkdtemp made it 0700; the cache is shared with non-root users
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ClaudeBinary(version, root / rel, digest, info.st_size)


def _short(line: str) -> str:
    return line if len(line) <= 160 else line[:157] + "..."


def _npm_failed(code: int, tail: list[str], version: str) -> ClaudeInstallError:
    text = "\n".join(tail[-10:])
    if any(word.lower() in "\n".join(tail).lower() for word in _NETWORK_ERRORS):
        return ClaudeInstallError(
            f"npm could not reach the npm registry to fetch {PACKAGE}@{version} "
            f"(exit {code}):\n{text}",
            hint="check the network or proxy settings (npm config get registry / proxy), "
            "or build without Claude Code: agentctl build --slim",
        )
    if any(err in "\n".join(tail) for err in ("E404", "ETARGET")):
        return ClaudeInstallError(
            f"npm has no {PACKAGE}@{version} (exit {code}):\n{text}",
            hint="pick an existing version (npm view @anthropic-ai/claude-code versions)",
        )
    return ClaudeInstallError(
        f"npm install {PACKAGE}@{version} failed (exit {code}):\n{text}",
        hint="fix what npm reports, or build without Claude Code: agentctl build --slim",
    )


def _check_runs(binary: Path, version: str) -> None:
    """The binary must run on this machine and be the version asked for."""
    try:
        result = run([binary, "--version"], timeout=60, env={"PATH": "/usr/bin:/bin"})
    except CommandFailed as exc:
        raise ClaudeInstallError(
            f"the downloaded Claude Code binary does not run here: {exc}",
            hint="report it; meanwhile build without Claude Code: agentctl build --slim",
        ) from exc
    if not result.stdout.strip().startswith(version):
        raise ClaudeInstallError(
            f"the downloaded Claude Code binary says {result.stdout.strip()!r}, not {version}",
            hint="clear the npm cache (npm cache clean --force) and build again",
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def require_installed(cache_dir: Path, version: str) -> ClaudeBinary:
    """The cached binary, or UnavailableError saying how to get it (for tests and tools
    that must not download)."""
    found = installed(cache_dir, version)
    if found is None:
        raise UnavailableError(
            f"Claude Code {version} is not in {install_dir(cache_dir, version)}",
            hint="run `agentctl build` (it installs Claude Code with npm)",
        )
    return found
