"""The prompt the teacher sees. Versioned: a change here is a new PROMPT_VERSION, so enqueue
treats questions as not yet asked under the new wording.

A job records the prompt version it was made for, and a worker renders exactly that version
(`render_prompt`); `PROMPTS` lists the versions this code can render, and workers take jobs of
those versions only (distill.jobs.publish routes them), so a job is never asked in words it was
not made with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from distill.choices.letters import LETTERS

PROMPT_VERSION = "mcq-r1-v1"

# DeepSeek-R1 guidance: no system prompt, all instructions in the user turn, ask for \boxed{}.
INSTRUCTION = (
    "Please reason step by step, and put your final answer (the letter of the correct option) "
    "within \\boxed{}."
)


def format_options(choices: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def render_question(question: str, choices: Sequence[str]) -> str:
    """The question and its lettered options, as a student sees them in both export formats."""
    return f"{question.strip()}\n\n{format_options(choices)}"


def render_user_prompt(question: str, choices: Sequence[str]) -> str:
    """The full user turn sent to the teacher."""
    return f"{render_question(question, choices)}\n\n{INSTRUCTION}"


def render_student_prompt(question: str, choices: Sequence[str], *, answer_example: str) -> str:
    """The user turn of exported records, in both formats.

    The teacher is asked for \\boxed{} (R1 guidance); the student is taught the canonical answer
    line instead, so its prompt asks for that line: a prompt asking for one format above an answer
    in another would teach the student to ignore its instructions."""
    return (
        f"{render_question(question, choices)}\n\n"
        f'End with the line "{answer_example}", where X is the letter of the correct option.'
    )


def build_messages(question: str, choices: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_user_prompt(question, choices)}]


# Version -> how its messages are built. A new wording is a new entry; old ones stay, so jobs
# enqueued under them are still asked as they were made.
PROMPTS: dict[str, Callable[[str, Sequence[str]], list[dict[str, str]]]] = {
    PROMPT_VERSION: build_messages,
}


class UnknownPromptVersion(KeyError):
    """A job made for a prompt version this code cannot render (a newer distill enqueued it)."""


def render_prompt(version: str, question: str, choices: Sequence[str]) -> list[dict[str, str]]:
    """The messages of prompt `version` for a question whose options are presented as given."""
    try:
        build = PROMPTS[version]
    except KeyError:
        raise UnknownPromptVersion(version) from None
    return build(question, choices)
