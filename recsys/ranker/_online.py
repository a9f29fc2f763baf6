"""Online re-ranking: one user's candidate features computed with numpy on per-window lookups (no polars frames),
equal to the nightly frame path's (a test checks it feature by feature). Mixed into `RankingPipeline`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.encoder.interest import INTEREST_FEATURES, user_interest_scores
from recsys.ranker._common import FEATURE_DECIMALS, SCORED, _ordinal_rank_desc, _top


@dataclass
class _OnlineTables:
    """Per-state lookups for scoring one user's candidates without building polars frames (online re-ranking)."""

    item_cols: dict[str, np.ndarray]  # item feature -> values in candidate order (NaN = null)
    user_rows: dict[str, dict[str, float]]  # user -> user feature -> value (NaN = null)
    genre_counts: np.ndarray  # candidate item x genre: how often the genre is listed for the item
    genre_index: dict[str, int]
    shares: dict[str, np.ndarray]  # user -> share of their history per genre
    sort_pos: np.ndarray  # position of each candidate item in item-id order (the frame's row order)


class OnlineScoring:
    """The online half of `RankingPipeline` (its fitted state: `state_`, `item_ids_`, `ranker_`, ...)."""

    def _online_tables(self) -> _OnlineTables:
        cached = getattr(self, "_online_", None)
        if cached is not None and cached[0] is self.state_:
            return cached[1]
        state = self.state_
        item_cols = {
            c: state.item_features[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for c in state.item_features.columns
            if c != S.ITEM_ID
        }
        uf = state.user_features
        user_cols = [c for c in uf.columns if c != S.USER_ID]
        values = uf.select(pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in user_cols).to_numpy()
        user_rows = {u: dict(zip(user_cols, row, strict=True)) for u, row in zip(uf[S.USER_ID], values, strict=True)}
        genres = self.items_.select(S.ITEM_ID, S.GENRES).explode(S.GENRES).drop_nulls(S.GENRES)
        genre_index = {g: i for i, g in enumerate(sorted(genres[S.GENRES].unique().to_list()))}
        counts = np.zeros((len(self.item_ids_), len(genre_index)))
        for item, genre in genres.iter_rows():
            col = self.item_index_.get(item)
            if col is not None:
                counts[col, genre_index[genre]] += 1
        shares: dict[str, np.ndarray] = {}
        for user, genre, share in state.genre_shares.iter_rows():
            vec = shares.setdefault(user, np.zeros(len(genre_index)))
            if genre in genre_index:
                vec[genre_index[genre]] = share
        sort_pos = np.empty(len(self.item_ids_), dtype=np.int64)
        sort_pos[np.argsort(self.item_ids_.astype(str), kind="stable")] = np.arange(len(self.item_ids_))
        tables = _OnlineTables(item_cols, user_rows, counts, genre_index, shares, sort_pos)
        self._online_ = (state, tables)
        return tables

    def warm_online(self) -> None:
        """Build the per-window lookups of online re-ranking now (they are otherwise built by the first request)."""
        self._online_tables()

    def _user_features_fast(self, user: str, include: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The candidate rows of one known user (the union plus `include` columns) and their features: the same
        values as `_candidate_frame`, computed with numpy on per-state tables (a test checks the equality)."""
        state, tabs, cfg = self.state_, self._online_tables(), self.cfg.candidates
        src = self._source_scores(state, [user])
        seen = np.zeros(len(self.item_ids_), dtype=bool)
        seen[[self.item_index_[i] for i in state.seen[user] if i in self.item_index_]] = True
        pick = {}
        for name, n in (("text", cfg.n_text), ("blend", cfg.n_collaborative), ("popular", cfg.n_popular)):
            if name in src:
                pick[name] = _top(np.where(seen, -np.inf, src[name]), n)[0]
        union = np.logical_or.reduce(list(pick.values())) & ~seen
        union[include] = True
        cols = np.flatnonzero(union)
        cols = cols[np.argsort(tabs.sort_pos[cols], kind="stable")]
        feats: dict[str, np.ndarray] = {
            "is_from_text": pick["text"][cols].astype(float) if "text" in pick else np.zeros(len(cols)),
            "is_from_cf": pick["blend"][cols].astype(float),
            "is_from_popular": pick["popular"][cols].astype(float),
        }
        for name in (*SCORED, "text"):
            if name in src:
                v = src[name][0, cols]
                v = np.where(np.isfinite(v), v, np.nan)
                if name != "text":
                    feats[f"score_{name}"] = v
                feats[f"rank_{name}"] = _ordinal_rank_desc(v)
        urow = tabs.user_rows.get(user, {})
        for c in state.user_features.columns:
            if c != S.USER_ID:
                feats[c] = np.full(len(cols), urow.get(c, np.nan))
        for c, values in tabs.item_cols.items():
            feats[c] = values[cols]
        share = tabs.shares.get(user, np.zeros(len(tabs.genre_index)))
        g = tabs.genre_counts[cols]
        n_genres = g.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            feats["ui_genre_affinity_mean"] = np.where(n_genres > 0, (g @ share) / n_genres, 0.0)
        masked = np.where(g > 0, share[None, :], -np.inf)
        feats["ui_genre_affinity_max"] = np.where(n_genres > 0, masked.max(axis=1, initial=-np.inf), 0.0)
        if state.interests is not None and self.embeddings is not None:
            urow_i = state.interests.rows([user])[0]
            rows = self.text_rows_[cols]
            ok = rows >= 0
            for name in INTEREST_FEATURES:
                feats[name] = np.zeros(len(cols), dtype=np.float32)
            if urow_i >= 0 and ok.any():
                for name, values in user_interest_scores(
                    state.interests, self.embeddings.vectors, int(urow_i), rows[ok]
                ).items():
                    feats[name][ok] = values
        for name, values in feats.items():  # as the frame path rounds them
            if values.dtype == np.float64:
                feats[name] = np.round(values, FEATURE_DECIMALS)
        return cols, feats

    def rank_candidates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """Score given (user_id, item_id) rows with the trained ranker: on-demand re-ranking of a candidate list.

        Features are computed as for the nightly lists (ranks within the user's candidate union plus the given
        items). Returns user_id, item_id, score (null for unknown users or items), rank (1 = best, per user)."""
        pairs = pairs.select(pl.col(S.USER_ID).cast(pl.String), pl.col(S.ITEM_ID).cast(pl.String))
        include: dict[str, list[int]] = {}
        for user, item in pairs.iter_rows():
            col = self.item_index_.get(item)
            if col is not None and user in self.state_.seen:
                include.setdefault(user, []).append(col)
        scores: dict[tuple[str, str], float] = {}
        for user, wanted_cols in include.items():
            cols, feats = self._user_features_fast(user, wanted_cols)
            keep = np.isin(cols, wanted_cols)
            x = np.column_stack([np.asarray(feats[f], dtype=np.float64)[keep] for f in self.ranker_.features])
            predicted = self.ranker_.predict_matrix(x)
            scores.update(
                zip(((user, i) for i in self.item_ids_[cols[keep]].tolist()), predicted.tolist(), strict=True)
            )
        users, items = pairs[S.USER_ID].to_list(), pairs[S.ITEM_ID].to_list()
        values = [scores.get(key) for key in zip(users, items, strict=True)]
        # rank per user (1 = best; null score -> null rank), in the order given
        ranks: list[int | None] = [None] * len(values)
        by_user: dict[str, list[int]] = {}
        for pos, (user, value) in enumerate(zip(users, values, strict=True)):
            if value is not None:
                by_user.setdefault(user, []).append(pos)
        for positions in by_user.values():
            for r, pos in enumerate(sorted(positions, key=lambda p: -values[p]), start=1):  # type: ignore[operator]
                ranks[pos] = r
        return pl.DataFrame(
            {S.USER_ID: users, S.ITEM_ID: items, S.SCORE: values, S.RANK: ranks},
            schema={S.USER_ID: pl.String, S.ITEM_ID: pl.String, S.SCORE: pl.Float64, S.RANK: pl.Int32},
        )
