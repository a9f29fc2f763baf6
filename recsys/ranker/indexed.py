"""The indexed candidate path for large catalogs: picks from indexes and sparse rows, z-scores from sums.

`Candidates.frame` takes this path on a state fitted with the scalable sources (more items with training events than
`[scale] dense_item_limit`, where EASE is the sparse neighbour form). The dense path builds a dozen users x items
matrices per batch and makes some forty passes over each 100k-wide row; here a user costs:

- the text top-N and the tail quota: two searches of the state's item indexes (`recsys.scoring.vector_index`; HNSW
  above the threshold, so sublinear in the catalog, or exact) with the interest profile, seen items excluded;
- the collaborative top-N: EASE's score is a sparse row (the neighbour form), so outside its support the blend orders
  items by the low-pass score alone; the pool is EASE's support plus the low-pass top-N (one rank-`factors` product
  over the items with training events, the only O(items) work left, with `factors` multiplications per item) plus,
  for the blend's neutral 0, the first unseen items without training events; the blend is evaluated on the pool
  only and its top-N is the dense path's;
- the z-scores of the blend's two parts and of the interest match from sums: over a user's valid items (the dense
  path's `zscore_rows` domain) the mean is q . sum(v) and the second moment q' (V'V) q, each minus the seen items'
  terms, with the Gram matrices made once per state;
- every score kept as a feature (EASE, low-pass, blend, SAR, item-kNN, sequence neighbours, the prior, the interest
  match) at the candidate pairs only, from sparse rows and dot products.

With exact indexes the rows are the dense path's (the z-scores' sums differ from the dense ones in the last bits,
which can only reorder exact near-ties; a test compares both paths); with HNSW the text picks are approximate (the
quality benchmark measures the whole scalable path against the exact one: `bench/scale.py --quality`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.scoring.pairs import (
    Cells,
    PairProduct,
    RowPool,
    distinct,
    first_free,
    first_not_in_rows,
    lookup,
    moments,
    quadratic_forms,
    row_dots,
    row_products,
)
from recsys.scoring.row_product import row_product_of, warm_up
from recsys.scoring.topk import top_k_indices
from recsys.scoring.vector_index import VectorIndex

if TYPE_CHECKING:
    from recsys.encoder.cache import ItemEmbeddings
    from recsys.ranker.config import CandidateConfig
    from recsys.ranker.state import RankingState


class Candidates(Protocol):
    """What the indexed path reads of `recsys.ranker.candidates.Candidates` (which holds one of these)."""

    state: RankingState
    cfg: CandidateConfig
    embeddings: ItemEmbeddings | None
    text_rows: np.ndarray | None
    not_tail: np.ndarray

    @property
    def has_text(self) -> bool: ...


# The approximate (HNSW) path's collaborative pool: EASE's and the low-pass's own top (this x N) each, re-scored by
# the blend.
POOL_SIZE = 2


@dataclass
class IndexedSources:
    """Per-state tables of the indexed path, built once per `Candidates` (lazily, on the first batch)."""

    cands: Candidates

    def __post_init__(self) -> None:
        blend = self.cands.state.blend
        train = np.flatnonzero(blend.has_train_events)
        if not (np.array_equal(blend.ease.active, train) and np.array_equal(blend.lowpass.active, train)):
            raise ValueError("the indexed path needs EASE and the low-pass filter over the items with training events")

    # -- per state -----------------------------------------------------------------------------------------------------
    @cached_property
    def train_cols(self) -> np.ndarray:
        """Item columns with training events (the blend's domain, EASE's and the low-pass's active items)."""
        return self.cands.state.blend.ease.active

    @cached_property
    def untrained_cols(self) -> np.ndarray:
        """Item columns without training events (the blend is a neutral 0 there)."""
        return np.flatnonzero(~self.cands.state.blend.has_train_events)

    @cached_property
    def train_pos(self) -> np.ndarray:
        """Position of every item column among the train columns (-1: none)."""
        pos = np.full(len(self.cands.state.item_ids), -1)
        pos[self.train_cols] = np.arange(len(self.train_cols))
        return pos

    @cached_property
    def lowpass(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(V, scale, sum of V_j scale_j, Gram of V_j scale_j) over the train columns (a user's low-pass score of item
        j is (q . V_j) * scale_j with q = x D^-a V, as `LowPassFactors.score` computes it)."""
        b = self.cands.state.blend
        v = np.ascontiguousarray(b.lowpass.components[:, : b.factors])
        scale = b.lowpass.item_scale
        w = v * scale[:, None]
        return v, scale, w.sum(axis=0), w.T @ w

    @cached_property
    def text(self) -> tuple[VectorIndex, VectorIndex, np.ndarray, np.ndarray, np.ndarray]:
        """(index of the items with text, index of the tail's items with text, the text items' columns, the sum and
        the Gram matrix of their vectors in float64). The indexes are the state's (built with it, saved with it);
        a state without them gets exact ones here."""
        cands, state = self.cands, self.cands.state
        assert cands.embeddings is not None and cands.text_rows is not None
        cols = np.flatnonzero(cands.text_rows >= 0)
        vectors = cands.embeddings.vectors64[cands.text_rows[cols]]
        tail = cols[~cands.not_tail[cols]]
        idx = state.item_indexes
        if idx is None or idx.text is None or idx.tail is None:
            full = VectorIndex.build(cols, vectors, kind="exact")
            tail_idx = VectorIndex.build(tail, cands.embeddings.vectors64[cands.text_rows[tail]], kind="exact")
        else:
            if idx.tail_users != cands.cfg.tail_users or not np.array_equal(idx.tail.cols, tail):
                raise ValueError(
                    f"the state's tail index was built for tail_users = {idx.tail_users}, the candidates ask "
                    f"{cands.cfg.tail_users}"
                )
            probe = np.unique(np.linspace(0, len(cols) - 1, num=min(len(cols), 8)).astype(np.int64))
            if not np.array_equal(idx.text.cols, cols) or not np.allclose(
                idx.text.vectors_at(probe), vectors[probe], atol=1e-6
            ):
                raise ValueError("the state's text index was built from other embeddings than these")
            full, tail_idx = idx.text, idx.tail
        return full, tail_idx, cols, vectors.sum(axis=0), vectors.T @ vectors

    @cached_property
    def similarities(self) -> tuple[PairProduct, PairProduct]:
        """SAR's and item-kNN's item x item similarities, for their products at the candidate pairs."""
        state = self.cands.state
        return PairProduct(state.sar.similarity), PairProduct(state.itemknn.similarity)

    @cached_property
    def popular_order(self) -> np.ndarray:
        """Item columns by trending score, best first (ties by column)."""
        return np.argsort(-self.cands.state.popular, kind="stable")

    def prepare(self) -> None:
        """Build every per-state table now, and load the compiled loops (a service does it before serving; otherwise
        the first batch does)."""
        for name in ("train_cols", "untrained_cols", "train_pos", "lowpass", "similarities", "popular_order"):
            getattr(self, name)
        if self.cands.has_text:
            _ = self.text
        warm_up()

    # -- per batch -----------------------------------------------------------------------------------------------------
    def columns(
        self, batch: list[str], rows: np.ndarray, include: dict[str, list[int]] | None, *, text_weight: float
    ) -> dict[str, object]:
        """The candidate rows' columns of `batch` (known users at state `rows`): the dense path's `cols`, with
        `text_weight` the interest match's weight in the prior."""
        cands, state, cfg = self.cands, self.cands.state, self.cands.cfg
        blend = state.blend
        hist = sp.csr_matrix(state.seen[rows])
        n_users, n_items = len(batch), len(state.item_ids)
        seen = [hist.indices[hist.indptr[i] : hist.indptr[i + 1]] for i in range(n_users)]
        seen_r = np.repeat(np.arange(n_users), np.diff(hist.indptr))  # (seen_r, hist.indices): the seen pairs
        picks: dict[str, list[np.ndarray]] = {}

        # -- the blend: EASE's sparse rows and the low-pass factors, z-scored from sums
        train, pos = self.train_cols, self.train_pos
        v, scale, w_sum, w_gram = self.lowpass
        hist_t = hist[:, train]
        # users x train positions: EASE's sparse rows, read as values at pairs, moments and best entries
        ease = row_product_of(hist_t, blend.ease.weights)
        q = np.asarray((hist_t @ sp.diags(1.0 / scale)) @ v)  # users x factors
        # the seen train items' terms, to take out of the sums
        sr = seen_r
        sc = pos[hist.indices]
        st = sc >= 0
        sr, sc = sr[st], sc[st]
        low_seen = np.einsum("ij,ij->i", q[sr], v[sc]) * scale[sc]
        n_valid = len(train) - np.bincount(sr, minlength=n_users)
        seen_cells = Cells(hist)
        # EASE's sums over the valid items: its row's (thousands of entries per user at scale: popular items are
        # every item's neighbours) minus the seen items' values
        e_mean, e_sd = ease.moments(sr, ease.at(sr, sc), n_valid)
        l_mean, l_sd = moments(
            row_products(q, w_sum) - np.bincount(sr, low_seen, minlength=n_users),
            quadratic_forms(q, w_gram) - np.bincount(sr, low_seen**2, minlength=n_users),
            n_valid,
        )
        bw = blend.weight

        def blend_at(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            """The blend at pairs (row in batch, item column): 0 for items without training events."""
            t = pos[c]
            ok = t >= 0
            out = np.zeros(len(r))
            rr, tt = r[ok], t[ok]
            e = ease.at(rr, tt)
            out[ok] = (e - e_mean[rr]) / e_sd[rr]
            if bw > 0:
                low = np.einsum("ij,ij->i", q[rr], v[tt]) * scale[tt]
                out[ok] += bw * (low - l_mean[rr]) / l_sd[rr]
            return out

        n = cfg.n_collaborative
        indexes = state.item_indexes
        approximate = indexes is not None and indexes.kind == "hnsw"
        if n > 0:
            low_top: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n_users
            ease_top: list[np.ndarray] | None = None
            if approximate and bw > 0:
                # sublinear: the pool is EASE's and the low-pass's own top POOL_SIZE x N (their blend misses an item
                # only if it is in neither: the quality benchmark measures it)
                assert indexes is not None
                m = POOL_SIZE * n
                low_top = indexes.lowpass.search(q, m, seen)
                ease_top = [train[t] for t in ease.best(sr, sc, m)]
            elif bw > 0 and len(train):  # outside EASE's support the blend orders items by the low-pass score
                low_all = (q @ v.T) * scale
                low_all[sr, sc] = -np.inf
                # the support is in the pool already (its EASE part may be < 0)
                low_all[np.repeat(np.arange(n_users), np.diff(ease.indptr)), ease.indices] = -np.inf
                idx = top_k_indices(low_all, min(n, len(train)))
                best = np.take_along_axis(low_all, idx, axis=1)
                low_top = [train[i[np.isfinite(b)]] for i, b in zip(idx, best, strict=True)]
                del low_all
            pools = []
            untrained_first = first_not_in_rows(self.untrained_cols, n_users, seen_r, hist.indices, n)
            seen_at = np.searchsorted(sr, np.arange(n_users + 1))  # user i's seen train positions: sc[seen_at[i]:...]
            for i in range(n_users):
                support = ease.indices[ease.indptr[i] : ease.indptr[i + 1]]  # train positions
                parts = [train[support] if ease_top is None else ease_top[i], low_top[i], untrained_first[i]]
                if bw <= 0:  # every item outside the support ties: the first columns
                    parts.append(train[first_free(len(train), [support, sc[seen_at[i] : seen_at[i + 1]]], n)])
                pools.append(distinct(np.concatenate(parts)))
            pr = np.repeat(np.arange(n_users), [len(p) for p in pools])
            pc = np.concatenate(pools) if pools else np.zeros(0, dtype=np.int64)
            unseen = seen_cells.at(pr, pc) == 0  # the seen items out of the pools, in one pass over the batch
            pr, pc = pr[unseen], pc[unseen]
            br, bc, _ = RowPool([(pr, pc)], n_users).best(blend_at(pr, pc), n)  # best first, ties by column
            picks["blend"] = np.split(bc, np.searchsorted(br, np.arange(1, n_users)))

        # -- the interest match: the state's item indexes, z-scored from sums
        prof = None
        if cands.has_text:
            assert state.interests is not None and cands.embeddings is not None and cands.text_rows is not None
            full, tail, text_cols, t_sum, t_gram = self.text
            i_rows = state.interests.rows(batch)
            prof = np.zeros((n_users, state.interests.profile.shape[1]))
            prof[i_rows >= 0] = state.interests.profile[i_rows[i_rows >= 0]]
            text_picks = full.search(prof, cfg.n_text, seen)
            if cfg.n_text_tail:
                more = tail.search(prof, cfg.n_text_tail, seen)
                text_picks = [distinct(np.concatenate([a, b])) for a, b in zip(text_picks, more, strict=True)]
            picks["text"] = text_picks
            has_text = cands.text_rows >= 0 if cands.text_rows is not None else np.zeros(n_items, dtype=bool)
            tr, tc = seen_r, hist.indices
            keep = has_text[tc]
            tr, tc = tr[keep], tc[keep]
            t_seen = row_dots(prof, tr, cands.embeddings.vectors, cands.text_rows[tc])
            t_mean, t_sd = moments(
                row_products(prof, t_sum) - np.bincount(tr, t_seen, minlength=n_users),
                quadratic_forms(prof, t_gram) - np.bincount(tr, t_seen**2, minlength=n_users),
                len(text_cols) - np.bincount(tr, minlength=n_users),
            )

        # the n_popular unseen items by trending score
        picks["popular"] = first_not_in_rows(self.popular_order, n_users, seen_r, hist.indices, cfg.n_popular)

        # -- the union per user, plus requested items
        union = []
        for i, user in enumerate(batch):
            chosen_i = [p[i] for p in picks.values()]
            if include and user in include:
                chosen_i.append(np.asarray(include[user], dtype=np.int64))
            union.append(distinct(np.concatenate(chosen_i)).astype(np.int64))
        r = np.repeat(np.arange(n_users), [len(u) for u in union])
        c = np.concatenate(union) if union else np.zeros(0, dtype=np.int64)
        seen_rc = seen_cells.at(r, c) > 0

        def flag(name: str) -> np.ndarray:
            if name not in picks:
                return np.zeros(len(r), dtype=bool)
            sizes = [len(p) for p in picks[name]]
            marked = sp.csr_matrix(
                (np.ones(sum(sizes)), (np.repeat(np.arange(n_users), sizes), np.concatenate(picks[name]))),
                shape=(n_users, n_items),
            )
            return lookup(marked, r, c) > 0

        # -- every score at the candidate pairs
        t = pos[c]
        ok = t >= 0
        scores: dict[str, np.ndarray] = {"ease": np.zeros(len(r)), "lowpass": np.zeros(len(r))}
        scores["ease"][ok] = ease.at(r[ok], t[ok])
        scores["lowpass"][ok] = np.einsum("ij,ij->i", q[r[ok]], v[t[ok]]) * scale[t[ok]]
        scores["blend"] = blend_at(r, c)
        sar, knn = self.similarities
        scores["sar"] = sar.at(state.sar_affinity[rows], r, c)
        scores["itemknn"] = knn.at(hist, r, c)
        if state.seqnb is not None:
            scores["seqnb"] = lookup(state.seqnb.score_sparse(rows, n_items), r, c)
        scores["prior"] = scores["blend"]
        if prof is not None:
            assert cands.text_rows is not None and cands.embeddings is not None
            e_rows = cands.text_rows[c]
            has = e_rows >= 0
            text = np.full(len(r), np.nan)
            # float64 products rounded to float32, as `profile_scores`
            text[has] = row_dots(prof, r[has], cands.embeddings.vectors, e_rows[has]).astype(np.float32)
            scores["text"] = text
            if text_weight > 0:
                valid = has & ~seen_rc
                zt = np.where(valid, (np.where(has, text, 0.0) - t_mean[r]) / t_sd[r], 0.0)
                scores["prior"] = scores["blend"] + text_weight * zt
        cols: dict[str, object] = {
            S.USER_ID: np.asarray(batch, dtype=object)[r].tolist(),
            S.ITEM_ID: state.item_ids[c].tolist(),
            "is_from_text": flag("text"),
            "is_from_cf": flag("blend"),
            "is_from_popular": flag("popular"),
        }
        for name, val in scores.items():
            cols[f"score_{name}"] = np.where(np.isfinite(val), val, np.nan)
        cols["_row"], cols["_col"] = rows[r], c
        return cols

    def prior_parts(self, batch: list[str], rows: np.ndarray) -> pl.DataFrame:
        """user_id, item_id, column (the item's), blend, text_z over the candidates of `batch` (known users at state
        `rows`; seen items excluded): the prior with text weight w is blend + w * text_z (the text weight's grid)."""
        cols = self.columns(batch, rows, None, text_weight=1.0)
        blend = np.asarray(cols["score_blend"])
        return pl.DataFrame(
            {
                S.USER_ID: cols[S.USER_ID],
                S.ITEM_ID: cols[S.ITEM_ID],
                "column": cols["_col"],
                "blend": blend,
                "text_z": np.asarray(cols["score_prior"]) - blend,
            }
        )
