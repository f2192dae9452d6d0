"""Building, validating and writing the records of one format, split by split, in chunks.

Chains are read again here, only for the chosen records and a chunk at a time, so memory holds a
chunk of text, never the dataset. The `disk` output streams Arrow files first and hands them to
`datasets` memory-mapped, with a fingerprint derived from their content: `save_to_disk` then
writes the same bytes for the same data (its default fingerprint is random)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from distill.errors import UserError
from distill.export.items import PlannedRecord
from distill.export.plan import FormatPlan
from distill.export.records import (
    CleanChain,
    assistant_message,
    clean_chain,
    conversation,
    reasoning_content,
    user_prompt,
)
from distill.export.select import FETCH_CHUNK, fetch_chains
from distill.export.stats import RecordStats
from distill.export.templates import TextRenderer
from schemas.export import (
    DirectRecord,
    Format,
    OutputKind,
    ReasoningRecord,
    RecordContext,
    Split,
    TemplateMode,
)

ROWS_PER_BATCH = 2000
Progress = Callable[[str, int, int | None], None]


def _message_type(mode: TemplateMode) -> pa.DataType:
    fields = [("role", pa.string()), ("content", pa.string())]
    if mode is TemplateMode.reasoning_content:
        fields.append(("reasoning_content", pa.string()))
    return pa.struct(fields)


def arrow_schema(fmt: Format, *, stages: bool, mode: TemplateMode) -> pa.Schema:
    """Explicit column types, in record-model field order: no type guessing from a first batch
    (an all-null column would become `null`), and the same schema for every split."""
    messages = pa.list_(_message_type(mode))
    fields: list[tuple[str, pa.DataType]] = [
        ("id", pa.string()),
        ("question_id", pa.string()),
        ("subject", pa.string()),
        ("messages", messages),
        ("prompt", messages),
        ("completion", messages),
        ("answer", pa.string()),
        ("difficulty", pa.float64()),
        ("curriculum_rank", pa.int64()),
    ]
    if stages:
        fields.append(("stage", pa.int64()))
    if fmt is Format.reasoning:
        fields += [
            ("reasoning_content", pa.string()),
            ("reasoning_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
        ]
        if mode is TemplateMode.text:
            fields.append(("text", pa.string()))
    return pa.schema(fields)


class RecordBuilder:
    """Planned records -> validated record dicts (the order of `planned` is kept)."""

    def __init__(
        self,
        fmt: Format,
        *,
        engine: Engine,
        ctx: RecordContext,
        stages: bool,
        renderer: TextRenderer | None = None,
    ) -> None:
        self.fmt, self.engine, self.ctx, self.renderer = fmt, engine, ctx, renderer
        self.model = ReasoningRecord if fmt is Format.reasoning else DirectRecord
        self.stages = stages
        self.schema = arrow_schema(fmt, stages=stages, mode=ctx.mode)

    def chain(self, planned: PlannedRecord, text: str | None) -> CleanChain:
        cleaned = clean_chain(text, gold=planned.letter, ctx=self.ctx)
        if not isinstance(cleaned, CleanChain):
            raise UserError(
                f"generation {planned.generation_id} changed while exporting; run the export again"
            )
        return cleaned

    def build(self, planned: Sequence[PlannedRecord]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(planned), FETCH_CHUNK):
            chunk = planned[start : start + FETCH_CHUNK]
            texts: dict[int, str | None] = {}
            if self.fmt is Format.reasoning:
                with self.engine.connect() as conn:
                    ids = [r.generation_id for r in chunk if r.generation_id is not None]
                    texts = fetch_chains(conn, generation_ids=ids)
            for record in chunk:
                chain = None
                if record.generation_id is not None:
                    chain = self.chain(record, texts.get(record.generation_id)).text
                yield self.row(record, chain)

    def row(self, planned: PlannedRecord, chain: str | None) -> dict[str, Any]:
        """The record as written: built in its final shape (only the columns of this export),
        validated, then written as built."""
        question, letter = planned.question, planned.letter
        user = user_prompt(question.question, question.choices, planned.order, ctx=self.ctx)
        assistant = assistant_message(chain, letter=letter, ctx=self.ctx)
        turns = conversation(user, assistant)
        if "reasoning_content" in assistant:  # one struct type for every message of the column
            turns["messages"][0]["reasoning_content"] = None
        data: dict[str, Any] = {
            "id": planned.record_id,
            "question_id": question.uid,
            "subject": question.subject,
            **turns,
            "answer": letter,
            "difficulty": planned.difficulty.value,
            "curriculum_rank": planned.curriculum_rank,
        }
        if self.stages:
            data["stage"] = planned.stage
        if chain is not None:
            data.update(
                reasoning_content=chain,
                reasoning_tokens=planned.reasoning_tokens,
                completion_tokens=planned.completion_tokens,
            )
            if self.renderer is not None:
                content = reasoning_content(chain, letter=letter, ctx=self.ctx)
                data["text"] = self.renderer.render(user=user, content=content)
        self.model.model_validate(data, context=self.ctx.as_context())
        return data


class Sink(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.file = path.open("w", encoding="utf-8", newline="\n")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def close(self) -> None:
        self.file.close()


class ParquetSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(str(path), schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


class ArrowStreamSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.file = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.file, schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()
        self.file.close()


def write_format(
    plan: FormatPlan,
    *,
    directory: Path,
    kind: OutputKind,
    builder: RecordBuilder,
    stats: RecordStats,
    progress: Progress | None = None,
) -> None:
    """Write train and validation of one format into `directory` and tally them into `stats`."""
    directory.mkdir(parents=True, exist_ok=True)
    total = len(plan.train) + len(plan.validation)
    done = 0
    arrow_files: dict[Split, Path] = {}
    for split, planned in plan.by_split().items():
        sink: Sink
        if kind is OutputKind.jsonl:
            sink = JsonlSink(directory / f"{split}.jsonl")
        elif kind is OutputKind.parquet:
            sink = ParquetSink(directory / f"{split}.parquet", builder.schema)
        else:
            arrow_files[split] = directory / f".{split}.arrow"
            sink = ArrowStreamSink(arrow_files[split], builder.schema)
        try:
            batch: list[dict[str, Any]] = []
            for record, row in zip(planned, builder.build(planned), strict=True):
                stats.add(
                    split,
                    uid=record.question.uid,
                    letter=row["answer"],
                    subject=record.question.subject,
                    difficulty=record.difficulty.value,
                )
                if record.chain_tokens is not None:
                    stats.lengths.append(record.chain_tokens)
                batch.append(row)
                if len(batch) >= ROWS_PER_BATCH:
                    sink.write(batch)
                    done += len(batch)
                    batch = []
                    if progress:
                        progress(f"writing {plan.fmt}", done, total)
            sink.write(batch)
            done += len(batch)
        finally:
            sink.close()
        if progress:
            progress(f"writing {plan.fmt}", done, total)
    if kind is OutputKind.disk:
        _save_to_disk(arrow_files, directory)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_to_disk(arrow_files: dict[Split, Path], directory: Path) -> None:
    import datasets
    from datasets.table import MemoryMappedTable

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # rich draws our progress; tqdm would interleave with it
    try:
        splits = {}
        for split, path in arrow_files.items():
            table = MemoryMappedTable.from_file(str(path))
            splits[str(split)] = datasets.Dataset(
                table, split=datasets.Split(str(split)), fingerprint=_sha256(path)[:16]
            )
        datasets.DatasetDict(splits).save_to_disk(str(directory))
    finally:
        if bars:
            datasets.enable_progress_bars()
        for path in arrow_files.values():
            path.unlink(missing_ok=True)


def file_hashes(directory: Path, *, skip: Sequence[str] = ()) -> dict[str, str]:
    """sha256 of every file under `directory` (relative posix paths), except `skip` names."""
    return {
        path.relative_to(directory).as_posix(): _sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in skip
    }
