"""Loading multiple-choice questions from files and datasets into the `questions` table.

`load_mcqs` reads and validates a source (no database); `import_questions` also stores it.
Sources: JSONL, JSON, CSV/TSV (optionally gzipped), Parquet, `datasets` save_to_disk
directories and Hugging Face Hub ids. Column layouts: the presets in `PRESETS`, or a
`FieldMapping`; see docs/readme-import.md."""

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
