"""The questions of an eval: one split of a `distill export`, in either format and any of its
output kinds (a `save_to_disk` directory, `{split}.jsonl`, `{split}.parquet`). Only the prompt
(the user turn), the gold letter, the subject and the ids are used, so a reasoning export and a
direct export of the same questions evaluate alike."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.choices.letters import LETTERS
from distill.errors import UserError


@dataclass(frozen=True)
class EvalQuestion:
    record_id: str
    question_id: str
    subject: str
    prompt: list[dict[str, str]]  # the user turn, as exported
    gold: str
    n_options: int


def load_split(
    data: Path, split: str, *, mode: str, limit: int | None = None
) -> list[EvalQuestion]:
    """The split's questions, in the export's order. `data` is a format's directory, or an export
    of both formats, whose `mode` directory is then used."""
    directory = _format_dir(data, mode)
    rows = list(_rows(directory, split))
    if limit is not None:
        rows = rows[:limit]
    questions = [_question(row, where=f"{directory} {split} row {i}") for i, row in enumerate(rows)]
    if not questions:
        raise UserError(f"{directory}: split {split!r} has no records")
    return questions


def fingerprint(questions: Iterable[EvalQuestion]) -> str:
    digest = hashlib.sha256()
    for q in questions:
        digest.update(json.dumps([q.record_id, q.prompt, q.gold]).encode())
    return digest.hexdigest()


def _format_dir(data: Path, mode: str) -> Path:
    if not data.is_dir():
        raise UserError(f"--data {data}: not a directory (give a `distill export --out` directory)")
    if (data / "manifest.json").is_file() and not _has_splits(data) and (data / mode).is_dir():
        return data / mode
    return data


def _has_splits(directory: Path) -> bool:
    return (
        (directory / "dataset_dict.json").is_file()
        or any(directory.glob("*.jsonl"))
        or any(directory.glob("*.parquet"))
    )


def _rows(directory: Path, split: str) -> Iterator[dict[str, Any]]:
    if (directory / f"{split}.jsonl").is_file():
        with (directory / f"{split}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
        return
    if (directory / f"{split}.parquet").is_file():
        import pyarrow.parquet as pq

        yield from pq.read_table(directory / f"{split}.parquet").to_pylist()
        return
    if (directory / "dataset_dict.json").is_file():
        import datasets

        loaded = datasets.load_from_disk(str(directory))
        if split not in loaded:
            raise UserError(f"{directory}: no split {split!r} (it has {', '.join(loaded)})")
        yield from loaded[split]
        return
    raise UserError(
        f"{directory}: no {split}.jsonl, {split}.parquet or saved dataset; "
        "give a directory written by `distill export`"
    )


def _question(row: dict[str, Any], *, where: str) -> EvalQuestion:
    try:
        prompt = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        gold = str(row["answer"])
        record = EvalQuestion(
            record_id=str(row["id"]),
            question_id=str(row["question_id"]),
            subject=str(row["subject"]),
            prompt=prompt,
            gold=gold,
            n_options=_options_in(prompt[-1]["content"]),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise UserError(f"{where}: not a distill export record (missing {exc})") from None
    if record.n_options < 2 or gold not in LETTERS[: record.n_options]:
        raise UserError(f"{where}: the gold letter {gold!r} is not among the prompt's options")
    return record


def _options_in(content: str) -> int:
    """How many options the prompt lists: lines "A. …", "B. …" in order from A."""
    n = 0
    while n < len(LETTERS) and f"\n{LETTERS[n]}. " in content:
        n += 1
    return n
