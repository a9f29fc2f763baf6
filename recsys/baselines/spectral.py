"""Spectral collaborative filtering: an ideal low-pass graph filter, and its blend with EASE.

`LowPass` keeps the `factors` smoothest components of the normalised user-item graph (the "ideal low-pass
filter" of GF-CF, Shen et al., CIKM 2021): with R~ = D_u^-1/2 X D_i^-a, V = the top right singular vectors of R~,
scores = (x_u D_i^-a) V V^T D_i^a. It is a global, low-rank view of taste; EASE is a local, full-rank item-item
regression. Their errors differ, so a blend of the two ranks better than either (measured on ML-100k's inner
validation splits, never on test: EASE 0.2742 -> 0.2831 nDCG@10 with 16 factors, weight 0.5; see README).

`EASELowPass` scores z(EASE) + weight * z(LowPass), each z-normalised per user over the items the user can be
recommended (items with training events, not yet seen), so the weight does not depend on either model's scale.
The eigenvectors come from the item x item Gram matrix (`scipy.linalg.eigh`, deterministic), the same matrix size
EASE inverts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, TypeVar

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse as sp

from recsys.baselines._base import Recommender, score_batch_size
from recsys.baselines.neighbourhood import EASE
from recsys.baselines.pooled import PooledBlend
from recsys.baselines.scalable import is_dense, lowpass_components
from recsys.compute.scale import ScaleConfig
from recsys.data import schema as S
from recsys.scoring.sources import BlendParts, LowPassFactors, zscore_rows

_R = TypeVar("_R", bound=Recommender)


class LowPass(Recommender):
    """Ideal low-pass graph filter over the item-item graph (GF-CF's low-rank part); `factors` components kept.

    `item_norm` (a): exponent of the item-degree normalisation; 0.5 is the symmetric normalisation of GF-CF, lower
    values keep more of the popular items' weight (0.35 was best on ML-100k's inner validation split).
    """

    name: ClassVar[str] = "lowpass"
    scalable: ClassVar[bool] = True

    def __init__(
        self, *, factors: int = 16, item_norm: float = 0.35, user_norm: float = 0.5, scale: ScaleConfig | None = None
    ) -> None:
        if factors < 1:
            raise ValueError(f"factors must be >= 1, got {factors}")
        self.factors = factors
        self.item_norm = item_norm
        self.user_norm = user_norm
        self.scale = scale or ScaleConfig()

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        active = np.flatnonzero(self.has_train_events_)
        x = seen[:, active].tocsr()
        user_deg = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
        item_deg = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
        norm = (sp.diags(user_deg**-self.user_norm) @ x @ sp.diags(item_deg**-self.item_norm)).tocsr()
        n = norm.shape[1]
        k = min(self.factors, n)
        self.active_ = active
        self.item_scale_ = item_deg**self.item_norm
        if not is_dense(n, self.scale.dense_item_limit) and k < n - 1:
            # above the limit: Lanczos on the sparse matrix, the Gram matrix never formed (see scalable.py)
            self.components_ = lowpass_components(norm, k)
            return
        gram = (norm.T @ norm).toarray()
        # eigh returns ascending eigenvalues: the last k are the smoothest components
        _, vectors = scipy.linalg.eigh(gram, subset_by_index=[n - k, n - 1], check_finite=False)
        self.components_ = np.ascontiguousarray(vectors[:, ::-1])  # largest first, so [:, :f] is the top f

    @property
    def arrays(self) -> LowPassFactors:
        """The fitted components (what a saved ranking state keeps to score without refitting)."""
        return LowPassFactors(self.active_, self.components_, self.item_scale_)

    def _score_with(self, rows: np.ndarray, factors: int) -> np.ndarray:
        return self.arrays.score(self.seen_[rows], len(self.item_ids_), factors)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self._score_with(rows, self.factors)


class EASELowPass(Recommender):
    """z(EASE) + weight * z(LowPass), per user; weight 0 is EASE's order. See the module docstring."""

    name: ClassVar[str] = "ease-lowpass"
    scalable: ClassVar[bool] = True

    def __init__(
        self,
        *,
        l2: float = 500.0,
        factors: int = 16,
        weight: float = 0.5,
        item_norm: float = 0.35,
        scale: ScaleConfig | None = None,
    ) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.l2 = l2
        self.factors = factors
        self.weight = weight
        self.item_norm = item_norm
        self.scale = scale or ScaleConfig()

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        # the components share this model's user and item index, so a row means the same user in all three
        self.ease_ = self._fit_part(EASE(l2=self.l2, scale=self.scale), events, seen, items)
        # `factors` may be lowered after fitting (validation tries fewer): the leading columns of this fit
        lowpass = LowPass(factors=self.factors, item_norm=self.item_norm, scale=self.scale)
        self.lowpass_ = self._fit_part(lowpass, events, seen, items)

    def _fit_part(self, model: _R, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> _R:
        for attr in ("user_index_", "item_ids_", "item_index_", "seen_", "has_train_events_"):
            setattr(model, attr, getattr(self, attr))
        model._fit(events, seen, items)
        return model

    @property
    def parts(self) -> BlendParts:
        """The fitted EASE weights and low-pass components with this blend's factors and weight (what a saved
        ranking state keeps to score without refitting)."""
        return BlendParts(self.ease_.arrays, self.lowpass_.arrays, self.factors, self.weight, self.has_train_events_)

    def components(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Raw EASE and low-pass scores and the blend, for user rows of the fit-time index."""
        if self.factors > self.lowpass_.factors:
            raise ValueError(f"factors={self.factors}, but the fit kept {self.lowpass_.factors} components; refit")
        return self.parts.components(self.seen_[rows])

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.components(rows)["blend"]

    def recommend(
        self, users: Sequence[str], *, k: int = 10, exclude_seen: bool = True, batch_size: int | None = None
    ) -> pl.DataFrame:
        """As `Recommender.recommend`; with the sparse forms (seen items excluded) from pools, not dense rows."""
        if exclude_seen and PooledBlend.applies(self.ease_.arrays, self.lowpass_.arrays):
            combo = (self.factors, self.weight)
            return self.recommend_grid(users, [combo], k=k)[combo]
        return super().recommend(users, k=k, exclude_seen=exclude_seen, batch_size=batch_size)

    def recommend_grid(
        self, users: Sequence[str], combos: Sequence[tuple[int, float]], *, k: int = 10
    ) -> dict[tuple[int, float], pl.DataFrame]:
        """`recommend(users, k=k)` with each (factors, weight) of `combos` (seen items excluded), identical lists,
        at a fraction of the cost: per user batch EASE's scores, the mask and their z-scores are computed once, and
        the low-pass z-scores once per factor count; only the blend and its top-k are per combination. With the
        sparse forms (large catalogs) each combination's lists come from a pool per user (`recsys.baselines.pooled`):
        EASE's support and the low-pass top k outside it."""
        for f, _ in combos:
            if f > self.lowpass_.factors:
                raise ValueError(f"factors={f}, but the fit kept {self.lowpass_.factors} components; refit")
        ease_w, low = self.ease_.arrays, self.lowpass_.arrays
        if not PooledBlend.applies(ease_w, low):
            return self.dense_grid(users, combos, k=k)
        # the sparse forms: pooled, no users x items row per combination
        known = [u for u in users if u in self.user_index_]
        rows = np.fromiter((self.user_index_[u] for u in known), dtype=np.int64, count=len(known))
        size = score_batch_size(len(self.item_ids_))  # as `recommend`
        return PooledBlend(ease_w, low).recommend(known, rows, self.seen_, self.item_ids_, combos, k=k, batch_size=size)

    def dense_grid(
        self, users: Sequence[str], combos: Sequence[tuple[int, float]], *, k: int = 10
    ) -> dict[tuple[int, float], pl.DataFrame]:
        """`recommend_grid` from dense rows (users x items per batch), whatever the forms (what the pooled lists
        are measured against: `bench/blend_grid.py`)."""
        known = [u for u in users if u in self.user_index_]
        n = len(self.item_ids_)
        batch_size = score_batch_size(n)
        ease_w, low = self.ease_.arrays, self.lowpass_.arrays
        cold = ~self.has_train_events_
        parts: dict[tuple[int, float], list[pl.DataFrame]] = {c: [] for c in combos}
        for start in range(0, len(known), batch_size):
            batch = known[start : start + batch_size]
            rows = np.fromiter((self.user_index_[u] for u in batch), dtype=np.int64, count=len(batch))
            history = self.seen_[rows]
            ease = np.asarray(ease_w.score(history, n))
            # the operations of `blend_components`, shared: the same numbers
            valid = np.broadcast_to(self.has_train_events_, ease.shape) & ~history.toarray().astype(bool)
            z_ease = zscore_rows(ease, valid)
            z_low = {f: zscore_rows(low.score(history, n, f), valid) for f in sorted({f for f, w in combos if w > 0})}
            seen = history.tocoo()
            for f, w in combos:
                blend = z_ease + w * z_low[f] if w > 0 else z_ease
                scores = np.where(self.has_train_events_, blend, 0.0)
                scores[:, cold] = -np.inf  # `recommend`'s masks: collaborative models never list cold items
                scores[seen.row, seen.col] = -np.inf
                parts[(f, w)].append(self._top_k(batch, scores, k))
        empty = pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
        return {c: pl.concat(p) if p else empty for c, p in parts.items()}
