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


def test_holm_adjustment_matches_the_step_down_definition() -> None:
    from recsys.evaluation import holm_adjust

    adjusted = holm_adjust({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    # sorted: d 4 x 0.005 = 0.02; a 3 x 0.01 = 0.03; c 2 x 0.03 = 0.06; b max(0.06, 1 x 0.04) = 0.06
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert np.allclose([adjusted[k] for k in "abcd"], [0.03, 0.06, 0.06, 0.02])
    assert holm_adjust({"only": 0.2}) == {"only": 0.2} and holm_adjust({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_holm_keeps_the_family_wise_error_rate_under_alpha() -> None:
    from recsys.evaluation import holm_adjust

    rng = np.random.default_rng(0)
    draws = rng.uniform(size=(20000, 4))  # four true null hypotheses per trial
    raw = (draws < 0.05).any(axis=1).mean()
    holm = np.mean([min(holm_adjust(dict(zip("abcd", row, strict=True))).values()) < 0.05 for row in draws])
    assert raw > 0.17  # 1 - 0.95^4 = 0.185: the uncorrected choice leaves the fallback almost 4x too often
    assert holm < 0.055
