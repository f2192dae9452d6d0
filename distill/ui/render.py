"""A chain as HTML: every character the model wrote is escaped; paragraphs are split at blank
lines; LaTeX (`$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]`) becomes MathML, rendered by the browser itself.

LaTeX is converted here, server-side, by latex2mathml (pure Python): no JavaScript library to
ship or fetch, nothing to run in the page, and a 20,000-token chain costs the browser only its
text. What latex2mathml cannot read is shown as the escaped source."""

from __future__ import annotations

import re
from functools import lru_cache
from xml.etree import ElementTree

from markupsafe import Markup, escape

# $$…$$ and \[…\] (display), \(…\) and $…$ (inline). Inline $ follows pandoc's rule: no space
# just inside either dollar, and no digit right after the closing one ("$5 and $10" is money).
MATH = re.compile(
    r"\$\$(?P<d1>.+?)\$\$"
    r"|\\\[(?P<d2>.+?)\\\]"
    r"|\\\((?P<i1>.+?)\\\)"
    r"|(?<![\\$])\$(?P<i2>[^\s$](?:[^$\n]{0,400}?[^\s$\\])?)\$(?!\d)",
    re.DOTALL,
)
MAX_MATH_CHARS = 2000


# The converter copies \text{...} into the output as it is, markup included: its output is
# parsed and rebuilt from these MathML elements and attributes only, every text escaped.
ELEMENTS = frozenset(
    [
        "math",
        "semantics",
        "annotation",
        "mrow",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "mspace",
        "msup",
        "msub",
        "msubsup",
        "mfrac",
        "msqrt",
        "mroot",
        "mover",
        "munder",
        "munderover",
        "mtable",
        "mtr",
        "mtd",
        "mlabeledtr",
        "mstyle",
        "mpadded",
        "mphantom",
        "menclose",
        "merror",
        "mfenced",
        "mmultiscripts",
        "mprescripts",
        "none",
    ]
)
ATTRIBUTES = frozenset(
    [
        "display",
        "mathvariant",
        "stretchy",
        "fence",
        "separator",
        "separators",
        "lspace",
        "rspace",
        "width",
        "height",
        "depth",
        "columnalign",
        "rowalign",
        "columnspacing",
        "rowspacing",
        "columnlines",
        "rowlines",
        "frame",
        "framespacing",
        "accent",
        "accentunder",
        "linethickness",
        "movablelimits",
        "minsize",
        "maxsize",
        "symmetric",
        "largeop",
        "form",
        "notation",
        "scriptlevel",
        "displaystyle",
        "equalrows",
        "equalcolumns",
        "align",
        "open",
        "close",
        "encoding",
    ]
)
MATHML_NS = "http://www.w3.org/1998/Math/MathML"


def _clean(element: ElementTree.Element) -> str | None:
    """The element rebuilt from allowed names only; None if anything else is in it."""
    name = element.tag.rpartition("}")[2]
    if name not in ELEMENTS:
        return None
    attrs = "".join(
        f' {key}="{escape(value)}"'
        for key, value in sorted(element.attrib.items())
        if key in ATTRIBUTES
    )
    if name == "math":
        attrs = f' xmlns="{MATHML_NS}"' + attrs
    inner = [str(escape(element.text or ""))]
    for child in element:
        cleaned = _clean(child)
        if cleaned is None:
            return None
        inner.append(cleaned)
        inner.append(str(escape(child.tail or "")))
    return f"<{name}{attrs}>{''.join(inner)}</{name}>"


@lru_cache(maxsize=4096)
def _mathml(latex: str, display: bool) -> str | None:
    from latex2mathml.converter import convert

    try:
        converted = convert(latex, display="block" if display else "inline")
        return _clean(ElementTree.fromstring(converted))
    except Exception:  # malformed LaTeX is the model's, not ours: show its source instead
        return None


def math(latex: str, *, display: bool) -> Markup:
    source = latex.strip()
    rendered = _mathml(source, display) if len(source) <= MAX_MATH_CHARS else None
    if rendered is None:
        return Markup('<code class="tex">{}</code>').format(source)
    return Markup(rendered)  # rebuilt by _clean: allowed elements, escaped text


def _inline(text: str) -> Markup:
    parts: list[Markup] = []
    position = 0
    for match in MATH.finditer(text):
        parts.append(_text(text[position : match.start()]))
        display = match.group("d1") or match.group("d2")
        inline = match.group("i1") or match.group("i2")
        parts.append(
            math(display if display is not None else inline or "", display=display is not None)
        )
        position = match.end()
    parts.append(_text(text[position:]))
    return Markup("").join(parts)


def _text(text: str) -> Markup:
    return Markup("<br>").join(escape(line) for line in text.split("\n"))


def render_chain(text: str | None) -> Markup:
    """Paragraphs of escaped text and MathML."""
    if not text:
        return Markup('<p class="empty">(empty)</p>')
    paragraphs = re.split(r"\n[ \t]*\n", text.strip("\n"))
    return Markup("\n").join(Markup("<p>{}</p>").format(_inline(p)) for p in paragraphs)
