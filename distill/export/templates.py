"""The student's chat template, checked at export time.

Some templates drop the chain when they render an assistant turn: DeepSeek-R1-Distill-Qwen keeps
only the text after `</think>`, so SFT on `messages` through it trains on "The answer is X." alone,
silently. Qwen3-style templates read the chain from a `reasoning_content` key instead. Given the
student's tokenizer directory, export renders one record the way transformers'
`apply_chat_template` does (sandboxed jinja2, trim_blocks, lstrip_blocks, `raise_exception`) and
picks the record shape that keeps the chain: the think block in `content`, the chain in
`reasoning_content`, or failing both, a pre-rendered `text` column."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.export.records import reasoning_content
from schemas.export import RecordContext, TemplateMode, TemplateReport

logger = logging.getLogger(__name__)

_SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")
_PROBE = "\x02probe-of-the-assistant-turn\x03"
# A fixed date for templates that print "today" (Llama 3): rendered text must not depend on when
# the export ran.
_FIXED_NOW = datetime(2024, 7, 26)


class TemplateRenderError(Exception):
    pass


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])  # an AddedToken serialised by transformers
    return None


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str
    special_tokens: dict[str, str] = field(default_factory=dict)
    # Whether the student's tokenizer prepends BOS when it encodes text with its special tokens
    # (DeepSeek-R1-Distill's and Llama's do, Qwen's do not); None when the directory does not
    # say. Decides whether a pre-rendered `text` starts with the BOS its template writes.
    adds_bos: bool | None = None

    @cached_property
    def _compiled(self) -> Any:
        try:
            from jinja2 import TemplateError
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:  # pragma: no cover - depends on the environment
            raise UserError("--student-template needs the `jinja2` package") from None

        def raise_exception(message: str) -> None:
            raise TemplateRenderError(message)

        def tojson(
            value: Any,
            ensure_ascii: bool = False,
            indent: int | None = None,
            separators: Any = None,
            sort_keys: bool = False,
        ) -> str:
            return json.dumps(
                value,
                ensure_ascii=ensure_ascii,
                indent=indent,
                separators=separators,
                sort_keys=sort_keys,
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = _FIXED_NOW.strftime
        try:
            return env.from_string(self.source)
        except TemplateError as exc:
            raise UserError(f"--student-template {self.name}: bad chat template: {exc}") from exc

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        from jinja2 import TemplateError

        try:
            return str(
                self._compiled.render(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    **self.special_tokens,
                )
            )
        except (TemplateError, TemplateRenderError, TypeError, ValueError) as exc:
            raise TemplateRenderError(str(exc)) from exc


def load_chat_template(path: Path) -> ChatTemplate:
    """The chat template of a local tokenizer directory (tokenizer_config.json's `chat_template`,
    or chat_template.jinja next to it)."""
    config_file = path / "tokenizer_config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise UserError(f"--student-template {path}: no tokenizer_config.json there")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--student-template {config_file}: unreadable: {exc}") from exc
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default")
    jinja_file = config_file.parent / "chat_template.jinja"
    if not isinstance(source, str) and jinja_file.is_file():
        source = jinja_file.read_text(encoding="utf-8")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"--student-template {path}: it holds no chat template")
    special = {
        key: text for key in _SPECIAL_TOKENS if (text := _token_text(config.get(key))) is not None
    }
    adds_bos = tokenizer_adds_bos(config_file.parent, config, special.get("bos_token"))
    return ChatTemplate(name=str(path), source=source, special_tokens=special, adds_bos=adds_bos)


def tokenizer_adds_bos(directory: Path, config: dict[str, Any], bos: str | None) -> bool | None:
    """Whether the tokenizer in `directory` prepends `bos` to text it encodes with special tokens
    (what `tokenizer(text)` does, and what TRL's SFTTrainer does with a `text` column): asked of
    the tokenizer itself when tokenizer.json is there, else its config's `add_bos_token`."""
    if not bos:
        return False
    tokenizer_file = directory / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        try:
            encoding = Tokenizer.from_file(str(tokenizer_file)).encode("x", add_special_tokens=True)
        except Exception as exc:  # a tokenizer.json this version of tokenizers cannot read
            logger.warning("%s: cannot ask the tokenizer about BOS (%s)", tokenizer_file, exc)
        else:
            return bool(encoding.tokens) and encoding.tokens[0] == bos
    flag = config.get("add_bos_token")
    return flag if isinstance(flag, bool) else None


def _tail_after(rendered: str, marker: str) -> str | None:
    at = rendered.rfind(marker)
    return None if at < 0 else rendered[at + len(marker) :]


def _try_render(template: ChatTemplate, messages: list[dict[str, Any]]) -> str | None:
    try:
        return template.render(messages, add_generation_prompt=False)
    except TemplateRenderError as exc:
        logger.info("%s does not render %s: %s", template.name, list(messages[-1]), exc)
        return None


def check_template(
    template: ChatTemplate, *, user: str, chain: str, letter: str, ctx: RecordContext
) -> TemplateReport:
    """Which record shape keeps the chain through this template (one sample record)."""
    answer = ctx.answer_line(letter)
    user_msg = {"role": "user", "content": user}
    as_content = _try_render(
        template,
        [
            user_msg,
            {"role": "assistant", "content": reasoning_content(chain, letter=letter, ctx=ctx)},
        ],
    )
    if as_content is not None and chain in as_content:
        end = _tail_after(as_content, answer)
        return TemplateReport(
            template=template.name,
            mode=TemplateMode.content,
            keeps_chain_in_content=True,
            keeps_chain_in_reasoning_content=None,
            end_of_turn=end,
            detail="the template keeps the think block of `content`: `messages` is safe",
        )
    as_field = _try_render(
        template, [user_msg, {"role": "assistant", "content": answer, "reasoning_content": chain}]
    )
    if as_field is not None and chain in as_field and answer in as_field:
        return TemplateReport(
            template=template.name,
            mode=TemplateMode.reasoning_content,
            keeps_chain_in_content=False,
            keeps_chain_in_reasoning_content=True,
            end_of_turn=_tail_after(as_field, answer),
            detail=(
                "the template drops the think block from `content` but renders "
                "`reasoning_content`: assistant messages carry the chain there"
            ),
        )
    return TemplateReport(
        template=template.name,
        mode=TemplateMode.text,
        keeps_chain_in_content=False,
        keeps_chain_in_reasoning_content=False,
        end_of_turn=None,
        detail=(
            "the template drops the chain from assistant turns: train on the pre-rendered "
            "`text` column, not on `messages`"
        ),
    )


class TextRenderer:
    """Pre-renders whole conversations for the `text` column: the student's own generation prompt,
    the assistant turn with its chain, and the template's end-of-turn string. Falls back to ChatML
    when the template cannot render a bare generation prompt."""

    CHATML_EOT = "<|im_end|>\n"

    def __init__(self, template: ChatTemplate, *, ctx: RecordContext) -> None:
        self.template = template
        self.ctx = ctx
        self.fallback = False
        self.end_of_turn = self.CHATML_EOT
        try:
            probe = template.render(
                [{"role": "user", "content": "u"}, {"role": "assistant", "content": _PROBE}],
                add_generation_prompt=False,
            )
            template.render([{"role": "user", "content": "u"}], add_generation_prompt=True)
        except TemplateRenderError as exc:
            logger.warning(
                "%s cannot render a generation prompt (%s): text is ChatML", template.name, exc
            )
            self.fallback = True
            return
        tail = _tail_after(probe, _PROBE)
        if tail is None:
            self.fallback = True
            return
        self.end_of_turn = tail

    def render(self, *, user: str, content: str) -> str:
        if self.fallback:
            return (
                f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{content}"
                f"{self.CHATML_EOT}"
            )
        prompt = self.template.render(
            [{"role": "user", "content": user}], add_generation_prompt=True
        )
        # R1-style generation prompts already open the think block ("<｜Assistant｜><think>\n").
        for opening in (self.ctx.think_open + "\n", self.ctx.think_open):
            if prompt.endswith(opening) and content.startswith(opening):
                content = content[len(opening) :]
                break
        text = prompt + content + self.end_of_turn
        bos = self.template.special_tokens.get("bos_token")
        if self.template.adds_bos and bos and text.startswith(bos):
            # Trainers tokenize `text` with the tokenizer's special tokens (TRL's SFTTrainer
            # does): this tokenizer adds BOS itself, and a second one would be trained on.
            text = text[len(bos) :]
        return text
