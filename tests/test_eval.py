"""`distill eval`: the statistics against known values, the reading rules, budget accounting,
the reports, loading exported splits, and the command end to end against the fake teacher
(resumed after an interruption, compared with a paired test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings
from distill.db import session_scope
from distill.errors import UserError
from distill.evaluation import report as report_mod
from distill.evaluation.data import EvalQuestion, load_split
from distill.evaluation.run import read_reply
from distill.evaluation.stats import half_width, mcnemar_exact, questions_for, wilson
from distill.models import EvalItem, EvalRun
from distill.prompts import render_student_prompt
from schemas.teacher import TeacherResult
from tests.support.fake_openai import Error, FakeOpenAIServer, Reply

# --- statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Wilson's closed form, z = 1.959964, worked out by hand: the interval is scipy's, the
        # values are not (0/10 -> [0, z²/(n+z²)] = [0, 0.27753]).
        (46, 50, 0.81162, 0.96845),
        (0, 10, 0.0, 0.27753),
        (10, 10, 0.72247, 1.0),
        (5, 10, 0.23659, 0.76341),
        (81, 263, 0.25529, 0.36621),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    interval = wilson(k, n)
    assert interval.low == pytest.approx(low, abs=1e-5)
    assert interval.high == pytest.approx(high, abs=1e-5)
    assert interval.value == k / n


def test_wilson_of_nothing_is_everything_and_bad_counts_are_refused() -> None:
    empty = wilson(0, 0)
    assert (empty.value, empty.low, empty.high) == (None, 0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(3, 2)


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [
        (10, 2, 0.0385742),  # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * 79 / 4096
        (0, 6, 0.03125),  # 2 / 2**6
        (5, 5, 1.0),
        (0, 0, 1.0),  # no disagreement: no evidence of a difference
        (1, 0, 1.0),
        (30, 14, 0.0226),
    ],
)
def test_exact_mcnemar_known_values(only_a: int, only_b: int, p: float) -> None:
    assert mcnemar_exact(only_a, only_b) == pytest.approx(p, abs=1e-4)
    assert mcnemar_exact(only_b, only_a) == pytest.approx(p, abs=1e-4)  # symmetric


@pytest.mark.parametrize("p", [0.5, 0.9, 0.2, 0.02])
def test_questions_for_a_width_is_the_smallest_that_reaches_it(p: float) -> None:
    n = questions_for(0.03, p)
    assert half_width(p, n) <= 0.03 < half_width(p, n - 1)
    # The closed form is scipy's interval.
    k = round(p * 1000)
    assert half_width(k / 1000, 1000) == pytest.approx(wilson(k, 1000).half_width, abs=1e-9)


def test_ninety_two_percent_of_fifty_is_not_a_result() -> None:
    """The claim the issue names: 92 % from 50 questions is ± 7.9 points at 95 %."""
    interval = wilson(46, 50)
    assert interval.half_width == pytest.approx(0.0784, abs=1e-3)
    assert questions_for(0.03, 0.92) > 250


# --- reading the reply ---------------------------------------------------------------------------


def _question(n: int = 4, gold: str = "B") -> EvalQuestion:
    choices = [f"choice {i}" for i in range(n)]
    prompt = render_student_prompt("Which?", choices, answer_example="The answer is X.")
    return EvalQuestion(
        record_id="r1",
        question_id="q1",
        subject="s",
        prompt=[{"role": "user", "content": prompt}],
        gold=gold,
        n_options=n,
    )


def _result(text: str, finish: str = "stop", **extra: Any) -> TeacherResult:
    return TeacherResult(text=text, finish_reason=finish, latency_s=0.1, model="m", **extra)


def test_an_unclosed_think_block_is_no_answer_whatever_it_says() -> None:
    reply = _result("Let me think. The answer is B. Hmm, the answer is B.", finish="length")
    assert read_reply(reply, _question(), mode="reasoning") == (None, False)
    stopped_unclosed = _result("<think>The answer is B.")
    assert read_reply(stopped_unclosed, _question(), mode="reasoning") == (None, False)


def test_the_letter_after_the_close_marker_is_the_answer() -> None:
    reply = _result("A looks right. The answer is A.\n</think>\n\nThe answer is B.")
    assert read_reply(reply, _question(), mode="reasoning") == ("B", True)
    beyond = _result("x</think>The answer is F.")  # not an option of a 4-option question
    assert read_reply(beyond, _question(), mode="reasoning") == (None, True)


def test_a_separate_reasoning_field_is_read_like_the_teacher_s() -> None:
    reply = _result("The answer is C.", reasoning_content="thinking")
    assert read_reply(reply, _question(), mode="reasoning") == ("C", True)


def test_direct_mode_reads_the_whole_reply() -> None:
    assert read_reply(_result("The answer is D."), _question(), mode="direct") == ("D", False)
    assert read_reply(_result("I am not sure."), _question(), mode="direct") == (None, False)


# --- reports -------------------------------------------------------------------------------------


def _item(**fields: Any) -> EvalItem:
    base: dict[str, Any] = {
        "record_id": "r",
        "question_id": "q",
        "subject": "s",
        "gold": "A",
        "letter": "A",
        "closed": True,
        "finish_reason": "stop",
        "completion_tokens": 10,
        "latency_s": 1.0,
        "text": "",
        "error": None,
    }
    base.update(fields)
    return EvalItem(**base)


def _run(**fields: Any) -> EvalRun:
    base: dict[str, Any] = {
        "id": 1,
        "name": None,
        "url": "u",
        "model": "m",
        "data": "d",
        "split": "validation",
        "mode": "reasoning",
        "fingerprint": "f",
        "params": {},
        "budget_seconds": None,
        "questions": 4,
        "finished_at": None,
    }
    base.update(fields)
    return EvalRun(**base)


def test_termination_is_reported_apart_from_accuracy() -> None:
    items = [
        _item(question_id="1"),  # right, closed, stopped
        _item(question_id="2", letter="B"),  # wrong, but it ended itself
        _item(question_id="3", letter=None, closed=False, finish_reason="length"),  # cut
        _item(question_id="4", letter=None, closed=False, finish_reason="stop"),  # stopped open
    ]
    r = report_mod.report(_run(), items)
    assert (r.accuracy.k, r.closed and r.closed.k, r.stopped.k, r.cut.k) == (1, 2, 3, 1)
    assert r.terminated.k == 2 and r.no_answer.k == 2 and r.answered == 4


def test_a_reply_over_the_budget_counts_wrong_and_is_reported() -> None:
    items = [
        _item(question_id="1", latency_s=2.0),
        _item(question_id="2", latency_s=9.0),  # right, too slow
        _item(question_id="3", latency_s=None, letter=None, error="400"),  # refused
    ]
    r = report_mod.report(_run(budget_seconds=5.0, questions=3), items)
    assert r.accuracy.k == 1
    assert r.over_budget is not None and r.over_budget.k == 1 and r.over_budget.n == 3
    assert r.refused == 1
    assert report_mod.report(_run(questions=3), items).accuracy.k == 2  # no budget: both right


def test_warnings_say_what_is_unfinished_and_how_many_questions_a_3_point_interval_needs() -> None:
    r = report_mod.report(_run(questions=10), [_item(question_id=str(i)) for i in range(4)])
    assert any("unfinished: 4 of 10" in w for w in r.warnings)
    assert any("± 3% takes about" in w for w in r.warnings)


def test_per_subject_accuracy_and_percentiles() -> None:
    items = [
        _item(question_id="1", subject="law", completion_tokens=10, latency_s=1.0),
        _item(question_id="2", subject="law", letter="C", completion_tokens=30, latency_s=3.0),
        _item(question_id="3", subject="math", completion_tokens=20, latency_s=2.0),
    ]
    r = report_mod.report(_run(questions=3), items)
    assert {s: i.k for s, i in r.per_subject.items()} == {"law": 1, "math": 1}
    assert (r.completion_tokens.p50, r.completion_tokens.max) == (20.0, 30.0)
    assert r.latency_s.p95 == pytest.approx(2.9)


def test_compare_pairs_questions_and_tests_the_discordant_ones() -> None:
    a_items = [_item(question_id=str(i), letter="A" if i < 12 else "B") for i in range(20)]
    # B: right where A was right on 2 of A's 12 (10 only A), right on 0 of A's wrong 8 …
    b_items = [_item(question_id=str(i), letter="A" if i in (0, 1) else "B") for i in range(20)]
    b_items.append(_item(question_id="only-in-b"))
    result = report_mod.compare((_run(id=1), a_items), (_run(id=2), b_items))
    assert result.common == 20
    assert (result.accuracy.only_a, result.accuracy.only_b) == (10, 0)
    assert result.accuracy.p_value == pytest.approx(2 / 2**10)
    assert result.accuracy.delta == pytest.approx(2 / 20 - 12 / 20)
    assert result.terminated.p_value == 1.0  # both always ended themselves


def test_compare_warns_when_the_question_sets_differ() -> None:
    a = (_run(id=1, fingerprint="x"), [_item(question_id="1")])
    b = (_run(id=2, fingerprint="y"), [_item(question_id="1")])
    assert report_mod.compare(a, b).warnings
    with pytest.raises(UserError, match="share no question"):
        report_mod.compare(a, (_run(id=3), [_item(question_id="9")]))


# --- loading exported splits ---------------------------------------------------------------------


def _records(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        choices = [f"{i}-{j}" for j in range(3)]
        content = render_student_prompt(f"Q{i}?", choices, answer_example="The answer is X.")
        out.append(
            {
                "id": f"r{i}",
                "question_id": f"q{i}",
                "subject": "math" if i % 2 else "law",
                "prompt": [{"role": "user", "content": content}],
                "answer": "ABC"[i % 3],
            }
        )
    return out


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "disk"])
def test_every_export_kind_loads(tmp_path: Path, kind: str) -> None:
    rows = _records(5)
    if kind == "jsonl":
        (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "validation.parquet")
    else:
        import datasets

        datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(
            str(tmp_path)
        )
    questions = load_split(tmp_path, "validation", mode="reasoning")
    assert [q.record_id for q in questions] == [f"r{i}" for i in range(5)]
    assert {q.n_options for q in questions} == {3}
    assert load_split(tmp_path, "validation", mode="reasoning", limit=2)[-1].record_id == "r1"


def test_bad_data_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        load_split(tmp_path / "missing", "validation", mode="reasoning")
    with pytest.raises(UserError, match=r"no validation\.jsonl"):
        load_split(tmp_path, "validation", mode="reasoning")
    (tmp_path / "validation.jsonl").write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(UserError, match="not a distill export record"):
        load_split(tmp_path, "validation", mode="reasoning")
    bad = _records(1)[0] | {"answer": "E"}
    (tmp_path / "validation.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(UserError, match="not among the prompt's options"):
        load_split(tmp_path, "validation", mode="reasoning")


# --- the command, end to end ---------------------------------------------------------------------


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "export" / "reasoning"
    directory.mkdir(parents=True)
    (directory / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(30)))
    return directory


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer("student", latency=0.01) as server:
        yield server


def _eval(*args: str) -> Any:
    return CliRunner().invoke(app, ["eval", *args])


def test_eval_end_to_end_resumes_after_an_interruption(
    settings: Settings, engine: Engine, split_dir: Path, fake: FakeOpenAIServer
) -> None:
    # Every request after the 12th fails for the whole eval (the server went away mid-run).
    calls = {"n": 0}

    def answer(prompt: str) -> Reply | Error:
        calls["n"] += 1
        if calls["n"] > 12:
            return Error(503, "gone")
        return Reply("thinking\n</think>\n\nThe answer is A.")

    fake.on_request = answer
    args = ["--data", str(split_dir), "--url", fake.url, "--model", "student", "-c", "4"]
    first = _eval(*args, "--max-tokens", "64", "--json")
    assert first.exit_code == 1, first.output  # unfinished
    partial = json.loads(first.output.strip().splitlines()[-1])
    assert partial["answered"] == 12 and not partial["finished"]
    fake.on_request = lambda prompt: Reply("x</think>The answer is A.")
    second = _eval(*args, "--max-tokens", "64", "--json")
    assert second.exit_code == 0, second.output
    assert "continuing, 12 of 30 already answered" in second.output
    done = json.loads(second.output.strip().splitlines()[-1])
    assert done["eval_id"] == partial["eval_id"] and done["answered"] == 30 and done["finished"]
    assert done["accuracy"]["k"] == 10  # gold A for every third record
    with session_scope(engine) as session:
        assert session.scalar(select(func.count(EvalItem.id))) == 30  # nobody asked twice
        run = session.scalars(select(EvalRun)).one()
        assert run.params["max_tokens"] == 64 and run.url == fake.url.rstrip("/")
    sent = fake.requests[-1]
    assert sent["max_tokens"] == 64 and sent["model"] == "student"


def test_compare_two_evals_from_the_command_line(
    settings: Settings, split_dir: Path, fake: FakeOpenAIServer
) -> None:
    base = ["--data", str(split_dir), "--url", fake.url, "--model", "student", "--json"]
    fake.on_request = lambda prompt: Reply("x</think>The answer is A.")
    a = json.loads(_eval(*base, "--name", "always-A").output.strip().splitlines()[-1])
    fake.on_request = lambda prompt: Reply("still thinking about it", finish_reason="length")
    b = json.loads(_eval(*base, "--name", "never-stops").output.strip().splitlines()[-1])
    assert b["terminated"]["k"] == 0 and b["cut"]["k"] == 30 and b["accuracy"]["k"] == 0
    result = _eval("--compare", str(a["eval_id"]), str(b["eval_id"]), "--json")
    assert result.exit_code == 0, result.output
    paired = json.loads(result.output)
    assert paired["common"] == 30
    assert paired["accuracy"]["only_a"] == 10 and paired["accuracy"]["only_b"] == 0
    assert paired["terminated"]["only_a"] == 30
    assert paired["terminated"]["p_value"] == pytest.approx(2 / 2**30)
    table = _eval("--compare", str(a["eval_id"]), str(b["eval_id"]))
    assert "McNemar p" in table.output and "always-A" in table.output
    listed = _eval("--list")
    assert "never-stops" in listed.output and "30/30" in listed.output
    shown = _eval("--show", str(a["eval_id"]))
    assert "closed the think block" in shown.output


def test_eval_needs_data_and_a_known_mode(settings: Settings) -> None:
    missing = _eval()
    assert missing.exit_code == 1 and "--data DIR" in missing.output
    wrong = _eval("--data", ".", "--mode", "fancy")
    assert wrong.exit_code == 1 and "reasoning or direct" in wrong.output
    unknown = _eval("--show", "99")
    assert unknown.exit_code == 1 and "no eval run 99" in unknown.output
