from __future__ import annotations

import numpy as np
import polars as pl

from recsys.evaluation import paired_comparison


def frame(values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(len(values))], "ndcg@10": values})


def test_identical_runs_show_no_difference() -> None:
    x = np.random.default_rng(0).random(200)
    c = paired_comparison(frame(x), frame(x), metric="ndcg@10")
    assert c.diff == 0 and not c.significant and c.p_ttest == 1.0


def test_a_consistent_lift_is_significant_and_ci_covers_it() -> None:
    rng = np.random.default_rng(1)
    x = rng.random(300)
    y = np.clip(x + 0.05 + rng.normal(0, 0.02, 300), 0, None)
    c = paired_comparison(frame(x), frame(y), metric="ndcg@10", names=("base", "new"))
    assert c.significant and c.ci_low > 0 and c.p_ttest < 1e-6 and c.p_wilcoxon < 1e-6
    assert c.ci_low <= c.diff <= c.ci_high
    assert (c.a, c.b) == ("base", "new")


def test_noise_is_not_significant() -> None:
    rng = np.random.default_rng(2)
    x = rng.random(300)
    c = paired_comparison(frame(x), frame(rng.permutation(x)), metric="ndcg@10")
    assert c.ci_low < 0 < c.ci_high
