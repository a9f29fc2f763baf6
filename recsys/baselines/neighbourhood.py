"""Popularity and neighbourhood baselines: TopPop, SAR, item-kNN, EASE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse as sp

from recsys.baselines._base import Recommender, score_batch_size
from recsys.baselines.pooled import PooledBlend, pooled_frame
from recsys.baselines.scalable import chunked_similarity, is_dense, neighbour_ease
from recsys.compute.scale import ScaleConfig
from recsys.data import schema as S
from recsys.scoring.pairs import first_not_in_rows
from recsys.scoring.sources import EaseWeights, ItemSimilarity


class TopPop(Recommender):
    """Most popular items by number of distinct training users; the same list for everyone (minus seen items)."""

    name: ClassVar[str] = "toppop"

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        self.popularity_ = np.asarray(seen.sum(axis=0)).ravel()

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(rows), 1))

    def recommend(
        self, users: Sequence[str], *, k: int = 10, exclude_seen: bool = True, batch_size: int | None = None
    ) -> pl.DataFrame:
        """As `Recommender.recommend`, without a users x items row: one popularity order (ties by candidate order,
        items without training events left out, as their -inf scores are), each user's first k unseen items of it."""
        known = [u for u in users if u in self.user_index_]
        order = np.argsort(-self.popularity_, kind="stable")
        order = order[self.has_train_events_[order]]
        size = batch_size or 4096  # a batch looks at the head of the order its users' seen items reach
        parts = []
        for start in range(0, len(known), size):
            batch = known[start : start + size]
            rows = np.fromiter((self.user_index_[u] for u in batch), dtype=np.int64, count=len(batch))
            seen = self.seen_[rows] if exclude_seen else sp.csr_matrix((len(batch), len(self.item_ids_)))
            seen_r = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
            firsts = first_not_in_rows(order, len(batch), seen_r, seen.indices, k)
            r = np.repeat(np.arange(len(batch)), [len(f) for f in firsts])
            c = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
            parts.append(pooled_frame(batch, self.item_ids_, (r, c, self.popularity_[c].astype(np.float64))))
        return pl.concat(parts) if parts else pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)


class SAR(Recommender):
    """Smart Adaptive Recommendations, as Microsoft Recommenders' `SARSingleNode` (the reference implementation).

    Affinity A[u, i] = sum of rating * 0.5 ** ((t_now - t) / half_life) over the user's events on i, t_now the last
    training event. Co-occurrence C = B^T B (B: binary user x item), entries below `threshold` removed. Similarity
    jaccard: C_ij / (C_ii + C_jj - C_ij); lift: C_ij / (C_ii C_jj); cooccurrence: C. Scores = A S.
    Reference: Microsoft Recommenders, recommenders/models/sar/sar_singlenode.py.
    """

    name: ClassVar[str] = "sar"
    scalable: ClassVar[bool] = True

    def __init__(
        self,
        *,
        similarity: Literal["jaccard", "lift", "cooccurrence"] = "jaccard",
        half_life_days: float | None = 30.0,
        threshold: int = 1,
        scale: ScaleConfig | None = None,
    ) -> None:
        self.similarity = similarity
        self.half_life_days = half_life_days
        self.threshold = threshold
        self.scale = scale or ScaleConfig()

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        weight = events[S.RATING].to_numpy().astype(np.float64)
        if self.half_life_days is not None:
            t = events[S.TIMESTAMP].dt.epoch("s").to_numpy().astype(np.float64)
            half_life = self.half_life_days * 24 * 60 * 60
            weight = weight * np.minimum(1.0, np.power(0.5, (t.max() - t) / half_life))
        shape = seen.shape
        self.affinity_ = sp.csr_matrix((weight, (events["_u"].to_numpy(), events["_i"].to_numpy())), shape=shape)
        if not is_dense(int(self.has_train_events_.sum()), self.scale.dense_item_limit):
            # above the limit: the same similarity, each item's `neighbours` most similar items kept
            self.similarity_ = chunked_similarity(seen, self.scale.neighbours, self._pair_similarity)
            return
        cooc = (seen.T @ seen).tocsr()
        if self.threshold > 1:
            cooc = cooc.multiply(cooc >= self.threshold).tocsr()
        diag = cooc.diagonal()
        c = cooc.tocoo()
        if self.similarity == "jaccard":
            denom = diag[c.row] + diag[c.col] - c.data
        elif self.similarity == "lift":
            denom = diag[c.row] * diag[c.col]
        else:
            denom = np.ones_like(c.data)
        with np.errstate(divide="ignore", invalid="ignore"):
            vals = np.where(denom > 0, c.data / denom, 0.0)
        self.similarity_ = sp.csr_matrix((vals, (c.row, c.col)), shape=cooc.shape)

    def _pair_similarity(self, cooc: np.ndarray, row: np.ndarray, col: np.ndarray, diag: np.ndarray) -> np.ndarray:
        """The configured similarity of co-occurrence entries (row, col), `diag` the items' counts."""
        cooc = np.where(cooc >= self.threshold, cooc, 0.0)
        if self.similarity == "jaccard":
            denom = diag[row] + diag[col] - cooc
        elif self.similarity == "lift":
            denom = diag[row] * diag[col]
        else:
            denom = np.ones_like(cooc)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, cooc / denom, 0.0)

    @property
    def arrays(self) -> ItemSimilarity:
        """The fitted similarity (scored against the users' affinities, `affinity_`)."""
        return ItemSimilarity(self.similarity_)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.arrays.score(self.affinity_[rows])


class ItemKNN(Recommender):
    """Item-based k-nearest neighbours on binary co-occurrence with cosine similarity.

    S_ij = C_ij / sqrt(C_ii C_jj) (shrunk by `shrink` in the denominator), keeping each item's `neighbours` most
    similar items; scores = B S. Reference: Sarwar et al., "Item-based collaborative filtering", WWW 2001.
    """

    name: ClassVar[str] = "itemknn"
    scalable: ClassVar[bool] = True

    def __init__(self, *, neighbours: int = 100, shrink: float = 10.0, scale: ScaleConfig | None = None) -> None:
        self.neighbours = neighbours
        self.shrink = shrink
        self.scale = scale or ScaleConfig()

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        if not is_dense(int(self.has_train_events_.sum()), self.scale.dense_item_limit):
            # above the limit: the co-occurrence in item chunks (never all of it at once), same similarity and pruning
            def cosine(cooc: np.ndarray, row: np.ndarray, col: np.ndarray, diag: np.ndarray) -> np.ndarray:
                return cooc / (np.sqrt(diag[row] * diag[col]) + self.shrink)

            self.similarity_ = chunked_similarity(seen, self.neighbours, cosine)
            return
        cooc = (seen.T @ seen).tocsr().astype(np.float64)
        diag = cooc.diagonal()
        c = cooc.tocoo()
        keep = c.row != c.col
        r, col, v = c.row[keep], c.col[keep], c.data[keep]
        sim = v / (np.sqrt(diag[r] * diag[col]) + self.shrink)
        s = sp.csr_matrix((sim, (r, col)), shape=cooc.shape)
        self.similarity_ = _top_n_per_column(s, self.neighbours)

    @property
    def arrays(self) -> ItemSimilarity:
        """The fitted similarity (what a saved ranking state keeps to score without refitting)."""
        return ItemSimilarity(self.similarity_)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.arrays.score(self.seen_[rows])


def _top_n_per_column(s: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the n largest entries of each column (each target item keeps its n most similar source items)."""
    csc = s.tocsc()
    rows, cols, vals = [], [], []
    for j in range(csc.shape[1]):
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        data, idx = csc.data[lo:hi], csc.indices[lo:hi]
        if len(data) > n:
            sel = np.argpartition(-data, n - 1)[:n]
            data, idx = data[sel], idx[sel]
        rows.append(idx)
        cols.append(np.full(len(idx), j))
        vals.append(data)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=s.shape)


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): closed-form item-item weights.

    P = (X^T X + l2 I)^-1, B = -P / diag(P) column-wise with diag(B) = 0; scores = X B, X binary.
    `l2` is chosen on a validation split of the training data (see `recsys.evaluation.select_by_validation`).
    """

    name: ClassVar[str] = "ease"
    scalable: ClassVar[bool] = True

    def __init__(self, *, l2: float = 500.0, scale: ScaleConfig | None = None, l2_grid: Sequence[float] = ()) -> None:
        self.l2 = l2
        self.scale = scale or ScaleConfig()
        # a validation grid's other l2 values: above the dense limit fitted in the same pass and remembered
        # (`neighbour_ease`), so the grid's next fits on the same data are lookups
        self.l2_grid = tuple(l2_grid)

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        active = np.flatnonzero(self.has_train_events_)  # only items with events enter the Gram matrix
        x = seen[:, active]
        self.active_ = active
        if not is_dense(len(active), self.scale.dense_item_limit):
            # above the limit: each item regressed on its nearest neighbours only (sparse weights; see scalable.py)
            self.weights_: np.ndarray | sp.csr_matrix = neighbour_ease(
                x.tocsr(), self.l2, self.scale.neighbours, fanout=self.scale.ease_fanout, grid=self.l2_grid
            )
            return
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        # C order: sparse x dense products read it row-wise (a Fortran-ordered matrix is copied on every call)
        self.weights_ = np.ascontiguousarray(b)

    @property
    def arrays(self) -> EaseWeights:
        """The fitted weights (what a saved ranking state keeps to score without refitting)."""
        return EaseWeights(self.active_, self.weights_)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.arrays.score(self.seen_[rows], len(self.item_ids_))

    def recommend(
        self, users: Sequence[str], *, k: int = 10, exclude_seen: bool = True, batch_size: int | None = None
    ) -> pl.DataFrame:
        """As `Recommender.recommend`; with the sparse (neighbour) weights and seen items excluded, each user's list
        comes from a pool (its score's support and the first items outside it, `recsys.baselines.pooled`)."""
        if not (exclude_seen and PooledBlend.applies(self.arrays)):
            return super().recommend(users, k=k, exclude_seen=exclude_seen, batch_size=batch_size)
        known = [u for u in users if u in self.user_index_]
        rows = np.fromiter((self.user_index_[u] for u in known), dtype=np.int64, count=len(known))
        size = batch_size or score_batch_size(len(self.item_ids_))
        lists = PooledBlend(self.arrays).recommend(
            known, rows, self.seen_, self.item_ids_, [(0, 0.0)], k=k, batch_size=size, zscore=False
        )
        return lists[(0, 0.0)]
