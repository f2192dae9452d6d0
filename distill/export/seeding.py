"""Seeded orderings that depend only on the seed and a stable key (a question uid, a record id),
never on database ids or insertion order: the same data and seed give the same splits, shuffles
and balancing wherever they run."""

from __future__ import annotations

import hashlib


def seeded_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()
