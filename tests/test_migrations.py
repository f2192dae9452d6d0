"""Alembic is the only source of the schema: the models must match the migrations on the real
backend, and the migrations must run down and up again."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import inspect, text

from distill.config import Settings
from distill.db import get_engine
from distill.migrate import alembic_config, check


def test_alembic_check_finds_no_drift(settings: Settings) -> None:
    check(settings.database_url)  # raises when autogenerate would emit any operation


def test_downgrade_to_base_and_upgrade_again(settings: Settings) -> None:
    cfg = alembic_config(settings.database_url)
    engine = get_engine(settings.database_url)
    command.downgrade(cfg, "base")
    assert not {"questions", "runs", "jobs", "generations"} & set(inspect(engine).get_table_names())
    command.upgrade(cfg, "head")
    tables = set(inspect(engine).get_table_names())
    assert {"questions", "runs", "jobs", "generations"} <= tables
    check(settings.database_url)


def test_upgrade_finds_referring_options_in_stored_questions(settings: Settings) -> None:
    """Questions imported before option references were detected get them at upgrade; their
    queued jobs take an order that keeps what the options name, asked ones keep theirs."""
    cfg = alembic_config(settings.database_url)
    engine = get_engine(settings.database_url)
    command.downgrade(cfg, "0001")
    now = "2026-11-30 12:00:00+00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO questions (id, uid, source, subject, question, choices, answer_index,"
                " created_at) VALUES (1, 'u1', 's', 'ee', 'Stability is increased by', :c1, 2, :t),"
                " (2, 'u2', 's', 'bio', 'Which is a mammal?', :c2, 3, :t),"
                " (3, 'u3', 's', 'geo', 'Capital of Peru?', :c3, 0, :t)"
            ),
            {
                "c1": json.dumps(["shunt reactor", "series capacitor", "both A and B", "x"]),
                "c2": json.dumps(["whale", "bat", "dolphin", "All of the above"]),
                "c3": json.dumps(["Lima", "Quito", "Cusco", "Bogota"]),
                "t": now,
            },
        )
        conn.execute(
            text(
                "INSERT INTO runs (id, kind, teacher_model, prompt_version, params,"
                " samples_per_question, requested_n, seed, created_at)"
                " VALUES (1, 'enqueue', 't', 'v', '{}', 2, 1, 0, :t)"
            ),
            {"t": now},
        )
        for job_id, status, qid, order in [
            (1, "queued", 1, [1, 0, 2, 3]),
            (2, "done", 1, [1, 0, 2, 3]),
            (3, "queued", 2, [3, 1, 0, 2]),
            (4, "queued", 3, [2, 0, 3, 1]),
        ]:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, run_id, question_id, teacher_model, prompt_version,"
                    " sample_index, max_tokens, choice_order, status, attempts, created_at,"
                    " updated_at) VALUES (:id, 1, :q, 't', 'v', :k, 64, :o, :s, 0, :t, :t)"
                ),
                {
                    "id": job_id,
                    "q": qid,
                    "k": job_id,
                    "o": json.dumps(order),
                    "s": status,
                    "t": now,
                },
            )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        questions = dict(
            conn.execute(text("SELECT id, option_order FROM questions ORDER BY id")).all()
        )
        orders = {
            job_id: json.loads(order) if isinstance(order, str) else order
            for job_id, order in conn.execute(text("SELECT id, choice_order FROM jobs"))
        }
    assert questions == {1: "fixed", 2: "anchored", 3: "free"}
    assert orders == {1: [0, 1, 2, 3], 2: [1, 0, 2, 3], 3: [0, 1, 2, 3], 4: [2, 0, 3, 1]}


def test_the_head_distill_checks_for_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from distill.migrations import HEAD

    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == HEAD
