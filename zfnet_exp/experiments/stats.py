"""The statistics of a comparison of runs: per variant the mean, sample standard deviation and Student's t 95%
interval over its replicates (seeds); per variant against a baseline the difference of the means with Welch's
95% interval, Cohen's d, Welch's two-sided p, and Holm's adjustment of those p over the variants.

Why these: seeds are few (3-5) and variants need not have equal spread or equal n (a job that failed), so the
intervals use Student's t and the difference Welch's unequal-variance form (``scipy.stats.ttest_ind`` with
``equal_var=False``, its degrees of freedom by Welch-Satterthwaite); several variants against one baseline are
several tests, so their p-values are Holm-adjusted (uniformly more powerful than Bonferroni, no assumption about
their dependence). Where a statistic is undefined (one replicate: no spread; no spread on either side) it is
None, and the table says "n/a" rather than a number.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence

LEVEL = 0.95


def describe(values: Sequence[float], level: float = LEVEL) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``sd`` (n - 1) and the t interval ``ci_low``/``ci_high`` of the mean (None for n < 2)."""
    from scipy.stats import t

    n = len(values)
    out: dict[str, float | int | None] = {"n": n, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    mean = statistics.fmean(values)
    out["mean"] = mean
    if n > 1:
        sd = statistics.stdev(values)
        half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci_low=mean - half, ci_high=mean + half)
    return out


def against(baseline: Sequence[float], variant: Sequence[float], level: float = LEVEL) -> dict[str, float | None]:
    """``variant`` against ``baseline``: ``diff`` = mean(variant) - mean(baseline), its Welch interval
    (``diff_ci_low``/``diff_ci_high``), ``cohens_d`` (difference over the pooled sample sd) and ``p_welch``
    (two-sided, ``scipy.stats.ttest_ind(variant, baseline, equal_var=False)``, whose statistic is ``t_welch``).
    Needs n >= 2 on both sides and some spread; otherwise those are None (the difference itself needs one value
    on each side)."""
    from scipy.stats import t, ttest_ind

    out: dict[str, float | None] = dict.fromkeys(
        ("diff", "diff_ci_low", "diff_ci_high", "cohens_d", "p_welch", "t_welch")
    )
    if not baseline or not variant:
        return out
    diff = statistics.fmean(variant) - statistics.fmean(baseline)
    out["diff"] = diff
    na, nb = len(baseline), len(variant)
    if na < 2 or nb < 2:
        return out
    va, vb = statistics.variance(baseline), statistics.variance(variant)
    se2 = va / na + vb / nb
    if se2 <= 0:
        return out
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = float(t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    with warnings.catch_warnings():  # scipy warns when one side has (almost) no spread; the test holds
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ttest_ind(variant, baseline, equal_var=False)
    out.update(diff_ci_low=diff - half, diff_ci_high=diff + half, cohens_d=diff / pooled)
    out.update(p_welch=float(test.pvalue), t_welch=float(test.statistic))
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the family ``p_values`` (None entries are not tests: they stay None and do
    not count in the family size). Adjusted p of the i-th smallest of m: max over j <= i of min(1, (m-j+1) p_j)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    m = len(tested)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
