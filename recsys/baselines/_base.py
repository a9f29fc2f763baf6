"""The recommender interface shared by baselines and the full pipeline: fit on training events, recommend top K."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.scoring.topk import top_k_indices


def score_batch_size(n_items: int) -> int:
    """Users scored at once over `n_items` candidates: 512, fewer on large catalogs so a batch's dense float64
    scores stay ~64 MB."""
    return max(16, min(512, 8_000_000 // max(1, n_items)))


class Recommender(ABC):
    """Fit on training interactions; recommend the top K candidate items per user, excluding seen items.

    Subclasses implement `_fit` (given the user x item matrix of training events) and `_score` (dense scores of
    all candidate items for a batch of known users). Items a model cannot score get -inf and are never listed;
    users unknown at fit time get an empty list (the protocols only judge users with training history).
    """

    name: ClassVar[str] = "recommender"
    scores_cold_items: ClassVar[bool] = False  # collaborative models cannot rank items without training events
    seeded: ClassVar[bool] = False  # True: the constructor takes `seed` (the model has randomness)
    scalable: ClassVar[bool] = False  # True: the constructor takes `scale` (sparse forms above an item count)

    def fit(
        self, train: pl.DataFrame, *, candidates: Sequence[str] | None = None, items: pl.DataFrame | None = None
    ) -> Self:
        """Index users and items and fit the model.

        Args:
            train: user_id, item_id, timestamp, rating (training events only).
            candidates: item ids the model may rank (default: items in `train`); order fixes tie-breaking.
            items: the catalog (used by content-aware models).
        """
        users = train[S.USER_ID].unique(maintain_order=True)
        item_ids = (
            pl.Series(S.ITEM_ID, list(candidates))
            if candidates is not None
            else train[S.ITEM_ID].unique(maintain_order=True)
        )
        self.user_index_ = dict(zip(users.to_list(), range(users.len()), strict=True))
        self.item_ids_ = np.asarray(item_ids.to_list(), dtype=object)
        self.item_index_ = dict(zip(self.item_ids_.tolist(), range(len(self.item_ids_)), strict=True))
        coded = self._encode(train)
        n_u, n_i = len(self.user_index_), len(self.item_ids_)
        self.seen_ = sp.csr_matrix(
            (np.ones(coded.height), (coded["_u"].to_numpy(), coded["_i"].to_numpy())), shape=(n_u, n_i)
        )
        self.seen_.data[:] = 1.0  # duplicates summed above; binary
        self.has_train_events_ = np.asarray(self.seen_.sum(axis=0)).ravel() > 0
        self._fit(coded, self.seen_, items)
        return self

    def _encode(self, events: pl.DataFrame) -> pl.DataFrame:
        """events + _u, _i integer codes; events on items outside the candidates are dropped."""
        u = pl.col(S.USER_ID).replace_strict(self.user_index_, default=None, return_dtype=pl.Int64)
        i = pl.col(S.ITEM_ID).replace_strict(self.item_index_, default=None, return_dtype=pl.Int64)
        return events.with_columns(u.alias("_u"), i.alias("_i")).drop_nulls(["_u", "_i"])

    @abstractmethod
    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None: ...

    @abstractmethod
    def _score(self, rows: np.ndarray) -> np.ndarray:
        """Scores (len(rows) x n_candidates) for user rows of the fit-time index."""

    def score(self, users: Sequence[str]) -> np.ndarray:
        """Raw scores (len(users) x n_candidates, candidate order), seen items included; unknown users get NaN rows.

        Used as features by the ranking pipeline; `recommend` is the ranking entry point.
        """
        out = np.full((len(users), len(self.item_ids_)), np.nan)
        rows = np.fromiter((self.user_index_.get(u, -1) for u in users), dtype=np.int64, count=len(users))
        known = rows >= 0
        if known.any():
            out[known] = np.asarray(self._score(rows[known]), dtype=np.float64)
        return out

    def recommend(
        self, users: Sequence[str], *, k: int = 10, exclude_seen: bool = True, batch_size: int | None = None
    ) -> pl.DataFrame:
        """Top-K lists: user_id, item_id, rank (1-based), score. Ties break by candidate order. `batch_size`: users
        scored at once (default: 512, fewer on large catalogs so a batch's dense scores stay ~64 MB)."""
        known = [u for u in users if u in self.user_index_]
        batch_size = batch_size or score_batch_size(len(self.item_ids_))
        parts = []
        for start in range(0, len(known), batch_size):
            batch = known[start : start + batch_size]
            rows = np.fromiter((self.user_index_[u] for u in batch), dtype=np.int64, count=len(batch))
            scores = np.asarray(self._score(rows), dtype=np.float64).copy()
            if not self.scores_cold_items:
                scores[:, ~self.has_train_events_] = -np.inf
            if exclude_seen:
                seen = self.seen_[rows].tocoo()
                scores[seen.row, seen.col] = -np.inf
            parts.append(self._top_k(batch, scores, k))
        if not parts:
            return pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
        return pl.concat(parts)

    def _top_k(self, users: Sequence[str], scores: np.ndarray, k: int) -> pl.DataFrame:
        return top_k_frame(users, scores, self.item_ids_, k)


def top_k_frame(users: Sequence[str], scores: np.ndarray, item_ids: np.ndarray, k: int) -> pl.DataFrame:
    """Each row's top-k columns of `scores` (users x items in `item_ids` order) as a recommendation frame; -inf never
    listed; ties break by column order (exact, also at the k boundary)."""
    k_eff = min(k, scores.shape[1])
    idx = top_k_indices(scores, k_eff)
    sc = np.take_along_axis(scores, idx, axis=1)
    valid = np.isfinite(sc)
    user_col = np.repeat(np.asarray(users, dtype=object), k_eff).reshape(len(users), k_eff)
    ranks = np.tile(np.arange(1, k_eff + 1, dtype=np.int32), (len(users), 1))
    return pl.DataFrame(
        {
            S.USER_ID: user_col[valid].tolist(),
            S.ITEM_ID: item_ids[idx[valid]].tolist(),
            S.RANK: ranks[valid],
            S.SCORE: sc[valid],
        },
        schema=S.RECOMMENDATION_SCHEMA,
    )
