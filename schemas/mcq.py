"""The input record: one multiple-choice question, validated and normalised."""

from __future__ import annotations

import hashlib
import json
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIN_OPTIONS = 2
MAX_OPTIONS = 10


def normalise_text(text: str) -> str:
    """NFC, collapsed whitespace: the form uids and duplicate checks are computed on."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class MCQRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    question: str
    choices: list[str] = Field(min_length=MIN_OPTIONS, max_length=MAX_OPTIONS)
    answer_index: int = Field(ge=0)
    subject: str = "unknown"
    source: str = ""

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("question is empty")
        return value

    @field_validator("choices")
    @classmethod
    def _choices_clean(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if any(not c for c in cleaned):
            raise ValueError("an option is empty")
        # Letter case is part of an option: genotypes `BB Bb` and `Bb Bb`, numerals `II` and `ii`.
        normalised = [normalise_text(c) for c in cleaned]
        if len(set(normalised)) != len(normalised):
            raise ValueError("duplicate options")
        return cleaned

    @field_validator("subject")
    @classmethod
    def _subject_clean(cls, value: str) -> str:
        return normalise_text(value) or "unknown"

    @model_validator(mode="after")
    def _answer_in_range(self) -> MCQRecord:
        if self.answer_index >= len(self.choices):
            raise ValueError(
                f"answer index {self.answer_index} out of range for {len(self.choices)} options"
            )
        return self

    @property
    def uid(self) -> str:
        """Content hash of the normalised question and options (option order matters not)."""
        payload = {
            "q": normalise_text(self.question).casefold(),
            "o": sorted(normalise_text(c).casefold() for c in self.choices),
            "a": normalise_text(self.choices[self.answer_index]).casefold(),
        }
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()
