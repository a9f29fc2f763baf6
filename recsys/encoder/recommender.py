"""Text-only recommendation: rank every candidate by the interest-match score of its text (cold items included)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.baselines import Recommender
from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import InterestConfig, UserInterests, profile_scores, user_interests


class TextRecommender(Recommender):
    """Scores = cosine between the user's interest vector and each candidate's embedding (`im_profile`).

    Needs no interactions on an item, so it ranks cold items like any other. Candidates without an embedding get
    -inf (never listed).
    """

    name: ClassVar[str] = "text"
    scores_cold_items: ClassVar[bool] = True

    def __init__(self, embeddings: ItemEmbeddings, cfg: InterestConfig | None = None) -> None:
        self.embeddings = embeddings
        self.cfg = cfg or InterestConfig()
        self.model_version = embeddings.model_version

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        self.interests_: UserInterests = user_interests(
            events, self.embeddings, as_of=after_last_event(events), cfg=self.cfg
        )
        row = {item: i for i, item in enumerate(self.embeddings.item_ids)}
        self.cand_rows_ = np.fromiter(
            (row.get(i, -1) for i in self.item_ids_), dtype=np.int64, count=len(self.item_ids_)
        )
        self.users_ = list(self.user_index_)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        users = [self.users_[r] for r in rows]
        full = profile_scores(self.interests_, self.embeddings, users)
        scores = np.full((len(rows), len(self.cand_rows_)), -np.inf)
        ok = self.cand_rows_ >= 0
        scores[:, ok] = full[:, self.cand_rows_[ok]]
        return scores
