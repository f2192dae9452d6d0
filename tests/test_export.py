"""`export_dataset` end to end on the real backend (sqlite or postgres, see conftest): which
generations become records, the shape of every record, splits, curriculum, balance, the card."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from distill.db import session_scope
from distill.errors import UserError
from distill.export import export_dataset
from distill.export.funnel import MOVED_REFERENCE, NOT_A_RESULT
from distill.models import JobStatus, Outcome
from schemas.export import ExportManifest, ExportOptions
from tests.support.factories import add_job, add_question, add_run, add_sample, rotated
from tests.test_export_records import assert_well_formed


def run_export(engine: Engine, out: Path, **options: Any) -> ExportManifest:
    return export_dataset(options=ExportOptions(out=out, **options), engine=engine)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def options_of(prompt: str) -> dict[str, str]:
    """Letter -> option text, read back from a rendered user prompt."""
    return dict(re.findall(r"^([A-J])\. (.*)$", prompt, flags=re.MULTILINE))


def funnel(manifest: ExportManifest, fmt: str) -> dict[str, int]:
    return {s.step: s.removed for s in manifest.outputs[fmt].funnel[1:]}


def populate(
    engine: Engine, n: int, *, samples: int = 2, subjects: tuple[str, ...] = ("math", "bio", "law")
) -> None:
    """n questions, each with `samples` samples: correct on sample 0 for two thirds of them, the
    other samples alternately incorrect and truncated. Chains grow with the question number."""
    with session_scope(engine) as s:
        run = add_run(s, samples_per_question=samples)
        for i in range(n):
            q = add_question(s, subject=subjects[i % len(subjects)], answer_index=i % 4)
            for k in range(samples):
                correct = (k == 0 and i % 3 != 2) or (k == 1 and i % 5 == 0)
                outcome = (
                    Outcome.correct
                    if correct
                    else (Outcome.incorrect if k % 2 else Outcome.truncated)
                )
                add_sample(
                    s,
                    question=q,
                    run=run,
                    sample_index=k,
                    choice_order=rotated(4, i + k),
                    outcome=outcome,
                    reasoning=f"Chain for question {i}, sample {k}. " + "step " * (i % 7),
                )


def test_only_clean_correct_chains_become_reasoning_records(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s, samples_per_question=1)
        cases: dict[str, int] = {}

        def sample(name: str, **kw: Any) -> None:
            q = add_question(s, subject="math", answer_index=1)
            _, gen = add_sample(s, question=q, run=run, choice_order=[1, 0, 2, 3], **kw)
            cases[name] = gen.id

        sample("clean", reasoning="B fits, A does not.")
        sample("truncated", outcome=Outcome.truncated, reasoning="B fits, but wait")
        sample("unclosed", reasoning="B fits, but", answer_text=None, response_shape="no_marker")
        sample("length", finish_reason="length")
        sample("incorrect", outcome=Outcome.incorrect)
        sample("unparseable", outcome=Outcome.unparseable)
        sample("stray", reasoning="<think>B fits.</think> Sure.")
        sample("trailing", reasoning="B fits.\nThe answer is A.\n\\boxed{A}")
        sample("inside", reasoning="The answer is A.\nHmm, or is it? Check again.")
        sample("conflict", reasoning="Probably.\nThe answer is C.")
        sample("mismatch", predicted_letter="C")
        q = add_question(s, subject="math", answer_index=1)
        add_job(s, question=q, run=run, status=JobStatus.failed)
        add_job(s, question=q, run=run, sample_index=1, status=JobStatus.queued)

    manifest = run_export(engine, tmp_path / "out", format="reasoning", to="jsonl", val_size=1)
    records = read_jsonl(tmp_path / "out/train.jsonl") + read_jsonl(
        tmp_path / "out/validation.jsonl"
    )
    exported = {int(r["id"].rsplit("-g", 1)[1]) for r in records}
    assert exported == {cases["clean"], cases["stray"], cases["trailing"]}
    for record in records:
        content = record["messages"][1]["content"]
        assert_well_formed(content)
        assert content.endswith("\n\nThe answer is A.")  # gold B presented as A
        assert record["answer"] == "A" and record["reasoning_content"] in content
        assert (
            record["prompt"] == record["messages"][:1]
            and record["completion"] == record["messages"][1:]
        )
    removed = funnel(manifest, "reasoning")
    assert removed["truncated (token budget hit or chain never closed)"] == 1
    assert removed["finish_reason is not stop"] == 1
    assert removed["think block not closed"] == 1
    assert removed["teacher answered incorrectly"] == 1
    assert removed["no answer letter after the chain"] == 1
    assert removed["answer line in the middle of the chain"] == 1
    assert removed["chain ends with a different answer"] == 1
    assert removed["predicted letter differs from the gold letter"] == 1
    fixes = manifest.outputs["reasoning"].fixes
    assert fixes["chains with stray think markers removed"] == 1
    assert fixes["chains with a trailing answer or \\boxed line removed"] == 1
    assert manifest.unfinished_jobs == {"failed": 1, "queued": 1}


def test_direct_answers_are_the_gold_option(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 60)
    run_export(engine, tmp_path / "out", format="direct", to="jsonl")
    with session_scope(engine) as s:
        from distill.models import Question

        gold = {q.uid: q.choices[q.answer_index] for q in s.query(Question)}
    records = read_jsonl(tmp_path / "out/train.jsonl") + read_jsonl(
        tmp_path / "out/validation.jsonl"
    )
    assert len(records) == 60
    for record in records:
        user, assistant = record["messages"]
        assert assistant == {"role": "assistant", "content": f"The answer is {record['answer']}."}
        assert options_of(user["content"])[record["answer"]] == gold[record["question_id"]]


def test_splits_are_disjoint_and_shared_by_both_formats(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 90)
    manifest = run_export(engine, tmp_path / "out", format="both", to="jsonl")
    ids: dict[tuple[str, str], set[str]] = {}
    for fmt in ("reasoning", "direct"):
        for split in ("train", "validation"):
            ids[(fmt, split)] = {
                r["question_id"] for r in read_jsonl(tmp_path / f"out/{fmt}/{split}.jsonl")
            }
    assert not ids[("direct", "train")] & ids[("direct", "validation")]
    assert len(ids[("direct", "validation")]) == 9  # 10 % of 90
    for split in ("train", "validation"):
        assert ids[("reasoning", split)] <= ids[("direct", split)]
    assert manifest.questions == {"train": 81, "validation": 9}
    # Exporting one format alone splits the same way.
    run_export(engine, tmp_path / "alone", format="reasoning", to="jsonl")
    alone = {r["question_id"] for r in read_jsonl(tmp_path / "alone/validation.jsonl")}
    assert alone == ids[("reasoning", "validation")]


def test_train_is_in_curriculum_order_and_validation_is_not(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 90, samples=3)
    run_export(engine, tmp_path / "out", format="both", to="jsonl", val_size=20)
    for fmt in ("reasoning", "direct"):
        train = read_jsonl(tmp_path / f"out/{fmt}/train.jsonl")
        difficulty = [r["difficulty"] for r in train]
        assert difficulty == sorted(difficulty)
        assert [r["curriculum_rank"] for r in train] == list(range(len(train)))
        validation = read_jsonl(tmp_path / f"out/{fmt}/validation.jsonl")
        assert [r["question_id"] for r in validation] == sorted(
            r["question_id"] for r in validation
        )
        assert all(r["curriculum_rank"] is None for r in validation)
    direct = read_jsonl(tmp_path / "out/direct/train.jsonl")
    assert {r["difficulty"] for r in direct} == {1 / 3, 2 / 3, 1.0}  # sample 2 always fails


def test_stages_and_hard_to_easy(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 60, samples=3)
    run_export(
        engine, tmp_path / "out", format="direct", to="jsonl", stages=2, curriculum="hard-to-easy"
    )
    train = read_jsonl(tmp_path / "out/train.jsonl")
    stages = [r["stage"] for r in train]
    assert stages == sorted(stages) and set(stages) == {0, 1}
    assert min(r["difficulty"] for r in train if r["stage"] == 0) >= max(
        r["difficulty"] for r in train if r["stage"] == 1
    )
    assert all(r["stage"] is None for r in read_jsonl(tmp_path / "out/validation.jsonl"))


@pytest.mark.slow
def test_direct_letters_are_balanced_within_two_percent(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s)
        for i in range(1000):
            q = add_question(s, subject=("math", "bio")[i % 2], answer_index=i % 4)
            # The teacher always saw the gold option first: 100 % A before balancing.
            order = [q.answer_index, *(j for j in range(4) if j != q.answer_index)]
            add_sample(s, question=q, run=run, choice_order=order, outcome=Outcome.incorrect)
    manifest = run_export(engine, tmp_path / "out", format="direct", to="jsonl")
    for split in ("train", "validation"):
        records = read_jsonl(tmp_path / f"out/{split}.jsonl")
        shares = {x: n / len(records) for x, n in Counter(r["answer"] for r in records).items()}
        assert set(shares) == set("ABCD")
        assert all(abs(share - 0.25) <= 0.02 for share in shares.values()), shares
        assert manifest.outputs["direct"].splits[split].letters == dict(
            Counter(r["answer"] for r in records)
        )
    unbalanced = run_export(engine, tmp_path / "raw", format="direct", to="jsonl", balance=False)
    assert unbalanced.outputs["direct"].splits["train"].letters == {"A": 900}


def test_reasoning_balance_picks_rare_letters_among_samples(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s, samples_per_question=2)
        for i in range(200):
            q = add_question(s, answer_index=0)
            add_sample(
                s, question=q, run=run, sample_index=0, choice_order=[0, 1, 2, 3], reasoning="short"
            )
            add_sample(
                s,
                question=q,
                run=run,
                sample_index=1,
                choice_order=rotated(4, i % 4),
                reasoning="a longer chain " * 5,
            )
    plain = run_export(engine, tmp_path / "plain", format="reasoning", to="jsonl")
    assert plain.outputs["reasoning"].splits["train"].letters == {"A": 180}  # shortest chains
    balanced = run_export(engine, tmp_path / "bal", format="reasoning", to="jsonl", balance=True)
    letters = balanced.outputs["reasoning"].splits["train"].letters
    # A quarter of the questions offer only A; the others are spread as evenly as they allow.
    assert set(letters) == set("ABCD") and letters["A"] <= 0.3 * 180 and min(letters.values()) >= 35


def test_card_counts_add_up(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 60, samples=3)
    manifest = run_export(
        engine, tmp_path / "out", format="both", to="jsonl", max_reasoning_tokens=12
    )
    for fmt in ("reasoning", "direct"):
        out = manifest.outputs[fmt]
        steps = out.funnel
        for before, step in itertools.pairwise(steps):
            assert step.remaining == before.remaining - step.removed
        assert (
            steps[-1].remaining
            == out.records
            == out.splits["train"].records + out.splits["validation"].records
        )
        card = (tmp_path / "out" / fmt / "README.md").read_text(encoding="utf-8")
        table = card.split("## How the rows were chosen")[1].split("\n\n")[2]
        rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
        remaining = [int(r[2]) for r in rows]
        removed = [int(r[1]) for r in rows[1:]]
        for i, gone in enumerate(removed):
            assert remaining[i + 1] == remaining[i] - gone
        assert remaining[-1] == out.records
        assert f"Written: {out.records} = " in card
        for plot in out.plots:
            assert f"]({plot})" in card and (tmp_path / "out" / fmt / plot).stat().st_size > 1000
    assert "longer than --max-reasoning-tokens" in funnel(manifest, "reasoning")
    assert (tmp_path / "out/manifest.json").is_file()


def test_near_duplicates_and_decontamination(engine: Engine, tmp_path: Path) -> None:
    long_stem = "A ball is thrown straight up at ten metres per second from the flat ground below"
    with session_scope(engine) as s:
        run = add_run(s)
        keep = add_question(s, question="What is the capital of France?", choices=["Paris", "Lyon"])
        dup = add_question(s, question="what is the capital of  FRANCE", choices=["lyon", "paris!"])
        leaked = add_question(s, question="Name the largest planet.", choices=["Jupiter", "Mars"])
        overlap = add_question(
            s, question=long_stem + ". How high does it go?", choices=["5.1 m", "10 m"]
        )
        others = [add_question(s, subject="bio") for _ in range(6)]
        for q in [keep, dup, leaked, overlap, *others]:
            add_sample(s, question=q, run=run, choice_order=list(range(len(q.choices))))
        ids = {"keep": keep.uid, "dup": dup.uid, "leaked": leaked.uid, "overlap": overlap.uid}
    eval_file = tmp_path / "eval.jsonl"
    eval_rows = [
        {"question": "Name the LARGEST planet", "choices": ["Mars", "Jupiter"], "answer": 1},
        {
            "question": "Consider this: " + long_stem + ", what then?",
            "choices": ["a", "b"],
            "answer": 0,
        },
        {"question": "Unrelated question?", "choices": ["a", "b"], "answer": 0},
    ]
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in eval_rows), encoding="utf-8")
    manifest = run_export(
        engine, tmp_path / "out", format="both", to="jsonl", decontaminate=[eval_file]
    )
    steps = {s.step: s.removed for s in manifest.question_funnel}
    assert steps["near-duplicate question (kept once, lowest id)"] == 1
    assert steps["question found in an eval set (--decontaminate)"] == 2
    exported = {
        r["question_id"]
        for split in ("train", "validation")
        for r in read_jsonl(tmp_path / f"out/direct/{split}.jsonl")
    }
    assert ids["keep"] in exported
    assert not exported & {ids["dup"], ids["leaked"], ids["overlap"]}
    assert len(exported) == 7
    assert funnel(manifest, "reasoning")["question found in an eval set (--decontaminate)"] == 2


@pytest.mark.parametrize("to", ["disk", "jsonl", "parquet"])
def test_reexport_is_byte_identical(engine: Engine, tmp_path: Path, to: str) -> None:
    populate(engine, 40, samples=3)
    for name in ("a", "b"):
        run_export(engine, tmp_path / name, format="both", to=to, stages=2, seed=5)
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    run_export(engine, tmp_path / "c", format="both", to=to, stages=2, seed=6)
    data = "reasoning/train.jsonl" if to == "jsonl" else None
    if data:
        assert (tmp_path / "a" / data).read_bytes() != (tmp_path / "c" / data).read_bytes()


@pytest.mark.parametrize("to", ["disk", "jsonl", "parquet"])
def test_outputs_load_back_with_datasets(engine: Engine, tmp_path: Path, to: str) -> None:
    import datasets

    populate(engine, 30)
    manifest = run_export(engine, tmp_path / "out", format="both", to=to)
    for fmt in ("reasoning", "direct"):
        directory = tmp_path / "out" / fmt
        if to == "disk":
            loaded = datasets.load_from_disk(str(directory))
        else:
            files = {split: str(directory / f"{split}.{to}") for split in ("train", "validation")}
            builder = "json" if to == "jsonl" else "parquet"
            loaded = datasets.load_dataset(
                builder, data_files=files, cache_dir=str(tmp_path / "cache")
            )
        stats = manifest.outputs[fmt]
        assert {split: loaded[split].num_rows for split in loaded} == {
            split: stats.splits[split].records for split in ("train", "validation")
        }
        assert loaded["train"].column_names == stats.columns
        first = loaded["train"][0]
        assert (
            first["messages"][0]["role"] == "user" and first["messages"][1]["role"] == "assistant"
        )


def test_retried_truncation_counts_once_and_follows_the_run(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s)
        retry_run = add_run(s, kind="retry-truncated")
        q = add_question(s, answer_index=2)
        old, _ = add_sample(s, question=q, run=run, outcome=Outcome.truncated, max_tokens=100)
        _, new = add_sample(
            s,
            question=q,
            run=retry_run,
            supersedes=old,
            max_tokens=400,
            reasoning="With more room: C.",
        )
        other = add_question(s, answer_index=0)
        add_sample(s, question=other, run=run, reasoning="A, plainly.")
        run_id, retry_id = run.id, retry_run.id
    manifest = run_export(engine, tmp_path / "out", format="reasoning", to="jsonl", runs=[run_id])
    assert manifest.superseded == 1
    records = read_jsonl(tmp_path / "out/train.jsonl") + read_jsonl(
        tmp_path / "out/validation.jsonl"
    )
    assert f"-g{new.id}" in " ".join(r["id"] for r in records)
    assert {r.run_id for r in manifest.runs} == {run_id, retry_id}
    # Difficulty counts the retry, not the truncation it replaced.
    assert {r["difficulty"] for r in records} == {0.0}


def test_best_is_the_shortest_chain_and_all_keeps_every_one(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s, samples_per_question=3)
        for i in range(10):
            q = add_question(s)
            for k, tokens in enumerate((300, 100, 200)):
                add_sample(
                    s,
                    question=q,
                    run=run,
                    sample_index=k,
                    reasoning=f"chain {k} of {i}",
                    completion_tokens=tokens,
                )
    run_export(engine, tmp_path / "best", format="reasoning", to="jsonl")
    best = read_jsonl(tmp_path / "best/train.jsonl") + read_jsonl(
        tmp_path / "best/validation.jsonl"
    )
    assert len(best) == 10 and {r["completion_tokens"] for r in best} == {100}
    manifest = run_export(
        engine, tmp_path / "all", format="reasoning", to="jsonl", per_question="all"
    )
    assert manifest.outputs["reasoning"].records == 30
    assert manifest.outputs["reasoning"].splits["validation"].questions == 1


def test_token_limits_teacher_counts_and_exact_counts(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        run = add_run(s)
        for words in (3, 6, 9):
            q = add_question(s)
            add_sample(
                s,
                question=q,
                run=run,
                reasoning=" ".join(["the"] * words),
                completion_tokens=words * 10,
            )
    teacher = run_export(
        engine, tmp_path / "t", format="reasoning", to="jsonl", max_reasoning_tokens=60, val_size=0
    )
    assert teacher.outputs["reasoning"].records == 2
    tokenizer = Path(__file__).parent / "assets/templates/chatml"
    exact = run_export(
        engine,
        tmp_path / "x",
        format="reasoning",
        to="jsonl",
        max_reasoning_tokens=6,
        tokenizer=tokenizer,
        val_size=0,
    )
    records = read_jsonl(tmp_path / "x/train.jsonl")
    assert sorted(r["reasoning_tokens"] for r in records) == [3, 6]
    for r in records:  # the test tokenizer splits on whitespace: one token per word
        assert r["completion_tokens"] == len(r["messages"][1]["content"].split())
    assert exact.outputs["reasoning"].lengths is not None
    assert exact.outputs["reasoning"].lengths.unit.startswith("tokens of the chain")


def test_custom_markers_and_answer_template(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 12)
    run_export(
        engine,
        tmp_path / "out",
        format="both",
        to="jsonl",
        think_open="<reasoning>",
        think_close="</reasoning>",
        answer_template="Answer: {letter}",
    )
    reasoning = read_jsonl(tmp_path / "out/reasoning/train.jsonl")
    for record in reasoning:
        content = record["messages"][1]["content"]
        assert content.startswith("<reasoning>\n") and content.endswith(
            f"</reasoning>\n\nAnswer: {record['answer']}"
        )
        assert "<think>" not in content
    direct = read_jsonl(tmp_path / "out/direct/train.jsonl")
    assert all(r["messages"][1]["content"] == f"Answer: {r['answer']}" for r in direct)


def test_selection_by_subject_and_teacher(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        mine, theirs = add_run(s, teacher_model="t1"), add_run(s, teacher_model="t2")
        for i in range(6):
            q = add_question(s, subject="math" if i % 2 else "bio")
            add_sample(s, question=q, run=mine if i < 4 else theirs)
    manifest = run_export(
        engine, tmp_path / "a", format="direct", to="jsonl", subjects=["math"], teacher_model="t1"
    )
    assert manifest.outputs["direct"].records == 2 and manifest.teacher_models == ["t1"]
    mixed = run_export(engine, tmp_path / "b", format="direct", to="jsonl")
    assert any("teacher models are mixed" in w for w in mixed.warnings)


def test_nothing_to_export_is_a_user_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no finished generations match"):
        run_export(engine, tmp_path / "out", format="both")
    with session_scope(engine) as s:
        run = add_run(s)
        for _ in range(3):
            add_sample(s, question=add_question(s), run=run, outcome=Outcome.incorrect)
    with pytest.raises(UserError, match="3 teacher answered incorrectly"):
        run_export(engine, tmp_path / "out", format="reasoning")
    with pytest.raises(UserError, match=r"no finished generations match.*subjects chemistry"):
        run_export(engine, tmp_path / "out", format="direct", subjects=["chemistry"])
    assert not (tmp_path / "out").exists()


def test_output_directory_rules(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 10)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        run_export(engine, out, format="direct", to="jsonl")
    with pytest.raises(UserError, match="does not look like a distill export"):
        run_export(engine, out, format="direct", to="jsonl", overwrite=True)
    (out / "notes.txt").unlink()
    run_export(engine, out, format="direct", to="jsonl")
    run_export(engine, out, format="reasoning", to="parquet", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "difficulty.png",
        "lengths.png",
        "letters.png",
        "manifest.json",
        "train.parquet",
        "validation.parquet",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left over


def test_generations_that_are_not_results_or_moved_a_reference_are_left_out(
    engine: Engine, tmp_path: Path
) -> None:
    """Rows written before these rules: a generation the server aborted (graded truncated back
    then), and one asked with "Both A and B" moved off what it names. Neither is exported, and
    neither counts in difficulty."""
    with session_scope(engine) as s:
        run = add_run(s, samples_per_question=3)
        q = add_question(s, choices=["shunt reactor", "series capacitor", "both A and B", "x"])
        assert q.option_order == "fixed"
        add_sample(s, question=q, run=run, sample_index=0, outcome=Outcome.correct)
        add_sample(
            s, question=q, run=run, sample_index=1, outcome=Outcome.truncated, finish_reason="abort"
        )
        add_sample(
            s,
            question=q,
            run=run,
            sample_index=2,
            choice_order=[1, 0, 2, 3],
            outcome=Outcome.correct,
        )
    manifest = run_export(engine, tmp_path / "out", format="both", to="jsonl")
    steps = funnel(manifest, "reasoning")
    assert steps[NOT_A_RESULT] == 1 and steps[MOVED_REFERENCE] == 1
    (record,) = read_jsonl(tmp_path / "out" / "direct" / "train.jsonl")
    assert record["difficulty"] == 0.0  # one sample left, and it is correct
    assert options_of(record["prompt"][0]["content"])["C"] == "both A and B"


@pytest.mark.parametrize("to", ["disk", "jsonl"])
def test_the_cards_loading_snippet_runs_as_written(engine: Engine, tmp_path: Path, to: str) -> None:
    import subprocess
    import sys

    populate(engine, 12, samples=1)
    manifest = run_export(engine, tmp_path / "out", format="both", to=to, val_size=2)
    for name in manifest.outputs:
        directory = tmp_path / "out" / name
        card = (directory / "README.md").read_text(encoding="utf-8")
        snippet = card.split("## Loading", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        assert "THIS_DIR" not in snippet
        check = snippet + "\nprint(ds['train'].num_rows + ds['validation'].num_rows)\n"
        result = subprocess.run(
            [sys.executable, "-c", check],
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) == manifest.outputs[name].records
