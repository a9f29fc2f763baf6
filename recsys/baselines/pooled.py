"""Exact top-k lists of the sparse collaborative forms without a users x items row per source.

Above `[scale] dense_item_limit` EASE's weights are sparse (the neighbour form), so a user's EASE score is a sparse row:
every item outside its support scores exactly 0. That makes the top-k computable from a pool per user (the support:
on the 100k-item synthetic night's inner split ~8k items per user, as popular items neighbour many others):

- EASE alone: its positive support, then the items at 0 by column order (the first k outside the support), then
  the negative support: the pool is the support plus the first k unseen items outside it.
- The EASE + low-pass blend z(EASE) + w z(low-pass): outside EASE's support z(EASE) is one constant per user, so there
  the blend orders items by the low-pass score alone; the pool is the support plus the low-pass top k outside the
  support (one rank-`factors` product per item, the only O(items) work). Weight 0 is EASE's order (as above).

The z-scores come from sums over the user's valid items (items with training events, not seen; the dense
`zscore_rows` domain): the mean from q . sum(V_j s_j), the second moment from q' (Σ V_j s_j V_j' s_j) q, each minus
the seen items' terms, with the Gram matrices made once per call. The lists are those of the dense scoring (`recommend`
over `_score`) up to the last bits of the z-scores, which can only swap exact near-ties; a test compares both, and
`bench/blend_grid.py` measures both on a large catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.scoring import EaseWeights, LowPassFactors
from recsys.scoring.pairs import (
    RowPool,
    first_free,
    moments,
    product_at_columns,
    quadratic_forms,
    row_products,
)
from recsys.scoring.row_product import row_product_of
from recsys.scoring.topk import top_k_indices

Combo = tuple[int, float]  # (low-pass factors, blend weight); weight 0 = EASE alone


class PooledBlend:
    """EASE's sparse weights and (for the blend) the low-pass components over the same items, the items with
    training events; the z-scores' tables per factor count are made on first use."""

    def __init__(self, ease: EaseWeights, lowpass: LowPassFactors | None = None) -> None:
        if not self.applies(ease, lowpass):
            raise ValueError("pooled lists need EASE's sparse weights and a low-pass filter over the same items")
        self.ease, self.lowpass = ease, lowpass
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def applies(ease: EaseWeights, lowpass: LowPassFactors | None = None) -> bool:
        """True when EASE is the sparse (neighbour) form and the low-pass, if any, covers the same items."""
        same = lowpass is None or np.array_equal(lowpass.active, ease.active)
        return sp.issparse(ease.weights) and same

    def tables(self, factors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V, sum of V_j s_j, Gram of V_j s_j) with the first `factors` components."""
        assert self.lowpass is not None
        if factors not in self._tables:
            v = np.ascontiguousarray(self.lowpass.components[:, :factors])
            w = v * self.lowpass.item_scale[:, None]
            self._tables[factors] = (v, w.sum(axis=0), w.T @ w)
        return self._tables[factors]

    def recommend(
        self,
        users: Sequence[str],
        rows: np.ndarray,
        seen: sp.csr_matrix,
        item_ids: np.ndarray,
        combos: Sequence[Combo],
        *,
        k: int,
        batch_size: int,
        zscore: bool = True,
    ) -> dict[Combo, pl.DataFrame]:
        """Recommendation frames per combo for `users` (known users at `rows` of `seen`, the fit's user x item
        matrix), `batch_size` users at a time."""
        parts: dict[Combo, list[pl.DataFrame]] = {c: [] for c in combos}
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            tops = self.top_k(seen[rows[start : start + batch_size]], combos, k, zscore=zscore)
            for combo in combos:
                parts[combo].append(pooled_frame(batch, item_ids, tops[combo]))
        empty = pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
        return {c: pl.concat(p) if p else empty for c, p in parts.items()}

    def top_k(
        self, history: sp.csr_matrix, combos: Sequence[Combo], k: int, *, zscore: bool = True
    ) -> dict[Combo, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per combo (factors, weight): (row in the batch, item column, score) of each user's top k, best first
        (ties by column), seen items and items without training events never listed. `zscore=False` with weight 0
        scores by the raw EASE score (EASE's own lists)."""
        train = self.ease.active
        n_users, n_train = history.shape[0], len(train)
        h = sp.csr_matrix(history[:, train])
        h.sum_duplicates()
        e = row_product_of(h, self.ease.weights)  # stored entries as CSR rows (no column twice)
        sr = np.repeat(np.arange(n_users), np.diff(h.indptr))
        sc = h.indices
        seen = (sr, sc)
        n_valid = n_train - np.bincount(sr, minlength=n_users)
        # EASE's support (its stored entries, seen items too: `RowPool.best` leaves those out), and its sums over the
        # valid items: the row's minus the seen items' values (the product at their columns only: the same sums)
        er, ec, ev = np.repeat(np.arange(n_users), np.diff(e.indptr)), e.indices, e.data
        e_mean, e_sd = e.moments(sr, product_at_columns(h, self.ease_by_column, sr, sc), n_valid)
        e_z = (ev - e_mean[er]) / e_sd[er] if zscore else ev
        out: dict[Combo, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        zero_z = -e_mean / e_sd if zscore else np.zeros(n_users)  # EASE's z outside its support

        if any(w <= 0 for _, w in combos):
            support = np.split(ec, e.indptr[1:-1])
            seen_rows = np.split(sc, h.indptr[1:-1])
            firsts = [first_free(n_train, [a, b], k) for a, b in zip(support, seen_rows, strict=True)]
            fr = np.repeat(np.arange(n_users), [len(f) for f in firsts])
            fc = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
            pool = RowPool([(er, ec), (fr, fc)], n_users)
            best = pool.best(np.concatenate([e_z, zero_z[fr]]), k, exclude=seen)
            for combo in combos:
                if combo[1] <= 0:
                    out[combo] = (best[0], train[best[1]], best[2])

        x = h @ sp.diags(1.0 / self.lowpass.item_scale) if self.lowpass is not None else None
        for f in sorted({f for f, w in combos if w > 0}):
            assert self.lowpass is not None and x is not None
            v, w_sum, w_gram = self.tables(f)
            q = np.asarray(x @ v)
            scale = self.lowpass.item_scale
            low = (q @ v.T) * scale  # users x train items: the one dense product
            seen_low = low[sr, sc]
            l_mean, l_sd = moments(
                row_products(q, w_sum) - np.bincount(sr, seen_low, minlength=n_users),
                quadratic_forms(q, w_gram) - np.bincount(sr, seen_low**2, minlength=n_users),
                n_valid,
            )
            support_low = low[er, ec]
            low[sr, sc] = -np.inf
            low[er, ec] = -np.inf  # the support is in the pool already
            idx = top_k_indices(low, min(k, n_train))
            vals = np.take_along_axis(low, idx, axis=1)
            ok = np.isfinite(vals)
            pr = np.repeat(np.arange(n_users), ok.sum(axis=1))
            pc, pv = idx[ok], vals[ok]
            pool = RowPool([(er, ec), (pr, pc)], n_users)
            for combo in combos:
                w = combo[1]
                if combo[0] != f or w <= 0:
                    continue
                values = np.concatenate(
                    [e_z + w * (support_low - l_mean[er]) / l_sd[er], zero_z[pr] + w * (pv - l_mean[pr]) / l_sd[pr]]
                )
                best = pool.best(values, k, exclude=seen)
                out[combo] = (best[0], train[best[1]], best[2])
        return out

    @cached_property
    def ease_by_column(self) -> sp.csc_matrix:
        """EASE's sparse weights by column (its values at a batch's seen items are products at those columns)."""
        return sp.csc_matrix(self.ease.weights)


def pooled_frame(
    users: Sequence[str], item_ids: np.ndarray, best: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> pl.DataFrame:
    """`PooledBlend.top_k`'s (row, column, score) as a recommendation frame of `users` (rows index them)."""
    r, c, value = best
    rank = np.arange(len(r)) - np.searchsorted(r, r) + 1
    return pl.DataFrame(
        {
            S.USER_ID: np.asarray(users, dtype=object)[r].tolist(),
            S.ITEM_ID: item_ids[c].tolist(),
            S.RANK: rank.astype(np.int32),
            S.SCORE: value.astype(np.float64),
        },
        schema=S.RECOMMENDATION_SCHEMA,
    )
