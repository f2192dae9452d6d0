"""The fake teacher's default reply: a deterministic function of the prompt, so a test can compute
the outcome each job must get without asking the server (`FakeReply.expected_outcome`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class FakeReply:
    text: str
    finish_reason: str
    completion_tokens: int
    # What the reply was built to say, known without parsing it: an oracle for pipeline tests.
    kind: Literal["answer", "unclosed", "no_letter", "empty"]
    letter: str | None  # the letter after the chain; None if the reply has none (or was cut)

    def expected_outcome(self, gold_letter: str) -> str:
        """The outcome grading must give this reply (an Outcome value)."""
        if self.kind == "empty":
            return "empty"
        if self.finish_reason == "length":
            return "truncated"
        if self.letter is None:
            return "unparseable"
        return "correct" if self.letter == gold_letter else "incorrect"


_OPTION_LINE = re.compile(r"^([A-J])\. ", re.MULTILINE)
_WORDS = (
    "so", "the", "question", "asks", "which", "option", "fits", "best", "let", "me", "recall",
    "what", "I", "know", "about", "this", "wait", "check", "again", "hmm", "that", "seems",
    "right", "but", "consider", "other", "case", "carefully", "first", "then",
)  # fmt: skip
_CLOSE = ["\n", THINK_CLOSE, "\n\n"]
_NO_LETTER = ["I", " cannot", " tell", " which", " option", " is", " right", "."]


def prompt_tokens(prompt: str) -> int:
    """A stand-in for the prompt's token count (about four characters a token, plus a template)."""
    return len(prompt) // 4 + 8


def fake_reply(prompt: str, max_tokens: int) -> FakeReply:
    """The deterministic default completion of `prompt` (the last user message) under a budget.

    From sha256(prompt): ~70 % a closed chain then "The answer is \\boxed{L}." (L one of the
    prompt's option letters, not necessarily right), ~10 % a chain that never closes (always cut
    by the budget), ~10 % a closed chain with no letter, ~5 % like the first but opening with
    "<think>" itself, ~5 % empty. Tokens beyond `max_tokens` are cut and finish_reason is
    "length". The chains quote other letters ("maybe the answer is \\boxed{C}") on purpose:
    only the text after the close marker may decide the letter.
    """
    digest = hashlib.sha256(prompt.encode()).digest()
    letters = _option_letters(prompt)
    bucket = int.from_bytes(digest[:2], "big") % 100
    letter: str | None = letters[digest[2] % len(letters)]
    chain = _chain(digest, length=16 + digest[4] % 48, decoy=letters[digest[3] % len(letters)])
    answer = ["The", " answer", " is", " \\boxed{", str(letter), "}."]
    kind: Literal["answer", "unclosed", "no_letter", "empty"] = "answer"
    if bucket < 70:
        tokens = [*chain, *_CLOSE, *answer]
    elif bucket < 80:
        kind, letter = "unclosed", None
        tokens = _chain(digest, length=max_tokens + 1, decoy=letters[0])
    elif bucket < 90:
        kind, letter = "no_letter", None
        tokens = [*chain, *_CLOSE, *_NO_LETTER]
    elif bucket < 95:
        tokens = ["<think>", "\n", *chain, *_CLOSE, *answer]
    else:  # just the EOS token
        return FakeReply("", "stop", completion_tokens=1, kind="empty", letter=None)
    if len(tokens) > max_tokens:
        return FakeReply("".join(tokens[:max_tokens]), "length", max_tokens, kind, letter=None)
    return FakeReply("".join(tokens), "stop", len(tokens), kind, letter)


def _option_letters(prompt: str) -> str:
    """The letters of the options block: the last "A. " line and the lines "B. ", "C. " ... after
    it (a question may quote lettered lines of its own before its options)."""
    found = _OPTION_LINE.findall(prompt)
    if "A" not in found:
        return "ABCD"
    letters = ""
    for letter in found[len(found) - 1 - found[::-1].index("A") :]:
        if letter == chr(ord("A") + len(letters)):
            letters += letter
    return letters


def _chain(digest: bytes, *, length: int, decoy: str) -> list[str]:
    """`length` tokens of plausible-looking thinking with a rejected guess at `decoy` inside."""
    tokens = ["Okay", ","]
    tokens += [" maybe", " the", " answer", " is", " \\boxed{", decoy, "}", "?"]
    position = 0
    while len(tokens) < length:
        tokens.append(" " + _WORDS[(digest[position % len(digest)] + position) % len(_WORDS)])
        position += 1
    return tokens[:length]
