"""Loading multiple-choice questions from files and datasets into the `questions` table.

`load_mcqs` reads and validates a source (no database); `import_questions` also stores it.
Sources: JSONL, JSON, CSV/TSV (optionally gzipped), Parquet, `datasets` save_to_disk
directories and Hugging Face Hub ids. Column layouts: the presets in `PRESETS`, or a
`FieldMapping`; see docs/import.md.

The names below are loaded on first use (PEP 562), so that importing the column layouts, as
`distill --help` does, does not load pyarrow, datasets and SQLAlchemy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ANSWER_FORMATS": "answers",
    "AnswerFormat": "answers",
    "resolve_answer": "answers",
    "PRESET_NAMES": "layout",
    "PRESETS": "layout",
    "FieldMapping": "layout",
    "Layout": "layout",
    "PresetName": "layout",
    "InvalidRowError": "load",
    "LoadResult": "load",
    "ProgressCallback": "load",
    "Rejection": "load",
    "load_mcqs": "load",
    "ImportReport": "store",
    "StoreCounts": "store",
    "default_report_path": "store",
    "import_questions": "store",
    "question_row": "store",
    "store_questions": "store",
}

if TYPE_CHECKING:
    from distill.importers.answers import ANSWER_FORMATS, AnswerFormat, resolve_answer
    from distill.importers.layout import PRESET_NAMES, PRESETS, FieldMapping, Layout, PresetName
    from distill.importers.load import (
        InvalidRowError,
        LoadResult,
        ProgressCallback,
        Rejection,
        load_mcqs,
    )
    from distill.importers.store import (
        ImportReport,
        StoreCounts,
        default_report_path,
        import_questions,
        question_row,
        store_questions,
    )


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ANSWER_FORMATS",
    "PRESETS",
    "PRESET_NAMES",
    "AnswerFormat",
    "FieldMapping",
    "ImportReport",
    "InvalidRowError",
    "Layout",
    "LoadResult",
    "PresetName",
    "ProgressCallback",
    "Rejection",
    "StoreCounts",
    "default_report_path",
    "import_questions",
    "load_mcqs",
    "question_row",
    "resolve_answer",
    "store_questions",
]
