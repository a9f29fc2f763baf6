"""Sequence neighbours: items that users engage with close together in time, scored by where they fit in a user's
history.

EASE and the low-pass filter see a user's history as a set. Its order carries more: people rate, watch or buy in
runs (a session, a page of a site's list, a series), so the items next to each other in a history are related in a
way co-occurrence anywhere in the history dilutes. `SequenceNeighbours` counts, over every user's time-ordered
training events, the pairs at most `window` positions apart (weight `decay ** (distance - 1)`), normalised by the
items' event counts (`A_ij / (n_i n_j) ** item_norm`). A candidate j then scores, for user u with history
s_1 .. s_n (time order),

    sum over consecutive pairs p of sqrt(A[s_p, j] * A[j, s_p+1])  +  A[s_n, j]

the first term high where j fits *between* two neighbouring events of u (a geometric mean: both sides must agree),
the second where it follows the last one (what comes next). It is a neighbourhood model, so it cannot score items
without training events.

Measured (README, `bench/results/quality-seq-term.json`): ML-100k `ms-stratified` nDCG@10 0.4497 (item-kNN 0.4360,
EASE 0.4829); ml-latest-small `temporal` 0.1278. On ML-100k's inner validation splits (three seeds, never the test
data) a z-scored third term of the EASE + low-pass blend added +0.0024 (0.2773 -> 0.2797); tried as the pipeline's
prior term and ranker feature it added nothing on the test split, so the pipeline does not use it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.baselines._base import Recommender
from recsys.data import schema as S
from recsys.scoring.sources import SequenceGraph


class SequenceNeighbours(Recommender):
    """Item pairs near each other in users' time-ordered histories; a candidate scores by how well it fits between
    consecutive events of the user, and after the last. See the module docstring."""

    name: ClassVar[str] = "seqnb"

    def __init__(self, *, window: int = 20, decay: float = 0.9, item_norm: float = 0.5) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.window = window
        self.decay = decay
        self.item_norm = item_norm

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        # time order per user; ties (same timestamp) by item code, so the order is the same in every run
        ordered = (
            events.select("_u", "_i", S.TIMESTAMP)
            .sort("_u", S.TIMESTAMP, "_i")
            .unique(["_u", "_i"], keep="first", maintain_order=True)  # a repeated item: where it first came
        )
        users = ordered["_u"].to_numpy()
        codes = ordered["_i"].to_numpy()
        n = len(self.item_ids_)
        rows, cols, vals = [], [], []
        for d in range(1, self.window + 1):
            same = users[:-d] == users[d:]
            if not same.any():
                break
            a, b = codes[:-d][same], codes[d:][same]
            w = np.full(len(a), self.decay ** (d - 1))
            rows += [a, b]
            cols += [b, a]
            vals += [w, w]
        if rows:
            adj = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        else:
            adj = sp.csr_matrix((n, n))
        degree = np.maximum(np.asarray(seen.sum(axis=0)).ravel(), 1.0) ** -self.item_norm
        self.adjacency_ = (sp.diags(degree) @ adj @ sp.diags(degree)).tocsr()
        # each user's history in time order: codes[starts[u] : starts[u + 1]]
        counts = np.bincount(users, minlength=len(self.user_index_))
        self.starts_ = np.concatenate([[0], np.cumsum(counts)])
        self.sequence_ = codes

    @property
    def arrays(self) -> SequenceGraph:
        """The fitted graph and histories (what a saved ranking state keeps to score without refitting)."""
        return SequenceGraph(self.adjacency_, self.starts_, self.sequence_)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.arrays.score(rows, len(self.item_ids_))
