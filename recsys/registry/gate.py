"""The promotion gate: a new version replaces the champion only when it is not significantly worse on the primary
metric (paired over the same users) and no guard metric drops by more than its tolerance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl
from pydantic import BaseModel, Field

from recsys.evaluation.compare import paired_comparison


class GateConfig(BaseModel, frozen=True, extra="forbid"):
    primary_metric: str = Field("ndcg@10", description="per-user metric compared with a paired test")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of 'significantly worse'")
    min_users: int = Field(20, ge=1, description="fewer judged users than this: refuse to promote over a champion")
    guards: dict[str, float] = Field(
        default_factory=lambda: {"recall@10": 0.02, "hitrate@10": 0.03, "coverage@10": 0.05},
        description="metric -> largest allowed absolute drop versus the champion",
    )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    primary: dict[str, object] | None = None  # the paired comparison champion -> candidate
    guards: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def decide(
    candidate: dict[str, float],
    candidate_per_user: pl.DataFrame,
    champion: dict[str, float] | None,
    champion_per_user: pl.DataFrame | None,
    *,
    cfg: GateConfig | None = None,
    seed: int = 42,
) -> GateDecision:
    """Compare a candidate's metrics (mean and per user, same split) with the champion's."""
    cfg = cfg or GateConfig()
    if champion is None or champion_per_user is None:
        return GateDecision(True, "no champion yet: the first version is promoted")
    cmp = paired_comparison(
        champion_per_user, candidate_per_user, metric=cfg.primary_metric, names=("champion", "candidate"), seed=seed
    )
    guards = {}
    failed = []
    for metric, tol in cfg.guards.items():
        if metric not in candidate or metric not in champion:
            raise KeyError(f"gate guard metric {metric!r} missing from the evaluation (have: {sorted(candidate)})")
        drop = champion[metric] - candidate[metric]
        guards[metric] = {"champion": champion[metric], "candidate": candidate[metric], "drop": drop, "tolerance": tol}
        if drop > tol:
            failed.append(f"{metric} dropped by {drop:.4f} (> {tol})")
    worse = cmp.diff < 0 and cmp.p_ttest < cfg.alpha
    primary = cmp.to_dict()
    if cmp.n_users < cfg.min_users:
        return GateDecision(False, f"only {cmp.n_users} judged users (< {cfg.min_users})", primary, guards)
    if worse:
        reason = (
            f"{cfg.primary_metric} significantly worse: {cmp.diff:+.4f} "
            f"[{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}], p={cmp.p_ttest:.3g} < {cfg.alpha}"
        )
        return GateDecision(False, "; ".join([reason, *failed]), primary, guards)
    if failed:
        return GateDecision(False, "; ".join(failed), primary, guards)
    return GateDecision(
        True,
        f"{cfg.primary_metric} {cmp.diff:+.4f} (p={cmp.p_ttest:.3g}) and every guard within tolerance",
        primary,
        guards,
    )
