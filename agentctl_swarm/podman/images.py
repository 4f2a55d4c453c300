"""Build the agent image (`agentctl build`), and the offline base image it may stand on.

Why it is shaped this way:

* Package registries may be unreachable from *inside* containers (TLS interception,
  sandboxes), so the project and its dependencies are built as wheels on the host and the
  image installs them with ``pip --no-index``. The base's Python must therefore match the
  host's (major.minor); that is checked before building, with a clear message.
* Where no registry can be pulled from, the base image is made locally: debootstrap a
  minimal Debian and ``podman import`` it (``localhost/agentctl-base:<suite>``).
* Claude Code goes in as its native Linux binary (``/usr/local/bin/claude``), installed
  with npm on the host into a cache outside the repository (``claude_code.py``) and
  handed over through the build context: nothing is downloaded inside the build.
  ``BuildOptions(with_claude=False)`` (``agentctl build --slim``) builds without it.
* Rootless Podman (a non-root user) has its own image store and cannot debootstrap:
  root builds, then copies the images into the user's store (``user_store.py``,
  `agentctl build [--base-only] --for-user NAME`); the user's own `agentctl build` then
  stands on the copied base.
* Builds are skipped when nothing that goes into the image changed: a content hash of the
  Containerfile, ``containers/**``, the project sources, the build arguments, the base
  image's id and the Claude Code version and binary digest is stored in the image label
  ``io.agentctl.build-hash``.

Progress is reported through a callback of ``BuildEvent``; rendering is the CLI's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.core.errors import AgentctlError
from agentctl_swarm.core.files import file_lock
from agentctl_swarm.core.proc import CommandFailed, run, stream_lines
from agentctl_swarm.podman.claude_code import (
    CLAUDE_CODE_VERSION,
    ClaudeBinary,
    check_version,
    default_cache_dir,
    ensure_claude,
)
from agentctl_swarm.podman.user_store import agentctl_command

BUILD_HASH_LABEL = "io.agentctl.build-hash"
BASE_LABEL = "io.agentctl.base-image"
UPSTREAM_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE_PREFIX = "localhost/agentctl-base"
DEBOOTSTRAP_INCLUDE = ("python3", "python3-venv", "git", "tini", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGE_DIR = "agentctl_swarm"
RUNTIME_LOCK = "requirements.lock"  # the image's Python packages (scripts/lock.sh)
HASH_VERSION = "2"  # bump when the meaning of the hash inputs changes
CLAUDE_CONTEXT_DIR = "claude"  # in the build context; its files land in /usr/local/bin
COPY_CHUNK = 8 * 1024 * 1024

_STEP_RE = re.compile(r"^STEP (\d+)/(\d+)")


class BuildError(AgentctlError):
    """The build cannot go on; the message names the cause and the fix."""


@dataclass(frozen=True)
class BuildEvent:
    """One progress update: a stage, a line of text and, for `podman build`, the step
    (or, while copying Claude Code into the build context, the percentage as step/100)."""

    stage: str  # base | claude | check | wheels | build | done
    message: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class BuildOptions:
    """What to build and from what.

    ``with_claude``: put Claude Code (``claude_version``, fetched with npm into
    ``cache_dir``, default ``~/.cache/agentctl``) into the image; False builds the slim
    image without it.
    """

    project_dir: Path
    image: str = "localhost/agentctl-agent:latest"
    base_image: str = "localhost/agentctl-base:bookworm"
    with_claude: bool = True
    claude_version: str = CLAUDE_CODE_VERSION
    cache_dir: Path | None = None
    force: bool = False
    mirror: str = DEFAULT_MIRROR
    lock_dir: Path | None = None

    def build_args(self) -> dict[str, str]:
        return {"BASE_IMAGE": self.base_image}

    def claude_cache(self) -> Path:
        return self.cache_dir or default_cache_dir()


@dataclass(frozen=True)
class BuildResult:
    """What `build_agent_image` did."""

    image: str
    build_hash: str
    skipped: bool
    base_built: bool
    seconds: float


Emit = Callable[[BuildEvent], None]


def _noop(_: BuildEvent) -> None:
    pass


# ---------------------------------------------------------------------------------------
# Inputs and hashing (pure apart from reading files)


def find_project_dir(start: Path | None = None) -> Path:
    """The checkout that holds the Containerfile: from ``start``/cwd upward, else the package's.

    Raises BuildError naming where it looked.
    """
    candidates: list[Path] = []
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    candidates.append(Path(__file__).resolve().parents[2])
    for d in candidates:
        if (d / "Containerfile").is_file() and (d / "pyproject.toml").is_file():
            return d
    raise BuildError(
        f"no Containerfile + pyproject.toml found in {here} or its parents; "
        "run `agentctl build` inside the agentctl-swarm checkout or pass --project-dir"
    )


def input_files(project_dir: Path) -> list[Path]:
    """Every file whose content goes into the image, relative to ``project_dir``, sorted."""
    files = [Path("Containerfile"), Path("pyproject.toml"), Path(RUNTIME_LOCK)]
    for sub in ("containers", PACKAGE_DIR):
        root = project_dir / sub
        if not root.is_dir():
            continue
        for p in root.rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}:
                files.append(p.relative_to(project_dir))
    return sorted(f for f in set(files) if (project_dir / f).is_file())


def build_hash(
    project_dir: Path,
    build_args: Mapping[str, str],
    base_id: str,
    claude: ClaudeBinary | None = None,
) -> str:
    """Content hash of everything that shapes the image (names, bytes, args, base id,
    and the Claude Code binary: its version and SHA-256, or its absence).

    Modification times do not count, so touching a file or a fresh clone keeps the hash.
    """
    h = hashlib.sha256(f"agentctl-build v{HASH_VERSION}\n".encode())
    for rel in input_files(project_dir):
        digest = hashlib.sha256((project_dir / rel).read_bytes()).hexdigest()
        h.update(f"file {rel.as_posix()} {digest}\n".encode())
    for key in sorted(build_args):
        h.update(f"arg {key}={build_args[key]}\n".encode())
    h.update(f"base {base_id}\n".encode())
    h.update((f"claude {claude.version} {claude.sha256}" if claude else "claude none").encode())
    return h.hexdigest()


def parse_step(line: str) -> tuple[int, int] | None:
    """`STEP 3/14: RUN ...` → (3, 14); anything else → None."""
    m = _STEP_RE.match(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_local_base(image: str) -> bool:
    """Whether this base is one we make with debootstrap (instead of pulling it)."""
    return image.split(":", 1)[0] == LOCAL_BASE_PREFIX


def suite_of(image: str) -> str:
    """Debian suite of a local base name: its tag up to a dash (default bookworm).

    ``localhost/agentctl-base:bookworm-ci`` is a second bookworm base (tests use that).
    """
    _, _, tag = image.partition(":")
    suite = tag.split("-", 1)[0]
    return suite if suite and suite != "latest" else "bookworm"


# ---------------------------------------------------------------------------------------
# Podman helpers (I/O)


def _podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise BuildError("podman is not installed: run `agentctl doctor --fix` first")
    return path


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A short podman command; the caller looks at the exit code (a timeout raises)."""
    return run(argv, timeout=timeout, check=False)


def image_id(image: str) -> str | None:
    """The image's id, or None when it is not in local storage."""
    r = _run([_podman(), "image", "inspect", "--format", "{{.Id}}", image])
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def image_label(image: str, label: str) -> str | None:
    """One label of a local image (None when the image or the label is missing)."""
    fmt = "{{index .Labels " + f'"{label}"' + "}}"
    r = _run([_podman(), "image", "inspect", "--format", fmt, image])
    value = r.stdout.strip()
    return value if r.returncode == 0 and value and value != "<no value>" else None


def remove_image(image: str) -> None:
    """Remove a local image if present (used by tests and --force of the base)."""
    _run([_podman(), "rmi", "--force", image])


def _stream(argv: list[str], emit: Emit, stage: str) -> tuple[int, list[str]]:
    """Run a command, passing each output line to ``emit``; return (code, last lines)."""

    def on_line(line: str) -> None:
        step = parse_step(line)
        emit(BuildEvent(stage, line, *(step or (None, None))))

    return stream_lines(argv, on_line)


@contextlib.contextmanager
def _lock(lock_dir: Path | None, emit: Emit = _noop) -> Iterator[None]:
    """Serialise builds on one machine: two `agentctl build` runs would race on the tag."""
    if lock_dir is None:
        yield
        return
    with file_lock(
        lock_dir / "build.lock",
        what="the image build lock",
        on_wait=lambda line: emit(BuildEvent("check", line)),
    ):
        yield


# ---------------------------------------------------------------------------------------
# Base image


def build_local_base(image: str, *, mirror: str = DEFAULT_MIRROR, emit: Emit = _noop) -> None:
    """debootstrap a minimal Debian with python3/venv/git/tini and import it as ``image``."""
    if os.geteuid() != 0:
        # Rootless Podman has its own image store: root builds the base and copies it in.
        user = _user_name()
        raise BuildError(
            f"building the base image {image} needs root (debootstrap), and it is not in "
            f"your image store. Have root build it and copy it to you: sudo "
            f"{agentctl_command()} build --base-only --for-user {user} (scripts/setup.sh "
            f"does this), then run `agentctl build` again; or pass --base-image "
            f"{UPSTREAM_BASE} where registries can be pulled from"
        )
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.access("/usr/sbin/debootstrap", os.X_OK) else None
    )
    if debootstrap is None:
        raise BuildError(
            "debootstrap is not installed: apt-get install -y debootstrap "
            "(scripts/setup.sh does this)"
        )
    suite = suite_of(image)
    with tempfile.TemporaryDirectory(prefix="agentctl-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        emit(BuildEvent("base", f"debootstrap {suite} from {mirror} (about a minute)"))
        code, tail = _stream(
            [
                debootstrap,
                "--variant=minbase",
                "--include=" + ",".join(DEBOOTSTRAP_INCLUDE),
                suite,
                str(rootfs),
                mirror,
            ],
            emit,
            "base",
        )
        if code != 0:
            raise BuildError(
                f"debootstrap {suite} failed (exit {code}):\n"
                + "\n".join(tail[-8:])
                + f"\ncheck that {mirror} is reachable, or pass --mirror"
            )
        with contextlib.suppress(OSError):
            shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        emit(BuildEvent("base", f"podman import → {image}"))
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        imp = subprocess.run(
            [
                _podman(),
                "import",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                f"LABEL io.agentctl.base=debootstrap-{suite}",
                "-",
                image,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar_code = tar.wait()
        if imp.returncode != 0 or tar_code != 0:
            raise BuildError(f"podman import of the base failed: {imp.stderr.strip()[-500:]}")


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def ensure_base_image(opts: BuildOptions, emit: Emit = _noop) -> bool:
    """Make sure the base is local: build ours when missing, pull others. True if built."""
    if image_id(opts.base_image):
        return False
    if is_local_base(opts.base_image):
        build_local_base(opts.base_image, mirror=opts.mirror, emit=emit)
        return True
    emit(BuildEvent("base", f"pulling {opts.base_image}"))
    try:
        r = _run([_podman(), "pull", opts.base_image], timeout=600)
    except CommandFailed:
        r = subprocess.CompletedProcess([], 1, "", "timed out after 600 s")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise BuildError(
            f"cannot pull base image {opts.base_image}: {last}\n"
            f"use the offline base instead: agentctl build --base-image "
            f"{LOCAL_BASE_PREFIX}:bookworm"
        )
    return False


def check_base_python(base_image: str, host: tuple[int, int] | None = None) -> str:
    """The base's python3 version; BuildError when it lacks python3/venv or differs from host.

    The wheels are built by this interpreter, so compiled ones (pydantic-core, ...) only
    install on the same major.minor.
    """
    host = host or (sys.version_info.major, sys.version_info.minor)
    code = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
    r = _run(
        [_podman(), "run", "--rm", "--network", "host", "--pull=never", "--user", "0",
         "--entrypoint", "python3", base_image, "-c", code],
        timeout=120,
    )  # fmt: skip
    out = r.stdout.strip()
    if r.returncode != 0 or not re.fullmatch(r"\d+\.\d+", out):
        detail = (r.stderr.strip().splitlines() or [out or f"exit {r.returncode}"])[-1]
        raise BuildError(
            f"base image {base_image} has no usable python3 with venv ({detail}); "
            f"use a Debian-based image with python3 and python3-venv, e.g. {UPSTREAM_BASE}"
        )
    want = f"{host[0]}.{host[1]}"
    if out != want:
        raise BuildError(
            f"base image {base_image} has Python {out} but the wheels are built with "
            f"Python {want} ({sys.executable}); use a base with Python {want} "
            f"(e.g. docker.io/library/python:{want}-slim-bookworm) or run agentctl from a "
            f"Python {out} environment"
        )
    return out


# ---------------------------------------------------------------------------------------
# Agent image


def build_wheels(project_dir: Path, dest: Path, emit: Emit = _noop) -> list[str]:
    """`pip wheel` the project and all its dependencies into ``dest``; return file names."""
    dest.mkdir(parents=True, exist_ok=True)
    emit(BuildEvent("wheels", "pip wheel (project and dependencies)"))
    pip = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q",
           "--wheel-dir", str(dest)]  # fmt: skip
    lock = project_dir / RUNTIME_LOCK
    steps = (
        # the locked versions (with hashes), then the project alone on top
        [[*pip, "--require-hashes", "-r", str(lock)], [*pip, "--no-deps", str(project_dir)]]
        if lock.is_file()
        else [[*pip, str(project_dir)]]
    )
    code, tail = 0, []
    for argv in steps:
        code, tail = _stream(argv, emit, "wheels")
        if code != 0:
            break
    if code != 0:
        raise BuildError(
            "building wheels failed:\n" + "\n".join(tail[-8:]) + "\n(the host needs to reach "
            "PyPI, or a pip configuration pointing at a mirror)"
        )
    return sorted(p.name for p in dest.glob("*.whl"))


def _copy_assets(project_dir: Path, ctx: Path) -> None:
    src = project_dir / "containers"
    if src.is_dir():
        shutil.copytree(src, ctx / "containers", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        (ctx / "containers").mkdir()


def _drop_replaced(previous: str | None, image: str) -> None:
    """Remove the image a rebuild untagged, so rebuilds do not pile up ~500 MB each.

    Plain `rmi` (no force): an image still used by a container or another tag stays.
    """
    if previous and previous != image_id(image):
        _run([_podman(), "rmi", previous])


def current_hash(opts: BuildOptions, claude: ClaudeBinary | None = None) -> str:
    """The hash the image would carry if built now (the base must be local)."""
    base_id = image_id(opts.base_image) or "absent"
    return build_hash(opts.project_dir, opts.build_args(), base_id, claude)


def fetch_claude(opts: BuildOptions, emit: Emit = _noop) -> ClaudeBinary | None:
    """The Claude Code binary for this build (installed with npm when not cached yet),
    or None for the slim image."""
    if not opts.with_claude:
        return None
    check_version(opts.claude_version)  # a bad --claude-version is the user's (exit 2)
    cache = opts.claude_cache()
    emit(BuildEvent("claude", f"Claude Code {opts.claude_version} (cache {cache})"))
    try:
        return ensure_claude(
            cache,
            opts.claude_version,
            progress=lambda line: emit(BuildEvent("claude", line)),
        )
    except AgentctlError as exc:
        raise BuildError(exc.one_line()) from exc


def stage_claude(claude: ClaudeBinary | None, ctx: Path, emit: Emit = _noop) -> None:
    """Put the binary into the build context as ``claude/claude`` (the Containerfile
    copies the directory's files to /usr/local/bin; empty for the slim image).

    A hard link when the cache and the context share a file system (instant), else a
    copy with progress, checked against the digest so a torn copy never ships.
    """
    target_dir = ctx / CLAUDE_CONTEXT_DIR
    target_dir.mkdir()
    if claude is None:
        return
    target = target_dir / "claude"
    try:
        os.link(claude.path, target)
        return
    except OSError:
        pass  # another file system (or no links allowed): copy
    h = hashlib.sha256()
    done, last = 0, -1
    with open(claude.path, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(COPY_CHUNK):
            dst.write(chunk)
            h.update(chunk)
            done += len(chunk)
            percent = done * 100 // max(1, claude.size)
            if percent // 10 != last // 10:
                last = percent
                emit(BuildEvent("claude", f"copying claude into the build context ({percent}%)",
                                percent, 100))  # fmt: skip
    if h.hexdigest() != claude.sha256:
        raise BuildError(
            f"the copy of {claude.path} does not match its recorded digest; the cache is "
            f"damaged: remove {claude.path.parents[3]} and build again"
        )
    target.chmod(0o755)


def build_base_image(opts: BuildOptions, emit: Emit = _noop) -> bool:
    """Only the base (`agentctl build --base-only`): made when missing; True if built."""
    with _lock(opts.lock_dir, emit):
        return ensure_base_image(opts, emit)


def build_agent_image(opts: BuildOptions, emit: Emit = _noop) -> BuildResult:
    """Build the agent image unless an image with the same input hash exists already."""
    start = time.monotonic()
    with _lock(opts.lock_dir, emit):
        if not (opts.project_dir / "Containerfile").is_file():
            raise BuildError(f"{opts.project_dir}/Containerfile not found")
        base_built = ensure_base_image(opts, emit)
        claude = fetch_claude(opts, emit)
        wanted = current_hash(opts, claude)
        if not opts.force and image_label(opts.image, BUILD_HASH_LABEL) == wanted:
            emit(BuildEvent("done", f"{opts.image} is up to date"))
            return BuildResult(opts.image, wanted, True, base_built, time.monotonic() - start)
        previous = image_id(opts.image)
        emit(BuildEvent("check", f"checking Python in {opts.base_image}"))
        check_base_python(opts.base_image)
        with tempfile.TemporaryDirectory(prefix="agentctl-build-", dir="/var/tmp") as tmp:
            ctx = Path(tmp)
            build_wheels(opts.project_dir, ctx / "wheels", emit)
            _copy_assets(opts.project_dir, ctx)
            stage_claude(claude, ctx, emit)
            argv = [_podman(), "build", "--network", "host", "--pull=never"]
            argv += ["-f", str(opts.project_dir / "Containerfile"), "-t", opts.image]
            for key, value in opts.build_args().items():
                argv += ["--build-arg", f"{key}={value}"]
            argv += ["--label", f"{BUILD_HASH_LABEL}={wanted}"]
            argv += ["--label", f"{BASE_LABEL}={opts.base_image}", str(ctx)]
            emit(BuildEvent("build", f"podman build -t {opts.image}"))
            code, tail = _stream(argv, emit, "build")
        if code != 0:
            raise BuildError(f"podman build failed (exit {code}):\n" + "\n".join(tail[-12:]))
        _drop_replaced(previous, opts.image)
        emit(BuildEvent("done", f"built {opts.image}"))
        return BuildResult(opts.image, wanted, False, base_built, time.monotonic() - start)
