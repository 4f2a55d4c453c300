"""Hand images from root's Podman store to a user's rootless store (`agentctl build --for-user`).

Why: the offline base image is made with debootstrap, which needs root, and rootless
Podman keeps a separate image store per user (``~/.local/share/containers``). So root
builds (or just keeps) the images and copies them over: ``podman save`` of all of them as
one archive (the agent image stands on the base, so shared layers travel once) piped
into ``podman load`` run *as the user*. Image ids survive the copy, which is how a
second run sees there is nothing to do, and how the user's own `agentctl build` then
finds the same base id in its build hash.

This is the one place that does it: `scripts/setup.sh` (a non-root user's set-up, through
sudo), the Lima client provisioning (``lima/provision/node.sh``) and CI's rootless tests
all call `agentctl build --for-user NAME`.

The user's Podman runs with the environment a login would give it, in particular
``XDG_RUNTIME_DIR=/run/user/UID``: Podman records its runtime paths in the store's
database on first use and refuses to open it later with different ones, so the copy must
use the same directory the user's own Podman and API service use. When that directory
does not exist (hosts without systemd-logind) it is created, as logind would.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.core.errors import AgentctlError, UsageError

LOAD_TIMEOUT = 1800.0
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


class CopyError(AgentctlError):
    """Copying images into the user's store failed; the message says where."""


@dataclass(frozen=True)
class TargetUser:
    """The user whose rootless store receives the images."""

    name: str
    uid: int
    gid: int
    home: Path

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    def env(self) -> dict[str, str]:
        """What a login would give the user's Podman (no variables of the caller leak in)."""
        return {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": USER_PATH,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
        }


@dataclass(frozen=True)
class CopyResult:
    """What `copy_to_user` did: images copied, images the user already had, seconds."""

    user: str
    copied: tuple[str, ...]
    present: tuple[str, ...]
    seconds: float


def target_user(name: str) -> TargetUser:
    """Look the user up; UsageError when there is none or it is root."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--for-user {name}: there is no such user") from None
    if entry.pw_uid == 0:
        raise UsageError(
            f"--for-user {name}: that is root, whose store `agentctl build` builds into"
        )
    return TargetUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise CopyError("podman is not installed: run `agentctl doctor --fix` first")
    return path


def _as_user(user: TargetUser) -> dict[str, object]:
    """Popen arguments that run a command as ``user`` (root only)."""
    return {
        "user": user.uid,
        "group": user.gid,
        "extra_groups": [],
        "env": user.env(),
        "cwd": str(user.home) if user.home.is_dir() else "/",
    }


def image_id(image: str, user: TargetUser | None = None) -> str | None:
    """The id of ``image`` in root's store, or in ``user``'s; None when absent."""
    argv = [_podman(), "image", "inspect", "--format", "{{.Id}}", image]
    extra = _as_user(user) if user else {}
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        **extra,  # type: ignore[call-overload]
    )
    out = result.stdout.strip()
    return out if result.returncode == 0 and out else None


def ensure_runtime_dir(user: TargetUser) -> bool:
    """Create /run/user/UID (0700, the user's) when missing, as systemd-logind would.

    True when it was created.
    """
    path = user.runtime_dir
    if path.is_dir():
        return False
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    os.chown(path, user.uid, user.gid)
    return True


def copy_to_user(
    images: Sequence[str], name: str, progress: Callable[[str], None] = lambda _: None
) -> CopyResult:
    """Copy ``images`` from root's store into user ``name``'s, skipping identical ones.

    Needs root. Raises UsageError for a bad user, CopyError when an image is missing here
    or the save/load fails (with Podman's words and the command to retry by hand).
    """
    start = time.monotonic()
    if os.geteuid() != 0:
        raise UsageError(
            "--for-user needs root: it reads root's image store and writes the user's",
            hint=f"run it with sudo: sudo {agentctl_command()} build --for-user {name}",
        )
    user = target_user(name)
    if ensure_runtime_dir(user):
        progress(f"created {user.runtime_dir} for {user.name} (no login session made it)")
    wanted: dict[str, str] = {}
    for image in dict.fromkeys(images):
        found = image_id(image)
        if found is None:
            raise CopyError(
                f"{image} is not in root's image store", hint="build it first: agentctl build"
            )
        wanted[image] = found
    theirs = {image: image_id(image, user) for image in wanted}
    todo = [image for image, ident in wanted.items() if theirs[image] != ident]
    present = tuple(image for image in wanted if image not in todo)
    if todo:
        progress(f"podman save {' '.join(todo)} | podman load (as {user.name})")
        _save_load(todo, user)
        wrong = [image for image in todo if image_id(image, user) != wanted[image]]
        if wrong:
            raise CopyError(
                f"after the copy, {user.name}'s store does not have {', '.join(wrong)} "
                "with root's image id; run `podman images` as that user to see what it has"
            )
        _drop_replaced(user, [old for image in todo if (old := theirs[image])])
    return CopyResult(user.name, tuple(todo), present, time.monotonic() - start)


def _drop_replaced(user: TargetUser, old_ids: Sequence[str]) -> None:
    """Remove the images the copy untagged in the user's store (each copy of a changed
    agent image would otherwise leave ~800 MB behind). Plain `rmi`: an image a container
    still uses, or that has another tag, stays."""
    for old in old_ids:
        subprocess.run(
            [_podman(), "rmi", old],
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            **_as_user(user),  # type: ignore[call-overload]
        )


def _save_load(images: Sequence[str], user: TargetUser) -> None:
    """One archive of all images (shared layers once), streamed: nothing lands on disk."""
    podman = _podman()
    with tempfile.TemporaryFile() as save_err:
        save = subprocess.Popen(
            [podman, "save", "--multi-image-archive", *images],
            stdout=subprocess.PIPE,
            stderr=save_err,
            stdin=subprocess.DEVNULL,
        )
        assert save.stdout is not None
        try:
            load = subprocess.run(
                [podman, "load"],
                stdin=save.stdout,
                capture_output=True,
                timeout=LOAD_TIMEOUT,
                **_as_user(user),  # type: ignore[call-overload]
            )
        except subprocess.TimeoutExpired as exc:
            save.kill()
            save.wait()
            raise CopyError(
                f"podman load as {user.name} did not finish in {LOAD_TIMEOUT:.0f} s"
            ) from exc
        finally:
            save.stdout.close()
        save_code = save.wait()
        save_err.seek(0)
        save_text = save_err.read()
    if save_code != 0 or load.returncode != 0:
        detail = (save_text if save_code != 0 else load.stderr).decode(errors="replace")
        raise CopyError(
            f"copying {' '.join(images)} into {user.name}'s image store failed "
            f"({'podman save' if save_code != 0 else 'podman load'}): {detail.strip()[-600:]}",
            hint=f"by hand: podman save -m {' '.join(images)} | "
            f"sudo -u {user.name} XDG_RUNTIME_DIR={user.runtime_dir} podman load",
        )


def agentctl_command() -> str:
    """How to call this agentctl under sudo, whose PATH lacks the user's virtualenv."""
    script = Path(sys.executable).with_name("agentctl")
    return str(script) if script.exists() else "agentctl"
