"""`agentctl build` against real Podman: builds, skips when unchanged, fails clearly.

Every image made here has a unique name and is removed afterwards, even on failure.
The shared localhost/agentctl-agent:latest is never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.podman.host import ping_socket
from agentctl_swarm.podman.images import (
    BuildError,
    build_local_base,
    check_base_python,
    find_project_dir,
    image_id,
    image_label,
    remove_image,
)

AGENTCTL = str(Path(sys.executable).with_name("agentctl"))
BASE = os.environ.get("AGENTCTL_BASE_IMAGE", "localhost/agentctl-base:bookworm")

pytestmark = pytest.mark.podman


@pytest.fixture(autouse=True)
def _podman_available() -> None:
    if shutil.which("podman") is None or not ping_socket("unix:///run/podman/podman.sock"):
        if os.environ.get("AGENTCTL_REQUIRE_PODMAN") == "1":
            pytest.fail("Podman is required here", pytrace=False)
        pytest.skip("podman is not available")


@pytest.fixture
def image_names() -> Iterator[list[str]]:
    """Collects image names a test creates; removes them all afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        remove_image(name)


def unique(prefix: str) -> str:
    return f"localhost/{prefix}-{secrets.token_hex(4)}:latest"


def agentctl_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AGENTCTL, "build", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
        timeout=900,
    )


def podman_run(image: str, *cmd: str) -> str:
    r = subprocess.run(
        ["podman", "run", "--rm", "--network", "host", "--pull=never", image, *cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def frozen_checkout(tmp_path: Path) -> Path:
    """A copy of the image inputs, so edits elsewhere in the tree cannot change the hash."""
    src = find_project_dir(Path(__file__).parent)
    dst = tmp_path / "checkout"
    dst.mkdir()
    for name in ("Containerfile", "pyproject.toml", "README.md"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("containers", "agentctl_swarm"):
        shutil.copytree(src / name, dst / name, ignore=ignore)
    return dst


def test_build_twice_second_run_skips(image_names, frozen_checkout: Path):
    if image_id(BASE) is None:
        pytest.skip(f"base image {BASE} is missing (scripts/setup.sh builds it)")
    image = unique("agentctl-agent-test")
    image_names.append(image)
    args = (
        "--image", image, "--base-image", BASE, "--project-dir", str(frozen_checkout), "--slim",
    )  # fmt: skip

    first = agentctl_build(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"built {image}" in first.stdout
    build_hash = image_label(image, "io.agentctl.build-hash")
    assert build_hash and build_hash[:12] in first.stdout

    second = agentctl_build(*args)
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stdout
    assert image_label(image, "io.agentctl.build-hash") == build_hash

    # The image is what the controller relies on.
    assert "usage: agentctl-agent" in podman_run(image, "agentctl-agent", "--help")
    facts = podman_run(
        image,
        "sh",
        "-c",
        "id -u; echo $HOME; stat -c %U /workspace /state; cat /proc/1/comm; "
        "command -v git; test -w /etc/claude-code/managed-settings.json && echo writable; "
        "cat /etc/claude-code/managed-settings.json",
    ).split("\n")
    assert facts[:6] == ["1000", "/home/agent", "agent", "agent", "tini", "/usr/bin/git"]
    assert "writable" not in facts
    assert '"Bash"' in "".join(facts)
    # --slim: no Claude Code in this image
    assert podman_run(image, "sh", "-c", "command -v claude || echo absent").strip() == "absent"


def test_base_without_python_is_refused_clearly(image_names, tmp_path: Path):
    base = unique("actl-nopython")
    image_names.append(base)
    (tmp_path / "hello").write_text("no python here\n")
    archive = tmp_path / "root.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "hello", arcname="hello")
    subprocess.run(["podman", "import", str(archive), base], check=True, capture_output=True)

    r = agentctl_build("--image", unique("actl-never"), "--base-image", base)
    assert r.returncode == 1
    assert f"base image {base} has no usable python3" in r.stderr
    assert "Traceback" not in r.stderr


def test_base_that_cannot_be_pulled_is_refused_clearly():
    missing = "docker.io/library/agentctl-no-such-image:1"
    r = agentctl_build("--image", unique("actl-never"), "--base-image", missing)
    assert r.returncode == 1
    assert f"cannot pull base image {missing}" in r.stderr
    assert "--base-image localhost/agentctl-base:bookworm" in r.stderr


def test_python_version_mismatch_is_refused_clearly():
    if image_id(BASE) is None:
        pytest.skip(f"base image {BASE} is missing")
    version = check_base_python(BASE)
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(BuildError, match=rf"has Python {version} but the wheels .* Python 3\.99"):
        check_base_python(BASE, host=(3, 99))


@pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap needs root")
def test_offline_base_image_is_built_with_debootstrap(image_names):
    if shutil.which("debootstrap") is None and not os.access("/usr/sbin/debootstrap", os.X_OK):
        pytest.skip("debootstrap is not installed")
    base = f"localhost/agentctl-base:bookworm-test{secrets.token_hex(3)}"
    image_names.append(base)
    build_local_base(base)
    assert image_label(base, "io.agentctl.base") == "debootstrap-bookworm"
    out = podman_run(base, "sh", "-c", "python3 -c 'import venv'; command -v tini; command -v git")
    assert "/usr/bin/tini" in out and "/usr/bin/git" in out
