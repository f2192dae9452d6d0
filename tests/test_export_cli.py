"""`distill export` from the command line (in-process, as the lead registers it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from distill.cli.export import export
from distill.errors import UserError
from schemas.export import ExportManifest
from tests.test_export import populate

app = typer.Typer()
app.command("export")(export)


@app.command()
def noop() -> None:  # a second command keeps `export` a subcommand, as in the real CLI
    pass


runner = CliRunner()


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    assert "Example: distill export" in result.output


def test_export_prints_a_summary(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 40)  # 36 train + 4 validation questions: letters can be exactly even
    result = runner.invoke(
        app, ["export", "--format", "both", "--out", str(tmp_path / "out"), "--to", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    assert "reasoning:" in result.output and "direct:" in result.output
    assert "A 25.0%" in result.output  # the direct letters, balanced
    assert (tmp_path / "out/direct/train.jsonl").is_file()


def test_json_prints_the_manifest(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 30)
    result = runner.invoke(
        app,
        [
            "export",
            "--format",
            "direct",
            "--out",
            str(tmp_path / "out"),
            "--to",
            "parquet",
            "--json",
            "--seed",
            "3",
            "--val-size",
            "5",
            "--subject",
            "math",
            "--subject",
            "bio",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = ExportManifest.model_validate(json.loads(result.stdout))
    assert manifest.seed == 3 and manifest.questions["validation"] == 5
    assert manifest.options["subjects"] == ["math", "bio"]
    on_disk = json.loads((tmp_path / "out/manifest.json").read_text())
    assert on_disk == json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answer-template", "no letter"], "exactly once"),
        (["--stages", "2", "--curriculum", "none"], "--curriculum none"),
    ],
)
def test_bad_options_are_user_errors(
    engine: Engine, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app, ["export", "--format", "direct", "--out", str(tmp_path / "o"), *args]
    )
    assert isinstance(result.exception, UserError)
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_non_empty_out_is_a_user_error(engine: Engine, tmp_path: Path) -> None:
    populate(engine, 10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = runner.invoke(app, ["export", "--format", "direct", "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, UserError)
    assert "--overwrite" in str(result.exception)
