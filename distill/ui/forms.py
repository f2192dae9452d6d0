"""Query-string parsing the pages share: an empty form field means "any"."""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Blank = BeforeValidator(_blank_is_none)
