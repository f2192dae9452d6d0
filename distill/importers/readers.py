"""Read a question source into rows: files (JSONL, JSON, CSV/TSV, Parquet; text formats may be
gzipped), directories written by `datasets` `save_to_disk`, other local dataset folders, and
Hugging Face Hub datasets.

Text formats are parsed here rather than through `datasets.load_dataset("json", ...)`: a malformed
line must be reported with its row number (and skipped under --skip-invalid), which the `datasets`
loaders cannot do, and they would also copy every file into the HF cache. Parquet goes straight
through pyarrow for the same reason; saved and Hub datasets go through `datasets`."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

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


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row. `data` is None when the row could not be parsed; `error` then says why."""

    number: int  # 1-based data row (for JSON lines: the line number)
    data: dict[str, Any] | None
    original: Any  # what a rejection report shows: the parsed object, or the raw line
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RawTable:
    name: str  # how error messages name the source: what the user typed
    label: str  # stored as each question's source: file name, or dataset (+config) + split
    columns: tuple[str, ...]
    rows: Iterable[RawRow]
    total: int | None  # rows to expect, when known up front (for a progress bar)


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
        table = _open_file(path, name=source)
    elif _looks_like_hub_id(source):
        table = _open_hub(source, split=split, config_name=config_name)
    else:
        raise UserError(f"{source}: no such file or directory")
    if limit is None:
        return table
    total = limit if table.total is None else min(table.total, limit)
    return RawTable(table.name, table.label, table.columns, islice(table.rows, limit), total)


def _rows_of(records: Iterable[object], *, first: int = 1) -> list[RawRow]:
    """Number parsed objects as rows; anything but a JSON object is a bad row."""
    rows = []
    for number, obj in enumerate(records, start=first):
        if isinstance(obj, dict):
            rows.append(RawRow(number, obj, obj))
        else:
            rows.append(RawRow(number, None, obj, f"expected an object, got {_json_type(obj)}"))
    return rows


# ---- files -------------------------------------------------------------------------------------


def _open_file(path: Path, *, name: str) -> RawTable:
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = suffixes[-2] if gzipped and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if suffix in _PARQUET_SUFFIXES and not gzipped:
        return _open_parquet(path, name=name)
    kind = _TEXT_SUFFIXES.get(suffix)
    if kind is None:
        shown = "".join(suffixes[-2:] if gzipped else suffixes[-1:]) or "no extension"
        raise UserError(f"{name}: unsupported file type '{shown}' (expected {SUPPORTED})")
    text = _read_text(path, name=name, gzipped=gzipped)
    if kind == "jsonl":
        rows = _jsonl_rows(text)
    elif kind == "json":
        rows = _json_rows(text, name=name)
    else:
        delimiter = "\t" if kind == "tsv" else ","
        return _csv_table(text, name=name, label=path.name, delimiter=delimiter)
    return RawTable(name, path.name, _union_of_keys(rows), rows, len(rows))


def _read_text(path: Path, *, name: str, gzipped: bool) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"{name}: cannot read: {_one_line(exc)}") from None


def _jsonl_rows(text: str) -> list[RawRow]:
    rows = []
    # Split on "\n" only: str.splitlines() also splits at U+2028 and friends, which JSON strings
    # may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            error = f"invalid JSON: {exc.msg} at column {exc.colno}"
            rows.append(RawRow(number, None, line, error))
            continue
        rows.extend(_rows_of([obj], first=number))
    return rows


def _json_rows(text: str, *, name: str) -> list[RawRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a .json file that is really JSON lines
            return _jsonl_rows(text)
        raise UserError(
            f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise UserError(
                f"{name}: expected a list of objects, or an object holding one such list "
                f"(found keys: {', '.join(data) or 'none'})"
            )
        data = data[lists[0]]
    if not isinstance(data, list):
        raise UserError(f"{name}: expected a list of objects, got {_json_type(data)}")
    return _rows_of(data)


def _csv_table(text: str, *, name: str, label: str, delimiter: str) -> RawTable:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows = []
    try:
        for number, cells in enumerate(reader, start=1):
            cells.pop(None, None)  # cells past the header
            rows.append(RawRow(number, cells, cells))
    except csv.Error as exc:
        raise UserError(f"{name}: row {len(rows) + 1}: malformed CSV: {exc}") from None
    columns = tuple(c for c in reader.fieldnames or () if c)
    return RawTable(name, label, columns, rows, len(rows))


def _open_parquet(path: Path, *, name: str) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{name}: not a readable Parquet file: {_one_line(exc)}") from None

    def rows() -> Iterator[RawRow]:
        number = 0
        try:
            for batch in pfile.iter_batches(batch_size=_BATCH):
                for obj in batch.to_pylist():
                    number += 1
                    yield RawRow(number, obj, obj)
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{name}: row {number + 1}: unreadable: {_one_line(exc)}") from None

    columns = tuple(pfile.schema_arrow.names)
    return RawTable(name, path.name, columns, rows(), pfile.metadata.num_rows)


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
        raise UserError(f"{name}: cannot load dataset: {_one_line(exc)}") from None
    return _dataset_table(loaded, name=name, base_label=path.name, split=split)


def _open_hub(name: str, *, split: str | None, config_name: str | None) -> RawTable:
    import datasets

    try:
        loaded = datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:  # offline, unknown id, missing config, gated: all user-fixable
        raise UserError(
            f"{name}: not a local file, and loading it from the Hugging Face Hub failed: "
            f"{_one_line(exc)}"
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
    return RawTable(name, label, tuple(ds.column_names), _dataset_rows(ds), len(ds))


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


def _dataset_rows(ds: Dataset) -> Iterator[RawRow]:
    columns = ds.column_names
    for start in range(0, len(ds), _BATCH):
        batch = ds[start : start + _BATCH]
        for offset, values in enumerate(zip(*(batch[c] for c in columns), strict=True)):
            obj = dict(zip(columns, values, strict=True))
            yield RawRow(start + offset + 1, obj, obj)


# ---- helpers -----------------------------------------------------------------------------------


def _looks_like_hub_id(source: str) -> bool:
    """`name` or `owner/name` without a file extension: what is not one is a missing file."""
    return bool(_HUB_ID.match(source)) and not _FILE_SUFFIX.search(source)


def _union_of_keys(rows: Iterable[RawRow]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for row in rows:
        if row.data is not None:
            seen.update(dict.fromkeys(row.data))
    return tuple(seen)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
