"""Exact token counts with a local tokenizer (`--tokenizer DIR`), instead of the teacher's.

The `tokenizers` package is imported only here and only when asked for: it is not needed for an
export that trusts the teacher-reported counts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.errors import UserError


class TokenCounter:
    def __init__(self, path: Path) -> None:
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"--tokenizer {path}: no tokenizer.json there")
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - depends on the environment
            raise UserError(
                "--tokenizer needs the `tokenizers` package (pip install tokenizers)"
            ) from None
        try:
            self._tokenizer: Any = Tokenizer.from_file(str(file))
        except Exception as exc:  # the Rust side raises a bare Exception on a bad file
            raise UserError(f"--tokenizer {file}: cannot load it: {exc}") from exc
        self.name = str(path)

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]
