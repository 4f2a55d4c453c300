"""bench/apply: agentctl apply vs raw `podman run -d`, and the cost of a no-op re-apply.

In one run, on this machine:
  1. baseline: N `podman run -d` of the exact specs agentctl renders, through the podman
     CLI, with the same parallelism as agentctl;
  2. `agentctl apply` of the same N agents (the real CLI, in a subprocess);
  3. a no-op re-apply, in-process, counting Podman API calls.
Targets: (2) within 1.2x of (1); (3) under 0.5 s with exactly one list call.
Prints a table and writes bench/results/apply.json.

Usage: .venv/bin/python bench/apply/run.py [--agents 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agentctl_swarm.config import Settings, load_settings  # noqa: E402
from agentctl_swarm.controller.apply import apply_fleet  # noqa: E402
from agentctl_swarm.fleet.render import ContainerSpec, render_fleet  # noqa: E402
from agentctl_swarm.fleet.source import read_fleet  # noqa: E402
from agentctl_swarm.podman.backend import PodmanBackend  # noqa: E402

FLEET = """\
apiVersion: agentctl.io/v1
kind: Fleet
metadata: {{name: {name}}}
defaults:
  resources: {{memory: 128m, cpus: 0.25, pids: 64}}
agents:
  - role: worker
    replicas: {n}
    command: [sh, -c, "sleep infinity"]
"""


def podman_run_argv(spec: ContainerSpec, name: str) -> list[str]:
    """The podman CLI equivalent of what the backend creates for ``spec``."""
    argv = ["podman", "run", "-d", "--name", name, "--network", spec.network, "--user", spec.user]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--hostname", spec.agent]
    argv += ["--tmpfs", "/tmp:size=256m,mode=1777", "--stop-timeout", str(spec.stop_timeout)]
    argv += [
        "--restart",
        f"{spec.restart}:{spec.restart_retries}"
        if spec.restart_retries is not None
        else spec.restart,
    ]
    if spec.memory_bytes:
        argv += ["--memory", str(spec.memory_bytes)]
    if spec.nano_cpus:
        argv += ["--cpus", str(spec.nano_cpus / 1e9)]
    if spec.pids:
        argv += ["--pids-limit", str(spec.pids)]
    for key, value in {**spec.labels, "bench": "baseline"}.items():
        argv += ["--label", f"{key}={value}"]
    for key, value in spec.env.items():
        argv += ["--env", f"{key}={value}"]
    for mount in spec.mounts:
        argv += ["-v", f"{name}-{mount.target.strip('/')}:{mount.target}"]
    return [*argv, spec.image, *spec.command]


def podman(*args: str) -> None:
    subprocess.run(["podman", *args], check=False, capture_output=True)


def cleanup(prefix: str) -> None:
    out = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"name=^{prefix}"], capture_output=True, text=True
    ).stdout.split()
    if out:
        podman("rm", "-f", "-t", "0", *out)
    vols = subprocess.run(
        ["podman", "volume", "ls", "-q", "--filter", f"name=^{prefix}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if vols:
        podman("volume", "rm", "-f", *vols)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "apply.json")
    args = parser.parse_args()

    tag = f"b{os.getpid()}"
    fleet_name, base_prefix = f"{tag}f", f"{tag}raw"
    work = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    os.environ["AGENTCTL_STATE_DIR"] = str(work / "state")
    settings = load_settings(Settings)
    fleet_file = work / "fleet.yaml"
    fleet_file.write_text(FLEET.format(name=fleet_name, n=args.agents))
    loaded = read_fleet(fleet_file)
    specs = render_fleet(loaded.fleet, home=Path.home())
    backend = PodmanBackend(settings.podman_url)
    backend.ping()
    results: dict[str, float | int | str] = {"agents": args.agents, "concurrency": args.concurrency}
    try:
        # 1. baseline: raw podman run -d, same specs, same parallelism
        argvs = [podman_run_argv(s, f"{base_prefix}-{i:03d}") for i, s in enumerate(specs)]
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            codes = list(
                pool.map(lambda a: subprocess.run(a, capture_output=True).returncode, argvs)
            )
        results["baseline_podman_run_s"] = round(time.perf_counter() - start, 3)
        if any(codes):
            print(f"warning: {sum(1 for c in codes if c)} podman run calls failed", file=sys.stderr)
        cleanup(base_prefix)

        # 2. agentctl apply through the real CLI
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentctl_swarm.cli",
                "apply",
                "-f",
                str(fleet_file),
                "--concurrency",
                str(args.concurrency),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        results["agentctl_apply_s"] = round(time.perf_counter() - start, 3)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1

        # 3. no-op re-apply, in-process, counting API calls
        backend.calls.count, backend.calls.by_path = 0, {}
        start = time.perf_counter()
        result = apply_fleet(loaded, backend, settings)
        results["noop_reapply_s"] = round(time.perf_counter() - start, 4)
        results["noop_api_calls"] = backend.calls.count
        results["noop_api_calls_by_path"] = json.dumps(backend.calls.by_path)
        results["noop_changes"] = len(result.outcomes)
    finally:
        cleanup(base_prefix)
        cleanup(f"{fleet_name}-")

    ratio = results["agentctl_apply_s"] / results["baseline_podman_run_s"]
    results["apply_vs_baseline_ratio"] = round(ratio, 3)
    rows = [
        ("podman run -d x N (baseline)", f"{results['baseline_podman_run_s']:.2f} s", ""),
        (
            "agentctl apply (N agents)",
            f"{results['agentctl_apply_s']:.2f} s",
            f"ratio {ratio:.2f} (target <= 1.20)",
        ),
        ("no-op re-apply", f"{results['noop_reapply_s'] * 1000:.0f} ms", "target < 500 ms"),
        (
            "no-op API calls",
            str(results["noop_api_calls"]),
            f"target 1 ({results['noop_api_calls_by_path']})",
        ),
    ]
    print(f"\nbench/apply: {args.agents} agents, concurrency {args.concurrency}")
    for label, value, note in rows:
        print(f"  {label:<32} {value:>10}  {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
