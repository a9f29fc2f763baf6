"""Ranking metrics over top-K lists, vectorised with polars and numpy.

Conventions (those of Microsoft Recommenders' `python_evaluation`, so published figures compare):
- judged users are the users in the ground truth; a user without recommendations scores 0 on every metric;
- relevance is binary (every test interaction is relevant unless the protocol sets a threshold);
- `precision@K` = hits in top K / K;  `recall@K` = hits in top K / |relevant|;
- `ndcg@K` = DCG / IDCG with gain 1 and discount 1/log2(1 + rank); IDCG over min(|relevant|, K) hits;
- `map` = (1/|relevant|) * sum over hits in the top K of precision at the hit's rank (MS `map`);
- `map@K` = the same sum / min(|relevant|, K) (MS `map_at_k`, Spark's meanAveragePrecisionAt);
- `mrr` = 1 / rank of the first hit in the top K (0 if none);  `hitrate@K` = 1 if any hit in the top K.
Beyond accuracy (from the lists alone):
- `coverage@K` = distinct items recommended in any top K / number of candidate items;
- `novelty@K` = mean over recommended items of -log2(p_i), p_i = share of training users who interacted with i
  (items without training interactions count as one user), after Zhou et al. 2010;
- `ild@K` = mean over users of the mean pairwise Jaccard distance between the genre sets of the top-K items.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import polars as pl

from recsys.data import schema as S


def _lookup(table: np.ndarray, positions: pl.Series) -> pl.Series:
    """`table` at each of `positions` (ideal DCG by number of relevant items)."""
    return pl.Series(table[positions.to_numpy()])


def mean_or_zero(values: pl.Series) -> float:
    """The mean of a numeric series as a float; 0.0 for an empty or all-null one."""
    mean = values.mean()
    return float(mean) if isinstance(mean, int | float) else 0.0


def _idcg_table(k: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])


def user_metrics(recs: pl.DataFrame, truth: pl.DataFrame, *, ks: Sequence[int] = (10,)) -> pl.DataFrame:
    """Per-user accuracy metrics.

    Args:
        recs: user_id, item_id, rank (1-based); ranks beyond max(ks) are ignored.
        truth: user_id, item_id of relevant test items (duplicates are ignored).
        ks: cut-offs; `map`, `mrr` use the first one (the primary K).

    Returns:
        One row per truth user: user_id, n_relevant and, per K, ndcg@K, precision@K, recall@K, map@K, hitrate@K;
        plus map and mrr at the primary K.
    """
    k0, kmax = ks[0], max(ks)
    rel = truth.select(S.USER_ID, S.ITEM_ID).unique()
    n_rel = rel.group_by(S.USER_ID).agg(pl.len().alias("n_relevant"))
    hits = (
        recs.filter(pl.col(S.RANK) <= kmax)
        .select(S.USER_ID, S.ITEM_ID, S.RANK)
        .join(rel, on=[S.USER_ID, S.ITEM_ID], how="inner")
        .sort(S.USER_ID, S.RANK)
        .with_columns(pl.int_range(1, pl.len() + 1).over(S.USER_ID).alias("_nth"))
    )
    aggs: list[pl.Expr] = []
    for k in ks:
        in_k = pl.col(S.RANK) <= k
        aggs += [
            in_k.sum().alias(f"_hits@{k}"),
            (1.0 / (pl.col(S.RANK) + 1).log(2)).filter(in_k).sum().alias(f"_dcg@{k}"),
            (pl.col("_nth") / pl.col(S.RANK)).filter(in_k).sum().alias(f"_prec_sum@{k}"),
        ]
    aggs.append(pl.col(S.RANK).filter(pl.col(S.RANK) <= k0).min().alias("_first"))
    per_user = hits.group_by(S.USER_ID).agg(aggs)
    out = n_rel.join(per_user, on=S.USER_ID, how="left").fill_null(0)
    idcg = _idcg_table(kmax)
    cols: list[pl.Expr] = []
    for k in ks:
        ideal = pl.col("n_relevant").clip(upper_bound=k).map_batches(partial(_lookup, idcg), return_dtype=pl.Float64)
        h = pl.col(f"_hits@{k}").cast(pl.Float64)
        cols += [
            (pl.col(f"_dcg@{k}") / ideal).alias(f"ndcg@{k}"),
            (h / k).alias(f"precision@{k}"),
            (h / pl.col("n_relevant")).alias(f"recall@{k}"),
            (pl.col(f"_prec_sum@{k}") / pl.col("n_relevant").clip(upper_bound=k)).alias(f"map@{k}"),
            (h > 0).cast(pl.Float64).alias(f"hitrate@{k}"),
        ]
    cols += [
        (pl.col(f"_prec_sum@{k0}") / pl.col("n_relevant")).alias("map"),
        pl.when(pl.col("_first") > 0).then(1.0 / pl.col("_first")).otherwise(0.0).alias("mrr"),
    ]
    return out.with_columns(cols).select(S.USER_ID, "n_relevant", *[c.meta.output_name() for c in cols]).sort(S.USER_ID)


def mean_metrics(per_user: pl.DataFrame) -> dict[str, float]:
    """Mean of every metric column over users."""
    return {c: mean_or_zero(per_user[c]) for c in per_user.columns if c not in (S.USER_ID, "n_relevant")}


def coverage(recs: pl.DataFrame, *, k: int, n_candidates: int) -> float:
    """Share of candidate items that appear in at least one top-K list."""
    return recs.filter(pl.col(S.RANK) <= k)[S.ITEM_ID].n_unique() / max(n_candidates, 1)


def novelty(recs: pl.DataFrame, train: pl.DataFrame, *, k: int) -> float:
    """Mean self-information -log2(p_i) of recommended items; p_i = share of training users with item i."""
    n_users = train[S.USER_ID].n_unique()
    pop = train.group_by(S.ITEM_ID).agg(pl.col(S.USER_ID).n_unique().alias("_u"))
    top = recs.filter(pl.col(S.RANK) <= k).join(pop, on=S.ITEM_ID, how="left")
    if top.height == 0:
        return 0.0
    p = top["_u"].fill_null(1).cast(pl.Float64) / n_users
    return mean_or_zero(-p.log(2))


def intra_list_diversity(recs: pl.DataFrame, items: pl.DataFrame, *, k: int) -> float:
    """Mean over users of the mean pairwise Jaccard distance between genre sets of the top-K items."""
    top = recs.filter(pl.col(S.RANK) <= k).sort(S.USER_ID, S.RANK)
    if top.height == 0:
        return 0.0
    genres = items.select(S.ITEM_ID, S.GENRES).explode(S.GENRES).drop_nulls()
    vocab = {g: j for j, g in enumerate(genres[S.GENRES].unique().sort().to_list())}
    users = top[S.USER_ID].unique(maintain_order=True).to_list()
    uidx = {u: j for j, u in enumerate(users)}
    top = top.with_columns(pl.int_range(pl.len()).over(S.USER_ID).alias("_slot"))
    m = np.zeros((len(users), k, max(len(vocab), 1)), dtype=np.float32)
    present = np.zeros((len(users), k), dtype=bool)
    u_arr = np.array([uidx[u] for u in top[S.USER_ID].to_list()])
    s_arr = top["_slot"].to_numpy()
    present[u_arr, s_arr] = True
    g = top.select(S.USER_ID, "_slot", S.ITEM_ID).join(genres, on=S.ITEM_ID, how="inner")
    if g.height:
        m[
            np.array([uidx[u] for u in g[S.USER_ID].to_list()]),
            g["_slot"].to_numpy(),
            np.array([vocab[x] for x in g[S.GENRES].to_list()]),
        ] = 1.0
    inter = np.einsum("ukg,ulg->ukl", m, m)
    size = m.sum(-1)
    union = size[:, :, None] + size[:, None, :] - inter
    dist = np.where(union > 0, 1.0 - inter / np.maximum(union, 1e-9), 0.0)
    pair = present[:, :, None] & present[:, None, :] & ~np.eye(k, dtype=bool)[None]
    n_pairs = pair.sum((1, 2))
    per_user = np.where(n_pairs > 0, (dist * pair).sum((1, 2)) / np.maximum(n_pairs, 1), 0.0)
    return float(per_user[n_pairs > 0].mean()) if (n_pairs > 0).any() else 0.0
