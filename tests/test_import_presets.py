"""Column layouts: every preset on rows shaped like the real dataset, auto-detection, and
explicit field options for anything else."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.importers import PRESET_NAMES, PRESETS, FieldMapping, load_mcqs
from distill.importers.layout import detect_preset

DATA = Path(__file__).parent / "data" / "import"


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_preset_names_match_the_cli_choices() -> None:
    assert set(PRESETS) == set(PRESET_NAMES)


def test_mmlu() -> None:
    result = load_mcqs(str(DATA / "mmlu.jsonl"), preset="mmlu")
    first = result.records[0]
    assert first.choices == ["0", "4", "2", "6"]
    assert first.answer_index == 1
    assert first.subject == "abstract_algebra"
    assert first.source == "mmlu.jsonl"
    assert [r.answer_index for r in result.records] == [1, 1, 0]


def test_mmlu_pro_letter_answer_and_category_subject() -> None:
    result = load_mcqs(str(DATA / "mmlu_pro.jsonl"), preset="mmlu-pro")
    assert [len(r.choices) for r in result.records] == [9, 10]
    assert [r.answer_index for r in result.records] == [8, 2]
    assert [r.subject for r in result.records] == ["business", "physics"]
    assert result.records[1].choices[2] == "Coulomb"


def test_arc_letter_digit_and_five_option_keys() -> None:
    result = load_mcqs(str(DATA / "arc.jsonl"), preset="arc")
    # "A"; "1" is the option labelled 1 (the first), not index 1; "B" of five options.
    assert [r.answer_index for r in result.records] == [0, 0, 1]
    assert result.records[1].choices[0] == "cellular telephone"
    assert len(result.records[2].choices) == 5
    assert {r.subject for r in result.records} == {"unknown"}


def test_openbookqa() -> None:
    result = load_mcqs(str(DATA / "openbookqa.jsonl"), preset="openbookqa")
    assert result.records[0].question == "The sun is responsible for"
    assert [r.answer_index for r in result.records] == [3, 3]


def test_commonsenseqa_subject_from_question_concept_or_constant() -> None:
    result = load_mcqs(str(DATA / "commonsenseqa.jsonl"), preset="commonsenseqa")
    assert [r.subject for r in result.records] == ["punishing", "people"]
    assert [r.choices[r.answer_index] for r in result.records] == ["ignore", "populated areas"]
    constant = load_mcqs(str(DATA / "commonsenseqa.jsonl"), subject="commonsense")
    assert {r.subject for r in constant.records} == {"commonsense"}


def test_sciq_shuffles_the_gold_answer_deterministically() -> None:
    result = load_mcqs(str(DATA / "sciq.jsonl"), preset="sciq")
    gold = ["mesophilic organisms", "coriolis effect", "exothermic", "alpha decay"]
    assert [r.choices[r.answer_index] for r in result.records] == gold
    assert {r.subject for r in result.records} == {"science"}
    again = load_mcqs(str(DATA / "sciq.jsonl"), preset="sciq")
    assert [r.choices for r in again.records] == [r.choices for r in result.records]


def test_sciq_gold_positions_are_spread(tmp_path: Path) -> None:
    rows = [
        {
            "question": f"Question number {i}?",
            "correct_answer": f"right {i}",
            "distractor1": f"wrong a{i}",
            "distractor2": f"wrong b{i}",
            "distractor3": f"wrong c{i}",
        }
        for i in range(200)
    ]
    result = load_mcqs(_write_jsonl(tmp_path / "sciq.jsonl", rows), preset="sciq")
    positions = Counter(r.answer_index for r in result.records)
    assert set(positions) == {0, 1, 2, 3}
    assert min(positions.values()) > 25  # ~50 each; far from "always A"


@pytest.mark.parametrize(
    ("fixture", "preset"),
    [
        ("mmlu.jsonl", "mmlu"),
        ("mmlu_pro.jsonl", "mmlu-pro"),
        ("arc.jsonl", "arc"),
        ("openbookqa.jsonl", "openbookqa"),
        ("commonsenseqa.jsonl", "commonsenseqa"),
        ("sciq.jsonl", "sciq"),
    ],
)
def test_auto_detection_picks_the_preset(fixture: str, preset: str) -> None:
    detected = load_mcqs(str(DATA / fixture))
    explicit = load_mcqs(str(DATA / fixture), preset=preset)
    assert detected.preset == preset
    assert detected.records == explicit.records


def test_detection_without_optional_subject_column() -> None:
    assert detect_preset(["question", "choices", "answer"]) == "mmlu"
    assert detect_preset(["question", "choices", "answerKey"]) == "arc"
    assert detect_preset(["id", "text", "label"]) is None


def test_unrecognised_columns_are_listed(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "Q?", "opts": ["a", "b"], "key": 0}])
    with pytest.raises(UserError) as info:
        load_mcqs(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot tell which columns")
    assert "columns: prompt, opts, key" in message


def test_explicit_fields(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Capital of France?", "opts": ["Paris", "Rome"], "key": "Paris", "area": "geo"}
    ]
    path = _write_jsonl(tmp_path / "odd.jsonl", rows)
    mapping = FieldMapping(question="prompt", choices=("opts",), answer="key", subject="area")
    record = load_mcqs(path, mapping=mapping).records[0]
    assert (record.question, record.answer_index, record.subject) == (
        "Capital of France?",
        0,
        "geo",
    )


def test_fields_override_part_of_a_preset(tmp_path: Path) -> None:
    rows = [{"question": "Q?", "choices": ["x", "y", "z"], "gold": "C"}]
    path = _write_jsonl(tmp_path / "q.jsonl", rows)
    result = load_mcqs(path, preset="mmlu", mapping=FieldMapping(answer="gold"))
    assert result.records[0].answer_index == 2


def test_missing_preset_column_names_field_and_columns(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "q.jsonl", [{"question": "Q?", "options": ["x", "y"]}])
    with pytest.raises(
        UserError, match=r"field 'choices' not found \(columns: question, options\)"
    ):
        load_mcqs(path, preset="mmlu")


def test_a_named_subject_column_must_exist(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "q.jsonl", [{"question": "Q?", "choices": ["x", "y"], "answer": 0}]
    )
    assert load_mcqs(path).records[0].subject == "unknown"  # the preset's column is optional
    with pytest.raises(UserError, match="field 'topic' not found"):
        load_mcqs(path, mapping=FieldMapping(subject="topic"))


def test_gold_first_for_correct_plus_distractor_columns(tmp_path: Path) -> None:
    # GPQA's layout: "Correct Answer", "Incorrect Answer 1..3".
    row = {
        "Question": "Which particle mediates the electromagnetic force?",
        "Correct Answer": "photon",
        "Incorrect Answer 1": "gluon",
        "Incorrect Answer 2": "W boson",
        "Incorrect Answer 3": "graviton",
    }
    columns = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    mapping = FieldMapping(question="Question", choices=columns, gold_first=True)
    record = load_mcqs(_write_jsonl(tmp_path / "gpqa.jsonl", [row]), mapping=mapping).records[0]
    assert record.choices[record.answer_index] == "photon"
    assert sorted(record.choices) == sorted(row[c] for c in columns)
