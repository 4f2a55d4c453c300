"""Workspace preparation, export and landing on real repos in temp dirs (no Podman needed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agentctl_swarm.agent.workspace import WorkspaceError, export, prepare
from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.sync.errors import SyncError
from agentctl_swarm.sync.hostrepo import HostRepo, open_or_init
from agentctl_swarm.sync.refs import RefUpdate
from agentctl_swarm.sync.seed import build_seed, seed_tar
from agentctl_swarm.sync.state import AgentSyncState, SyncStateStore

from .conftest import git

AG = "swarm-builder-000"


def _seed_into(state: Path, host_repo: Path, **repo: object) -> None:
    """Unpack what seed_container would deliver into a local 'state volume'."""
    import io
    import tarfile

    seed = build_seed(AG, RepoSpec(path=str(host_repo), **repo), state / "host-state")
    with tarfile.open(fileobj=io.BytesIO(seed_tar(seed))) as tar:
        for m in tar.getmembers():
            assert m.uid == 1000 and not m.name.startswith(("/", ".."))
        tar.extractall(state, filter="data")


@pytest.fixture
def ws(tmp_path: Path, host_repo: Path) -> Path:
    state = tmp_path / "state"
    _seed_into(state, host_repo, copy_ignored=[".env"])
    prepare(tmp_path / "ws", state)
    return tmp_path / "ws"


def _land(host: HostRepo, manifest: dict, scratch: Path) -> list[RefUpdate]:
    """The engine's landing steps, minus the container."""
    if manifest["bundle"]:
        bundle = scratch / "export.bundle"
        host.verify_bundle(bundle, 30)
        host.unpack_bundle(bundle, 30)
    host.check_complete([*manifest["branches"].values(), manifest["wip"]], 30)
    plan = host.plan(AG, manifest["branches"], manifest["wip"])
    host.apply(AG, plan.updates)
    return plan.updates


def test_prepare_clones_seed_on_work_branch(ws: Path, host_repo: Path) -> None:
    assert git(ws, "symbolic-ref", "--short", "HEAD") == f"swarm/{AG}/work"
    assert git(ws, "rev-parse", "HEAD") == git(host_repo, "rev-parse", "main")
    assert git(ws, "config", "user.email") == f"{AG}@agentctl.local"
    assert (ws / ".env").read_text() == "TOKEN=not-for-git\n"
    assert git(ws, "status", "--porcelain") == ""
    exclude = (ws / ".git" / "info" / "exclude").read_text()
    assert "*.pem" in exclude and "*.key" in exclude and ".git.partial" not in exclude
    assert not (ws / ".git.partial").exists()
    assert git(ws, "remote") == ""  # no host path or credential inside


def test_prepare_is_idempotent_and_redoes_a_crashed_attempt(tmp_path: Path, host_repo) -> None:
    state, ws = tmp_path / "state", tmp_path / "ws"
    _seed_into(state, host_repo)
    (ws / ".git.partial").mkdir(parents=True)  # a crash half-way left this behind
    (ws / ".git.partial" / "junk").write_text("x")
    (ws / "README.md").write_text("half-written\n")
    prepare(ws, state)
    assert git(ws, "status", "--porcelain") == ""
    (ws / "mine.txt").write_text("agent work\n")
    prepare(ws, state)  # no-op now
    assert (ws / "mine.txt").exists()


def test_prepare_without_seed_makes_a_fresh_repo(tmp_path: Path) -> None:
    prepare(tmp_path / "ws", tmp_path / "state")
    assert (tmp_path / "ws" / ".git").is_dir()
    assert "*.key" in (tmp_path / "ws" / ".git" / "info" / "exclude").read_text()


def test_seed_refuses_bad_inputs(tmp_path: Path, host_repo: Path) -> None:
    state = tmp_path / "s"
    with pytest.raises(SyncError, match="branch 'nope' does not exist"):
        build_seed(AG, RepoSpec(path=str(host_repo), branch="nope"), state)
    with pytest.raises(SyncError, match="not a git repository"):
        build_seed(AG, RepoSpec(path=str(tmp_path)), state)
    for entry in ["../x", "/etc/passwd", ".git/config"]:
        with pytest.raises(SyncError, match="copy_ignored"):
            build_seed(AG, RepoSpec(path=str(host_repo), copy_ignored=[entry]), state)
    (host_repo / "link").symlink_to("/etc/hostname")
    with pytest.raises(SyncError, match=r"leads outside|not a regular file"):
        build_seed(AG, RepoSpec(path=str(host_repo), copy_ignored=["link"]), state)
    with pytest.raises(SyncError, match="not a valid branch name"):
        build_seed(AG, RepoSpec(path=str(host_repo), work_branch="bad..name"), state)


def test_seed_from_url_is_cloned_on_the_host(tmp_path: Path, host_repo: Path) -> None:
    seed = build_seed(AG, RepoSpec(url=f"file://{host_repo}"), tmp_path / "s")
    assert seed.bundle and seed.commit == git(host_repo, "rev-parse", "main")
    assert list((tmp_path / "s" / "seed-cache").glob("*.git"))
    with pytest.raises(SyncError, match=r"cannot clone repo\.url"):
        build_seed(AG, RepoSpec(url=f"file://{tmp_path}/missing"), tmp_path / "s")


def test_export_snapshot_leaves_the_workspace_alone(ws: Path, tmp_path: Path) -> None:
    (ws / "README.md").write_text("edited\n")
    (ws / "new.txt").write_text("untracked\n")
    (ws / "big.bin").write_bytes(b"x" * 5000)
    git(ws, "add", "new.txt")
    status, index = git(ws, "status", "--porcelain"), (ws / ".git" / "index").read_bytes()
    heads = git(ws, "for-each-ref")
    scratch = tmp_path / "scratch"
    m = export(ws, scratch, [git(ws, "rev-parse", "HEAD")], max_file_bytes=1000)
    assert git(ws, "status", "--porcelain") == status
    assert (ws / ".git" / "index").read_bytes() == index
    assert git(ws, "for-each-ref", "refs/heads") == "\n".join(
        line for line in heads.splitlines() if "refs/heads" in line
    )
    assert m["skipped"] == ["big.bin"] and m["commits"] == 1
    files = git(ws, "ls-tree", "-r", "--name-only", m["wip"]).splitlines()
    assert "new.txt" in files and "big.bin" not in files and ".env" not in files
    # Same state again: the snapshot commit is reused, nothing new to send.
    known = [git(ws, "rev-parse", "HEAD"), m["wip"]]
    again = export(ws, scratch, known, known_wip=m["wip"], max_file_bytes=1000)
    assert again["wip"] == m["wip"] and again["commits"] == 0 and again["bundle"] is None


def test_export_caps_bundle_size_and_clears_stale_locks(ws: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "export.bundle.lock").write_text("")  # a dead export's leftovers
    (scratch / "snapshot.index.lock").write_text("")
    (ws / "data.bin").write_bytes(os.urandom(200_000))
    git(ws, "add", "data.bin")
    git(ws, "commit", "-qm", "data")
    with pytest.raises(WorkspaceError, match="exceeds the cap"):
        export(ws, scratch, [], max_bytes=10_000)
    assert not (scratch / "export.bundle").exists()
    assert export(ws, scratch, [])["bundle"]
    with pytest.raises(WorkspaceError, match="not a git workspace"):
        export(tmp_path, scratch, [])


def test_land_fast_forward_rewrite_and_fsck(ws: Path, tmp_path: Path, host_repo: Path) -> None:
    host, scratch = HostRepo(host_repo), tmp_path / "scratch"
    base = git(ws, "rev-parse", "HEAD")
    (ws / "a.txt").write_text("a\n")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "a")
    m = export(ws, scratch, [base])
    _land(host, m, scratch)
    work = f"refs/heads/swarm/{AG}/work"
    assert git(host_repo, "rev-parse", work) == git(ws, "rev-parse", "HEAD")
    old = git(ws, "rev-parse", "HEAD")
    git(ws, "commit", "-q", "--amend", "-m", "a, amended")
    m = export(ws, scratch, [base, old, m["wip"]])
    updates = _land(host, m, scratch)
    assert {u.reason for u in updates} >= {"backup", "rewritten"}
    backups = git(host_repo, "for-each-ref", "--format=%(objectname)", "refs/heads/swarm-rewritten")
    assert backups == old
    code, out = host.fsck()
    assert code == 0, out


def test_hostile_bundles_and_manifests_are_refused(tmp_path: Path, host_repo: Path) -> None:
    host = HostRepo(host_repo)
    main = git(host_repo, "rev-parse", "main")
    for i, body in enumerate(
        [b"x" * 100, f"{main} refs/heads/x\n\nPACK garbage".encode(), b"\n" * 2_000_000]
    ):
        garbage = tmp_path / f"g{i}.bundle"
        garbage.write_bytes(b"# v2 git bundle\n" + body)
        with pytest.raises(SyncError):
            host.verify_bundle(garbage, 10)
            host.unpack_bundle(garbage, 10)
    with pytest.raises(SyncError, match="no valid header"):
        (tmp_path / "h.bundle").write_bytes(b"PK\x03\x04 zip")
        host.unpack_bundle(tmp_path / "h.bundle", 10)
    # A bundle whose prerequisite the host lacks fails verification.
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    for i in range(2):
        (other / "f").write_text(str(i))
        git(other, "add", ".")
        git(other, "commit", "-qm", str(i))
    git(other, "bundle", "create", "-q", str(tmp_path / "thin.bundle"), "main", "^main~1")
    with pytest.raises(SyncError, match="bundle"):
        host.verify_bundle(tmp_path / "thin.bundle", 10)
    with pytest.raises(SyncError, match="did not send"):
        host.check_complete(["f" * 40], 10)


def test_apply_is_atomic_and_never_moves_a_checked_out_branch(host_repo: Path) -> None:
    host = HostRepo(host_repo)
    main = git(host_repo, "rev-parse", "main")
    first = git(host_repo, "rev-parse", "main~1")
    ok = RefUpdate(f"refs/heads/swarm/{AG}/x", main, None, "create")
    stale = RefUpdate(f"refs/heads/swarm/{AG}/y", main, first, "fast-forward")  # y absent
    with pytest.raises(SyncError, match="update-ref"):
        host.apply(AG, [ok, stale])
    assert git(host_repo, "for-each-ref", f"refs/heads/swarm/{AG}/") == ""  # nothing moved
    with pytest.raises(SyncError, match="checked out"):
        host.apply(AG, [RefUpdate("refs/heads/main", first, main, "rewritten")])
    assert git(host_repo, "rev-parse", "main") == main


def test_open_or_init(tmp_path: Path) -> None:
    repo = open_or_init(tmp_path / "new" / "land.git")
    assert repo.bare
    (tmp_path / "plain").mkdir()
    with pytest.raises(SyncError, match="not a git repository"):
        open_or_init(tmp_path / "plain")


def test_state_store_is_atomic_and_survives_corruption(tmp_path: Path) -> None:
    store = SyncStateStore(tmp_path)
    state = AgentSyncState(fleet="f", agent=AG, tips={"work": "a" * 40}, syncs=3)
    store.save(state)
    assert store.load("f", AG) == state
    assert [p.name for p in store.path("f", AG).parent.iterdir()] == [f"{AG}.json"]
    store.path("f", AG).write_text("{not json")
    broken = store.load("f", AG)
    assert broken.tips == {} and "unreadable" in (broken.last_error or "")
    assert json.loads(json.dumps(broken.known_tips())) == []
    with pytest.raises(ValueError):
        store.path("f", "../escape")


def test_cli_refuses_bad_fleet_file(tmp_path: Path) -> None:
    import sys

    agentctl = str(Path(sys.executable).parent / "agentctl")
    bad = tmp_path / "fleet.yaml"
    bad.write_text("apiVersion: agentctl.io/v1\nkind: Fleet\nmetadata: {name: x}\n")
    proc = subprocess.run([agentctl, "sync", "-f", str(bad), "--once"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode == 2 and "fleet.yaml:" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([agentctl, "sync", "status"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "agentctl sync -f" in proc.stderr


def test_push_synced_branches_to_a_named_remote(host_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(host_repo, "remote", "add", "backup", str(remote))
    host = HostRepo(host_repo)
    main = git(host_repo, "rev-parse", "main")
    host.apply(AG, [RefUpdate(f"refs/heads/swarm/{AG}/work", main, None, "create")])
    host.apply(AG, [RefUpdate(f"refs/heads/swarm/{AG}/wip", main, None, "snapshot")])
    host.push("backup", AG, 30)
    assert git(remote, "rev-parse", f"swarm/{AG}/work") == main
    with pytest.raises(SyncError, match="no remote 'nope'"):
        host.push("nope", AG, 30)


def test_prepare_never_writes_seed_files_through_a_symlink(tmp_path: Path, host_repo) -> None:
    (host_repo / "conf").mkdir()
    (host_repo / "conf" / ".env").write_text("X=1\n")
    state, ws, outside = tmp_path / "state", tmp_path / "ws", tmp_path / "outside"
    _seed_into(state, host_repo, copy_ignored=[".env", "conf/.env"])
    outside.mkdir()
    ws.mkdir()
    (ws / "conf").symlink_to(outside)  # planted before the first start
    prepare(ws, state)
    assert not (outside / ".env").exists()
    assert (ws / ".env").read_text() == "TOKEN=not-for-git\n"


def test_status_lists_every_synced_agent(tmp_path: Path) -> None:
    import sys

    from .conftest import write_fleet

    fleet_file = write_fleet(tmp_path / "fleet.yaml", "demo", None, tmp_path / "into.git")
    store = SyncStateStore(tmp_path / "st")
    store.save(AgentSyncState(fleet="demo", agent=AG, syncs=2, commits_total=5, bytes_total=99,
                              last_sync="2026-01-01T00:00:00+00:00"))  # fmt: skip
    store.save(AgentSyncState(fleet="demo", agent="swarm-builder-001", last_error="boom"))
    env = {**os.environ, "AGENTCTL_STATE_DIR": str(tmp_path / "st")}
    agentctl = str(Path(sys.executable).parent / "agentctl")
    for fmt, check in [("yaml", "commits_total: 5"), ("table", "boom")]:
        proc = subprocess.run([agentctl, "sync", "status", "-f", str(fleet_file), "-o", fmt],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert check in proc.stdout and AG in proc.stdout
