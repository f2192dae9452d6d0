"""Everything a model (or an imported question) wrote is text on the page, never markup."""

from __future__ import annotations

from fastapi.testclient import TestClient

from distill.ui.render import render_chain
from distill.ui.security import CSP
from tests.ui.seed import Seeded


def test_a_script_chain_renders_as_text(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/chains/{seeded.script_generation}")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # rendered and raw views
    assert "<img src=x" not in html and "&lt;img src=x onerror=" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # question, option
    # The only scripts are the UI's own file.
    assert html.count("<script") == 1 and 'src="http://127.0.0.1/static/ui.js"' in html


def test_latex_becomes_mathml(client: TestClient, seeded: Seeded) -> None:
    html = client.get(f"/chains/{seeded.script_generation}").text
    assert "<math" in html and "<msup>" in html  # $x^2$
    assert 'display="block"' in html  # $$ ... $$


def test_the_list_escapes_questions(client: TestClient) -> None:
    html = client.get("/chains?subject=math").text
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_pages_forbid_inline_scripts(client: TestClient) -> None:
    for path in ("/runs", "/chains", "/export"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_render_escapes_around_and_inside_math() -> None:
    out = str(render_chain("a <b> $x^2$ c & d\n\nnext <i>"))
    assert out.startswith("<p>a &lt;b&gt; <math") and "c &amp; d</p>" in out
    assert out.endswith("<p>next &lt;i&gt;</p>")
    # LaTeX that names HTML is escaped by the converter too; unreadable LaTeX is shown as code.
    assert "<script" not in str(render_chain(r"$\text{<script>alert(1)</script>}$"))
    bad = str(render_chain(r"$\frac{$ and $\begin{x}$"))
    assert "<script" not in bad


def test_money_is_not_math() -> None:
    out = str(render_chain("It costs $5 and $10 in total."))
    assert "<math" not in out and "$5 and $10" in out


def test_an_empty_chain_says_so() -> None:
    assert "(empty)" in str(render_chain(None)) and "(empty)" in str(render_chain(""))
