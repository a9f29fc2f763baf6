from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.registry import GateConfig, decide


def per_user(values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(len(values))], "ndcg@10": values})


def means(frame: pl.DataFrame, **extra: float) -> dict[str, float]:
    return {"ndcg@10": float(frame["ndcg@10"].mean()), "recall@10": 0.2, "hitrate@10": 0.5, "coverage@10": 0.3, **extra}


rng = np.random.default_rng(0)
BASE = rng.uniform(0.1, 0.6, 200)


def test_first_version_is_promoted():
    d = decide(means(per_user(BASE)), per_user(BASE), None, None)
    assert d.promote and "no champion" in d.reason


def test_equal_or_noisy_candidate_passes():
    noisy = np.clip(BASE + rng.normal(0, 0.02, BASE.size), 0, 1)
    d = decide(means(per_user(noisy)), per_user(noisy), means(per_user(BASE)), per_user(BASE))
    assert d.promote, d.reason
    assert d.primary["n_users"] == 200 and set(d.guards) == {"recall@10", "hitrate@10", "coverage@10"}


def test_significantly_worse_candidate_is_rejected():
    worse = BASE * 0.8
    d = decide(means(per_user(worse)), per_user(worse), means(per_user(BASE)), per_user(BASE))
    assert not d.promote and "significantly worse" in d.reason
    assert d.primary["diff"] < 0 and d.primary["p_ttest"] < 0.05


def test_guard_regression_is_rejected_even_when_primary_is_fine():
    cand = means(per_user(BASE), **{"coverage@10": 0.2})
    d = decide(cand, per_user(BASE), means(per_user(BASE)), per_user(BASE))
    assert not d.promote and "coverage@10 dropped by 0.1000" in d.reason
    assert d.guards["coverage@10"]["drop"] == pytest.approx(0.1)


def test_too_few_users_and_unknown_guard():
    few = BASE[:5]
    d = decide(means(per_user(few)), per_user(few), means(per_user(few)), per_user(few))
    assert not d.promote and "only 5 judged users" in d.reason
    cfg = GateConfig(guards={"mrr": 0.01})
    with pytest.raises(KeyError, match="mrr"):
        decide(means(per_user(BASE)), per_user(BASE), means(per_user(BASE)), per_user(BASE), cfg=cfg)
