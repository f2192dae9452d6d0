"""The statistics an eval reports: Wilson intervals for shares, the exact McNemar test for two
runs on the same questions, and how many questions an interval of a given width needs.

Wilson rather than the normal ("Wald") interval: it stays inside [0, 1] and keeps its coverage
near 0 % and 100 %, where the Wald interval collapses to a point (0/20 correct would be
"0 % ± 0"). Computed by scipy; only the sample-size search is distill's."""

from __future__ import annotations

import math

from schemas.eval import Interval

CONFIDENCE = 0.95
_Z = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson(k: int, n: int, *, confidence: float = CONFIDENCE) -> Interval:
    """k successes of n, with its Wilson score interval. n == 0 gives the whole [0, 1]."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Interval(k=0, n=0, value=None, low=0.0, high=1.0)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(k=k, n=n, value=k / n, low=float(ci.low), high=float(ci.high))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: of the questions where the two runs disagree, is the
    split between "only A right" and "only B right" more uneven than a fair coin makes it?
    Questions both got right (or both wrong) carry no information about the difference."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_a, discordant, 0.5).pvalue)


def half_width(p: float, n: int) -> float:
    """Half the width of the Wilson interval for share p over n questions (closed form)."""
    z2 = _Z * _Z
    return (_Z / (1 + z2 / n)) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))


def questions_for(half: float, p: float) -> int:
    """The fewest questions whose Wilson interval at share p is at most ± half."""
    if not 0 < half < 0.5:
        raise ValueError("half must be in (0, 0.5)")
    low, high = 1, 1
    while half_width(p, high) > half:
        low, high = high, high * 2
    while low < high:
        mid = (low + high) // 2
        if half_width(p, mid) <= half:
            high = mid
        else:
            low = mid + 1
    return high
