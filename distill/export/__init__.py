"""`distill export`: stored generations -> SFT datasets (TRL conversational records) with splits,
a curriculum order, letter balance, hygiene checks and a dataset card. See docs/export.md.

The package reads the database in chunks (`select`), decides everything on small columns
(`plan`, with `splits`, `curriculum`, `balance`, `dedupe`), then builds, validates and writes the
records (`records`, `write`) and describes them (`stats`, `plots`, `card`)."""

from distill.export.pipeline import export_dataset
from schemas.export import ExportManifest, ExportOptions

__all__ = ["ExportManifest", "ExportOptions", "export_dataset"]
