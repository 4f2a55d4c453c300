"""Bench: incremental git-bundle sync vs. copying the workspace out as a tar archive.

One run, one machine, ratios against a baseline measured in the same run:
a workspace of 10,000 files / ~100 MB (incompressible) seeded from a host repo into a
real container; then, N times, the agent commits a change to one file and we time
``sync_agent`` (export + bundle + copy + verify + fsck'd unpack + ref transaction) and
count its bytes; against that, ``get_archive(/workspace)`` (what the original system's
tar pipe did). Targets: incremental < 0.5 s, < 1 % of the repo's bytes, >= 10x faster.

    /work/main/.venv/bin/python bench/sync/run.py [--files 10000] [--size-mb 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agentctl_swarm.config import Settings, load_settings
from agentctl_swarm.fleet.model import RepoSpec
from agentctl_swarm.fleet.render import LABEL_AGENT, LABEL_FLEET, LABEL_KIND, LABEL_ROLE
from agentctl_swarm.podman.backend import PodmanBackend
from agentctl_swarm.sync.engine import _SCRIPT, sync_agent
from agentctl_swarm.sync.hooks import seed_container
from agentctl_swarm.sync.state import SyncStateStore
from agentctl_swarm.sync.types import SyncLimits, SyncTarget

IMAGE = "localhost/agentctl-base:bookworm"
RESULTS = Path(__file__).resolve().parent.parent / "results" / "sync.json"


@dataclass
class Spec:
    name: str
    agent: str
    fleet: str
    role: str
    repo: RepoSpec


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path, files: int, size_mb: int) -> tuple[Path, int]:
    repo = root / "bench-repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    per_file = size_mb * 1024**2 // files
    total = 0
    for i in range(files):
        d = repo / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(per_file))
        total += per_file
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "bench workspace")
    return repo, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    backend = PodmanBackend(load_settings(Settings).podman_url)
    backend.ping()
    fleet = f"bench{secrets.token_hex(3)}"
    agent = "swarm-bench-000"
    name = f"agentctl-{fleet}-{agent}"
    vols = (f"{name}-ws", f"{name}-state")
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-") as tmp:
        root = Path(tmp)
        print(f"building a {args.files}-file / {args.size_mb} MB repo ...", file=sys.stderr)
        repo, content_bytes = make_repo(root, args.files, args.size_mb)
        labels = {LABEL_FLEET: fleet, LABEL_AGENT: agent, LABEL_ROLE: "bench", LABEL_KIND: "agent"}
        try:
            for v in vols:
                backend.ensure_volume(v, {LABEL_FLEET: fleet, LABEL_KIND: "volume"})
            backend.client.containers.create(
                IMAGE, ["sleep", "infinity"], name=name, labels=labels, user="1000:1000",
                network_mode="host", stop_signal=9,
                volumes={vols[0]: {"bind": "/workspace", "mode": "rw"},
                         vols[1]: {"bind": "/state", "mode": "rw"}},
            )  # fmt: skip
            state_dir = root / "state"
            seed_container(Spec(name, agent, fleet, "bench", RepoSpec(path=str(repo))), backend,
                           state_dir=state_dir)  # fmt: skip
            backend.start(name)
            prep = backend.exec(name, ["python3", "-I", "-c", _SCRIPT.read_text(), "prepare"],
                                user="1000:1000", env={"HOME": "/tmp"})  # fmt: skip
            assert prep.exit_code == 0, prep.stderr.decode()
            target = SyncTarget(fleet, agent, name, repo)
            store, limits = SyncStateStore(state_dir), SyncLimits()
            first = sync_agent(backend, target, store, limits)
            assert first.ok, first.error
            times, sizes = [], []
            for r in range(args.rounds):
                change = (
                    f"head -c {content_bytes // args.files} /dev/urandom > d000/f00000.bin"
                    f" && git add d000/f00000.bin && git commit -qm 'round {r}'"
                )
                res = backend.exec(name, ["sh", "-c", change], user="1000:1000",
                                   workdir="/workspace", env={"HOME": "/tmp"})  # fmt: skip
                assert res.exit_code == 0, res.stderr.decode()
                prof = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
                t0 = time.perf_counter()
                if prof:
                    prof.enable()
                result = sync_agent(backend, target, store, limits)
                times.append(time.perf_counter() - t0)
                if prof:
                    prof.disable()
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
                assert result.ok and result.commits >= 1, result.error
                sizes.append(result.bytes)
                print(f"round {r}: {times[-1]:.3f}s phases {result.phases}", file=sys.stderr)
                assert _git(repo, "log", "-1", "--format=%s", f"swarm/{agent}/work") == f"round {r}"
            floor = []
            for _ in range(args.rounds):  # the cost of any exec at all, for context
                t0 = time.perf_counter()
                backend.exec(name, ["true"], user="1000:1000")
                floor.append(time.perf_counter() - t0)
            tar_times, tar_bytes = [], 0
            for _ in range(3):
                t0 = time.perf_counter()
                data = backend.get_archive(name, "/workspace")
                tar_times.append(time.perf_counter() - t0)
                tar_bytes = len(data)
            # For context only: the original pipeline also unpacked the tar on the host.
            t0 = time.perf_counter()
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(root / "unpacked", filter="data")
            unpack_s = time.perf_counter() - t0 + statistics.median(tar_times)
            del data
        finally:
            with contextlib.suppress(Exception):
                backend.client.containers.get(name).remove(force=True)
            for v in vols:
                backend.remove_volume(v)
    sync_s, sync_b = statistics.median(times), statistics.median(sizes)
    tar_s = statistics.median(tar_times)
    row = {
        "files": args.files,
        "content_bytes": content_bytes,
        "rounds": args.rounds,
        "incremental_sync_seconds_median": round(sync_s, 4),
        "incremental_sync_seconds_all": [round(t, 4) for t in times],
        "incremental_sync_bytes_median": sync_b,
        "tar_copy_seconds_median": round(tar_s, 4),
        "tar_copy_seconds_all": [round(t, 4) for t in tar_times],
        "tar_copy_and_unpack_seconds": round(unpack_s, 4),
        "podman_exec_true_seconds_median": round(statistics.median(floor), 4),
        "tar_copy_bytes": tar_bytes,
        "bytes_fraction_of_repo": round(sync_b / content_bytes, 6),
        "speedup_vs_tar": round(tar_s / sync_s, 1),
        # The original system's copy ended with the files unpacked on the host; the
        # stream alone is the stricter baseline (and the one the target is judged on).
        "speedup_vs_tar_and_unpack": round(unpack_s / sync_s, 1),
        "exec_floor_seconds": round(statistics.median(floor), 3),
        "targets": {
            "sync_under_0_5s": sync_s < 0.5,
            "bytes_under_1_percent": sync_b / content_bytes < 0.01,
            "at_least_10x_faster": tar_s / sync_s >= 10,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(row, indent=2) + "\n")
    print(f"{'method':<22}{'seconds':>10}{'bytes':>14}{'% of repo':>11}")
    sync_pct, tar_pct = 100 * sync_b / content_bytes, 100 * tar_bytes / content_bytes
    print(f"{'incremental bundle':<22}{sync_s:>10.3f}{sync_b:>14,}{sync_pct:>10.3f}%")
    print(f"{'tar of /workspace':<22}{tar_s:>10.3f}{tar_bytes:>14,}{tar_pct:>10.1f}%")
    print(f"{'(tar + unpack, orig.)':<22}{unpack_s:>10.3f}")
    print(f"{'(podman exec true)':<22}{statistics.median(floor):>10.3f}")
    print(f"speedup {tar_s / sync_s:.1f}x vs the tar stream, "
          f"{unpack_s / sync_s:.1f}x vs tar + unpack; targets: " + ", ".join(
        f"{k}={'PASS' if v else 'FAIL'}" for k, v in row["targets"].items()))  # fmt: skip
    print(f"wrote {RESULTS}")
    return 0 if all(row["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
