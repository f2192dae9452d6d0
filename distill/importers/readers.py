"""Read a question source into rows: files (JSONL, JSON, CSV/TSV, Parquet; text formats may be
gzipped), directories written by `datasets` `save_to_disk`, other local dataset folders, and
Hugging Face Hub datasets.

Text formats are parsed by this package (textfiles, jsondoc) rather than through
`datasets.load_dataset("json", ...)`: a malformed line must be reported with its row number (and
skipped under --skip-invalid), which the `datasets` loaders cannot do, and they would also copy
every file into the HF cache. Parquet goes straight through pyarrow for the same reason; saved and
Hub datasets go through `datasets`. Every format is held to the bounds in `limits`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.errors import UserError
from distill.importers.jsondoc import read_json
from distill.importers.raw import RawRow, RawTable, label_of, one_line, union_of_keys
from distill.importers.textfiles import csv_table, jsonl_rows, open_binary

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

__all__ = ["SUPPORTED", "RawRow", "RawTable", "open_source"]

logger = logging.getLogger(__name__)

_BATCH = 1000
_TEXT_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
SUPPORTED = ".jsonl, .json, .csv, .tsv (each optionally .gz), .parquet, or a datasets directory"
# A Hub id is `name` or `owner/name`; anything else that does not exist locally is a missing file.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def open_source(
    source: str,
    *,
    split: str | None = None,
    config_name: str | None = None,
    limit: int | None = None,
) -> RawTable:
    """Open `source` (a path or a Hub dataset id) as rows; UserError if it cannot be read."""
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, not {limit}")
    path = Path(source).expanduser()
    if path.is_dir():
        table = _open_directory(path, name=source, split=split, config_name=config_name)
    elif path.exists():
        if split is not None or config_name is not None:
            raise UserError(f"{source}: --split and --config apply only to datasets, not files")
        table = _open_file(path, name=source, limit=limit)
    elif _looks_like_hub_id(source):
        table = _open_hub(source, split=split, config_name=config_name)
    else:
        raise UserError(f"{source}: no such file or directory")
    if limit is None:
        return table
    total = limit if table.total is None else min(table.total, limit)
    return RawTable(table.name, table.label, table.columns, islice(table.rows, limit), total)


# ---- files -------------------------------------------------------------------------------------


def _open_file(path: Path, *, name: str, limit: int | None) -> RawTable:
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = suffixes[-2] if gzipped and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if suffix in _PARQUET_SUFFIXES and not gzipped:
        return _open_parquet(path, name=name)
    kind = _TEXT_SUFFIXES.get(suffix)
    if kind is None:
        shown = "".join(suffixes[-2:] if gzipped else suffixes[-1:]) or "no extension"
        raise UserError(f"{name}: unsupported file type '{shown}' (expected {SUPPORTED})")
    label = label_of(path.name)
    with open_binary(path, name=name, gzipped=gzipped) as stream:
        if kind in ("csv", "tsv"):
            delimiter = "\t" if kind == "tsv" else ","
            return csv_table(stream, name=name, label=label, delimiter=delimiter, limit=limit)
        if kind == "json":
            document = read_json(stream, name=name, limit=limit)
            rows = None if document.is_json_lines else document.rows
        else:
            rows = jsonl_rows(stream, name=name, limit=limit)
    if rows is None:  # a .json file that is really JSON lines: read again, as such
        with open_binary(path, name=name, gzipped=gzipped) as stream:
            rows = jsonl_rows(stream, name=name, limit=limit)
    return RawTable(name, label, union_of_keys(rows), rows, len(rows))


def _open_parquet(path: Path, *, name: str) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Damage raises OSError or an ArrowException, and a mangled name in the metadata a
    # UnicodeDecodeError (a ValueError, as ArrowInvalid is).
    unreadable = (OSError, ValueError, pa.ArrowException)
    try:
        pfile = pq.ParquetFile(path)
        columns = tuple(pfile.schema_arrow.names)
        total = pfile.metadata.num_rows
    except unreadable as exc:
        raise UserError(f"{name}: not a readable Parquet file: {one_line(exc)}") from None

    def rows() -> Iterator[RawRow]:
        number = 0
        try:
            for batch in pfile.iter_batches(batch_size=_BATCH):
                yield from _arrow_rows(batch, first=number + 1)
                number += batch.num_rows
        except unreadable as exc:
            raise UserError(f"{name}: row {number + 1}: unreadable: {one_line(exc)}") from None

    return RawTable(name, label_of(path.name), columns, rows(), total)


def _arrow_rows(batch: Any, *, first: int) -> list[RawRow]:
    """A Parquet batch as rows. A string column holding bytes that are not UTF-8 fails the
    whole batch's conversion; the batch is then converted a row and a column at a time, to
    name the row and column at fault and keep the others."""
    try:
        objs = batch.to_pylist()
    except UnicodeDecodeError:
        return [_arrow_row(batch.slice(i, 1), first + i) for i in range(batch.num_rows)]
    return [RawRow(first + i, obj, obj) for i, obj in enumerate(objs)]


def _arrow_row(one: Any, number: int) -> RawRow:
    data: dict[str, Any] = {}
    bad: list[str] = []
    for column, values in zip(one.schema.names, one.columns, strict=True):
        try:
            data[column] = values.to_pylist()[0]
        except UnicodeDecodeError:
            data[column] = None
            bad.append(column)
    if bad:
        return RawRow(number, None, data, "not UTF-8 text", field=bad[0])
    return RawRow(number, data, data)


# ---- datasets ----------------------------------------------------------------------------------


def _open_directory(
    path: Path, *, name: str, split: str | None, config_name: str | None
) -> RawTable:
    import datasets

    saved = (path / "dataset_dict.json").exists() or (path / "state.json").exists()
    if saved and config_name is not None:
        raise UserError(f"{name}: --config applies to Hub datasets, not saved ones")
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
        else:
            # A folder of data files (e.g. a clone of a Hub dataset repository).
            loaded = datasets.load_dataset(str(path), config_name, split=split)
    except Exception as exc:  # datasets raises many kinds; all mean "cannot read this"
        raise UserError(f"{name}: cannot load dataset: {one_line(exc)}") from None
    return _dataset_table(loaded, name=name, base_label=label_of(path.name), split=split)


def _open_hub(name: str, *, split: str | None, config_name: str | None) -> RawTable:
    import datasets

    try:
        loaded = datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:  # offline, unknown id, missing config, gated: all user-fixable
        raise UserError(
            f"{name}: not a local file, and loading it from the Hugging Face Hub failed: "
            f"{one_line(exc)}"
        ) from None
    base = name if config_name is None else f"{name}:{config_name}"
    return _dataset_table(loaded, name=name, base_label=base, split=split)


def _dataset_table(loaded: object, *, name: str, base_label: str, split: str | None) -> RawTable:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        chosen = _choose_split(loaded, name=name, split=split)
        ds: Dataset = loaded[chosen]
        label = f"{base_label}:{chosen}"
    elif isinstance(loaded, datasets.Dataset):
        if split is not None and loaded.split is not None and str(loaded.split) != split:
            raise UserError(f"{name}: holds only split {loaded.split!s}, not {split!r}")
        ds = loaded
        label = base_label if split is None else f"{base_label}:{split}"
    else:
        raise UserError(f"{name}: an iterable or streaming dataset cannot be imported")
    ds = ds.with_format(None)
    return RawTable(name, label, tuple(ds.column_names), _dataset_rows(ds, name=name), len(ds))


def _choose_split(loaded: DatasetDict, *, name: str, split: str | None) -> str:
    splits = list(loaded)
    if split is not None:
        if split not in loaded:
            raise UserError(f"{name}: no split {split!r} (splits: {', '.join(splits)})")
        return split
    if not splits:
        raise UserError(f"{name}: the dataset has no splits")
    chosen = "test" if "test" in loaded else splits[0]
    if len(splits) > 1:
        logger.info("%s: importing split %r of %s", name, chosen, ", ".join(splits))
    return chosen


def _dataset_rows(ds: Dataset, *, name: str) -> Iterator[RawRow]:
    import pyarrow as pa

    columns = ds.column_names
    for start in range(0, len(ds), _BATCH):
        try:
            batch = ds[start : start + _BATCH]
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
            # Saved datasets are written by `datasets`, which checks its text: damage, not a row.
            last = min(start + _BATCH, len(ds))
            raise UserError(
                f"{name}: rows {start + 1}-{last}: unreadable: {one_line(exc)}"
            ) from None
        for offset, values in enumerate(zip(*(batch[c] for c in columns), strict=True)):
            obj = dict(zip(columns, values, strict=True))
            yield RawRow(start + offset + 1, obj, obj)


# ---- helpers -----------------------------------------------------------------------------------


def _looks_like_hub_id(source: str) -> bool:
    """`name` or `owner/name` without a file extension: what is not one is a missing file."""
    return bool(_HUB_ID.match(source)) and not _FILE_SUFFIX.search(source)
