"""The LightGBM LambdaRank ranker: (user, candidate) rows grouped by user, saved in LightGBM's text format.

The model file is LightGBM's own text format (no pickle), with the ordered feature list in `features.json` beside it;
loading checks that the two agree.

Two pieces of prior knowledge keep the ranker from doing worse than its strongest source on small, noisy label sets
(measured on ML-100k's inner validation split: without them the ranker fell ~8% below EASE alone):
- a base margin: boosting starts from `-log2(1 + rank)` of the margin feature (by default `rank_prior`: the rank among
  the user's candidates of the pipeline's prior score, EASE blended with a low-pass filter, plus the weighted
  interest match in the text pipeline), so the trees learn corrections to that order instead of re-learning it from
  a few thousand positives (a tree ensemble stopped early is piecewise constant, and the ties it leaves among the
  top candidates were broken arbitrarily);
- monotone constraints: a better collaborative score or rank never lowers the score, everything else equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from recsys.data import schema as S

MODEL_FILE = "ranker.txt"
FEATURES_FILE = "features.json"
# Collaborative sources: a higher score / better (smaller) rank never makes a candidate worse.
MONOTONE_DEFAULT: dict[str, int] = {
    **{f"score_{s}": 1 for s in ("ease", "lowpass", "blend", "prior", "sar", "itemknn")},
    **{f"rank_{s}": -1 for s in ("ease", "lowpass", "blend", "prior", "sar", "itemknn")},
}
# Ranks past the end of any candidate list (a missing rank): the lowest margin.
_MISSING_RANK = 1e6


def rank_margin(ranks: np.ndarray, weight: float) -> np.ndarray:
    """The base margin of rows from their rank (1 = best): -weight * log2(1 + rank); a missing rank is the worst."""
    r = np.where(np.isnan(ranks), _MISSING_RANK, np.maximum(ranks, 0.0))
    return -weight * np.log2(1.0 + r)


class RankerConfig(BaseModel, frozen=True, extra="forbid"):
    """LightGBM lambdarank hyper-parameters and the ablation switch."""

    num_leaves: int = Field(31, gt=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(600, ge=1)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    truncation_level: int = Field(20, ge=1, description="lambdarank_truncation_level: positions that matter")
    early_stopping_rounds: int = Field(50, ge=1)
    early_stopping_min_delta: float = Field(
        1e-4, ge=0, description="smallest validation nDCG gain that counts as better (a flat curve is not noise-led)"
    )
    eval_at: int = Field(10, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of label users for early stopping")
    margin_feature: str | None = Field(
        "rank_prior",
        description="rank feature whose -log2(1 + rank) is the base margin boosting starts from (default: the "
        "rank of the pipeline's prior score, the EASE + low-pass blend plus the weighted interest match); None: 0",
    )
    margin_weight: float = Field(1.0, ge=0)
    monotone: dict[str, int] = Field(
        default_factory=lambda: dict(MONOTONE_DEFAULT),
        description="feature -> +1 (score never decreases with it) or -1 (never increases); others free",
    )
    use_text_features: bool = True  # False is the no-text ablation


@dataclass(frozen=True)
class LambdaRanker:
    """A trained booster and the ordered features it expects."""

    booster: object  # lightgbm.Booster
    features: list[str]
    best_iteration: int
    validation_ndcg: float | None
    margin_feature: str | None = None
    margin_weight: float = 0.0
    use_trees: bool = True  # False: the base margin's order alone (chosen when the trees did not help on validation)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The base margin of rows of a feature matrix (zeros without a margin feature)."""
        if self.margin_feature is None or self.margin_weight == 0:
            return np.zeros(len(x))
        return rank_margin(x[:, self.features.index(self.margin_feature)], self.margin_weight)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Scores for the rows of `frame` (must carry every feature column)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"ranker input lacks feature columns {missing}")
        return self.predict_matrix(frame.select(pl.col(f).cast(pl.Float64) for f in self.features).to_numpy())

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Scores for rows of a float matrix whose columns are `features`, in that order."""
        if not self.use_trees:
            return self.margin(x)
        # one thread for small inputs (online re-ranking): OpenMP start-up costs more than it saves there
        threads = 1 if len(x) < 20_000 else 0
        raw = self.booster.predict(x, num_iteration=self.best_iteration or None, num_threads=threads)  # type: ignore[attr-defined]
        return raw + self.margin(x)

    def importance(self) -> pl.DataFrame:
        """feature, gain, split: total gain and split count per feature, by gain descending."""
        b = self.booster
        gain = b.feature_importance(importance_type="gain", iteration=self.best_iteration or None)  # type: ignore[attr-defined]
        split = b.feature_importance(importance_type="split", iteration=self.best_iteration or None)  # type: ignore[attr-defined]
        return pl.DataFrame({"feature": self.features, "gain": gain.astype(float), "split": split.astype(int)}).sort(
            "gain", descending=True
        )

    def save(self, folder: Path) -> Path:
        """Write ranker.txt (LightGBM text format) and features.json into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE), num_iteration=self.best_iteration or None)  # type: ignore[attr-defined]
        meta = {
            "features": self.features,
            "best_iteration": self.best_iteration,
            "validation_ndcg": self.validation_ndcg,
            "margin": {"feature": self.margin_feature, "weight": self.margin_weight, "transform": "-log2(1 + rank)"},
            "use_trees": self.use_trees,
        }
        (folder / FEATURES_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path) -> LambdaRanker:
        import lightgbm as lgb

        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file() or not (folder / FEATURES_FILE).is_file():
            raise FileNotFoundError(f"{folder}: needs {MODEL_FILE} and {FEATURES_FILE} (written by LambdaRanker.save)")
        booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        meta = json.loads((folder / FEATURES_FILE).read_text())
        if booster.feature_name() != meta["features"]:
            raise ValueError(f"{folder}: {MODEL_FILE} and {FEATURES_FILE} disagree on the feature list")
        margin = meta.get("margin") or {}
        return cls(
            booster,
            meta["features"],
            0,
            meta.get("validation_ndcg"),
            margin.get("feature"),
            margin.get("weight", 0.0),
            meta.get("use_trees", True),
        )


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
    callbacks = []
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
