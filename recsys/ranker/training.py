"""Training the LightGBM LambdaRank ranker (the serving process never imports this module)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.ranker.config import RankerConfig
from recsys.ranker.model import LambdaRanker, rank_margin


def train_ranker(
    frame: pl.DataFrame, features: list[str], *, label: str = "label", cfg: RankerConfig | None = None, seed: int = 42
) -> LambdaRanker:
    """Fit lambdarank on `frame` (user_id, features, label), grouped by user; users whose candidates hold no positive
    carry no ranking signal and are left out. Early stopping on nDCG@eval_at over a seeded hold-out of users.
    Boosting starts from the base margin of `cfg.margin_feature` when that feature is among `features`, and the
    features named in `cfg.monotone` are constrained (see the module docstring).
    Deterministic for the same frame, config and seed (LightGBM's deterministic mode, fixed threads).
    """
    import lightgbm as lgb

    cfg = cfg or RankerConfig()
    margin_feature = cfg.margin_feature if cfg.margin_weight > 0 else None
    if margin_feature is not None and margin_feature not in features:
        raise ValueError(f"margin feature {margin_feature!r} is not among the ranker's features {features}")
    sort_by = [S.USER_ID, S.ITEM_ID] if S.ITEM_ID in frame.columns else [S.USER_ID]
    useful = frame.filter(pl.col(label).max().over(S.USER_ID) > 0).sort(sort_by, maintain_order=True)
    if useful.height == 0:
        raise ValueError("no user has a positive among their candidates: nothing to learn a ranking from")
    users = useful[S.USER_ID].unique(maintain_order=True).to_numpy()
    rng = np.random.default_rng(seed)
    n_val = max(1, round(cfg.validation_fraction * len(users))) if len(users) > 4 else 0
    val_users = set(rng.choice(users, n_val, replace=False).tolist()) if n_val else set()
    is_val = useful[S.USER_ID].is_in(list(val_users))

    def dataset(part: pl.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        groups = part.group_by(S.USER_ID, maintain_order=True).len()["len"].to_numpy()
        x = part.select(pl.col(f).cast(pl.Float64) for f in features).to_numpy()
        init = None
        if margin_feature is not None:
            init = rank_margin(part[margin_feature].cast(pl.Float64).to_numpy(), cfg.margin_weight)
        return lgb.Dataset(
            x,
            label=part[label].to_numpy(),
            group=groups,
            init_score=init,
            feature_name=features,
            reference=reference,
            free_raw_data=False,
        )

    train_part, val_part = useful.filter(~is_val), useful.filter(is_val)
    dtrain = dataset(train_part)
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [cfg.eval_at],
        "num_leaves": cfg.num_leaves,
        "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": cfg.lambda_l2,
        "lambdarank_truncation_level": cfg.truncation_level,
        "monotone_constraints": [cfg.monotone.get(f, 0) for f in features],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }
    callbacks: list[Any] = []
    valid_sets = []
    if val_part.height:
        valid_sets = [dataset(val_part, dtrain)]
        callbacks.append(
            lgb.early_stopping(cfg.early_stopping_rounds, verbose=False, min_delta=cfg.early_stopping_min_delta)
        )
    booster = lgb.train(params, dtrain, num_boost_round=cfg.n_estimators, valid_sets=valid_sets, callbacks=callbacks)
    best = int(booster.best_iteration or cfg.n_estimators)
    score = booster.best_score.get("valid_0", {}).get(f"ndcg@{cfg.eval_at}") if valid_sets else None
    return LambdaRanker(
        booster,
        list(features),
        best,
        float(score) if score is not None else None,
        margin_feature,
        cfg.margin_weight if margin_feature else 0.0,
    )
