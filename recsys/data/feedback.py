"""What a dataset's events mean: explicit ratings (a positive is a rating at or above a threshold) or implicit
feedback (every event, or every event of enough weight, is a positive).

Decided once per dataset by the validator (`Dataset.feedback`, from the raw columns and the dataset spec) and, as a
fallback for stage configs still set to "auto", from a frame alone (`infer_feedback`): no rating column, a constant
rating or an `event_type` column make every event a positive; otherwise ratings at or above 0.8 x the highest
rating are (4.0 on MovieLens' 1-5 and 0.5-5 scales).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal, TypeAlias

import polars as pl

from recsys.data import schema as S

FeedbackKind: TypeAlias = Literal["explicit", "implicit"]
# A stage's positive threshold: a number, None (every event is a positive) or "auto" (decided by the data).
PositiveThreshold: TypeAlias = float | Literal["auto"] | None


@dataclass(frozen=True)
class Feedback:
    """How events become positives: `rating >= positive_threshold`, or every event when the threshold is None."""

    kind: FeedbackKind
    positive_threshold: float | None
    reason: str  # how it was decided, in words (reports and nightly summaries show it)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _scale_threshold(highest: float) -> float:
    # 4 * max / 5 rather than 0.8 * max: exact for integer scales (5 -> 4.0, 10 -> 8.0).
    return 4 * highest / 5


def infer_feedback(
    interactions: pl.DataFrame,
    *,
    positive_threshold: float | None = None,
    event_weights: Mapping[str, float] | None = None,
    has_rating: bool | None = None,
) -> Feedback:
    """Explicit or implicit feedback of `interactions` (canonical columns; rating optional).

    Args:
        interactions: the events; only `rating` and the presence of `event_type` are read.
        positive_threshold: a threshold the dataset spec gives (kept as is); None: decided from the data.
        event_weights: event type -> weight the spec gives (the rating column then holds the weights).
        has_rating: whether the source had a rating column (the validator fills 1.0 when it had none);
            None: whether `interactions` has one.

    Implicit: event weights, an `event_type` column, no rating column or a constant rating (threshold: the spec's,
    else None: every event is a positive). Explicit otherwise: the spec's threshold, else 0.8 x the highest rating.
    """
    has_rating = S.RATING in interactions.columns if has_rating is None else has_rating
    every = "every event is a positive"
    given = every
    if positive_threshold is not None:
        given = f"rating >= {positive_threshold:g} is a positive (positive_threshold of the dataset spec)"
    if event_weights:
        weights = ", ".join(f"{k}={v:g}" for k, v in event_weights.items())
        rule = given.replace("rating", "event weight")
        return Feedback("implicit", positive_threshold, f"event weights ({weights}) from the dataset spec; {rule}")
    if S.EVENT_TYPE in interactions.columns:
        return Feedback("implicit", positive_threshold, f"an event_type column (a log of events); {given}")
    ratings = interactions[S.RATING].cast(pl.Float64).drop_nulls().drop_nans() if has_rating else None
    if ratings is None or ratings.is_empty():
        return Feedback("implicit", None, f"no rating column; {every}")
    lo, hi = float(ratings.min()), float(ratings.max())  # type: ignore[arg-type]
    if positive_threshold is not None:
        return Feedback("explicit", positive_threshold, f"ratings {lo:g}-{hi:g}; {given}")
    if lo == hi:
        return Feedback("implicit", None, f"every event has rating {hi:g} (no rating scale); {every}")
    t = _scale_threshold(hi)
    return Feedback(
        "explicit",
        t,
        f"ratings {lo:g}-{hi:g}: rating >= {t:g} (0.8 x the highest rating) is a positive; "
        "set positive_threshold in the dataset spec to change it",
    )


def resolve_threshold(threshold: PositiveThreshold, interactions: pl.DataFrame) -> float | None:
    """A stage's threshold with "auto" decided from `interactions` (see `infer_feedback`); numbers and None as is."""
    if threshold == "auto":
        return infer_feedback(interactions).positive_threshold
    return threshold
