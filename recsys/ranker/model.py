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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

MODEL_FILE = "ranker.txt"
FEATURES_FILE = "features.json"
# Ranks past the end of any candidate list (a missing rank): the lowest margin.
_MISSING_RANK = 1e6


def rank_margin(ranks: np.ndarray, weight: float) -> np.ndarray:
    """The base margin of rows from their rank (1 = best): -weight * log2(1 + rank); a missing rank is the worst."""
    r = np.where(np.isnan(ranks), _MISSING_RANK, np.maximum(ranks, 0.0))
    return -weight * np.log2(1.0 + r)


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
    curve: tuple[float, ...] = ()  # early-stopping users' nDCG@eval_at per boosting round (training only, not saved)

    def with_trees(self, use_trees: bool) -> LambdaRanker:
        """This ranker with its trees switched on or off (off: the base margin's order alone)."""
        return replace(self, use_trees=use_trees)

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
