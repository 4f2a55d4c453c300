"""The agent's git workspace, seen from inside the container.

Two jobs, both run inside the agent container and both standard-library only (the host
also runs this very file in containers through ``python3 -I -c <source>``, so a sync
never depends on which version of the project the image carries):

``prepare``  turn ``/workspace`` into a git repository before the agent first starts:
             a clone of the seed bundle the host delivered into ``/state/seed/`` (on the
             agent's work branch), or a fresh repository. Idempotent and crash-safe: the
             repository is built under ``.git.partial`` and renamed to ``.git`` last.
``export``   bring the workspace out as git objects: snapshot uncommitted + untracked
             work into a commit WITHOUT touching the agent's index, worktree or branches
             (a temporary ``GIT_INDEX_FILE``), then write one incremental bundle of every
             branch and the snapshot with the host's already-synced tips as
             prerequisites. Prints a JSON manifest on stdout; the host treats all of it
             as untrusted input and verifies it.

Seed layout in the state volume (written by the host, see ``sync/seed.py``)::

    /state/seed/seed.json    {"agent", "base_branch", "work_branch", "user_name",
                              "user_email", "ignore": [...], "has_bundle": bool}
    /state/seed/seed.bundle  the base branch's history (absent for a fresh repo)
    /state/seed/files/...    ignored files to copy in (e.g. .env)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SEED_DIRNAME = "seed"
SCRATCH_DIRNAME = ".agentctl-sync"
WIP_REF = "refs/agentctl/wip"
MANIFEST_VERSION = 1

# Never let these reach a commit: the agent's keys, tokens and env files.
SECRET_PATTERNS = (
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    ".env",
    ".env.*",
    "*.env",
    "id_rsa*",
    "id_ed25519*",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    "*.secret",
    "secrets/",
    ".agentchat/",
)

# Flags for every git call: no fsmonitor/hook program from a config the agent wrote, no
# pager, no credential prompts. (Inside the box this is hygiene, not a security line.)
_GIT_SAFE = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "safe.directory=*",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "core.quotePath=false",
)
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class WorkspaceError(Exception):
    """A workspace step failed; the message says which and why."""


def _git(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    input_: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ)
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"})
    if env:
        full_env.update(env)
    proc = subprocess.run(
        ["git", *_GIT_SAFE, *args],
        cwd=cwd,
        env=full_env,
        input=input_,
        capture_output=True,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise WorkspaceError(f"git {' '.join(args[:3])} failed ({proc.returncode}): {err}")
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode(errors="replace").strip()


# --------------------------------------------------------------------------- prepare


def _safe_relpath(rel: str) -> Path | None:
    """A relative path that stays inside its root, or None (absolute, .., empty)."""
    path = Path(rel)
    if not rel or path.is_absolute() or any(part in {"..", ""} for part in path.parts):
        return None
    if path.parts and path.parts[0] == ".git":
        return None
    return path


def _copy_seed_files(files_dir: Path, workspace: Path) -> None:
    """Copy the delivered ignored files in; never follow links, never leave the workspace."""
    if not files_dir.is_dir():
        return
    for src in sorted(files_dir.rglob("*")):
        if src.is_symlink() or not src.is_file():
            continue
        rel = _safe_relpath(str(src.relative_to(files_dir)))
        if rel is None:
            continue
        dest = workspace / rel
        # A directory on the way that is a symlink could lead out of the workspace.
        inner = [workspace.joinpath(*rel.parts[:i]) for i in range(1, len(rel.parts))]
        if any(p.is_symlink() for p in inner):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o600)


def _write_excludes(git_dir: Path, extra: list[str]) -> None:
    info = git_dir / "info"
    info.mkdir(parents=True, exist_ok=True)
    exclude = info / "exclude"
    existing = exclude.read_text() if exclude.exists() else ""
    lines = [p for p in (*SECRET_PATTERNS, *extra) if p and p not in existing.splitlines()]
    if lines:
        header = "" if "agentctl" in existing else "# agentctl: secrets never enter a commit\n"
        with exclude.open("a") as fh:
            fh.write(header + "\n".join(lines) + "\n")


def read_seed(state_dir: Path) -> dict[str, object] | None:
    """The seed description the host delivered, or None when there is none."""
    path = state_dir / SEED_DIRNAME / "seed.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: unreadable seed description ({exc})") from exc
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: seed description must be a JSON object")
    return data


def prepare(workspace_dir: Path, state_dir: Path) -> None:
    """Make ``workspace_dir`` a git repository on the agent's work branch (idempotent).

    A no-op when ``.git`` exists. The repository is assembled in ``.git.partial`` and
    renamed into place last, so a crash half-way is simply redone on the next start.
    """
    workspace_dir = Path(workspace_dir).absolute()
    state_dir = Path(state_dir).absolute()
    if (workspace_dir / ".git").exists():
        return
    seed = read_seed(state_dir) or {}
    agent = str(seed.get("agent") or os.environ.get("AGENTCTL_AGENT") or "agent")
    work_branch = str(seed.get("work_branch") or f"swarm/{agent}/work")
    base_branch = str(seed.get("base_branch") or "main")
    bundle = state_dir / SEED_DIRNAME / "seed.bundle"
    workspace_dir.mkdir(parents=True, exist_ok=True)
    partial = workspace_dir / ".git.partial"
    if partial.exists():
        shutil.rmtree(partial)
    env = {"GIT_DIR": str(partial), "GIT_WORK_TREE": str(workspace_dir)}
    _git(["init", "-q", "-b", work_branch], cwd=workspace_dir, env=env)
    _git(["config", "user.name", str(seed.get("user_name") or agent)], cwd=workspace_dir, env=env)
    email = str(seed.get("user_email") or f"{agent}@agentctl.local")
    _git(["config", "user.email", email], cwd=workspace_dir, env=env)
    _write_excludes(partial, [str(p) for p in seed.get("ignore") or [] if isinstance(p, str)])
    # The partial git dir must not show up as untracked work while we check out.
    with (partial / "info" / "exclude").open("a") as fh:
        fh.write("/.git.partial/\n")
    if seed.get("has_bundle") and bundle.is_file():
        seed_ref = f"refs/remotes/seed/{base_branch}"
        _git(["bundle", "verify", str(bundle)], cwd=workspace_dir, env=env)
        _git(
            ["fetch", "-q", "--no-tags", str(bundle), f"+refs/heads/{base_branch}:{seed_ref}"],
            cwd=workspace_dir,
            env=env,
        )
        _git(["checkout", "-q", "-f", "-B", work_branch, seed_ref], cwd=workspace_dir, env=env)
    _copy_seed_files(state_dir / SEED_DIRNAME / "files", workspace_dir)
    lines = (partial / "info" / "exclude").read_text().splitlines()
    (partial / "info" / "exclude").write_text(
        "\n".join(line for line in lines if line != "/.git.partial/") + "\n"
    )
    os.rename(partial, workspace_dir / ".git")


# --------------------------------------------------------------------------- export


def _commits_present(ws: Path, shas: list[str]) -> set[str]:
    """Which of ``shas`` are commits in this repo (one git call for all of them)."""
    wanted = [s for s in shas if _SHA_RE.match(s)]
    if not wanted:
        return set()
    proc = _git(["cat-file", "--batch-check"], cwd=ws, input_=("\n".join(wanted) + "\n").encode())
    present = set()
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "commit":
            present.add(parts[0])
    return present


def _changed_paths(
    ws: Path, env: dict[str, str], max_file_bytes: int
) -> tuple[list[bytes], list[str]]:
    """Paths that differ from HEAD (tracked changes, untracked small files) and skipped ones.

    One ``git status`` walk (against the private index copy, with optional locks off so
    nothing of the agent's is rewritten). An empty list means the worktree is clean.
    """
    proc = _git(
        ["--no-optional-locks", "status", "--porcelain=v2", "-z", "--untracked-files=all",
         "--no-renames", "--ignore-submodules=none"],
        cwd=ws, env=env,
    )  # fmt: skip
    paths: list[bytes] = []
    skipped: list[str] = []
    for record in proc.stdout.split(b"\0"):
        if not record:
            continue
        kind = record[:1]
        if kind == b"1":
            paths.append(record.split(b" ", 8)[8])
        elif kind == b"u":
            paths.append(record.split(b" ", 10)[10])
        elif kind == b"?":
            raw = record[2:]
            try:
                size = (ws / os.fsdecode(raw)).lstat().st_size
            except OSError:
                continue
            if size > max_file_bytes:
                skipped.append(os.fsdecode(raw))
            else:
                paths.append(raw)
    return paths, skipped


def _read_head(ws: Path, refs: dict[str, str]) -> tuple[str | None, str | None]:
    """(branch HEAD points at or None when detached, HEAD's commit or None when unborn)."""
    text = (ws / ".git" / "HEAD").read_text().strip()
    if text.startswith("ref: "):
        ref = text[5:].strip()
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        return branch, refs.get(ref)
    return None, text if _SHA_RE.match(text) else None


def snapshot(
    ws: Path,
    scratch: Path,
    head_sha: str | None,
    known_wip: str | None,
    current_wip: str | None,
    max_file_bytes: int,
    branch_tips: frozenset[str] = frozenset(),
) -> dict:
    """Commit the worktree as it is (tracked changes + untracked, not ignored) off to the side.

    Uses a private copy of the index, so the agent's index, worktree and branches are
    untouched; the commit is kept alive by ``refs/agentctl/wip``. Returns the wip sha
    (HEAD's commit when the worktree is clean) and the files skipped for size.
    """
    index = scratch / "snapshot.index"
    index.unlink(missing_ok=True)
    real_index = ws / ".git" / "index"
    if real_index.is_file():
        shutil.copyfile(real_index, index)
    env = {"GIT_INDEX_FILE": str(index)}
    paths, skipped = _changed_paths(ws, env, max_file_bytes)
    if head_sha and not paths:
        index.unlink(missing_ok=True)
        wip = head_sha  # clean worktree: the snapshot is HEAD itself
        if wip != current_wip and wip not in branch_tips:
            # A detached HEAD needs the ref to stay alive; a branch already keeps it.
            _git(["update-ref", "-m", "agentctl snapshot", WIP_REF, wip], cwd=ws)
        return {"wip": wip, "skipped": skipped}
    if paths:
        _git(
            ["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"],
            cwd=ws,
            env=env,
            input_=b"\0".join(paths) + b"\0",
        )
    tree = _out(_git(["write-tree"], cwd=ws, env=env))
    index.unlink(missing_ok=True)
    head_tree = _out(_git(["rev-parse", f"{head_sha}^{{tree}}"], cwd=ws)) if head_sha else None
    if head_sha and tree == head_tree:
        wip = head_sha
    elif known_wip and known_wip == current_wip and _same_snapshot(ws, known_wip, tree, head_sha):
        wip = known_wip
    else:
        args = ["commit-tree", tree, "-m", "agentctl: snapshot of uncommitted and untracked work"]
        if head_sha:
            args[2:2] = ["-p", head_sha]
        wip = _out(_git(args, cwd=ws))
    if wip != current_wip:
        _git(["update-ref", "-m", "agentctl snapshot", WIP_REF, wip], cwd=ws)
    return {"wip": wip, "skipped": skipped}


def _same_snapshot(ws: Path, sha: str, tree: str, parent: str | None) -> bool:
    """Whether commit ``sha`` already records this tree on this parent (no new commit)."""
    out = _out(_git(["cat-file", "commit", sha], cwd=ws))
    header = out.split("\n\n", 1)[0].splitlines()
    parents = [line[7:] for line in header if line.startswith("parent ")]
    return f"tree {tree}" in header and parents == ([parent] if parent else [])


def export(
    ws: Path,
    scratch: Path,
    known: list[str],
    *,
    known_wip: str | None = None,
    max_bytes: int = 512 * 1024**2,
    max_file_bytes: int = 50 * 1024**2,
    lock_timeout: float = 60.0,
) -> dict:
    """Snapshot, then bundle every branch and the snapshot not already known to the host."""
    ws, scratch = Path(ws).absolute(), Path(scratch).absolute()
    if not (ws / ".git").is_dir():
        raise WorkspaceError(f"{ws} is not a git workspace (no .git directory)")
    scratch.mkdir(parents=True, exist_ok=True)
    with _export_lock(scratch, lock_timeout):
        # Under the lock we are the only exporter: lock files left by an export that died
        # (container restart) are stale, and would otherwise block every later export.
        for stale in (
            scratch / "export.bundle.lock",
            scratch / "snapshot.index.lock",
            ws / ".git" / (WIP_REF + ".lock"),
        ):
            stale.unlink(missing_ok=True)
        return _export_locked(ws, scratch, known, known_wip, max_bytes, max_file_bytes)


@contextlib.contextmanager
def _export_lock(scratch: Path, timeout: float) -> Iterator[None]:
    """Serialise exports: one whose host died keeps running in here and must finish first."""
    fd = os.open(scratch / "export.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkspaceError("another export is still running; try again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _export_locked(
    ws: Path,
    scratch: Path,
    known: list[str],
    known_wip: str | None,
    max_bytes: int,
    max_file_bytes: int,
) -> dict:
    refs_out = _out(
        _git(
            ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", WIP_REF],
            cwd=ws,
        )
    )
    refs: dict[str, str] = {}
    for line in refs_out.splitlines():
        sha, _, ref = line.partition(" ")
        refs[ref] = sha
    branches = {
        ref.removeprefix("refs/heads/"): sha
        for ref, sha in refs.items()
        if ref.startswith("refs/heads/")
    }
    head_branch, head_sha = _read_head(ws, refs)
    snap = snapshot(
        ws, scratch, head_sha, known_wip, refs.get(WIP_REF), max_file_bytes,
        frozenset(branches.values()),
    )  # fmt: skip
    tips = [f"refs/heads/{b}" for b in branches]
    if snap["wip"] not in branches.values():
        tips.append(WIP_REF)  # the snapshot (or a detached HEAD) travels under its own ref
    # Usually every known tip is here; only when one is not (gc, another history) do we
    # pay a second call to find out which.
    prereqs = sorted({k for k in known if _SHA_RE.match(k)})
    count_proc = _git(
        ["rev-list", "--count", "--stdin"],
        cwd=ws,
        input_="\n".join([*tips, *(f"^{k}" for k in prereqs), ""]).encode(),
        check=False,
    )
    if count_proc.returncode != 0:
        prereqs = sorted(_commits_present(ws, prereqs))
        count_proc = _git(
            ["rev-list", "--count", "--stdin"],
            cwd=ws,
            input_="\n".join([*tips, *(f"^{k}" for k in prereqs), ""]).encode(),
        )
    negatives = [f"^{k}" for k in prereqs]
    commits = int(_out(count_proc) or 0)
    bundle = scratch / "export.bundle"
    bundle.unlink(missing_ok=True)
    bundle_bytes = 0
    if commits:
        _git(
            ["bundle", "create", "-q", str(bundle), "--stdin"],
            cwd=ws,
            input_="\n".join([*tips, *negatives, ""]).encode(),
        )
        bundle_bytes = bundle.stat().st_size
        if bundle_bytes > max_bytes:
            bundle.unlink()
            raise WorkspaceError(
                f"bundle of {bundle_bytes} bytes exceeds the cap of {max_bytes} bytes; "
                "commit less (or raise sync.max_bundle_mb)"
            )
    return {
        "version": MANIFEST_VERSION,
        "branches": branches,
        "head": head_branch,
        "wip": snap["wip"],
        "wip_ref": WIP_REF,
        "skipped": snap["skipped"],
        "prerequisites": prereqs,
        "commits": commits,
        "bundle": str(bundle) if commits else None,
        "bundle_bytes": bundle_bytes,
    }


# --------------------------------------------------------------------------- CLI


_EXPORT_OPTS = {
    "--workspace": ("workspace", str),
    "--state-dir": ("state_dir", str),
    "--known": ("known", str),
    "--known-wip": ("known_wip", str),
    "--max-bytes": ("max_bytes", int),
    "--max-file-bytes": ("max_file_bytes", int),
    "--emit": ("emit", str),
}


def _fast_export_args(argv: list[str]) -> object | None:
    """Parse the host's export argv without importing argparse (it runs every sync).

    Anything unusual (help, a typo) returns None and goes through argparse instead.
    """
    if not argv or argv[0] != "export" or len(argv) % 2 == 0:
        return None
    values: dict[str, object] = {
        "cmd": "export", "workspace": "/workspace", "state_dir": "/state", "known": "",
        "known_wip": None, "max_bytes": 512 * 1024**2, "max_file_bytes": 50 * 1024**2,
        "emit": "file",
    }  # fmt: skip
    for flag, raw in zip(argv[1::2], argv[2::2], strict=True):
        if flag not in _EXPORT_OPTS:
            return None
        name, kind = _EXPORT_OPTS[flag]
        try:
            values[name] = kind(raw)
        except ValueError:
            return None
    if values["emit"] not in ("file", "stdout"):
        return None
    return type("Args", (), values)()


def main(argv: list[str] | None = None) -> int:
    """``agentctl-agent workspace prepare|export ...`` (also run by the host via -c)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _fast_export_args(argv) or _parse_args(argv)
    return _run(args)


def _parse_args(argv: list[str]):  # -> argparse.Namespace
    import argparse

    parser = argparse.ArgumentParser(prog="agentctl-agent workspace")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_prep = sub.add_parser("prepare", help="make /workspace a git repo (idempotent)")
    p_prep.add_argument("--workspace", default="/workspace")
    p_prep.add_argument("--state-dir", default="/state")
    p_exp = sub.add_parser("export", help="snapshot + incremental bundle; JSON on stdout")
    p_exp.add_argument("--workspace", default="/workspace")
    p_exp.add_argument("--state-dir", default="/state")
    p_exp.add_argument("--known", default="", help="comma-separated tips the host has")
    p_exp.add_argument("--known-wip", default=None)
    p_exp.add_argument("--max-bytes", type=int, default=512 * 1024**2)
    p_exp.add_argument("--max-file-bytes", type=int, default=50 * 1024**2)
    p_exp.add_argument(
        "--emit", choices=["file", "stdout"], default="file",
        help="leave the bundle in the state dir, or stream it after the manifest line",
    )  # fmt: skip
    return parser.parse_args(argv)


def _run(args) -> int:  # args: argparse.Namespace or the fast-path equivalent
    try:
        if args.cmd == "prepare":
            prepare(Path(args.workspace), Path(args.state_dir))
            return 0
        known = [k for k in args.known.split(",") if k]
        manifest = export(
            Path(args.workspace),
            Path(args.state_dir) / SCRATCH_DIRNAME,
            known,
            known_wip=args.known_wip,
            max_bytes=args.max_bytes,
            max_file_bytes=args.max_file_bytes,
        )
    except (WorkspaceError, OSError) as exc:
        if args.cmd == "export":
            print(json.dumps({"version": MANIFEST_VERSION, "error": str(exc)}))
        print(f"agentctl-agent workspace: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    if args.emit == "stdout" and manifest["bundle"]:
        # One stream: the manifest line, then the bundle's bytes (saves a copy-out call).
        manifest["bundle_in_stream"] = True
        out.write(json.dumps(manifest).encode() + b"\n")
        with open(manifest["bundle"], "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)
    else:
        out.write(json.dumps(manifest).encode() + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
