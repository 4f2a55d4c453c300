"""The build hash decides whether `agentctl build` may skip: it must follow content only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agentctl_swarm.podman.claude_code import ClaudeBinary
from agentctl_swarm.podman.images import (
    build_hash,
    find_project_dir,
    input_files,
    is_local_base,
    parse_step,
    suite_of,
)

ARGS = {"BASE_IMAGE": "localhost/agentctl-base:bookworm"}
BASE_ID = "e9d60e0a4fbf"
CLAUDE = ClaudeBinary("2.1.332", Path("/cache/claude"), "ab" * 32, 400_000_000)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "containers").mkdir(parents=True)
    (root / "agentctl_swarm" / "agent").mkdir(parents=True)
    (root / "Containerfile").write_text("FROM base\n")
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "containers" / "claude-settings.json").write_text("{}\n")
    (root / "agentctl_swarm" / "__init__.py").write_text("")
    (root / "agentctl_swarm" / "agent" / "cli.py").write_text("print('hi')\n")
    return root


def h(
    root: Path,
    args: dict[str, str] = ARGS,
    base: str = BASE_ID,
    claude: ClaudeBinary | None = CLAUDE,
) -> str:
    return build_hash(root, args, base, claude)


def test_unchanged_inputs_give_the_same_hash(project: Path, tmp_path: Path):
    first = h(project)
    assert h(project) == first
    for f in project.rglob("*"):
        if f.is_file():
            os.utime(f, (1, 1))  # mtimes do not count
    assert h(project) == first
    clone = tmp_path / "elsewhere" / "clone"
    shutil.copytree(project, clone)  # nor does where the checkout lives
    assert h(clone) == first


def test_bytecode_caches_do_not_count(project: Path):
    first = h(project)
    cache = project / "agentctl_swarm" / "__pycache__"
    cache.mkdir()
    (cache / "cli.cpython-311.pyc").write_bytes(b"\x00junk")
    assert h(project) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda p: (p / "Containerfile").write_text("FROM base\nRUN true\n"),
        lambda p: (p / "containers" / "claude-settings.json").write_text('{"a": 1}\n'),
        lambda p: (p / "containers" / "new-asset.md").write_text("x"),
        lambda p: (p / "agentctl_swarm" / "agent" / "cli.py").write_text("print('ho')\n"),
        lambda p: (p / "pyproject.toml").write_text("[project]\nname='y'\n"),
        lambda p: (p / "agentctl_swarm" / "agent" / "cli.py").rename(
            p / "agentctl_swarm" / "agent" / "main.py"
        ),
    ],
    ids=["containerfile", "asset", "new-asset", "source", "pyproject", "rename"],
)
def test_changed_content_gives_a_new_hash(project: Path, change):
    first = h(project)
    change(project)
    assert h(project) != first


def test_build_args_and_base_id_are_inputs(project: Path):
    first = h(project)
    assert h(project, {**ARGS, "EXTRA": "1"}) != first
    assert h(project, {**ARGS, "BASE_IMAGE": "docker.io/library/python:3.11"}) != first
    assert h(project, base="0123456789ab") != first


def test_claude_code_version_and_digest_are_inputs(project: Path):
    first = h(project)
    assert h(project, claude=None) != first  # the slim image is another image
    assert h(project, claude=replace(CLAUDE, version="2.1.333")) != first
    assert h(project, claude=replace(CLAUDE, sha256="cd" * 32)) != first
    # where the cache lives does not matter, only what the binary is
    assert h(project, claude=replace(CLAUDE, path=Path("/elsewhere/claude"))) == first


def test_input_files_cover_the_image_inputs_of_this_checkout():
    root = find_project_dir(Path(__file__).parent)
    names = {p.as_posix() for p in input_files(root)}
    assert {"Containerfile", "pyproject.toml", "containers/claude-settings.json"} <= names
    assert "agentctl_swarm/podman/images.py" in names
    assert not any("__pycache__" in n for n in names)


def test_build_with_a_wrong_project_dir_is_a_clear_error(tmp_path: Path):
    r = subprocess.run(
        [str(Path(sys.executable).with_name("agentctl")), "build", "--project-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--project-dir" in r.stderr and "Traceback" not in r.stderr


def test_small_parsers():
    assert parse_step("STEP 3/14: RUN set -eu") == (3, 14)
    assert parse_step("--> 8ec2588c0aa") is None
    assert is_local_base("localhost/agentctl-base:bookworm")
    assert not is_local_base("docker.io/library/python:3.11-slim-bookworm")
    assert suite_of("localhost/agentctl-base:bookworm") == "bookworm"
    assert suite_of("localhost/agentctl-base:trixie-ci1") == "trixie"
    assert suite_of("localhost/agentctl-base") == "bookworm"
