"""The ranking stage's settings: candidates, the collaborative source, the ranker and the validation choices.

Plain pydantic models with no behaviour, so every stage (and the serving process, which reads a saved state's
config) can import them without the code that fits anything.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.encoder.interest import InterestConfig
from recsys.evaluation.grids import EASE_GRID

# Collaborative sources: a higher score / better (smaller) rank never makes a candidate worse.
MONOTONE_DEFAULT: dict[str, int] = {
    **{f"score_{s}": 1 for s in ("ease", "lowpass", "blend", "prior", "sar", "itemknn")},
    **{f"rank_{s}": -1 for s in ("ease", "lowpass", "blend", "prior", "sar", "itemknn")},
}


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
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of label users for early stopping when stopping_folds is 1"
    )
    stopping_folds: int = Field(
        3,
        ge=1,
        description="the number of boosting rounds is chosen on the mean nDCG curve of this many folds of the label "
        "users (each user held out once, the folds trained in lockstep), then the ranker is refitted on every label "
        "user with that many rounds; 1: one seeded hold-out of validation_fraction of the users (faster; on "
        "amazon-scientific its ~600 users put the best round at 4 in one fit, 36 in another)",
    )
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


class CandidateConfig(BaseModel, frozen=True, extra="forbid"):
    """Top-N per source; the union (deduplicated, seen items removed) is what the ranker orders."""

    n_text: int = Field(100, ge=0, description="by interest match (reaches cold items)")
    n_text_tail: int = Field(
        50,
        ge=0,
        description="by interest match among the tail: items with at most tail_users users in the window (new and "
        "rarely chosen items, which the overall text top-N seldom reaches: behaviour cannot speak for them)",
    )
    tail_users: int = Field(5, ge=0, description="the tail's bound on an item's distinct users in the window")
    n_collaborative: int = Field(100, ge=0, description="by the EASE + low-pass blend")
    n_popular: int = Field(50, ge=0, description="by events in the trailing popularity window (trending)")
    popular_window_days: int = Field(30, ge=1)


class BlendConfig(BaseModel, frozen=True, extra="forbid"):
    """The collaborative source: z(EASE) + weight * z(low-pass filter with `factors` components), per user
    (`recsys.baselines.EASELowPass`). `factors` / `weight` None: chosen per fit on the pipeline's inner split of
    the training data (never the test data) among the grids; weight 0 (EASE alone) is always among them."""

    factors: int | None = Field(None, ge=1)
    weight: float | None = Field(None, ge=0)
    factors_grid: tuple[int, ...] = (8, 16, 32)
    weight_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    item_norm: float = Field(0.35, ge=0, le=1, description="item-degree normalisation exponent of the filter")

    def resolved(self) -> tuple[int, float]:
        """(factors, weight) when both are set; otherwise the defaults measured on ML-100k (16, 0.5)."""
        return (self.factors or 16, 0.5 if self.weight is None else self.weight)


class PipelineConfig(BaseModel, frozen=True, extra="forbid"):
    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    blend: BlendConfig = Field(default_factory=BlendConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    ranker_prior: Literal["auto", "on", "off", "prior-only"] = Field(
        "auto",
        description="the ranker's base margin + monotone constraints ([ranker] margin_feature, monotone): on, off, "
        "prior-only (the margin's order, trees switched off), or auto = whichever ranks best on a validation split "
        "one level further inside the training data",
    )
    text_weight: float | None = Field(
        None,
        ge=0,
        description="weight of z(im_profile) in the prior score (score_prior = blend + text_weight * z(text)); None: "
        "chosen among text_weight_grid on the inner split, with the encoder fine-tuned without its hold-out",
    )
    text_weight_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    exclude_features: tuple[str, ...] = Field((), description="features the ranker does not use")
    prior_fallback: Literal["off", "prior-only"] | None = Field(
        None,
        description="what `auto` keeps unless an option beats it significantly; None: off for temporal splits, "
        "prior-only otherwise",
    )
    prior_min_users: int = Field(
        200,
        ge=1,
        description="`auto` leaves the fallback only when the nested comparison judges at least this many users",
    )
    prior_weights: tuple[float, ...] = Field(
        (1.0, 2.0, 4.0),
        description="margin weights `auto` tries with the prior on; a heavier margin keeps the trees' corrections "
        "small next to the collaborative order (on ML-100k's random split they did not transfer to the full window)",
    )
    interest: InterestConfig = Field(default_factory=InterestConfig)
    ease_l2: float | None = Field(
        500.0,
        gt=0,
        description="EASE's l2 in the collaborative source; None: chosen among ease_l2_grid on the inner split "
        "(nDCG@10 of EASE alone on the inner hold-out), as the `ease` row chooses it. Not the default: on "
        "amazon-scientific's validation split that choice (l2 50) lost 0.0032 nDCG@10 (p 0.007) against 500 for the "
        "whole pipeline (bench/results/pipeline-validation-l2.json): the ranker wants the smoother source",
    )
    ease_l2_grid: tuple[float, ...] = EASE_GRID
    relative_counts: bool = Field(
        True,
        description="count features (item popularity, user activity) divided by their mean over the window's "
        "items / users, so a ranker trained on the inner split's smaller window transfers to the full one",
    )
    popularity_windows: tuple[int, ...] = (7, 30, 90)
    sequence_features: bool = Field(
        False,
        description="sequence neighbours' score and rank as features (recsys.baselines.SequenceNeighbours: items "
        "near each other in users' time-ordered histories, and what follows the last one)",
    )


def saved_pipeline_config(data: dict[str, Any]) -> PipelineConfig:
    """The PipelineConfig saved with a ranking model or bundle. A field added since keeps the behaviour the artifact
    was trained with: one saved before the tail text candidates existed gets `n_text_tail = 0`."""
    data = copy.deepcopy(data)
    data.setdefault("candidates", {}).setdefault("n_text_tail", 0)
    return PipelineConfig.model_validate(data)
