"""How long `distill` takes to start: whole-process wall time of the commands people type most,
beside the floor (`python -c pass`) and what `status` cannot avoid (importing SQLAlchemy's ORM).

Rounds alternate the commands, and the median of each is reported (the minimum beside it), so a
busy moment on a shared machine does not land on one command only. Bytecode is written and warm
before the first round, as on a user's machine.

    python -m benchmarks.bench_startup --rounds 9
    git worktree add /tmp/before c4483f3
    python -m benchmarks.bench_startup --baseline /tmp/before

With --baseline (a checkout of another version), the same `distill` commands also run from that
tree (PYTHONPATH), in the same rounds, for a before/after ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DISTILL = [sys.executable, "-m", "distill"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass (the floor)": [sys.executable, "-c", "pass"],
    "distill --help": [*DISTILL, "--help"],
    "distill --version": [*DISTILL, "--version"],
    "distill enqueue --help": [*DISTILL, "enqueue", "--help"],
    "distill status --help": [*DISTILL, "status", "--help"],
    "distill status --json (empty database)": [*DISTILL, "status", "--json"],
    "distill status (empty database)": [*DISTILL, "status"],
    "import sqlalchemy.orm, pydantic_settings": [
        sys.executable,
        "-c",
        "import sqlalchemy.orm, pydantic_settings",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="a checkout of another distill version")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DISTILL_DATABASE_URL"] = f"sqlite:///{root / 'distill.db'}"
    subprocess.run([*DISTILL, "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True)
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        name: (command, env) for name, command in COMMANDS.items()
    }
    if args.baseline:
        before = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        for name, command in COMMANDS.items():
            # Not status (its schema is older) nor --version (it had none).
            if command[:3] == DISTILL and not {"status", "--version"} & set(command):
                runs[f"{name} (baseline)"] = (command, before)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for command, run_env in runs.values():  # warm: bytecode written, files in the page cache
        subprocess.run(command, env=run_env, cwd=root, check=True, capture_output=True)
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            command, run_env = runs[name]
            start = time.perf_counter()
            subprocess.run(command, env=run_env, cwd=root, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    print(f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}")
    print(f"{args.rounds} alternating rounds, wall time of the whole process\n")
    print("| command | median | min |")
    print("|---|---|---|")
    for name, samples in times.items():
        print(f"| `{name}` | {statistics.median(samples):.2f} s | {min(samples):.2f} s |")


if __name__ == "__main__":
    main()
