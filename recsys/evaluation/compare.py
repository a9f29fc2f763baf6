"""Paired comparison of two runs over the same users: bootstrap CI of the mean difference and paired tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from recsys.data import schema as S


@dataclass(frozen=True)
class PairedComparison:
    """Difference `b - a` of a per-user metric, with a percentile bootstrap CI and two paired tests.

    `p_ttest`: paired t-test (two-sided); `p_wilcoxon`: Wilcoxon signed-rank (two-sided, zero differences
    dropped, as in Wilcoxon's original test); `ci_low`/`ci_high`: percentile bootstrap over users.
    """

    metric: str
    a: str
    b: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_ttest: float
    p_wilcoxon: float

    @property
    def significant(self) -> bool:
        """True when the bootstrap CI excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "significant": self.significant}


def paired_comparison(
    a: pl.DataFrame,
    b: pl.DataFrame,
    *,
    metric: str,
    names: tuple[str, str] = ("a", "b"),
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 42,
) -> PairedComparison:
    """Compare per-user metric frames (user_id, <metric>) of two runs; users missing from one side score 0."""
    joined = (
        a.select(S.USER_ID, pl.col(metric).alias("_a"))
        .join(b.select(S.USER_ID, pl.col(metric).alias("_b")), on=S.USER_ID, how="full", coalesce=True)
        .fill_null(0.0)
        .sort(S.USER_ID)
    )
    xa, xb = joined["_a"].to_numpy(), joined["_b"].to_numpy()
    d = xb - xa
    n = len(d)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))  # bound memory: chunk x n indices at a time
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        boots[start : start + m] = d[rng.integers(0, n, (m, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha]) if n else (0.0, 0.0)
    if n > 1 and np.any(d != 0):
        from scipy import stats  # imported on first use: it costs ~0.4 s at start-up

        p_t = float(stats.ttest_rel(xb, xa).pvalue)
        p_w = float(stats.wilcoxon(d[d != 0]).pvalue) if np.count_nonzero(d) > 0 else 1.0
    else:
        p_t = p_w = 1.0
    return PairedComparison(
        metric,
        names[0],
        names[1],
        n,
        float(xa.mean()) if n else 0.0,
        float(xb.mean()) if n else 0.0,
        float(d.mean()) if n else 0.0,
        float(lo),
        float(hi),
        confidence,
        p_t,
        p_w,
    )


def holm_adjust(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979): with m tests ordered p_(1) <= ... <= p_(m),
    adj_(i) = max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting where adj < alpha controls the family-wise
    error rate at alpha, so picking the best of several options tried against one baseline stays an alpha-level
    decision. Ties keep their input order."""
    m = len(p_values)
    out: dict[str, float] = {}
    running = 0.0
    for j, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - j) * p))
        out[name] = running
    return {name: out[name] for name in p_values}
