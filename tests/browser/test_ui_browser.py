"""`distill ui` in a real browser: pages load, filters narrow, a chain's think block expands,
charts render, live numbers change without a reload, the token is enforced, a `<script>` chain
is inert and a 20,000-token chain renders at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from distill.db import make_engine, session_scope
from distill.models import Job, JobStatus, Outcome, utcnow
from tests.browser.conftest import TOKEN, Server
from tests.support.factories import add_generation

pytestmark = pytest.mark.browser


def test_runs_page_and_run_chart(page: Any, server: Server, shots: Path) -> None:
    page.goto(f"{server.url}/runs")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 3
    page.screenshot(path=str(shots / "ui-runs.png"), full_page=True)
    page.click(f'a[href="/runs/{server.seeded.runs[0]}"]')
    page.wait_for_url(f"**/runs/{server.seeded.runs[0]}")
    line = page.locator("#throughput-chart svg path.line")
    line.wait_for()
    box = line.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 10
    assert page.locator("#length-chart svg rect.bar").count() > 0
    assert page.locator("table.subjects tbody tr").count() == 2
    assert "host-a:4242" in page.locator("table.workers").inner_text()
    page.screenshot(path=str(shots / "ui-run.png"), full_page=True)
    assert page.errors == []


def test_live_numbers_change_without_a_reload(page: Any, server: Server) -> None:
    run_b = server.seeded.runs[1]
    page.goto(f"{server.url}/runs/{run_b}")
    done = page.locator(".card", has_text="done").locator(".big")
    assert done.inner_text() == "3"
    page.evaluate("window.__loaded = true")  # gone if the page reloaded
    engine = make_engine(server.database_url)
    with session_scope(engine) as s:
        job = s.scalars(
            select(Job).where(Job.run_id == run_b, Job.status == JobStatus.queued).limit(1)
        ).one()
        job.status, job.started_at, job.finished_at = JobStatus.done, utcnow(), utcnow()
        add_generation(s, job=job, question=job.question, outcome=Outcome.correct)
    engine.dispose()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card')].some("
        "c => c.innerText.includes('done') && c.querySelector('.big').innerText === '4')",
        timeout=20_000,
    )
    assert page.evaluate("window.__loaded") is True


def test_filters_narrow_the_list(page: Any, server: Server, shots: Path) -> None:
    page.goto(f"{server.url}/chains")
    everything = page.locator("#chain-list tbody tr").count()
    assert everything >= server.seeded.generations  # the live test may have added one
    page.screenshot(path=str(shots / "ui-chains.png"), full_page=True)
    page.select_option("select[name=outcome]", "truncated")  # submits on change
    page.wait_for_url("**outcome=truncated**")
    rows = page.locator("#chain-list tbody tr")
    assert rows.count() == len(server.seeded.truncated_generations)  # seeded only
    assert page.locator("#chain-list tbody tr.outcome-truncated").count() == rows.count()
    page.fill("input[name=q]", "energy")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=energy**")
    assert 0 < page.locator("#chain-list tbody tr").count() < everything
    page.select_option("select[name=sort]", "longest")
    page.wait_for_url("**sort=longest**")
    assert page.errors == []


def test_a_chain_opens_and_its_think_block_expands(page: Any, server: Server, shots: Path) -> None:
    page.goto(f"{server.url}/chains?subject=math&sort=oldest")
    page.locator("#chain-list tbody tr a[href^='/chains/']").first.click()
    page.wait_for_url("**/chains/*")
    think = page.locator("details#think")
    assert think.get_attribute("open") is None  # collapsed by default
    rendered = think.locator("[data-pane=rendered]")
    assert not rendered.is_visible()
    think.locator("summary").click()
    assert think.get_attribute("open") is not None and rendered.is_visible()
    think.locator("button[data-view=raw]").click()
    raw = think.locator("[data-pane=raw]")
    assert raw.is_visible() and not rendered.is_visible()
    assert "</think>" in raw.inner_text()  # the exact stored response
    think.locator("button[data-view=rendered]").click()
    assert rendered.is_visible()
    assert page.locator("article.sample").count() >= 1  # the other samples, side by side
    assert page.errors == []


def test_a_script_chain_is_inert_and_latex_renders(page: Any, server: Server, shots: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/chains/{server.seeded.script_generation}")
    page.locator("details#think summary").click()
    rendered = page.locator("details#think [data-pane=rendered]")
    assert "<script>alert(1)</script>" in rendered.inner_text()  # shown as text
    assert page.locator("main script").count() == 0
    assert page.locator("main img").count() == 0  # the question's <img onerror> too
    math = rendered.locator("math msup")
    assert math.count() >= 1
    box = math.first.bounding_box()
    assert box is not None and box["width"] > 0
    page.wait_for_timeout(500)
    assert dialogs == [] and page.errors == []
    page.screenshot(path=str(shots / "ui-chain.png"), full_page=True)


def test_a_20000_token_chain_renders_without_freezing(page: Any, server: Server) -> None:
    started = time.monotonic()
    page.goto(f"{server.url}/chains/{server.seeded.long_generation}")
    loaded = time.monotonic() - started
    think = page.locator("details#think")
    started = time.monotonic()
    think.locator("summary").click()
    think.locator("[data-pane=rendered] p").last.scroll_into_view_if_needed()
    # The main thread answers at once after expanding and scrolling to the end.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(1)))")
    expanded = time.monotonic() - started
    assert loaded < 5 and expanded < 3, (loaded, expanded)
    long_task = page.evaluate(
        "() => { const t = performance.now(); document.body.offsetHeight; "
        "return performance.now() - t; }"
    )
    assert long_task < 200
    assert think.locator("[data-pane=rendered] math").count() > 100


def test_export_preview(page: Any, server: Server, shots: Path) -> None:
    page.goto(f"{server.url}/export?run={server.seeded.runs[0]}")
    page.locator("#format-reasoning table.funnel").wait_for(timeout=30_000)
    assert "teacher answered incorrectly" in page.locator("#format-reasoning").inner_text()
    assert page.locator("#format-direct table.letters").is_visible()
    assert "--run" in page.locator("#export-command").inner_text()
    page.screenshot(path=str(shots / "ui-export.png"), full_page=True)
    assert page.errors == []


def test_the_token_is_enforced(browser: Any, guarded_server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    refused = page.goto(f"{guarded_server.url}/runs")
    assert refused is not None and refused.status == 401
    assert "access token required" in page.content()
    page.goto(f"{guarded_server.url}/chains?token={TOKEN}&outcome=correct")
    assert page.url == f"{guarded_server.url}/chains?outcome=correct"  # token gone from the URL
    assert page.locator("#chain-list").is_visible()
    page.goto(f"{guarded_server.url}/runs")  # the cookie from now on
    assert page.locator("table.runs").is_visible()
    wrong = context.browser.new_context() if context.browser else browser.new_context()
    other = wrong.new_page()
    assert other.goto(f"{guarded_server.url}/runs?token=nope").status == 401
    wrong.close()
    context.close()
