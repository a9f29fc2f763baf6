"""The ranking stage's validation choices as plain functions, each made on an inner split of the training window
(never on the outer test data): EASE's l2 in the collaborative source, the blend's factors and weight, the interest
match's weight in the prior, and whether the ranker keeps the prior."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from recsys.baselines import EASE, ScaleConfig, top_k_frame
from recsys.compute.threads import map_batches
from recsys.data import schema as S
from recsys.evaluation.compare import holm_adjust, paired_comparison
from recsys.evaluation.metrics import mean_or_zero, user_metrics
from recsys.evaluation.selection import select_ease_lowpass
from recsys.evaluation.splits import ProtocolName, Split, sample_users
from recsys.ranker._common import TEXT_FEATURES, prior_score, text_z
from recsys.ranker.candidates import Candidates, user_batch
from recsys.ranker.config import PipelineConfig, RankerConfig
from recsys.ranker.training import train_ranker

# Family-wise error rate of the ranker-prior choice: a fallback is left only for an option that beats it at this
# level after Holm's correction over the options tried.
PRIOR_ALPHA = 0.05

Choice = dict[str, object]
LabelledFrame = tuple[pl.DataFrame, pl.DataFrame]


def choose_ease_l2(
    cfg: PipelineConfig, inner: Split, item_ids: Sequence[str], *, scale: ScaleConfig | None = None
) -> tuple[float, Choice]:
    """EASE's l2 in the collaborative source: as configured, or the best of `ease_l2_grid` by nDCG@10 of EASE alone
    on the inner hold-out (ties: the smaller l2); the blend's factors and weight are then chosen with it."""
    if cfg.ease_l2 is not None:
        return cfg.ease_l2, {"mode": "fixed", "l2": cfg.ease_l2}
    users = inner.test[S.USER_ID].unique(maintain_order=True).to_list()
    scores: dict[float, float] = {}
    for l2 in cfg.ease_l2_grid:
        model = EASE(l2=l2, scale=scale, l2_grid=cfg.ease_l2_grid).fit(inner.train, candidates=list(item_ids))
        per_user = user_metrics(model.recommend(users, k=10), inner.test, ks=(10,))
        scores[l2] = mean_or_zero(per_user["ndcg@10"])
    best = max(cfg.ease_l2_grid, key=lambda v: (scores[v], -v))
    table = {str(k): round(v, 6) for k, v in scores.items()}
    return best, {"mode": "auto", "l2": best, "validation_ndcg@10": table}


def choose_blend(
    cfg: PipelineConfig, inner: Split, item_ids: Sequence[str], *, l2: float, scale: ScaleConfig | None = None
) -> tuple[tuple[int, float], Choice]:
    """(factors, weight) of the EASE + low-pass source: as configured, or chosen on the inner split (nDCG@10 of the
    blend alone on the inner hold-out; never the outer test data)."""
    bc = cfg.blend
    if bc.factors is not None and bc.weight is not None:
        return (bc.factors, bc.weight), {"mode": "fixed", "factors": bc.factors, "weight": bc.weight}
    factors = (bc.factors,) if bc.factors is not None else bc.factors_grid
    weights = (bc.weight,) if bc.weight is not None else bc.weight_grid
    (f, w), scores = select_ease_lowpass(
        inner,
        l2=l2,
        factors=factors,
        weights=weights,
        item_norm=bc.item_norm,  # the normalisation the blend source is then built with
        candidates=list(item_ids),
        scale=scale,
    )
    return (f, w), {"mode": "auto", "factors": f, "weight": w, "validation_ndcg@10": scores}


def choose_text_weight(
    cfg: PipelineConfig, candidates: Candidates, split: Split, *, threads: int = 1
) -> tuple[float, Choice]:
    """The weight of the interest match in the prior score: as configured, or the best of the grid by nDCG@10 of
    the prior score alone (every candidate item ranked, seen items excluded) on `split`'s hold-out, with
    `candidates` built on `split.train`. The encoder was fine-tuned on `split.train` only, so the hold-out is new
    to it. On a large catalog (the indexed candidate path) the prior ranks each user's candidates instead of every
    item: the same picks the ranker sees, at the cost of a few hundred scores per user rather than the catalog's.
    `threads`: user batches side by side (the same choice)."""
    state = candidates.state
    if not candidates.use_text or not candidates.has_text:
        return 0.0, {"mode": "no text"}
    if cfg.text_weight is not None:
        return cfg.text_weight, {"mode": "fixed", "weight": cfg.text_weight}
    users = [u for u in split.test[S.USER_ID].unique(maintain_order=True).to_list() if u in state.user_index]
    grid = cfg.text_weight_grid
    indexed = candidates.indexed

    def batch_lists(batch: list[str]) -> dict[float, pl.DataFrame]:
        """Each weight's top 10 of one batch: the blend and the text once, then every weight on them."""
        if indexed is not None:  # a large catalog: the prior ranks each user's candidates, not every item
            pairs = indexed.prior_parts(batch, state.rows(batch))
            return {w: _top_by(pairs, pl.col("blend") + w * pl.col("text_z"), 10) for w in grid}
        seen = state.seen_mask(state.rows(batch))
        src = candidates.prior_inputs(batch)
        z = text_z(src["text"], seen)  # the same for every weight
        out = {}
        for w in grid:
            prior = np.where(seen, -np.inf, prior_score(src, seen, w, z=z))
            out[w] = top_k_frame(batch, prior, state.item_ids, 10)
        return out

    step = user_batch(len(state.item_ids))
    batches = [users[start : start + step] for start in range(0, len(users), step)]
    if threads > 1 and len(batches) > 1:
        candidates.prepare()  # the per-state tables, before any two batches could build them at once
    done = map_batches(batch_lists, batches, threads=threads)
    lists = {w: [d[w] for d in done] for w in grid}
    truth = split.test.select(S.USER_ID, S.ITEM_ID)
    scores: dict[float, float] = {}
    for w, parts in lists.items():
        scores[w] = mean_or_zero(user_metrics(pl.concat(parts), truth, ks=(10,))["ndcg@10"])
    best = max(grid, key=lambda w: (scores[w], -w))
    return best, {
        "mode": "auto",
        "weight": best,
        "validation_ndcg@10": {str(k): round(v, 6) for k, v in scores.items()},
    }


def _top_by(parts: pl.DataFrame, score: pl.Expr, k: int) -> pl.DataFrame:
    """Each user's k best rows of `parts` (user_id, item_id, column, ...) by `score`, ties by the item's column (as
    `top_k_frame`), as a recommendation frame."""
    return (
        parts.with_columns(score.alias(S.SCORE))
        .sort([S.USER_ID, S.SCORE, "column"], descending=[False, True, False])
        .group_by(S.USER_ID, maintain_order=True)
        .head(k)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(S.USER_ID).alias(S.RANK))
        .select(S.USER_ID, S.ITEM_ID, S.RANK, S.SCORE)
    )


def sample_label_users(split: Split, max_users: int, *, seed: int) -> tuple[Split, Choice]:
    """`split` with its hold-out restricted to at most `max_users` users (`recsys.evaluation.splits.sample_users`):
    the ranker's labels and the pipeline's validation choices judge them."""
    return sample_users(split, max_users, seed=seed, tag="label")


def labelled_frame(candidates: Candidates, split: Split, *, threads: int = 1) -> LabelledFrame:
    """Candidates of the hold-out's users (`candidates` built on `split.train`) with label 1 where the hold-out has
    the item; plus the hold-out's distinct (user_id, item_id, label=1) positives. `threads`: user batches side by
    side (the same rows)."""
    users = split.test[S.USER_ID].unique(maintain_order=True).to_list()
    frame = candidates.frame(users, threads=threads)
    positives = split.test.select(S.USER_ID, S.ITEM_ID).unique().with_columns(pl.lit(1).alias("label"))
    frame = frame.join(positives, on=[S.USER_ID, S.ITEM_ID], how="left").with_columns(pl.col("label").fill_null(0))
    return frame, positives


def choose_prior(
    cfg: PipelineConfig,
    *,
    protocol: ProtocolName,
    frame: pl.DataFrame,
    positives: pl.DataFrame,
    features: list[str],
    nested: Callable[[], LabelledFrame],
    seed: int,
) -> tuple[RankerConfig, Choice]:
    """The ranker config with or without its prior (base margin + monotone constraints).

    `auto`: one level further in (`nested()`: labelled candidates of a split of the inner training part), rankers
    are trained without the prior and with it per margin weight; each of them, and the prior's order alone, then
    orders `frame` (the inner training part's candidates) and is judged by nDCG@10 against the inner hold-out. A
    fallback is kept unless an option beats it significantly (paired t-test over the judged users, Holm-adjusted
    over the options tried, p < 0.05), then the best of those; and only when the nested hold-out judges at least
    `prior_min_users` users (default 200). With fewer the comparison is noise: on ML-100k's nightly temporal split
    (95 nested users) the plain ranker's nested nDCG@10 ranged 0.145-0.202 over four fits on the same events with
    differently fine-tuned encoders (its early stopping watches 19 users), and ml-latest-small has 23. Without the
    correction, on ML-100k (random split) tree corrections at p = 0.0497 lost 0.02 on the full window, and on
    ML-100k's nightly temporal split a prior at p = 0.040 lost 0.06. The fallback (`prior_fallback`) is by protocol
    unless set: the plain ranker ("off") for `temporal`, where recency and trends move what comes next, and the
    prior's order ("prior-only") for random splits, where nothing drifts and the collaborative prior is hard to
    correct from a few thousand labels. Only behavioural features take part (the encoder has seen that nested
    hold-out, so text features would be over-trusted there). Never touches the outer test data."""
    with_prior = cfg.ranker
    without = with_prior.model_copy(update={"margin_feature": None, "monotone": {}})
    mode = cfg.ranker_prior
    if mode != "auto":
        return (without if mode == "off" else with_prior), {"mode": mode, "chosen": mode}
    nested_frame, nested_pos = nested()
    behavioural = [f for f in features if f not in TEXT_FEATURES]
    # the prior's order alone first: where trees only tie with it, the simpler model wins
    options = {"prior-only": with_prior} if with_prior.margin_feature else {}
    options.update({f"on@{w:g}": with_prior.model_copy(update={"margin_weight": w}) for w in cfg.prior_weights})
    options["off"] = without
    per_user: dict[str, pl.DataFrame] = {}
    for name, option in options.items():
        if name == "prior-only":
            assert with_prior.margin_feature is not None
            per_user[name] = user_ndcg_at(frame, -frame[with_prior.margin_feature].to_numpy(), positives, k=10)
            continue
        try:
            ranker = train_ranker(nested_frame, behavioural, cfg=option, seed=seed)
        except ValueError:  # no positives among the nested candidates: nothing to choose on
            return without, {"mode": "auto", "chosen": "off", "reason": "no nested labels"}
        per_user[name] = user_ndcg_at(frame, ranker.predict(frame), positives, k=10)
    scores = {name: mean_or_zero(p["ndcg@10"]) for name, p in per_user.items()}
    fallback = cfg.prior_fallback or ("off" if protocol == "temporal" else "prior-only")
    p_values = {
        name: paired_comparison(per_user[fallback], p, metric="ndcg@10", seed=seed).p_ttest
        for name, p in per_user.items()
        if name != fallback
    }
    # several options are tried against the one fallback: Holm's correction keeps the chance of leaving the
    # fallback on noise alone at PRIOR_ALPHA (uncorrected, four tries at 0.05 switch far more often)
    adjusted = holm_adjust(p_values)
    n_judged = nested_pos[S.USER_ID].n_unique()
    enough = n_judged >= cfg.prior_min_users  # fewer: the comparison is reported, not acted on
    better = [n for n, p in adjusted.items() if enough and scores[n] > scores[fallback] and p < PRIOR_ALPHA]
    chosen = max(better, key=lambda name: scores[name]) if better else fallback  # ties: the first
    info = {
        "mode": "auto",
        "chosen": chosen,
        "validation_ndcg@10": {k: round(v, 6) for k, v in scores.items()},
        "fallback": fallback,
        f"p_vs_{fallback}": {k: float(f"{v:.3g}") for k, v in p_values.items()},
        f"p_holm_vs_{fallback}": {k: float(f"{v:.3g}") for k, v in adjusted.items()},
        "alpha": PRIOR_ALPHA,
        "nested_label_users": n_judged,
        "min_users": cfg.prior_min_users,
    }
    return options[chosen], info


def user_ndcg_at(frame: pl.DataFrame, scores: np.ndarray, positives: pl.DataFrame, *, k: int) -> pl.DataFrame:
    """Per-user nDCG@k (user_id, ndcg@k) for the users of `positives` (user_id, item_id) when each user's rows of
    `frame` are ordered by `scores`; the ideal DCG counts every positive, found among the candidates or not."""
    ranked = (
        frame.select(S.USER_ID, S.ITEM_ID)
        .with_columns(pl.Series("_s", scores))
        .sort([S.USER_ID, "_s", S.ITEM_ID], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over(S.USER_ID).alias(S.RANK))
        .filter(pl.col(S.RANK) <= k)
    )
    per_user = user_metrics(ranked, positives.select(S.USER_ID, S.ITEM_ID), ks=(k,))
    return per_user.select(S.USER_ID, f"ndcg@{k}")
