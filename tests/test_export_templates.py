"""Exported records through chat templates (tests/assets/templates): the student must see the
chain and learn to stop after the answer line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from distill.db import session_scope
from distill.errors import UserError
from distill.export.templates import TextRenderer, check_template, load_chat_template
from schemas.export import RecordContext, TemplateMode
from tests.support.factories import add_question, add_run, add_sample
from tests.test_export import read_jsonl, run_export

TEMPLATES = Path(__file__).parent / "assets" / "templates"
CTX = RecordContext(
    think_open="<think>", think_close="</think>", answer_template="The answer is {letter}."
)
CHAIN = "Option A is a trap; B follows from the definition."
USER = "Which one?\n\nA. x\nB. y"


def _populate(engine: Engine, n: int = 12) -> None:
    with session_scope(engine) as s:
        run = add_run(s)
        for i in range(n):
            q = add_question(s, answer_index=i % 4)
            add_sample(
                s, question=q, run=run, choice_order=[0, 1, 2, 3], reasoning=f"{CHAIN} ({i})"
            )


def test_chatml_assistant_turn_ends_with_answer_then_end_of_turn(
    engine: Engine, tmp_path: Path
) -> None:
    _populate(engine)
    run_export(engine, tmp_path / "out", format="reasoning", to="jsonl")
    template = load_chat_template(TEMPLATES / "chatml")
    eos = template.special_tokens["eos_token"]
    for record in read_jsonl(tmp_path / "out/train.jsonl"):
        rendered = template.render(record["messages"], add_generation_prompt=False)
        assistant_turn = rendered.split("<|im_start|>assistant\n", 1)[1]
        answer_line = f"The answer is {record['answer']}."
        # The stop the student must learn: the answer line, then at once the end-of-turn token.
        assert assistant_turn.endswith(answer_line + eos + "\n")
        assert assistant_turn.startswith(
            "<think>\n" + record["reasoning_content"] + "\n</think>\n\n"
        )
        assert assistant_turn.count(eos) == 1


def test_chatml_keeps_the_chain_in_content() -> None:
    report = check_template(
        load_chat_template(TEMPLATES / "chatml"), user=USER, chain=CHAIN, letter="B", ctx=CTX
    )
    assert report.mode is TemplateMode.content and report.keeps_chain_in_content
    assert report.end_of_turn == "<|im_end|>\n"


def test_r1_distill_template_is_detected_as_dropping_the_chain() -> None:
    template = load_chat_template(TEMPLATES / "r1-distill")
    rendered = template.render(
        [
            {"role": "user", "content": USER},
            {"role": "assistant", "content": f"<think>\n{CHAIN}\n</think>\n\nThe answer is B."},
        ],
        add_generation_prompt=False,
    )
    assert CHAIN not in rendered  # the trap itself
    report = check_template(template, user=USER, chain=CHAIN, letter="B", ctx=CTX)
    assert report.mode is TemplateMode.text
    assert not report.keeps_chain_in_content and report.keeps_chain_in_reasoning_content is False


def test_qwen3_style_template_takes_reasoning_content() -> None:
    report = check_template(
        load_chat_template(TEMPLATES / "qwen3-style"), user=USER, chain=CHAIN, letter="B", ctx=CTX
    )
    assert report.mode is TemplateMode.reasoning_content
    assert report.end_of_turn == "<|im_end|>\n"


def test_text_for_r1_uses_its_own_prompt_and_end_of_sentence() -> None:
    template = load_chat_template(TEMPLATES / "r1-distill")
    renderer = TextRenderer(template, ctx=CTX.model_copy(update={"mode": TemplateMode.text}))
    text = renderer.render(user=USER, content=f"<think>\n{CHAIN}\n</think>\n\nThe answer is B.")
    assert text == (
        f"<｜begin▁of▁sentence｜><｜User｜>{USER}<｜Assistant｜><think>\n{CHAIN}\n</think>\n\n"
        "The answer is B.<｜end▁of▁sentence｜>"
    )


def test_export_with_r1_student_adds_a_text_column(engine: Engine, tmp_path: Path) -> None:
    _populate(engine)
    manifest = run_export(
        engine,
        tmp_path / "out",
        format="both",
        to="jsonl",
        student_template=TEMPLATES / "r1-distill",
    )
    reasoning = manifest.outputs["reasoning"]
    assert reasoning.template is not None and reasoning.template.mode is TemplateMode.text
    assert "text" in reasoning.columns and "text" not in manifest.outputs["direct"].columns
    assert any("drops the chain" in w for w in manifest.warnings)
    for record in read_jsonl(tmp_path / "out/reasoning/train.jsonl"):
        assert record["reasoning_content"] in record["text"]
        assert record["text"].endswith(f"The answer is {record['answer']}.<｜end▁of▁sentence｜>")
        assert record["text"].count("<think>") == 1
    card = (tmp_path / "out/reasoning/README.md").read_text(encoding="utf-8")
    assert "Train on the `text` column" in card


def test_export_with_qwen3_student_moves_the_chain_to_reasoning_content(
    engine: Engine, tmp_path: Path
) -> None:
    _populate(engine)
    manifest = run_export(
        engine,
        tmp_path / "out",
        format="reasoning",
        to="parquet",
        student_template=TEMPLATES / "qwen3-style",
    )
    assert manifest.outputs["reasoning"].template is not None
    assert manifest.outputs["reasoning"].template.mode is TemplateMode.reasoning_content
    import datasets

    loaded = datasets.load_dataset(
        "parquet",
        data_files={"train": str(tmp_path / "out/train.parquet")},
        cache_dir=str(tmp_path / "c"),
    )["train"]
    template = load_chat_template(TEMPLATES / "qwen3-style")
    for record in loaded:
        user, assistant = record["messages"]
        assert user["reasoning_content"] is None
        assert assistant["content"] == f"The answer is {record['answer']}."
        rendered = template.render(record["messages"], add_generation_prompt=False)
        assert record["reasoning_content"] in rendered
        assert rendered.endswith(f"</think>\n\nThe answer is {record['answer']}.<|im_end|>\n")


def test_export_with_chatml_student_keeps_plain_messages(engine: Engine, tmp_path: Path) -> None:
    _populate(engine)
    manifest = run_export(
        engine,
        tmp_path / "out",
        format="reasoning",
        to="jsonl",
        student_template=TEMPLATES / "chatml",
    )
    assert manifest.outputs["reasoning"].template is not None
    assert manifest.outputs["reasoning"].template.mode is TemplateMode.content
    assert "text" not in manifest.outputs["reasoning"].columns and not manifest.warnings


def test_missing_or_empty_template_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no tokenizer_config\.json"):
        load_chat_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "x"}')
    with pytest.raises(UserError, match="holds no chat template"):
        load_chat_template(tmp_path)


# --- BOS: one, however the trainer tokenizes `text` ---------------------------------------------

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def _r1_tokenizer_dir(tmp_path: Path, *, adds_bos: bool) -> Path:
    """A real tokenizer (the `tokenizers` library) with DeepSeek-R1-Distill's special tokens and
    chat template; its post-processor prepends BOS, as DeepSeek-R1-Distill's and Llama's do, or
    not, as Qwen's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = [BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
    words = sorted(set(f"{USER} {CHAIN} The answer is B. x".split()))
    vocab = {tok: i for i, tok in enumerate(["[UNK]", *specials, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
        )
    directory = tmp_path / ("bos" if adds_bos else "nobos")
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = json.loads((TEMPLATES / "r1-distill" / "tokenizer_config.json").read_text("utf-8"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.mark.parametrize("adds_bos", [True, False])
def test_text_tokenizes_to_one_bos_as_trainers_tokenize_it(tmp_path: Path, adds_bos: bool) -> None:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    directory = _r1_tokenizer_dir(tmp_path, adds_bos=adds_bos)
    template = load_chat_template(directory)
    assert template.adds_bos is adds_bos
    renderer = TextRenderer(template, ctx=CTX.model_copy(update={"mode": TemplateMode.text}))
    text = renderer.render(user=USER, content=f"<think>\n{CHAIN}\n</think>\n\nThe answer is B.")
    assert text.startswith(BOS) is not adds_bos
    # As TRL's SFTTrainer tokenizes a `text` column: with the tokenizer's special tokens.
    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text).tokens
    assert ids[0] == BOS and ids.count(BOS) == 1
    hf = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), bos_token=BOS)
    tokens = hf.convert_ids_to_tokens(hf(text)["input_ids"])
    assert tokens[0] == BOS and tokens.count(BOS) == 1


def test_the_card_says_which_bos_rule_applies(engine: Engine, tmp_path: Path) -> None:
    _populate(engine)
    student = _r1_tokenizer_dir(tmp_path, adds_bos=True)
    manifest = run_export(
        engine, tmp_path / "out", format="reasoning", to="jsonl", student_template=student
    )
    report = manifest.outputs["reasoning"].template
    assert report is not None and report.text_without_bos is True
    for record in read_jsonl(tmp_path / "out" / "train.jsonl"):
        assert not record["text"].startswith(BOS)
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "starts without the template's BOS token" in card
