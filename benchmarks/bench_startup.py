"""How long `distill` takes to start: whole-process wall time (and CPU) of the commands people
type most, beside the floor (`python -c pass`) and what `status` cannot avoid (importing
SQLAlchemy's ORM). `distill enqueue` of 256 jobs is among them: a run's workers wait for its
start-up before their first claim, and its CPU competes with them and with vLLM's server (here
against an embedded broker and an instant teacher, which answers the budget check at once).

Rounds alternate the commands, and the median of each is reported (the minimum beside it), so a
busy moment on a shared machine does not land on one command only. Bytecode is written and warm
before the first round, as on a user's machine.

    python -m benchmarks.bench_startup --rounds 9
    python -m benchmarks.bench_startup --only enqueue --baseline /tmp/before
    git worktree add /tmp/before c4483f3
    python -m benchmarks.bench_startup --baseline /tmp/before

With --baseline (a checkout of another version), the same `distill` commands also run from that
tree (PYTHONPATH), in the same rounds, for a before/after ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_queue import questions_file  # noqa: E402
from benchmarks.teacher import InstantTeacher  # noqa: E402
from distill.jobs.embedded import EmbeddedBroker  # noqa: E402

DISTILL = [sys.executable, "-m", "distill"]
ENQUEUE = "distill enqueue --n 64 --samples 4 (256 jobs)"
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
    ENQUEUE: [*DISTILL, "enqueue", "--n", "64", "--samples", "4", "--json"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="a checkout of another distill version")
    parser.add_argument("--only", metavar="WORD", help="only the commands whose name has WORD")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    commands = {k: v for k, v in COMMANDS.items() if args.only is None or args.only in k}
    trees = 2 if args.baseline else 1
    broker = EmbeddedBroker(root / "broker")
    with InstantTeacher() as teacher:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {
            "DISTILL_DATABASE_URL": f"sqlite:///{root / 'distill.db'}",
            "DISTILL_BROKER_URL": broker.ensure(),
            "DISTILL_TEACHER_URL": teacher.url,
            "DISTILL_TEACHER_MODEL": teacher.model,
        }
        try:
            subprocess.run([*DISTILL, "db", "upgrade"], env=env, cwd=root, check=True,
                           capture_output=True)  # fmt: skip
            if ENQUEUE in commands:  # 64 questions each time, warm-up round included
                pool = questions_file(root / "q.jsonl", 64 * trees * (args.rounds + 1))
                subprocess.run([*DISTILL, "import", str(pool)], env=env, cwd=root, check=True,
                               capture_output=True)  # fmt: skip
            times, cpu = measure(commands, env, root, args.baseline, args.rounds)
        finally:
            broker.stop()
    print(f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}")
    print(f"{args.rounds} alternating rounds, wall time and CPU (user + system) of the process\n")
    print("| command | median | min | CPU, median |")
    print("|---|---|---|---|")
    for name, samples in times.items():
        print(
            f"| `{name}` | {statistics.median(samples):.2f} s | {min(samples):.2f} s "
            f"| {statistics.median(cpu[name]):.2f} s |"
        )


def measure(
    commands: dict[str, list[str]],
    env: dict[str, str],
    root: Path,
    baseline: Path | None,
    rounds: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        name: (command, env) for name, command in commands.items()
    }
    if baseline:
        before = {**env, "PYTHONPATH": str(baseline.resolve())}
        for name, command in commands.items():
            # Not status (its schema is older) nor --version (it had none).
            if command[:3] == DISTILL and not {"status", "--version"} & set(command):
                runs[f"{name} (baseline)"] = (command, before)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for command, run_env in runs.values():  # warm: bytecode written, files in the page cache
        subprocess.run(command, env=run_env, cwd=root, check=True, capture_output=True)
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            command, run_env = runs[name]
            before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, env=run_env, cwd=root, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
            after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(
                after_cpu.ru_utime + after_cpu.ru_stime - before_cpu.ru_utime - before_cpu.ru_stime
            )
    return times, cpu


if __name__ == "__main__":
    main()
