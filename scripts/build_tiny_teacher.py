"""Build a tiny DeepSeek-R1-style teacher model from scratch (no downloads), for integration tests.

What it does, deterministically (fixed seeds, fixed step count, 2 torch threads):

1. generates synthetic multiple-choice questions from four families (arithmetic, comparison,
   alphabet, parity), each rendered with the project's own prompt builder
   (`distill.prompts.render_user_prompt`), so the training prompts match what the queue sends;
2. trains a small byte-level BPE tokenizer (`tokenizers`) with ChatML special tokens and a
   DeepSeek-R1-Distill-like chat template whose generation prompt ends with
   ``<|im_start|>assistant\\n<think>\\n`` (the template opens the think block, so the model's text
   starts with the reasoning and has no opening ``<think>`` tag);
3. trains a randomly initialised Qwen2ForCausalLM (head_dim 64, as CPU vLLM on AVX2 rejects tiny
   heads) on ``{reasoning}\\n</think>\\n\\nThe answer is \\boxed{X}.`` completions, loss on assistant
   tokens only; about a quarter of the chains are long ("Let me check again. ..." repeated), so a
   small ``max_tokens`` truncates some generations;
4. saves model + tokenizer with ``save_pretrained`` (default ``distill/assets/tiny_teacher/``) and writes
   40 held-out questions in MMLU layout to ``distill/assets/tiny_mcq.jsonl``.

Usage::

    .venv/bin/python scripts/build_tiny_teacher.py                # full build (~5 min on 2 idle cores)
    .venv/bin/python scripts/build_tiny_teacher.py --steps 50 --out /tmp/tt   # quick smoke build
    .venv/bin/python scripts/build_tiny_teacher.py --mcq-only      # only rewrite tiny_mcq.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from distill.choices import LETTERS  # noqa: E402
from distill.prompts import render_user_prompt  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "distill" / "assets" / "tiny_teacher"
DEFAULT_MCQ = REPO_ROOT / "distill" / "assets" / "tiny_mcq.jsonl"

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# ChatML, DeepSeek-R1-Distill style: the generation prompt opens the think block itself.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' -}}"
    "{%- endif -%}"
)

SEED = 1234
EVAL_SEED = 20261125
N_EVAL = 40
FAMILIES = ("arithmetic", "comparison", "alphabet", "parity")
N_OPTIONS_WEIGHTS = {2: 0.1, 3: 0.15, 4: 0.6, 5: 0.15}
LONG_FRACTION = 0.25
BOXED_FRACTION = 0.75
LOSS_TOKENS_PER_EXAMPLE = 64


@dataclass(frozen=True)
class MCQ:
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str
    # short restatement of the solution, used in the reasoning
    fact: str
    # how the reasoning names the option after the fact; None: a generic "<text> is option <X>."
    link: str | None = None

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.answer]

    @property
    def gold_text(self) -> str:
        return self.choices[self.answer]

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "subject": self.subject,
        }


# --------------------------------------------------------------------------------------------
# Synthetic question families


def _place(
    rng: random.Random, correct: str, distractors: list[str], n: int
) -> tuple[tuple[str, ...], int]:
    options = [correct, *distractors[: n - 1]]
    assert len(set(options)) == n, options
    rng.shuffle(options)
    return tuple(options), options.index(correct)


def _num_distractors(rng: random.Random, ans: int, n: int, lo: int = 0) -> list[str]:
    pool = [v for v in range(ans - 4, ans + 5) if v != ans and v >= lo]
    rng.shuffle(pool)
    return [str(v) for v in pool[: n - 1]]


def gen_arithmetic(rng: random.Random, n: int) -> MCQ:
    if rng.random() < 0.6:
        a, b = rng.randint(1, 7), rng.randint(1, 7)
        ans, op = a + b, "+"
    else:
        a = rng.randint(2, 9)
        b = rng.randint(1, a - 1)
        ans, op = a - b, "-"
    question = rng.choice(
        ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "What is the value of {a} {op} {b}?"]
    )
    choices, gold = _place(rng, str(ans), _num_distractors(rng, ans, n), n)
    return MCQ(
        question.format(a=a, op=op, b=b), choices, gold, "arithmetic", f"{a} {op} {b} = {ans}."
    )


def gen_comparison(rng: random.Random, n: int) -> MCQ:
    # Options listed in increasing order (as numeric options usually are), so the smallest is always
    # the first option and the largest the last: a positional rule the tiny model can pick up in a
    # few minutes, unlike finding an arbitrary value among the options. This family is the one the
    # model mostly gets right; the other families stay near chance.
    values = sorted(rng.sample(range(1, 100), n))
    largest = rng.random() < 0.5
    word = "largest" if largest else "smallest"
    gold = n - 1 if largest else 0
    question = rng.choice(
        [f"Which of these numbers is the {word}?", f"Which number is the {word}?"]
    )
    choices = tuple(str(v) for v in values)
    where = "last" if largest else "first"
    fact = f"The options are in increasing order, so the {word} is the {where} one, option {LETTERS[gold]}."
    return MCQ(question, choices, gold, "comparison", fact, link="")


def gen_alphabet(rng: random.Random, n: int) -> MCQ:
    upper = string.ascii_uppercase
    after = rng.random() < 0.6
    idx = rng.randint(0, 24) if after else rng.randint(1, 25)
    letter = upper[idx]
    target = upper[idx + 1] if after else upper[idx - 1]
    rel = "after" if after else "before"
    question = rng.choice(
        [
            f"Which letter comes right {rel} {letter}?",
            f"In the alphabet, which letter is just {rel} {letter}?",
        ]
    )
    pool = [c for c in upper if c not in (target, letter)]
    # near letters are the natural distractors
    pool.sort(key=lambda c: (abs(upper.index(c) - upper.index(target)), rng.random()))
    distractors = pool[: n + 1]
    rng.shuffle(distractors)
    choices, gold = _place(rng, target, distractors, n)
    return MCQ(question, choices, gold, "alphabet", f"The letter {rel} {letter} is {target}.")


def gen_parity(rng: random.Random, n: int) -> MCQ:
    even = rng.random() < 0.5
    word = "even" if even else "odd"
    nums = list(range(2, 60))
    matching = [v for v in nums if (v % 2 == 0) == even]
    other = [v for v in nums if (v % 2 == 0) != even]
    target = rng.choice(matching)
    distractors = [str(v) for v in rng.sample(other, n - 1)]
    question = rng.choice([f"Which of these numbers is {word}?", f"Which number is {word}?"])
    choices, gold = _place(rng, str(target), distractors, n)
    return MCQ(
        question,
        choices,
        gold,
        "parity",
        f"{target} ends in {str(target)[-1]}, so {target} is {word}.",
    )


GENERATORS = {
    "arithmetic": gen_arithmetic,
    "comparison": gen_comparison,
    "alphabet": gen_alphabet,
    "parity": gen_parity,
}


def gen_question(rng: random.Random, family: str | None = None, n: int | None = None) -> MCQ:
    family = family or rng.choice(FAMILIES)
    if n is None:
        n = rng.choices(list(N_OPTIONS_WEIGHTS), weights=list(N_OPTIONS_WEIGHTS.values()))[0]
    return GENERATORS[family](rng, n)


def eval_questions() -> list[MCQ]:
    """The 40 held-out questions: 10 per family (6 with 4 options, 2 with 3, 1 with 2, 1 with 5)."""
    rng = random.Random(EVAL_SEED)
    counts = [4, 4, 2, 4, 3, 4, 5, 4, 4, 3]
    out: list[MCQ] = []
    seen: set[str] = set()
    k = 0
    for family in FAMILIES:
        for n in counts:
            # spread the gold letter over the positions (comparison fixes it: first or last)
            want = None if family == "comparison" else (k + k // 10) % n
            k += 1
            while True:
                q = gen_question(rng, family, n)
                key = render_user_prompt(q.question, q.choices)
                if want in (None, q.answer) and key not in seen:
                    seen.add(key)
                    out.append(q)
                    break
    return out


def completion_for(rng: random.Random, q: MCQ) -> str:
    letter = q.gold_letter
    # (mid-sentence words stay lower-case: the tokenizer has no " X" tokens for capitals, see
    # build_tokenizer, so a capitalised word after a space would be spelt with letter tokens)
    link = (
        q.link
        if q.link is not None
        else rng.choice(
            [
                f"{q.gold_text} is option {letter}.",
                f"{q.gold_text} matches option {letter}.",
                f"{q.gold_text} is listed as option {letter}.",
            ]
        )
    )
    lead = rng.choice(["", "", "Let me think. ", "We need to find the right option. "])
    reasoning = f"{lead}{q.fact} {link}".rstrip()
    if rng.random() < LONG_FRACTION:
        checks = [
            f"Let me check again. {q.gold_text} is option {letter}."
            for _ in range(rng.randint(9, 15))
        ]
        reasoning = reasoning + "\n" + "\n".join(checks)
    final = (
        f"The answer is \\boxed{{{letter}}}."
        if rng.random() < BOXED_FRACTION
        else f"The answer is {letter}."
    )
    return f"{reasoning}\n{THINK_CLOSE}\n\n{final}"


# --------------------------------------------------------------------------------------------
# Tokenizer


# Qwen2's pre-tokenizer regex (digits are split one by one). transformers' AutoTokenizer loads a
# directory whose config.json says model_type "qwen2" as Qwen2Tokenizer, which rebuilds the
# pre-tokenizer with this regex whatever tokenizer.json says; the trained tokenizer must use the same
# pipeline, or training and serving tokenise numbers differently.
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def build_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    # Drop the merges that glue a single capital letter to a space or bracket (" A", "{A"): the option
    # label in the prompt ("A. 12") is the bare token "A"; without those merges "option A" in the
    # reasoning and "\\boxed{A}" use that same token, so naming an option's letter is a plain copy.
    spec = json.loads(tok.to_str())

    def glues_capital(merge: list[str] | str) -> bool:  # "Ġ"+"A" (space), "{"+"A", ...
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        glue = left == "\u0120" or (
            len(left) == 1 and not left.isalnum()
        )  # "\u0120" is the byte-level space
        return glue and len(right) == 1 and right in string.ascii_uppercase

    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if not glues_capital(m)]
    tok = Tokenizer.from_str(json.dumps(spec))
    # like R1-Distill: the think tags are single added (non-special) tokens, kept when decoding
    tok.add_tokens(
        [
            AddedToken(THINK_OPEN, normalized=False, special=False),
            AddedToken(THINK_CLOSE, normalized=False, special=False),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(tokenizer, out: Path) -> None:
    """save_pretrained, then name the class Qwen2Tokenizer and also keep the chat template inside
    tokenizer_config.json (transformers 5 writes it to chat_template.jinja; older loaders read the
    config key)."""
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg["add_bos_token"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# Training


def encode_example(tokenizer, q: MCQ, completion: str) -> tuple[list[int], int]:
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": render_user_prompt(q.question, q.choices)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    p_ids = tokenizer.encode(prompt, add_special_tokens=False)
    c_ids = tokenizer.encode(completion + IM_END, add_special_tokens=False)
    return p_ids + c_ids, len(p_ids)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="model directory (save_pretrained)"
    )
    ap.add_argument("--mcq-out", type=Path, default=DEFAULT_MCQ, help="held-out MCQ jsonl path")
    ap.add_argument("--mcq-only", action="store_true", help="only write the held-out MCQ file")
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps (deterministic)")
    ap.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="optional wall-clock cap (stops early; not deterministic)",
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--vocab-size", type=int, default=800)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    evals = eval_questions()
    args.mcq_out.parent.mkdir(parents=True, exist_ok=True)
    with args.mcq_out.open("w") as fh:
        for q in evals:
            fh.write(json.dumps(q.to_json()) + "\n")
    print(f"wrote {len(evals)} held-out questions to {args.mcq_out}")
    if args.mcq_only:
        return

    import numpy as np
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    held_out = {render_user_prompt(q.question, q.choices) for q in evals}
    data_rng = random.Random(SEED)

    def sample_train() -> tuple[MCQ, str]:
        while True:
            q = gen_question(data_rng)
            if render_user_prompt(q.question, q.choices) not in held_out:
                return q, completion_for(data_rng, q)

    # tokenizer corpus: rendered training conversations (its own RNG, so the corpus is fixed)
    corpus_rng = random.Random(SEED + 1)
    corpus = []
    for _ in range(3000):
        q = gen_question(corpus_rng)
        corpus.append(
            f"{IM_START}user\n{render_user_prompt(q.question, q.choices)}{IM_END}\n"
            f"{IM_START}assistant\n{THINK_OPEN}\n{completion_for(corpus_rng, q)}{IM_END}\n"
        )
    built = build_tokenizer(corpus, args.vocab_size)
    args.out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(built, args.out)
    vocab = len(built)
    pad_id = built.convert_tokens_to_ids(PAD)
    eos_id = built.convert_tokens_to_ids(IM_END)
    print(f"tokenizer: {vocab} tokens (pad={pad_id}, eos={eos_id})")

    head_dim = 64
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=head_dim,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    assert args.hidden == args.heads * head_dim, "hidden must equal heads * 64 (head_dim 64)"
    config.save_pretrained(args.out)

    # train with the tokenizer exactly as a loader (transformers, vLLM) reads it back from disk
    tokenizer = AutoTokenizer.from_pretrained(args.out)
    mismatched = sum(
        tokenizer.encode(text, add_special_tokens=False)
        != built.encode(text, add_special_tokens=False)
        for text in corpus[:300]
    )
    print(
        f"tokenizer reloaded as {type(tokenizer).__name__}; {mismatched}/300 corpus texts tokenised differently"
    )
    assert mismatched == 0, "the saved tokenizer does not reproduce the trained one"
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    ).endswith("<|im_start|>assistant\n<think>\n")
    model = Qwen2ForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    # length bucketing: draw BUCKET batches at once, sort by length, shuffle the batches (less padding)
    bucket = 8
    pending: list[list[tuple[list[int], int]]] = []

    def next_batch() -> list[tuple[list[int], int]]:
        if not pending:
            pool = [
                encode_example(tokenizer, *sample_train()) for _ in range(bucket * args.batch_size)
            ]
            pool.sort(key=lambda ex: len(ex[0]))
            pending.extend(
                pool[i : i + args.batch_size] for i in range(0, len(pool), args.batch_size)
            )
            data_rng.shuffle(pending)
        return pending.pop()

    model.train()
    t0 = time.time()
    ema = None
    step = 0
    for step in range(args.steps):
        batch = next_batch()
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, n_prompt) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
            attn[i, : len(ids)] = 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(input_ids=input_ids, attention_mask=attn).logits
        # summed token loss over a FIXED normaliser (not the batch's token count): with length
        # bucketing a per-batch mean would under-weight every token of long-chain batches, and the
        # model would learn to start long chains far less often than the data does
        token_loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        n_tokens = int((labels[:, 1:] != -100).sum())
        loss = token_loss / (len(batch) * LOSS_TOKENS_PER_EXAMPLE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mean_loss = token_loss.item() / n_tokens
        ema = mean_loss if ema is None else 0.95 * ema + 0.05 * mean_loss
        elapsed = time.time() - t0
        if step % 50 == 0 or step == args.steps - 1:
            print(
                f"step {step:5d}  loss/token {mean_loss:.3f}  ema {ema:.3f}  lr {lr_at(step):.2e}  {elapsed:6.0f}s",
                flush=True,
            )
        if args.minutes is not None and elapsed > args.minutes * 60:
            print(f"stopping at step {step}: --minutes {args.minutes} reached")
            break
    train_seconds = time.time() - t0
    print(f"trained {step + 1} steps in {train_seconds:.0f}s")

    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id
    )
    model.save_pretrained(args.out, safe_serialization=True)
    # quick greedy sanity sample with transformers
    q = evals[0]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": render_user_prompt(q.question, q.choices)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=80,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    print("sample (greedy):", repr(tokenizer.decode(out[0, ids.shape[1] :])))
    print(f"gold: {q.gold_letter}")
    size = (args.out / "model.safetensors").stat().st_size
    print(f"saved to {args.out} (model.safetensors {size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
