"""Every page answers, on the seeded database, with what it is for."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from tests.ui.seed import Seeded


def test_home_redirects_to_runs(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/runs"


def test_runs_lists_every_run_with_progress(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/runs")
    assert page.status_code == 200
    for run_id in seeded.runs:
        assert f'data-run="{run_id}"' in page.text
    assert 'data-refresh="/runs/live"' in page.text  # updated without a reload
    live = client.get("/runs/live")
    assert live.status_code == 200 and "<html" not in live.text
    assert f'href="/runs/{seeded.runs[1]}"' in live.text


def test_run_page_shows_status_subjects_charts_and_workers(
    client: TestClient, seeded: Seeded
) -> None:
    run_a, run_b, _ = seeded.runs
    page = client.get(f"/runs/{run_a}")
    assert page.status_code == 200
    text = page.text
    assert "Outcomes by subject" in text and ">math<" in text and ">history<" in text
    assert text.count('<svg class="chart"') == 2  # throughput and completion lengths
    assert "host-a:4242" in text  # workers seen recently
    assert "finished" in text  # nothing left: the ETA says so
    live = client.get(f"/runs/{run_b}/live")
    assert live.status_code == 200 and "<svg" in live.text
    # run B: 3 done, 1 failed, 1 running, 2 queued
    found = re.findall(r'<span class="big"[^>]*>([^<]+)</span><span>(\w+)</span>', live.text)
    cards = {label: value for value, label in found}
    assert {k: cards[k] for k in ("done", "failed", "running", "queued")} == {
        "done": "3",
        "failed": "1",
        "running": "1",
        "queued": "2",
    }


def test_missing_things_are_404_pages(client: TestClient) -> None:
    assert client.get("/runs/999").status_code == 404
    assert client.get("/runs/999/live").status_code == 404
    missing = client.get("/chains/999999")
    assert missing.status_code == 404 and "generation 999999" in missing.text


def test_chain_list_paginates_and_counts(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/chains")
    assert page.status_code == 200
    assert f"{seeded.generations} generation(s)" in page.text
    rows = re.findall(r'<a href="/chains/(\d+)">#', page.text)
    assert len(rows) == min(50, seeded.generations)


def test_chain_page_has_everything(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/chains/{seeded.long_generation}")
    assert page.status_code == 200
    text = page.text
    assert '<details class="think" id="think">' in text  # collapsed by default: no `open`
    assert 'data-view="raw"' in text and 'data-pane="rendered"' in text
    assert "finish reason</dt><dd>length" in text
    assert "20,000 completion" in text
    assert "Other samples of this question" in text


def test_siblings_side_by_side(client: TestClient, seeded: Seeded) -> None:
    from sqlalchemy import select

    from distill.db import session_scope
    from distill.models import Generation, Job

    with session_scope() as s:
        ids = s.scalars(
            select(Generation.id)
            .join(Job, Job.id == Generation.job_id)
            .where(Job.question_id == seeded.sibling_question)
            .order_by(Generation.id)
        ).all()
    page = client.get(f"/chains/{ids[0]}")
    assert page.text.count('<article class="sample">') == len(ids) - 1
    for other in ids[1:]:
        assert f'href="/chains/{other}"' in page.text


def test_a_failed_sample_shows_its_attempts_and_error(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/chains/{seeded.beside_failure}").text
    assert f"job #{seeded.failed_job}" in page  # a job without a generation, among the samples
    assert "attempts</dt><dd>3" in page
    assert "HTTP 500 &lt;html&gt;Internal error&lt;/html&gt;" in page
    assert "<html>Internal" not in page


def test_bad_filters_are_refused_not_crashing(client: TestClient) -> None:
    assert client.get("/chains?dmin=2").status_code == 422
    assert client.get("/chains?outcome=bogus").status_code == 422
    assert client.get("/chains?page=0").status_code == 422
    assert client.get("/chains?outcome=&finish=&q=").status_code == 200  # an empty form


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_no_write_routes(client: TestClient, method: str) -> None:
    for path in ("/runs", "/chains", "/export"):
        assert getattr(client, method)(path).status_code == 405


def _preview(client: TestClient, query: str) -> str:
    page = client.get(f"/export?{query}")
    assert page.status_code == 200
    deadline = time.monotonic() + 60
    text = page.text
    while "Computing" in text and time.monotonic() < deadline:
        time.sleep(0.1)
        text = client.get(f"/export/result?{query}").text
    return text


def test_export_preview_reports_the_funnel(client: TestClient, seeded: Seeded) -> None:
    text = _preview(client, f"run={seeded.runs[0]}")
    assert 'id="format-reasoning"' in text and 'id="format-direct"' in text
    assert "truncated (token budget hit or chain never closed)" in text
    assert "Gold letters" in text
    empty = _preview(client, "subject=nosuchsubject")
    assert "Nothing would be exported" in empty
