"""The output directory: never written into when it holds something else, never left half
written. An export is built next to it and moved into place at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distill.errors import UserError

MANIFEST = "manifest.json"


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Refuse early, before any work: a file, a non-empty directory without --overwrite, or (with
    --overwrite) a non-empty directory that is not an earlier export."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(f"--out {out} is not empty; pass --overwrite to replace it")
    if not (out / MANIFEST).is_file():
        raise UserError(
            f"refusing to replace {out}: it does not look like a distill export (no {MANIFEST})"
        )


@contextmanager
def staged(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """A fresh sibling directory to write into; it replaces `out` only if the block succeeds."""
    check_out_dir(out, overwrite=overwrite)
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    move_into_place(staging, out)


def move_into_place(staging: Path, out: Path) -> None:
    """`staging` becomes `out`, replacing what was there (two renames: never half of each)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
