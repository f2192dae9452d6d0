"""The input record: one multiple-choice question, validated and normalised."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIN_OPTIONS = 2
MAX_OPTIONS = 10
# Characters in one text field (question, option, subject): what csv.field_size_limit allows by
# default, ~30k tokens, beyond any teacher's context.
MAX_FIELD_CHARS = 128 * 1024
# Lone surrogates come from JSON escapes such as "\ud800": Python strings hold them, but they
# are not text, and encoding them for the database fails.
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a text field, or None. NUL is refused, not stripped: it
    means a corrupt or binary source (or UTF-16 read as UTF-8), which silent removal would hide,
    and PostgreSQL cannot store it; SQLite is held to the same rule, so the backends agree."""
    if len(value) > MAX_FIELD_CHARS:
        return f"{len(value)} characters, over the limit of {MAX_FIELD_CHARS} for a text field"
    if "\x00" in value:
        return "contains a NUL character (U+0000), which text may not hold"
    if not value.isascii():
        surrogate = _SURROGATE.search(value)
        if surrogate is not None:
            code = f"U+{ord(surrogate.group()):04X}"
            return f"contains an unpaired surrogate ({code}), which is not a character"
    return None


def _check_text(value: str) -> str:
    # The common case, short ASCII text, is settled without a call.
    if len(value) > MAX_FIELD_CHARS or "\x00" in value or not value.isascii():
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


def normalise_text(text: str) -> str:
    """NFC, collapsed whitespace: the form uids and duplicate checks are computed on."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalise_label(text: str) -> str:
    """A subject as stored: normalised text, with NUL taken for the separator it stands in for.
    A subject is a label, rewritten already (whitespace collapsed, blank is "unknown"), unlike
    question and option text, which are hashed into the uid and sent to the teacher as given."""
    return normalise_text(text.replace("\x00", " ") if "\x00" in text else text)


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
        return _check_text(value)

    @field_validator("choices")
    @classmethod
    def _choices_clean(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if any(not c for c in cleaned):
            raise ValueError("an option is empty")
        joined = "".join(cleaned)  # one check for all options in the common case
        if len(joined) > MAX_FIELD_CHARS or "\x00" in joined or not joined.isascii():
            for c in cleaned:
                _check_text(c)
        # Letter case is part of an option: genotypes `BB Bb` and `Bb Bb`, numerals `II` and `ii`.
        normalised = [normalise_text(c) for c in cleaned]
        if len(set(normalised)) != len(normalised):
            raise ValueError("duplicate options")
        return cleaned

    @field_validator("subject")
    @classmethod
    def _subject_clean(cls, value: str) -> str:
        return _check_text(normalise_label(value)) or "unknown"

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
