"""Building, validating and writing the records of one format, split by split, in chunks.

Chains are read again here, only for the chosen records and a chunk at a time, so memory holds a
chunk of text, never the dataset. The `disk` output is written as it streams too: each split's
Arrow shards (at most `save_to_disk`'s default 500 MB each) by `datasets`' own `ArrowWriter`;
then `save_to_disk` of an empty dataset of the same features writes the layout's JSON files
(`dataset_dict.json`, `state.json`, `dataset_info.json`), and the shards are put in place. Handing
`save_to_disk` the whole table instead would copy it through a memory map, whose pages count in
the process's resident memory: gigabytes at a million generations. The fingerprint is derived
from the shards' content (its default is random), so the same data gives the same bytes."""

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
SHARD_BYTES = 500 * 10**6  # save_to_disk's default max_shard_size ("500MB")
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


class ShardSink:
    """One split of a `save_to_disk` directory, as Arrow shards of at most `shard_bytes` written
    by `datasets`' ArrowWriter (what `save_to_disk` writes them with), under temporary names
    until `_save_to_disk` puts them in place."""

    def __init__(
        self, directory: Path, split: Split, schema: pa.Schema, *, shard_bytes: int | None = None
    ) -> None:
        from datasets import Features

        self.directory, self.split, self.schema = directory, split, schema
        self.features = Features.from_arrow_schema(schema)
        self.shard_bytes = shard_bytes or SHARD_BYTES
        self.paths: list[Path] = []
        self.writer: Any = None
        self.bytes = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=self.schema)
        if self.writer is None or (self.bytes and self.bytes + table.nbytes > self.shard_bytes):
            self._next_shard()
        self.writer.write_table(table)
        self.bytes += table.nbytes

    def _next_shard(self) -> None:
        from datasets.arrow_writer import ArrowWriter

        self._close_shard()
        path = self.directory / f".{self.split}-{len(self.paths):05d}.arrow"
        self.paths.append(path)
        self.writer = ArrowWriter(features=self.features, path=str(path), embed_local_files=True)
        self.bytes = 0

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.finalize()
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self._close_shard()


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
    shards: dict[Split, ShardSink] = {}
    for split, planned in plan.by_split().items():
        sink: Sink
        if kind is OutputKind.jsonl:
            sink = JsonlSink(directory / f"{split}.jsonl")
        elif kind is OutputKind.parquet:
            sink = ParquetSink(directory / f"{split}.parquet", builder.schema)
        else:
            sink = shards[split] = ShardSink(directory, split, builder.schema)
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
        _save_to_disk(shards, directory)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_to_disk(shards: dict[Split, ShardSink], directory: Path) -> None:
    """The `save_to_disk` layout around the written shards: `datasets` writes the JSON files of
    an empty dataset of the same features and fingerprint, the shards take the names it gives
    data files, and its state lists them."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # rich draws our progress; tqdm would interleave with it
    try:
        empty = {}
        for split, sink in shards.items():
            digest = hashlib.sha256()
            for path in sink.paths:
                digest.update(_sha256(path).encode())
            empty[str(split)] = datasets.Dataset(
                pa.Table.from_batches([], schema=sink.schema),
                split=datasets.Split(str(split)),
                fingerprint=digest.hexdigest()[:16],
            )
        datasets.DatasetDict(empty).save_to_disk(str(directory))
        for split, sink in shards.items():
            target = directory / str(split)
            names = [f"data-{i:05d}-of-{len(sink.paths):05d}.arrow" for i in range(len(sink.paths))]
            for path, name in zip(sink.paths, names, strict=True):
                path.replace(target / name)
            state_path = target / datasets.config.DATASET_STATE_JSON_FILENAME
            state = json.loads(state_path.read_text(encoding="utf-8"))
            state["_data_files"] = [{"filename": name} for name in names]
            # As save_to_disk writes it.
            state_path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    finally:
        if bars:
            datasets.enable_progress_bars()
        for sink in shards.values():
            for path in sink.paths:
                path.unlink(missing_ok=True)


def file_hashes(directory: Path, *, skip: Sequence[str] = ()) -> dict[str, str]:
    """sha256 of every file under `directory` (relative posix paths), except `skip` names."""
    return {
        path.relative_to(directory).as_posix(): _sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in skip
    }
