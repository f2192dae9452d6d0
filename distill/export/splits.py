"""Train / validation split by question, stratified by subject, decided once for both formats.

Splitting questions (not records) keeps every chain of a validation question out of train; deciding
it on the pool of all exported questions (not per format) puts a question in the same split in the
reasoning and the direct data."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from distill.errors import UserError
from distill.export.seeding import seeded_key
from schemas.export import Split

DEFAULT_VAL_SIZE = 500
SMALL_POOL = 5000  # below this many questions, validation is 10 % of them
SMALL_POOL_FRACTION = 0.10


def default_val_size(n_questions: int) -> int:
    if n_questions < 2:
        return 0
    if n_questions >= SMALL_POOL:
        return DEFAULT_VAL_SIZE
    return max(1, round(n_questions * SMALL_POOL_FRACTION))


def _quotas(sizes: dict[str, int], val_size: int) -> dict[str, int]:
    """Largest-remainder allocation of val_size over subjects, proportional to their size."""
    total = sum(sizes.values())
    exact = {s: val_size * n / total for s, n in sizes.items()}
    quotas = {s: int(q) for s, q in exact.items()}
    spare = val_size - sum(quotas.values())
    by_remainder = sorted(sizes, key=lambda s: (-(exact[s] - quotas[s]), s))
    for subject in by_remainder[:spare]:
        quotas[subject] += 1
    return quotas


def assign_splits(
    questions: Sequence[tuple[str, str]], *, val_size: int | None, seed: int
) -> dict[str, Split]:
    """uid -> split for (uid, subject) pairs. Within a subject, the validation questions are the
    first by a seeded hash of their uid."""
    n = len(questions)
    size = default_val_size(n) if val_size is None else val_size
    if size and size >= n:
        raise UserError(
            f"--val-size {size} leaves no training questions: only {n} questions are exported"
        )
    by_subject: dict[str, list[str]] = defaultdict(list)
    for uid, subject in questions:
        by_subject[subject].append(uid)
    quotas = _quotas({s: len(u) for s, u in by_subject.items()}, size) if size else {}
    splits: dict[str, Split] = {}
    for subject, uids in by_subject.items():
        ranked = sorted(uids, key=lambda uid: seeded_key(seed, uid))
        cut = quotas.get(subject, 0)
        for i, uid in enumerate(ranked):
            splits[uid] = Split.validation if i < cut else Split.train
    return splits
