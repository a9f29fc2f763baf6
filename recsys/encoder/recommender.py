"""Text-only recommendation: rank every candidate by the interest-match score of its text (cold items included)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.baselines import Recommender
from recsys.data import schema as S
from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import InterestConfig, UserInterests, profile_scores, user_interests

Embedder = Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings]
# Positional half-lives tried when the recency is chosen on validation: None = the plain profile (mean of the history,
# time-decayed), 0.25 = in effect the last item.
RECENCY_GRID: tuple[float | None, ...] = (None, 4.0, 1.0, 0.25)


class TextRecommender(Recommender):
    """Scores = cosine between the user's interest vector and each candidate's embedding (`im_profile`).

    Needs no interactions on an item, so it ranks cold items like any other. Candidates without an embedding get
    -inf (never listed).

    `embeddings` are fixed vectors, or an embedder (e.g. `recsys.encoder.TextEmbedder`) called on the training window.
    With `protocol`, the embedder is called on an inner validation split's training part (as the ranking pipeline
    does, so both share one fine-tuning) and the profile's positional recency (`half_life_events`) is chosen among
    `recency_grid` by nDCG@10 on that split's hold-out, never on test data.
    """

    name: ClassVar[str] = "text"
    scores_cold_items: ClassVar[bool] = True

    def __init__(
        self,
        embeddings: ItemEmbeddings | Embedder,
        cfg: InterestConfig | None = None,
        *,
        protocol: str | None = None,
        recency_grid: Sequence[float | None] = RECENCY_GRID,
        seed: int = 42,
    ) -> None:
        self.embedder = embeddings if callable(embeddings) else None
        self.embeddings: ItemEmbeddings | None = None if callable(embeddings) else embeddings
        self.cfg = cfg or InterestConfig()
        self.protocol = protocol
        self.recency_grid = tuple(recency_grid)
        self.seed = seed
        self.model_version = self.embeddings.model_version if self.embeddings else "per-window"

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        train = events.drop("_u", "_i")
        self.recency_choice_: dict[str, float] = {}
        if self.protocol is not None:
            from recsys.evaluation.metrics import mean_or_zero, user_metrics
            from recsys.evaluation.splits import validation_split

            inner = validation_split(train, self.protocol, seed=self.seed)
            if self.embedder is not None:
                self.embeddings = self._embed(inner.train, items)
            users = inner.test[S.USER_ID].unique(maintain_order=True).to_list()
            cands = self.item_ids_.tolist()
            for h in self.recency_grid:
                probe = TextRecommender(self.embeddings, self.cfg.model_copy(update={"half_life_events": h}))  # type: ignore[arg-type]
                recs = probe.fit(inner.train, candidates=cands, items=items).recommend(users, k=10)
                per_user = user_metrics(recs, inner.test, ks=(10,))
                self.recency_choice_[str(h)] = round(mean_or_zero(per_user["ndcg@10"]), 6)
            best = max(self.recency_grid, key=lambda h: self.recency_choice_[str(h)])
            self.cfg = self.cfg.model_copy(update={"half_life_events": best})
        elif self.embedder is not None:
            self.embeddings = self._embed(train, items)
        assert self.embeddings is not None
        self.model_version = self.embeddings.model_version
        self.interests_: UserInterests = user_interests(
            train, self.embeddings, as_of=after_last_event(train), cfg=self.cfg
        )
        row = self.embeddings.row_of
        self.cand_rows_ = np.fromiter(
            (row.get(i, -1) for i in self.item_ids_), dtype=np.int64, count=len(self.item_ids_)
        )
        self.users_ = list(self.user_index_)

    def _embed(self, train: pl.DataFrame, items: pl.DataFrame | None) -> ItemEmbeddings:
        if items is None:
            raise ValueError("a text recommender with an embedder needs the catalog: fit(..., items=catalog)")
        assert self.embedder is not None
        return self.embedder(train, items)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        users = [self.users_[r] for r in rows]
        assert self.embeddings is not None
        full = profile_scores(self.interests_, self.embeddings, users)
        scores = np.full((len(rows), len(self.cand_rows_)), -np.inf)
        ok = self.cand_rows_ >= 0
        scores[:, ok] = full[:, self.cand_rows_[ok]]
        return scores

    def evaluation_extras(self, test: pl.DataFrame) -> dict[str, object]:
        """The profile's positional half-life, and the choice (validation nDCG@10 per half-life) when one was made."""
        out: dict[str, object] = {"half_life_events": self.cfg.half_life_events}
        return out | ({"recency_validation_ndcg": self.recency_choice_} if self.recency_choice_ else {})
