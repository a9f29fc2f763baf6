"""Candidates and their features: the one feature path of the ranking stage.

Training labels, the nightly lists and online re-ranking (a batch of one user) all build their rows here, from a
window's `RankingState`: per-source scores, the top-N union per source (seen items removed, requested items added),
within-candidate ranks, user and item features gathered from the state, genre affinity and interest match. The same
inputs give the same rows and values whatever the batch (a test checks it).
"""

from __future__ import annotations

import copy

import numpy as np
import polars as pl

from features import affinity_from_arrays
from recsys.compute.threads import map_batches
from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import interest_feature_arrays, profile_scores
from recsys.ranker._common import FEATURE_DECIMALS, SCORED, prior_score, top_mask
from recsys.ranker.config import CandidateConfig
from recsys.ranker.indexed import IndexedSources
from recsys.ranker.state import RankingState

# Users scored together: each source's scores are a dense users x items float64 matrix (about a dozen per batch), so
# the batch shrinks as the catalog grows: 256 users up to ~16k items, 40 at 100k (~32 MB per matrix).
BATCH_CELLS = 4_000_000


def user_batch(n_items: int) -> int:
    """Users per batch for a catalog of `n_items` (between 16 and 256)."""
    return max(16, min(256, BATCH_CELLS // max(1, n_items)))


class Candidates:
    """Candidate rows with features for users of `state`. `text_weight`: the interest match's weight in the prior;
    `use_text` False (the no-text ablation) keeps it out of the prior."""

    def __init__(
        self,
        state: RankingState,
        cfg: CandidateConfig,
        *,
        embeddings: ItemEmbeddings | None,
        text_weight: float = 0.0,
        use_text: bool = True,
    ) -> None:
        self.state = state
        self.cfg = cfg
        self.embeddings = embeddings
        self.text_weight = text_weight
        self.use_text = use_text
        self.text_rows: np.ndarray | None = None
        # interest-vector row of each state user (-1: none)
        self.interest_rows = state.interests.rows(state.user_ids) if state.interests is not None else None
        if embeddings is not None:  # embedding row of each candidate item (-1: no text)
            row = embeddings.row_of
            self.text_rows = np.fromiter((row.get(i, -1) for i in state.item_ids.tolist()), dtype=np.int64)
        # the tail: items few users chose in the window (cold items included), where text must speak for them
        self.not_tail = np.asarray(state.seen.getnnz(axis=0)).ravel() > cfg.tail_users
        # a state fitted with the scalable sources (a catalog above `[scale] dense_item_limit`): the indexed path
        self.indexed = IndexedSources(self) if state.scalable else None

    @property
    def has_text(self) -> bool:
        return self.state.interests is not None and self.embeddings is not None

    def prepare(self) -> None:
        """Make the per-state tables the first batch would (the indexed path's sums, Gram matrices and lookups)."""
        if self.indexed is not None:
            self.indexed.prepare()

    def with_text_weight(self, weight: float) -> Candidates:
        """The same candidates with another weight of the interest match in the prior (lookups shared)."""
        other = copy.copy(self)
        other.text_weight = weight
        return other

    # -- scores ------------------------------------------------------------------------------------------------------
    def source_scores(self, users: list[str], seen: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-source scores (len(users) x candidate items) of known users, the text match, popularity and the prior;
        `seen`: the users' seen mask, if already built."""
        state = self.state
        rows = state.rows(users)
        scores = state.source_scores(rows)
        if self.has_text:
            scores["text"] = self.text_scores(users)
        scores["popular"] = np.broadcast_to(state.popular, (len(users), len(state.item_ids))).copy()
        weight = self.text_weight if self.use_text else 0.0
        if weight > 0 and "text" in scores and seen is None:
            seen = state.seen_mask(rows)
        scores["prior"] = prior_score(scores, seen, weight)
        return scores

    def text_scores(self, users: list[str]) -> np.ndarray:
        """The interest match of known users over the candidate items (-inf where an item has no text)."""
        state = self.state
        assert self.embeddings is not None and self.text_rows is not None and state.interests is not None
        full = profile_scores(state.interests, self.embeddings, users)
        cols = self.text_rows
        text = np.full((len(users), len(cols)), -np.inf)
        text[:, cols >= 0] = full[:, cols[cols >= 0]]
        return text

    def prior_inputs(self, users: list[str]) -> dict[str, np.ndarray]:
        """Only what the prior is made of, for known users: the blend and the interest match (`source_scores`'
        values, without the other sources)."""
        blend = self.state.blend_scores(self.state.rows(users))
        return {"blend": blend, "text": self.text_scores(users)} if self.has_text else {"blend": blend}

    # -- rows ----------------------------------------------------------------------------------------------------------
    def frame(
        self,
        users: list[str],
        *,
        include: dict[str, list[int]] | None = None,
        batch_size: int | None = None,
        threads: int = 1,
    ) -> pl.DataFrame:
        """user_id, item_id, is_from_{text,cf,popular}, per-source scores and within-candidate ranks, user and item
        features, genre affinity and interest match, for the known users among `users`, sorted by user and item.

        `include`: candidate column indices per user added to the union (on-demand re-ranking of given items).
        `batch_size`: users scored at once (default: `user_batch`, bounded by the catalog's size). `threads`: batches
        scored side by side (`recsys.compute.map_batches`; the same rows for any number)."""
        state = self.state
        batch_size = batch_size or user_batch(len(state.item_ids))
        batches = [
            known
            for start in range(0, len(users), batch_size)
            if (known := [u for u in users[start : start + batch_size] if u in state.user_index])
        ]
        if threads > 1 and len(batches) > 1:
            self.prepare()  # the per-state tables, before any two batches could build them at once
        parts = map_batches(lambda batch: self._batch_rows(batch, include), batches, threads=threads)
        if not parts:
            return pl.DataFrame(schema={S.USER_ID: pl.String, S.ITEM_ID: pl.String})
        # A canonical row order: same data, same model, same ties.
        frame = pl.concat(parts).sort(S.USER_ID, S.ITEM_ID)
        # Rank of each candidate within the user's candidates, per source (1 = best).
        rank_cols = [c for c in frame.columns if c.startswith("score_")]
        frame = frame.with_columns(
            pl.col(c)
            .rank("ordinal", descending=True)
            .over(S.USER_ID)
            .cast(pl.Float64)
            .alias(c.replace("score_", "rank_"))
            for c in rank_cols
        ).drop("score_text", strict=False)
        return self._features(frame)

    def _batch_rows(self, batch: list[str], include: dict[str, list[int]] | None) -> pl.DataFrame:
        """The candidate rows of one batch of known users, with their scores and state indices (`_row`, `_col`)."""
        state, cfg = self.state, self.cfg
        rows = state.rows(batch)
        if self.indexed is not None:
            weight = self.text_weight if self.use_text else 0.0
            return pl.DataFrame(self.indexed.columns(batch, rows, include, text_weight=weight))
        seen_mask = state.seen_mask(rows)
        src = self.source_scores(batch, seen=seen_mask)
        pick = {}
        for name, n in (("text", cfg.n_text), ("blend", cfg.n_collaborative), ("popular", cfg.n_popular)):
            if name in src:
                pick[name] = top_mask(np.where(seen_mask, -np.inf, src[name]), n)
        if "text" in src and cfg.n_text_tail:
            tail = top_mask(np.where(seen_mask | self.not_tail, -np.inf, src["text"]), cfg.n_text_tail)
            pick["text"] = pick["text"] | tail
        union = np.logical_or.reduce(list(pick.values())) & ~seen_mask
        if include:
            for row, u in enumerate(batch):
                union[row, include.get(u, [])] = True
        r, c = np.nonzero(union)
        cols: dict[str, object] = {
            S.USER_ID: np.asarray(batch, dtype=object)[r].tolist(),
            S.ITEM_ID: state.item_ids[c].tolist(),
            "is_from_text": pick["text"][r, c] if "text" in pick else np.zeros(len(r), dtype=bool),
            "is_from_cf": pick["blend"][r, c],
            "is_from_popular": pick["popular"][r, c],
        }
        for name in (*SCORED, "text"):
            if name in src:
                v = src[name][r, c]
                cols[f"score_{name}"] = np.where(np.isfinite(v), v, np.nan)
        cols["_row"], cols["_col"] = rows[r], c
        return pl.DataFrame(cols)

    def _features(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` (with its _row/_col indices) plus the state's user and item features, genre affinity and interest
        match; floats rounded and flags as 0/1 floats."""
        state = self.state
        u, c = frame["_row"].to_numpy(), frame["_col"].to_numpy()
        users = state.user_features.drop(S.USER_ID)[u]
        items = state.item_features.drop(S.ITEM_ID)[c]
        extra = affinity_from_arrays(state.genre_shares[u], state.genre_counts[c])
        if self.has_text:
            assert self.embeddings is not None and self.text_rows is not None and state.interests is not None
            assert self.interest_rows is not None
            i_rows = self.interest_rows[u]
            extra |= interest_feature_arrays(state.interests, self.embeddings.vectors, i_rows, self.text_rows[c])
        frame = pl.concat(
            [frame.drop("_row", "_col"), users, items, pl.DataFrame({k: v for k, v in extra.items()})],
            how="horizontal",
        )
        floats = [c for c, t in frame.schema.items() if t == pl.Float64]
        bools = [c for c, t in frame.schema.items() if t == pl.Boolean]
        return frame.with_columns(pl.col(floats).round(FEATURE_DECIMALS), pl.col(bools).cast(pl.Float64))
