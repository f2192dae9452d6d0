"""What keeps a large export in bounded memory: chains read in bounded batches, never held;
the samples' repeated values shared; `disk` output written shard by shard, as `save_to_disk`
lays it out. (Figures at 100k and 1M generations: benchmarks/bench_export.py.)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from distill.export import select, write
from distill.export.pipeline import load_data
from distill.export.select import Selection, stream_samples
from schemas.export import ExportOptions, RecordContext
from tests.test_export import populate, read_jsonl, run_export


def test_writing_reads_chains_in_bounded_batches(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(engine, 60, samples=2)
    batches: list[int] = []
    real = select.fetch_chains

    def counting(conn: Connection, *, generation_ids: Sequence[int]) -> dict[int, str | None]:
        batches.append(len(generation_ids))
        return real(conn, generation_ids=generation_ids)

    monkeypatch.setattr(write, "fetch_chains", counting)
    monkeypatch.setattr(write, "FETCH_CHUNK", 7)
    manifest = run_export(engine, tmp_path / "out", format="reasoning", to="jsonl")
    assert max(batches) <= 7
    assert sum(batches) == manifest.outputs["reasoning"].records
    assert len(batches) > manifest.outputs["reasoning"].records // 7


def test_the_plan_keeps_no_chain_text(engine: Engine) -> None:
    populate(engine, 20, samples=2)
    defaults = ExportOptions(out=Path("unused"), format="reasoning")
    ctx = RecordContext(
        think_open=defaults.think_open,
        think_close=defaults.think_close,
        answer_template=defaults.answer_template,
    )
    data, _ = load_data(engine, selection=Selection(), ctx=ctx, counter=None, chains=True)
    assert data.chains
    for info in data.chains.values():
        assert not any(isinstance(getattr(info, f), str) for f in info.__slots__)


def test_samples_share_their_repeated_values(engine: Engine) -> None:
    populate(engine, 10, samples=4)
    with engine.connect() as conn:
        rows = list(stream_samples(conn, selection=Selection()))
    assert len(rows) == 40
    assert len({id(r.teacher_model) for r in rows}) == 1
    assert len({id(r.prompt_version) for r in rows}) == 1
    by_order = {r.choice_order: r.choice_order for r in rows}
    assert all(r.choice_order is by_order[r.choice_order] for r in rows)


def test_disk_output_in_many_shards_loads_back_in_order(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    populate(engine, 60, samples=2)
    run_export(engine, tmp_path / "jsonl", format="both", to="jsonl", stages=2)
    monkeypatch.setattr(write, "SHARD_BYTES", 4000)
    monkeypatch.setattr(write, "ROWS_PER_BATCH", 5)
    run_export(engine, tmp_path / "disk", format="both", to="disk", stages=2)
    for fmt in ("reasoning", "direct"):
        directory = tmp_path / "disk" / fmt
        loaded = datasets.load_from_disk(str(directory))
        for split in ("train", "validation"):
            expected = read_jsonl(tmp_path / "jsonl" / fmt / f"{split}.jsonl")
            assert loaded[split].to_list() == expected
            state = json.loads((directory / split / "state.json").read_text())
            files = sorted(p.name for p in (directory / split).glob("*.arrow"))
            assert [f["filename"] for f in state["_data_files"]] == files
        assert len(list((directory / "train").glob("*.arrow"))) > 1
        assert not list(directory.glob(".*"))  # no temporary shard left behind
        # The JSON files are those datasets itself writes for the same data.
        again = tmp_path / "resaved" / fmt
        loaded.save_to_disk(str(again))
        for split in ("train", "validation"):
            for name in ("dataset_info.json", "state.json"):
                ours = json.loads((directory / split / name).read_text())
                theirs = json.loads((again / split / name).read_text())
                for key in ("_data_files", "_fingerprint"):
                    ours.pop(key, None), theirs.pop(key, None)
                assert ours == theirs, (fmt, split, name)
        assert (directory / "dataset_dict.json").read_text() == (
            again / "dataset_dict.json"
        ).read_text()
