"""Claude Code in the agent image: the npm install into the host cache, its failures, the
build context, and the real binary running inside a container against the scripted model.

The in-container tests use the configured agent image when it carries the pinned Claude
Code, else they build one under a unique tag (removed afterwards); the shared
localhost/agentctl-agent:latest is never rebuilt here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentctl_swarm.core.errors import AgentctlError, UsageError
from agentctl_swarm.model import ScriptedModel
from agentctl_swarm.podman.claude_code import (
    CLAUDE_CODE_VERSION,
    MARKER,
    ClaudeBinary,
    ClaudeInstallError,
    ensure_claude,
    install_dir,
    installed,
    native_package,
)
from agentctl_swarm.podman.images import (
    BUILD_HASH_LABEL,
    BuildError,
    BuildEvent,
    BuildOptions,
    build_agent_image,
    current_hash,
    fetch_claude,
    find_project_dir,
    image_id,
    image_label,
    remove_image,
    stage_claude,
)
from tests.conftest import SETTINGS, _unavailable

VERSION = "9.8.7"

# A stand-in for npm: the real one cannot be made to install a package without its
# native binary, or a binary of the wrong version, quickly and offline. It lays out
# node_modules as npm does and logs each call; FAKE_NPM_MODE picks the variant.
FAKE_NPM = r"""#!/bin/sh
set -eu
echo "$*" >> "$FAKE_NPM_LOG"
prefix=""
while [ $# -gt 0 ]; do
    if [ "$1" = "--prefix" ]; then prefix="$2"; shift; fi
    shift
done
echo "npm http fetch GET 200 https://registry.npmjs.org/@anthropic-ai%2fclaude-code 5ms"
case "$FAKE_NPM_MODE" in
    fail404) echo "npm error code ETARGET" >&2; echo "npm error notarget No matching version" >&2; exit 1 ;;
esac
wrapper="$prefix/node_modules/@anthropic-ai/claude-code"
mkdir -p "$wrapper"
echo '{}' > "$wrapper/package.json"
[ "$FAKE_NPM_MODE" = "no-native" ] && exit 0
native="$prefix/node_modules/@anthropic-ai/$FAKE_NPM_PACKAGE"
mkdir -p "$native"
version="$FAKE_NPM_VERSION"
[ "$FAKE_NPM_MODE" = "wrong-version" ] && version="0.0.1"
printf '#!/bin/sh\necho "%s (Claude Code)"\n' "$version" > "$native/claude"
echo "added 2 packages in 0s"
"""


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    npm = tmp_path / "bin" / "npm"
    npm.parent.mkdir()
    npm.write_text(FAKE_NPM)
    npm.chmod(0o755)
    monkeypatch.setenv("FAKE_NPM_LOG", str(tmp_path / "npm.log"))
    monkeypatch.setenv("FAKE_NPM_PACKAGE", native_package().split("/")[1])
    monkeypatch.setenv("FAKE_NPM_VERSION", VERSION)
    monkeypatch.setenv("FAKE_NPM_MODE", "ok")
    return npm


def npm_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "npm.log"
    return log.read_text().splitlines() if log.exists() else []


def test_install_caches_the_binary_with_its_digest_and_reuses_it(tmp_path: Path, fake_npm):
    cache = tmp_path / "cache"
    lines: list[str] = []
    binary = ensure_claude(cache, VERSION, progress=lines.append, npm=str(fake_npm))
    assert binary.path.is_file() and binary.path.is_relative_to(install_dir(cache, VERSION))
    assert binary.version == VERSION and len(binary.sha256) == 64
    assert any("npm http fetch" in line for line in lines)  # npm's progress is passed on
    (call,) = npm_calls(tmp_path)
    assert f"@anthropic-ai/claude-code@{VERSION}" in call and "--ignore-scripts" in call
    assert f"{native_package()}@{VERSION}" in call
    marker = json.loads((install_dir(cache, VERSION) / MARKER).read_text())
    assert marker["sha256"] == binary.sha256 and marker["version"] == VERSION
    mode = stat.S_IMODE(install_dir(cache, VERSION).stat().st_mode)
    assert mode == 0o755  # readable by other users of the cache
    again = ensure_claude(cache, VERSION, npm=str(fake_npm))
    assert again == binary and len(npm_calls(tmp_path)) == 1  # no second download


def test_an_interrupted_or_tampered_install_is_redone(tmp_path: Path, fake_npm):
    cache = tmp_path / "cache"
    binary = ensure_claude(cache, VERSION, npm=str(fake_npm))
    (install_dir(cache, VERSION) / MARKER).unlink()  # as if killed before the marker
    assert installed(cache, VERSION) is None
    ensure_claude(cache, VERSION, npm=str(fake_npm))
    with open(binary.path, "a") as fh:  # the binary changed behind our back
        fh.write("# tampered\n")
    assert installed(cache, VERSION) is None
    ensure_claude(cache, VERSION, npm=str(fake_npm))
    assert len(npm_calls(tmp_path)) == 3
    assert not [p for p in (cache / "claude-code").iterdir() if p.name.startswith(f".{VERSION}.")
                and p.is_dir()]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "message", "hint"),
    [
        ("no-native", "but not its native binary", "optionalDependencies"),
        ("wrong-version", "says '0.0.1 (Claude Code)', not 9.8.7", "npm cache clean"),
        ("fail404", "npm has no @anthropic-ai/claude-code@9.8.7", "npm view"),
    ],
)
def test_broken_installs_are_clear_errors(tmp_path: Path, fake_npm, monkeypatch, mode, message,
                                          hint):  # fmt: skip
    monkeypatch.setenv("FAKE_NPM_MODE", mode)
    with pytest.raises(ClaudeInstallError) as info:
        ensure_claude(tmp_path / "cache", VERSION, npm=str(fake_npm))
    assert message in str(info.value) and hint in (info.value.hint or "")
    assert installed(tmp_path / "cache", VERSION) is None


def test_missing_npm_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ClaudeInstallError) as info:
        ensure_claude(tmp_path / "cache", VERSION, npm=str(tmp_path / "no-npm"))
    assert "npm is not installed" in str(info.value)
    assert "apt-get install -y nodejs npm" in (info.value.hint or "")
    assert "--slim" in (info.value.hint or "")
    # Through the build, the same words reach `agentctl build`'s error line.
    monkeypatch.setenv("PATH", str(tmp_path))
    opts = BuildOptions(project_dir=tmp_path, claude_version=VERSION, cache_dir=tmp_path / "c")
    with pytest.raises(BuildError, match=r"npm is not installed.*apt-get install -y nodejs npm"):
        fetch_claude(opts)
    assert fetch_claude(BuildOptions(project_dir=tmp_path, with_claude=False)) is None


def test_an_unreachable_registry_names_the_fix(tmp_path: Path):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    env = {
        "npm_config_registry": "http://127.0.0.1:9/",  # nothing listens on the discard port
        "npm_config_cache": str(tmp_path / "npm-cache"),
        "npm_config_fetch_retries": "0",
    }
    with pytest.raises(ClaudeInstallError) as info:
        ensure_claude(tmp_path / "cache", CLAUDE_CODE_VERSION, npm=npm, env=env)
    assert "npm could not reach the npm registry" in str(info.value)
    assert "npm config get registry" in (info.value.hint or "")


def test_versions_must_be_pinned(tmp_path: Path):
    for bad in ("latest", "^2.1.0", "2.1", "2.1.332; rm -rf /"):
        with pytest.raises(UsageError, match="not a pinned version"):
            ensure_claude(tmp_path, bad)
    with pytest.raises(AgentctlError, match="no native Linux binary for 'sparc'"):
        native_package("sparc")
    assert native_package("x86_64").endswith("-linux-x64")
    assert native_package("aarch64").endswith("-linux-arm64")


def make_binary(tmp_path: Path, size: int = 3 * 1024 * 1024) -> ClaudeBinary:
    path = tmp_path / "cache" / "claude"
    path.parent.mkdir(parents=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return ClaudeBinary("1.0.0", path, hashlib.sha256(data).hexdigest(), size)


def test_the_build_context_gets_a_link_or_a_checked_copy(tmp_path, monkeypatch):
    binary = make_binary(tmp_path)
    linked = tmp_path / "ctx-link"
    linked.mkdir()
    stage_claude(binary, linked)
    assert (linked / "claude" / "claude").stat().st_ino == binary.path.stat().st_ino

    def no_link(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr("agentctl_swarm.podman.images.COPY_CHUNK", 256 * 1024)
    events: list[BuildEvent] = []
    copied = tmp_path / "ctx-copy"
    copied.mkdir()
    stage_claude(binary, copied, events.append)
    target = copied / "claude" / "claude"
    assert target.read_bytes() == binary.path.read_bytes()
    assert os.access(target, os.X_OK)
    percents = [e.step for e in events]
    assert percents[-1] == 100 and percents == sorted(percents) and len(percents) >= 5
    assert all(e.stage == "claude" and e.total == 100 for e in events)

    damaged = tmp_path / "ctx-damaged"
    damaged.mkdir()
    with pytest.raises(BuildError, match="does not match its recorded digest"):
        stage_claude(ClaudeBinary("1.0.0", binary.path, "0" * 64, binary.size), damaged)

    slim = tmp_path / "ctx-slim"
    slim.mkdir()
    stage_claude(None, slim)
    assert list((slim / "claude").iterdir()) == []


# ------------------------------------------------------------------ in a container


def podman_ok() -> None:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    from agentctl_swarm.podman.host import ping_socket

    if not ping_socket(SETTINGS.podman_url):
        _unavailable(f"the Podman API socket {SETTINGS.podman_url} does not answer")


def has_pinned_claude(image: str) -> bool:
    r = subprocess.run(
        ["podman", "run", "--rm", "--pull=never", "--network", "none", image,
         "claude", "--version"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return r.returncode == 0 and r.stdout.startswith(CLAUDE_CODE_VERSION)


def frozen_checkout(dst: Path) -> Path:
    src = find_project_dir(Path(__file__).parent)
    dst.mkdir()
    for name in ("Containerfile", "pyproject.toml", "README.md"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("containers", "agentctl_swarm"):
        shutil.copytree(src / name, dst / name, ignore=ignore)
    return dst


@pytest.fixture(scope="module")
def claude_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An agent image with Claude Code: the configured one if it has the pinned
    version, else one built now from a frozen copy of this checkout."""
    podman_ok()
    if image_id(SETTINGS.agent_image) and has_pinned_claude(SETTINGS.agent_image):
        yield SETTINGS.agent_image
        return
    if image_id(SETTINGS.base_image) is None:
        _unavailable(f"the base image {SETTINGS.base_image} is missing (run `agentctl build`)")
    tmp = tmp_path_factory.mktemp("claude-image")
    image = f"localhost/agentctl-agent-claude-test-{secrets.token_hex(4)}:latest"
    events: list[BuildEvent] = []
    opts = BuildOptions(
        project_dir=frozen_checkout(tmp / "checkout"),
        image=image,
        base_image=SETTINGS.base_image,
        lock_dir=SETTINGS.state_dir,
    )
    try:
        try:
            build_agent_image(opts, events.append)
        except BuildError as exc:
            if "npm" in str(exc) and os.environ.get("AGENTCTL_REQUIRE_PODMAN") != "1":
                pytest.skip(f"cannot install Claude Code here: {exc}")
            raise
        assert any(e.stage == "claude" for e in events)
        assert build_agent_image(opts).skipped  # the cached binary's digest: same hash
        label = image_label(image, BUILD_HASH_LABEL)
        slim = BuildOptions(project_dir=opts.project_dir, base_image=opts.base_image,
                            with_claude=False)  # fmt: skip
        assert label and label != current_hash(slim)  # claude is part of the hash
        yield image
    finally:
        remove_image(image)


def run_in_image(image: str, url: str, shell: str, *volumes: str) -> subprocess.CompletedProcess:
    argv = ["podman", "run", "--rm", "--pull=never", "--network", "host", "--user", "1000",
            "-e", f"ANTHROPIC_BASE_URL={url}", "-e", "ANTHROPIC_API_KEY=scripted-model-key",
            "-e", "ENABLE_TOOL_SEARCH=false", "-e", "CLAUDE_CODE_MAX_RETRIES=0"]  # fmt: skip
    for volume in volumes:
        argv += ["-v", volume]
    return subprocess.run(
        [*argv, image, "sh", "-c", shell], capture_output=True, text=True, timeout=300
    )


CLAUDE = "claude -p {prompt} --output-format stream-json --verbose --permission-mode acceptEdits"


@pytest.mark.podman
def test_claude_in_the_image_writes_in_the_workspace_as_the_agent(claude_image: str):
    model = ScriptedModel.from_yaml(
        """
turns:
  - tool_use: [{Write: {file_path: "${cwd}/hello.txt", content: "hello from the container\\n"}}]
  - tool_use: [{Bash: {command: "id -u", description: try the shell}}]
  - text: Done.
"""
    )
    shell = (
        CLAUDE.format(prompt="'write hello'") + " > /tmp/out.jsonl; echo rc=$?; "
        "cat /workspace/hello.txt; id -u; echo $CLAUDE_CONFIG_DIR; ls /state/claude; "
        "stat -c '%U %a' /usr/local/bin/claude /etc/claude-code/managed-settings.json; "
        "test -w /etc/claude-code/managed-settings.json && echo settings-writable; "
        "tail -n 1 /tmp/out.jsonl"
    )
    with model.serve() as url:
        result = run_in_image(claude_image, url, shell)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:4] == ["rc=0", "hello from the container", "1000", "/state/claude"]
    assert "projects" in out  # Claude's state went to the state volume's directory
    assert "root 755" in out and "root 444" in out and "settings-writable" not in out
    final = json.loads(out[-1])
    assert final["type"] == "result" and final["is_error"] is False
    # The managed settings deny Bash: Claude Code refuses the tool, the model hears why.
    bash_result = model.messages_requests()[2].tool_results()[-1]
    assert bash_result["is_error"] and "Bash" in str(bash_result["content"])


@pytest.mark.podman
def test_resume_works_across_a_container_restart(claude_image: str):
    volume = f"agentctl-test-state-{secrets.token_hex(4)}"
    session = "6d1c8a34-0c1f-4a43-9b2e-3f6f0c1d2e4a"
    model = ScriptedModel.from_yaml("turns: [First answer., Second answer.]")
    try:
        with model.serve() as url:
            first = run_in_image(
                claude_image, url, CLAUDE.format(prompt="hello") + f" --session-id {session}",
                f"{volume}:/state",
            )  # fmt: skip
            second = run_in_image(
                claude_image, url, CLAUDE.format(prompt="'go on'") + f" --resume {session}",
                f"{volume}:/state",
            )  # fmt: skip
    finally:
        subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert json.loads(second.stdout.splitlines()[-1])["result"] == "Second answer."
    assert [r.turn for r in model.messages_requests()] == [0, 1]
