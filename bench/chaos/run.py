"""Chaos suite: every fault an operator fears, against one real fleet, and a table.

Sets up one fleet (an `agentctl server` with the coordinator inside, the scripted model
on 127.0.0.1, two builders running the real Claude Code under `agentctl up`, a host repo
the sync-daemon fills), runs each scenario of bench/chaos/scenarios.py in turn and
prints: scenario, converged, time to recover (fault → all tasks done, all builders idle
and alive, every task's commit on the host), tasks lost, commits lost, duplicate runs.
Every scenario must converge with 0 / 0 / 0. Results go to bench/results/chaos.json.
Everything it created is removed at the end, also on failure or Ctrl-C.

    /work/main/.venv/bin/python bench/chaos/run.py            # the full set (~15 min)
    /work/main/.venv/bin/python bench/chaos/run.py --list
    /work/main/.venv/bin/python bench/chaos/run.py --only kill-runner --only podman-rm

Exit status: 0 when every scenario passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rich.console import Console
from rich.table import Table

from bench.chaos.scenarios import (
    BY_NAME,
    SCENARIOS,
    Result,
    chaos_fleet,
    log,
    run_scenario,
)

RESULTS = Path(__file__).resolve().parent.parent / "results" / "chaos.json"


def table(results: list[Result]) -> Table:
    t = Table(title="chaos suite")
    for col in ("scenario", "converged", "time to recover", "tasks lost", "commits lost",
                "duplicate runs"):  # fmt: skip
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    for r in results:
        t.add_row(
            r.scenario,
            "yes" if r.converged else "[red]no[/red]",
            f"{r.recover_s:.1f} s" if r.recover_s is not None else "-",
            *(str(n) if not n else f"[red]{n}[/red]"
              for n in (r.tasks_lost, r.commits_lost, r.duplicates)),
        )  # fmt: skip
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), metavar="NAME",
                        help="run only this scenario (repeatable)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds a scenario may take to converge")  # fmt: skip
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:20} {s.what}")
        return 0
    chosen = [BY_NAME[n] for n in args.only] if args.only else SCENARIOS
    results: list[Result] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentctl-chaos-") as tmp:
        try:
            with chaos_fleet(Path(tmp)) as fleet:
                log(f"fleet {fleet.name} up after {time.monotonic() - started:.0f} s")
                for scenario in chosen:
                    results.append(run_scenario(fleet, scenario, timeout=args.timeout))
        except KeyboardInterrupt:
            log("interrupted; the fleet was torn down")
    total = round(time.monotonic() - started, 1)
    Console(width=max(Console().width, 110)).print(table(results))
    for r in results:
        if r.error:
            print(f"  {r.scenario}: ERROR {r.error}")
        for note in r.notes:
            print(f"  {r.scenario}: {note}")
    print(f"total {total} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = {"total_seconds": total, "scenarios": [r.to_dict() for r in results]}
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if results and len(results) == len(chosen) and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
