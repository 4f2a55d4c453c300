"""Root's side of rootless Podman: handing images to a user, and the doctor for a user
that has nothing set up. Runs as root, from scripts/test-rootless.sh (which sets
AGENTCTL_CI_USER and AGENTCTL_CI_VENV: the CI user, and the virtualenv it made with
scripts/setup.sh, usable by any user since it stands on the system Python).

Users made here are system accounts named ``agentctl-t-<hex>`` (no password, no login
shell, no subordinate ids unless a test adds them). They are removed afterwards with
their home, runtime directory and any rootless Podman process they left (by its pid
file), and so is every image made here (label io.agentctl.test=rootless).
"""

from __future__ import annotations

import io
import os
import pwd
import secrets
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentctl_swarm.podman import user_store
from tests.rootless.conftest import kill_pidfile, login_env, podman, run

CI_USER = os.environ.get("AGENTCTL_CI_USER", "")
CI_VENV = Path(os.environ.get("AGENTCTL_CI_VENV", "/nonexistent"))
LABEL = "io.agentctl.test=rootless"
BASE = os.environ.get("AGENTCTL_BASE_IMAGE", "localhost/agentctl-base:bookworm")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(
        os.geteuid() != 0 or not CI_USER or not (CI_VENV / "bin" / "agentctl").exists(),
        reason="run as root by scripts/test-rootless.sh (needs AGENTCTL_CI_USER/_VENV)",
    ),
]


@dataclass
class BareUser:
    name: str
    uid: int
    gid: int
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return login_env(self.name, self.home, **extra)

    def run(self, argv: list[str], **extra_env: str) -> subprocess.CompletedProcess:
        return run(
            argv, user=self.uid, group=self.gid, extra_groups=[],
            env=self.env(**extra_env), cwd=str(self.home),
        )  # fmt: skip


def _remove_subids(name: str) -> None:
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(f"{name}:")]
        if kept != lines:
            path.write_text("".join(kept))


@pytest.fixture
def bare_user() -> Iterator[BareUser]:
    """A fresh system account: no subordinate ids, no /run/user/UID, nothing set up."""
    name = f"agentctl-t-{secrets.token_hex(3)}"
    r = run(["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin",
             "--comment", "agentctl-swarm test user, removed by the test", name])  # fmt: skip
    assert r.returncode == 0, r.stderr
    entry = pwd.getpwnam(name)
    user = BareUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    try:
        yield user
    finally:
        for runtime in (Path(f"/run/user/{user.uid}"), Path(f"/tmp/podman-run-{user.uid}")):
            kill_pidfile(runtime / "libpod" / "tmp" / "pause.pid")
            run(["rm", "-rf", str(runtime)])
        run(["rm", "-rf", f"/tmp/containers-user-{user.uid}"])
        r = run(["userdel", "--remove", name])
        assert r.returncode in (0, 12), r.stderr  # 12: no mail spool, which is fine
        _remove_subids(name)


def make_tiny_image(name: str, text: bytes) -> str:
    """Tag ``name`` on a one-file image whose file belongs to uid 1000 (like the agent's
    home), so that unpacking it needs a subordinate id range; returns its id."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo("home/agent/hello")
            info.uid = info.gid = 1000
            info.mode = 0o644
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        r = run([podman(), "import", "--change", f"LABEL {LABEL}", str(archive), name])
        assert r.returncode == 0, r.stderr
    ident = user_store.image_id(name)
    assert ident
    return ident


@pytest.fixture
def tiny_image() -> Iterator[str]:
    name = f"localhost/agentctl-rootless-test:{secrets.token_hex(4)}"
    make_tiny_image(name, b"hello\n")
    try:
        yield name
    finally:
        run([podman(), "rmi", "--force", name])
        for leftover in run(
            [podman(), "images", "-q", "--filter", f"label={LABEL}"]
        ).stdout.split():
            run([podman(), "rmi", "--force", leftover])


def agentctl_root(*args: str) -> subprocess.CompletedProcess:
    """Root's agentctl (this virtualenv), as a user would type it under sudo."""
    import sys

    return run([str(Path(sys.executable).with_name("agentctl")), *args],
               env={**os.environ, "COLUMNS": "200"})  # fmt: skip


# ---------------------------------------------------------------------------------------


def test_for_user_names_no_such_user_and_refuses_root():
    missing = agentctl_root("build", "--base-only", "--for-user", "agentctl-t-nobody")
    assert missing.returncode == 2, missing.stderr
    assert "--for-user agentctl-t-nobody: there is no such user" in missing.stderr
    root = agentctl_root("build", "--base-only", "--for-user", "root")
    assert root.returncode == 2
    assert "that is root" in root.stderr


def test_copy_of_an_image_root_does_not_have_says_so():
    with pytest.raises(user_store.CopyError) as err:
        user_store.copy_to_user(["localhost/agentctl-rootless-test:absent"], CI_USER)
    assert "localhost/agentctl-rootless-test:absent is not in root's image store" in str(err.value)
    assert "agentctl build" in (err.value.hint or "")


def test_a_second_copy_to_the_ci_user_is_skipped():
    # scripts/test-rootless.sh gave the CI user the images just before this test.
    r = agentctl_root("build", "--base-only", "--for-user", CI_USER)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{CI_USER}'s image store has {BASE} already" in r.stdout
    assert "copied" not in r.stdout


def test_copy_to_a_user_without_subordinate_ids_fails_then_works_once_they_are_there(
    bare_user: BareUser, tiny_image: str
):
    runtime = Path(f"/run/user/{bare_user.uid}")
    assert not runtime.exists()
    lines: list[str] = []
    with pytest.raises(user_store.CopyError) as err:
        user_store.copy_to_user([tiny_image], bare_user.name, lines.append)
    # the runtime directory is made as logind would: the user's, 0700
    info = runtime.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (bare_user.uid, 0o700)
    assert any(f"created {runtime}" in line for line in lines)
    text = str(err.value)
    assert f"into {bare_user.name}'s image store failed (podman load)" in text
    assert "uid" in text.lower() or "insufficient" in text.lower(), text
    assert "podman save -m" in (err.value.hint or "")

    # what the doctor's hint says to do: give ids (with the shell function setup.sh and
    # the Lima provisioning use: the first free range), then `podman system migrate`
    given = run(["bash", "-c", '. "$1"; subids_ensure "$2"; echo "$SUBIDS_ADDED"', "_",
                 str(REPO / "lima/provision/lib/common.sh"), bare_user.name])  # fmt: skip
    assert given.returncode == 0 and "/etc/subuid:" in given.stdout, given.stderr
    migrate = bare_user.run([podman(), "system", "migrate"], XDG_RUNTIME_DIR=str(runtime))
    assert migrate.returncode == 0, migrate.stderr

    done = user_store.copy_to_user([tiny_image], bare_user.name)
    assert done.copied == (tiny_image,) and done.present == ()
    theirs = bare_user.run(
        [podman(), "image", "inspect", "--format", "{{.Id}}", tiny_image],
        XDG_RUNTIME_DIR=str(runtime),
    )
    assert theirs.stdout.strip() == user_store.image_id(tiny_image)
    again = user_store.copy_to_user([tiny_image], bare_user.name)
    assert again.copied == () and again.present == (tiny_image,)

    # a rebuilt image replaces the user's, and the untagged old one does not pile up
    old = theirs.stdout.strip()
    new = make_tiny_image(tiny_image, b"hello again\n")
    assert new != old
    assert user_store.copy_to_user([tiny_image], bare_user.name).copied == (tiny_image,)
    listed = bare_user.run([podman(), "images", "-q", "--no-trunc"], XDG_RUNTIME_DIR=str(runtime))
    ids = {line.removeprefix("sha256:") for line in listed.stdout.split()}
    assert new in ids and old not in ids, listed.stdout


def test_doctor_for_a_user_with_nothing_set_up_names_each_fix(bare_user: BareUser):
    """A system account: no subordinate ids, no /run/user/UID, no XDG_RUNTIME_DIR."""
    r = bare_user.run([str(CI_VENV / "bin" / "agentctl"), "doctor", "--check", "--no-probe"])
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert f"✗ userns   {bare_user.name} has no subordinate uid/gid range" in out
    assert (
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {bare_user.name}"
        in out
    )
    assert f"✗ rundir   no runtime directory for {bare_user.name}" in out
    assert (
        f"sudo install -d -m 700 -o {bare_user.name} -g {bare_user.name} /run/user/{bare_user.uid}"
        in out
    )
    assert f"/run/user/{bare_user.uid} is missing" in out  # the socket cannot be started there
    assert "podman system service" not in out  # ... so it is not offered
    assert "Traceback" not in r.stderr
