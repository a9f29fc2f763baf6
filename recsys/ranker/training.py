"""Training the LightGBM LambdaRank ranker (the serving process never imports this module)."""

from __future__ import annotations

from collections.abc import Callable
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
    carry no ranking signal and are left out. The number of boosting rounds is chosen by early stopping on
    nDCG@eval_at: by default on the mean curve of `cfg.stopping_folds` seeded folds of the users, then refitted on
    all of them; with one fold, on a seeded hold-out of `cfg.validation_fraction` of the users.
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
            free_raw_data=True,  # binned once; the float copies go (the folds hold four datasets)
        )

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
    if cfg.stopping_folds > 1 and len(users) >= 2 * cfg.stopping_folds:
        fold_of = np.empty(len(users), dtype=np.int64)
        fold_of[rng.permutation(len(users))] = np.arange(len(users)) % cfg.stopping_folds
        folds = useful.join(
            pl.DataFrame({S.USER_ID: users, "_fold": fold_of}), on=S.USER_ID, how="left", maintain_order="left"
        )["_fold"]
        parts = [(useful.filter(folds != f), useful.filter(folds == f)) for f in range(cfg.stopping_folds)]
        best, curve = _rounds_by_folds(params, parts, dataset, cfg)
        booster = lgb.train(params, dataset(useful), num_boost_round=best)
        score: float | None = curve[best - 1]
    else:
        n_val = max(1, round(cfg.validation_fraction * len(users))) if len(users) > 4 else 0
        val_users = set(rng.choice(users, n_val, replace=False).tolist()) if n_val else set()
        is_val = useful[S.USER_ID].is_in(list(val_users))
        train_part, val_part = useful.filter(~is_val), useful.filter(is_val)
        dtrain = dataset(train_part)
        callbacks: list[Any] = []
        valid_sets = []
        history: dict[str, dict[str, list[float]]] = {}
        if val_part.height:
            valid_sets = [dataset(val_part, dtrain)]
            callbacks.append(lgb.record_evaluation(history))
            callbacks.append(
                lgb.early_stopping(cfg.early_stopping_rounds, verbose=False, min_delta=cfg.early_stopping_min_delta)
            )
        booster = lgb.train(
            params, dtrain, num_boost_round=cfg.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        best = int(booster.best_iteration or cfg.n_estimators)
        found = booster.best_score.get("valid_0", {}).get(f"ndcg@{cfg.eval_at}") if valid_sets else None
        score = float(found) if found is not None else None
        curve = history.get("valid_0", {}).get(f"ndcg@{cfg.eval_at}", [])
    return LambdaRanker(
        booster,
        list(features),
        best,
        score,
        margin_feature,
        cfg.margin_weight if margin_feature else 0.0,
        curve=tuple(curve),
    )


def _rounds_by_folds(
    params: dict[str, Any],
    parts: list[tuple[pl.DataFrame, pl.DataFrame]],
    dataset: Callable[..., Any],
    cfg: RankerConfig,
) -> tuple[int, list[float]]:
    """(number of rounds, mean hold-out nDCG per round): one booster per (train, hold-out) part, trained in lockstep;
    the curve is the mean over the parts' hold-outs, and it stops `early_stopping_rounds` past its best (a gain
    below `early_stopping_min_delta` does not count). Every label user judges once, so the choice does not rest on
    a fifth of them."""
    import lightgbm as lgb

    boosters = []
    for train_part, held_out in parts:
        dtrain = dataset(train_part)
        booster = lgb.Booster(params, dtrain)
        booster.add_valid(dataset(held_out, dtrain), "held_out")
        boosters.append(booster)
    curve: list[float] = []
    best, best_score = 1, -np.inf
    for round_ in range(1, cfg.n_estimators + 1):
        scores = []
        for booster in boosters:
            booster.update()
            scores.append(booster.eval_valid()[0][2])
        curve.append(float(np.mean(scores)))
        if curve[-1] > best_score + cfg.early_stopping_min_delta:
            best, best_score = round_, curve[-1]
        elif round_ - best >= cfg.early_stopping_rounds:
            break
    return best, curve
