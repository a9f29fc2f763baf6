"""The full ranking pipeline: candidates from text, collaborative and popularity sources, point-in-time features
(behavioural + interest-match), and a LightGBM LambdaRank ranker on top.

Training never sees test data: the ranker's labels come from an inner split of the training events (the same
protocol as the outer split: a later time window for `temporal`, a held-out random part for `ms-stratified`), with
features computed from the inner training part only. For recommending, every source and feature is rebuilt on the
full training data and the trained ranker scores the candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, Field

from features import genre_affinity, item_catalog_features, item_popularity, user_activity, user_genre_shares
from recsys.baselines import EASE, SAR, ItemKNN, Recommender
from recsys.data import schema as S
from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import (
    INTEREST_FEATURES,
    InterestConfig,
    UserInterests,
    interest_features,
    profile_scores,
    user_interest_scores,
    user_interests,
)
from recsys.evaluation.metrics import user_metrics
from recsys.evaluation.splits import ProtocolName, Split, validation_split
from recsys.ranker.model import LambdaRanker, RankerConfig, train_ranker

# Features that exist only because of the text encoder: dropped by the no-text ablation. (The text source's raw
# score is `im_profile` itself, so no `score_text` column is kept beside it.)
TEXT_FEATURES: tuple[str, ...] = (*INTEREST_FEATURES, "rank_text", "is_from_text")
CF_SOURCES: tuple[str, ...] = ("ease", "sar", "itemknn")


class CandidateConfig(BaseModel, frozen=True, extra="forbid"):
    """Top-N per source; the union (deduplicated, seen items removed) is what the ranker orders."""

    n_text: int = Field(100, ge=0, description="by interest match (reaches cold items)")
    n_collaborative: int = Field(100, ge=0, description="by EASE score")
    n_popular: int = Field(50, ge=0, description="by events in the trailing popularity window (trending)")
    popular_window_days: int = Field(30, ge=1)


class PipelineConfig(BaseModel, frozen=True, extra="forbid"):
    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    ranker_prior: Literal["auto", "on", "off"] = Field(
        "auto",
        description="the ranker's base margin + monotone constraints ([ranker] margin_feature, monotone): on, off, "
        "or auto = whichever ranks better on a validation split one level further inside the training data",
    )
    interest: InterestConfig = Field(default_factory=InterestConfig)
    ease_l2: float = Field(500.0, gt=0)
    popularity_windows: tuple[int, ...] = (7, 30, 90)


@dataclass
class _State:
    """Everything built from one training window: fitted sources and per-entity features."""

    as_of: datetime
    models: dict[str, Recommender]
    interests: UserInterests | None
    user_features: pl.DataFrame
    item_features: pl.DataFrame  # aligned with the pipeline's candidate items
    popular: np.ndarray  # trending score per candidate item
    seen: dict[str, set[str]]
    events: pl.DataFrame
    genre_shares: pl.DataFrame  # user x genre share of history, computed once per window


@dataclass
class _OnlineTables:
    """Per-state lookups for scoring one user's candidates without building polars frames (online re-ranking)."""

    item_cols: dict[str, np.ndarray]  # item feature -> values in candidate order (NaN = null)
    user_rows: dict[str, dict[str, float]]  # user -> user feature -> value (NaN = null)
    genre_counts: np.ndarray  # candidate item x genre: how often the genre is listed for the item
    genre_index: dict[str, int]
    shares: dict[str, np.ndarray]  # user -> share of their history per genre
    sort_pos: np.ndarray  # position of each candidate item in item-id order (the frame's row order)


def _ordinal_rank_desc(values: np.ndarray) -> np.ndarray:
    """1-based ranks, largest first, ties by position; NaN ranks above every number (as polars sorts NaN)."""
    key = np.where(np.isnan(values), np.inf, values)
    order = np.argsort(-key, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's top-n finite entries."""
    mask = np.zeros(scores.shape, dtype=bool)
    if n <= 0 or scores.shape[1] == 0:
        return mask
    n = min(n, scores.shape[1])
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    np.put_along_axis(mask, idx, True, axis=1)
    return mask & np.isfinite(scores)


class RankingPipeline(Recommender):
    """Candidates + features + LambdaRank. `use_text=False` is the ablation without interest-match features."""

    name: ClassVar[str] = "pipeline"
    scores_cold_items: ClassVar[bool] = True

    def __init__(
        self,
        embeddings: ItemEmbeddings | Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings] | None,
        *,
        cfg: PipelineConfig | None = None,
        protocol: ProtocolName = "temporal",
        use_text: bool = True,
        seed: int = 42,
        ranker: LambdaRanker | None = None,
    ) -> None:
        """`ranker`: an already trained ranker (e.g. a registered version's). `fit` then only rebuilds the sources
        and features on the given events (a newer window, or the split under evaluation) and keeps the ranker."""
        if use_text and embeddings is None:
            raise ValueError("the pipeline with text features needs item embeddings")
        # Either fixed embeddings or an embedder (e.g. recsys.encoder.TextEmbedder) called on the training window.
        self.embedder = embeddings if callable(embeddings) else None
        self.embeddings: ItemEmbeddings | None = None if callable(embeddings) else embeddings
        self.cfg = cfg or PipelineConfig()
        self.protocol = protocol
        self.use_text = use_text
        self.seed = seed
        self.frozen_ranker = ranker
        if ranker is not None and embeddings is None and any(f in TEXT_FEATURES for f in ranker.features):
            raise ValueError("this ranker uses interest-match features: pass the item embeddings it was trained with")

    # -- fitting -------------------------------------------------------------------------------------------------
    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        train = events.drop("_u", "_i")
        self.items_ = items if items is not None else pl.DataFrame({S.ITEM_ID: self.item_ids_.tolist()})
        if S.GENRES not in self.items_.columns:
            self.items_ = self.items_.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias(S.GENRES))
        if self.frozen_ranker is not None:  # a trained version: rebuild sources and features on `train` only
            if self.embedder is not None:
                self.embeddings = self.embedder(train, self.items_)
            self._index_embeddings()
            self.users_ = list(self.user_index_)
            self.ranker_ = self.frozen_ranker
            self.features_ = list(self.frozen_ranker.features)
            self.label_stats_ = {}
            self.state_ = self._state(train)
            self.last_candidates_ = None
            return
        inner = validation_split(train, self.protocol, seed=self.seed)
        if self.embedder is not None:
            # Fine-tuned on the inner training part only: the ranker's labels come from the inner hold-out, which the
            # encoder must not have seen, or the ranker would over-trust the text features. The same encoder then
            # serves the final state (it has not seen the last part of the training window; nothing leaks).
            self.embeddings = self.embedder(inner.train, self.items_)
        self._index_embeddings()
        self.users_ = list(self.user_index_)
        frame, positives = self._labelled_frame(inner)
        self.features_ = self.feature_names(frame)
        self.label_stats_ = {
            "label_users": positives[S.USER_ID].n_unique(),
            "label_rows": frame.height,
            "label_positives": int(frame["label"].sum()),
            "inner_candidate_recall": float(frame["label"].sum() / max(1, positives.height)),
        }
        ranker_cfg, self.label_stats_["ranker_prior"] = self._choose_prior(inner, frame, positives)
        self.ranker_: LambdaRanker = train_ranker(frame, self.features_, cfg=ranker_cfg, seed=self.seed)
        self.state_ = self._state(train)
        self.last_candidates_: pl.DataFrame | None = None

    def _labelled_frame(self, split: Split) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Candidates of the hold-out's users with features from `split.train` and label 1 where the hold-out has the
        item; plus the hold-out's distinct (user_id, item_id, label=1) positives."""
        users = split.test[S.USER_ID].unique(maintain_order=True).to_list()
        frame = self._candidate_frame(self._state(split.train), users)
        positives = split.test.select(S.USER_ID, S.ITEM_ID).unique().with_columns(pl.lit(1).alias("label"))
        frame = frame.join(positives, on=[S.USER_ID, S.ITEM_ID], how="left").with_columns(pl.col("label").fill_null(0))
        return frame, positives

    def _choose_prior(
        self, inner: Split, frame: pl.DataFrame, positives: pl.DataFrame
    ) -> tuple[RankerConfig, dict[str, object]]:
        """The ranker config with or without its prior (base margin + monotone constraints).

        `auto`: one level further in, labels from a split of the inner training part train a ranker with and one
        without the prior; each then orders `frame` (the inner training part's candidates) and is judged by nDCG@10
        against the inner hold-out. Only behavioural features take part (the encoder has seen that nested hold-out,
        so text features would be over-trusted there). Never touches the outer test data."""
        with_prior = self.cfg.ranker
        without = with_prior.model_copy(update={"margin_feature": None, "monotone": {}})
        mode = self.cfg.ranker_prior
        if mode != "auto":
            return (with_prior if mode == "on" else without), {"mode": mode, "chosen": mode}
        nested_frame, nested_pos = self._labelled_frame(validation_split(inner.train, self.protocol, seed=self.seed))
        behavioural = [f for f in self.features_ if f not in TEXT_FEATURES]
        scores: dict[str, float] = {}
        for name, cfg in (("on", with_prior), ("off", without)):
            try:
                ranker = train_ranker(nested_frame, behavioural, cfg=cfg, seed=self.seed)
            except ValueError:  # no positives among the nested candidates: nothing to choose on
                return with_prior, {"mode": "auto", "chosen": "on", "reason": "no nested labels"}
            scores[name] = _ndcg_at(frame, ranker.predict(frame), positives, k=10)
        chosen = "on" if scores["on"] >= scores["off"] else "off"
        info = {"mode": "auto", "chosen": chosen, "validation_ndcg@10": {k: round(v, 6) for k, v in scores.items()}}
        info["nested_label_users"] = nested_pos[S.USER_ID].n_unique()
        return (with_prior if chosen == "on" else without), info

    def _index_embeddings(self) -> None:
        if self.embeddings is not None:  # embedding row of each candidate item (-1: no text)
            row = {item: i for i, item in enumerate(self.embeddings.item_ids)}
            self.text_rows_ = np.fromiter((row.get(i, -1) for i in self.item_ids_), dtype=np.int64)

    def feature_names(self, frame: pl.DataFrame) -> list[str]:
        drop = {S.USER_ID, S.ITEM_ID, "label"}
        names = [c for c in frame.columns if c not in drop]
        if not self.use_text:
            names = [c for c in names if c not in TEXT_FEATURES]
        return names

    def _state(self, train: pl.DataFrame) -> _State:
        as_of = after_last_event(train)
        cands = self.item_ids_.tolist()
        models: dict[str, Recommender] = {
            "ease": EASE(l2=self.cfg.ease_l2).fit(train, candidates=cands),
            "sar": SAR().fit(train, candidates=cands),
            "itemknn": ItemKNN().fit(train, candidates=cands),
        }
        interests = (
            user_interests(train, self.embeddings, as_of=as_of, cfg=self.cfg.interest) if self.embeddings else None
        )
        item_ids = pl.DataFrame({S.ITEM_ID: cands})
        windows = tuple(sorted({*self.cfg.popularity_windows, self.cfg.candidates.popular_window_days}))
        pop = item_popularity(train, as_of=as_of, windows=windows)
        item_features = (
            item_ids.join(pop, on=S.ITEM_ID, how="left")
            .join(item_catalog_features(self.items_, as_of=as_of), on=S.ITEM_ID, how="left")
            .with_columns(pl.col("item_pop_all").is_null().alias("is_cold_item"))
            .with_columns(
                pl.col(c).fill_null(0) for c in pop.columns if c.startswith("item_pop_") or c == "item_users_all"
            )
        )
        window = item_features[f"item_pop_{self.cfg.candidates.popular_window_days}d"].to_numpy().astype(float)
        popular = window + 1e-6 * item_features["item_pop_all"].to_numpy().astype(float)
        seen = {u: set(its) for u, its in train.group_by(S.USER_ID).agg(pl.col(S.ITEM_ID).unique()).iter_rows()}
        shares = user_genre_shares(train, self.items_, as_of=as_of)
        return _State(
            as_of, models, interests, user_activity(train, as_of=as_of), item_features, popular, seen, train, shares
        )

    # -- candidates and features ---------------------------------------------------------------------------------
    def _source_scores(self, state: _State, users: list[str]) -> dict[str, np.ndarray]:
        scores = {name: np.nan_to_num(m.score(users), nan=0.0) for name, m in state.models.items()}
        if state.interests is not None and self.embeddings is not None:
            full = profile_scores(state.interests, self.embeddings, users)
            cols = self.text_rows_
            text = np.full((len(users), len(cols)), -np.inf)
            text[:, cols >= 0] = full[:, cols[cols >= 0]]
            scores["text"] = text
        scores["popular"] = np.broadcast_to(state.popular, (len(users), len(self.item_ids_))).copy()
        return scores

    def _candidate_frame(
        self, state: _State, users: list[str], batch_size: int = 256, include: dict[str, list[int]] | None = None
    ) -> pl.DataFrame:
        """user_id, item_id, is_from_{text,cf,popular}, per-source scores and within-candidate ranks, features.

        `include`: candidate column indices per user added to the union (on-demand re-ranking of given items)."""
        cfg = self.cfg.candidates
        parts = []
        for start in range(0, len(users), batch_size):
            batch = [u for u in users[start : start + batch_size] if u in state.seen]
            if not batch:
                continue
            src = self._source_scores(state, batch)
            seen_mask = np.zeros((len(batch), len(self.item_ids_)), dtype=bool)
            for r, u in enumerate(batch):
                idx = [self.item_index_[i] for i in state.seen[u] if i in self.item_index_]
                seen_mask[r, idx] = True
            pick = {}
            for name, n in (("text", cfg.n_text), ("ease", cfg.n_collaborative), ("popular", cfg.n_popular)):
                if name in src:
                    s = np.where(seen_mask, -np.inf, src[name])
                    pick[name] = _top(s, n)
            union = np.logical_or.reduce(list(pick.values())) & ~seen_mask
            if include:
                for row, u in enumerate(batch):
                    union[row, include.get(u, [])] = True
            r, c = np.nonzero(union)
            cols: dict[str, object] = {
                S.USER_ID: np.asarray(batch, dtype=object)[r].tolist(),
                S.ITEM_ID: self.item_ids_[c].tolist(),
                "is_from_text": pick["text"][r, c] if "text" in pick else np.zeros(len(r), dtype=bool),
                "is_from_cf": pick["ease"][r, c],
                "is_from_popular": pick["popular"][r, c],
            }
            for name in (*CF_SOURCES, "text"):
                if name in src:
                    v = src[name][r, c]
                    cols[f"score_{name}"] = np.where(np.isfinite(v), v, np.nan)
            parts.append(pl.DataFrame(cols))
        if not parts:
            return pl.DataFrame(schema={S.USER_ID: pl.String, S.ITEM_ID: pl.String})
        # A canonical row order (joins and group-bys do not keep one): same data, same model, same ties.
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
        frame = frame.join(state.user_features, on=S.USER_ID, how="left").join(
            state.item_features, on=S.ITEM_ID, how="left"
        )
        frame = genre_affinity(state.events, self.items_, frame, as_of=state.as_of, shares=state.genre_shares)
        if state.interests is not None and self.embeddings is not None:
            frame = interest_features(state.interests, self.embeddings, frame)
        bools = [c for c, t in frame.schema.items() if t == pl.Boolean]
        return frame.with_columns(pl.col(bools).cast(pl.Float64)).sort(S.USER_ID, S.ITEM_ID)

    # -- scoring -------------------------------------------------------------------------------------------------
    def candidates(self, users: list[str]) -> pl.DataFrame:
        """The candidate frame (with features) of `users`, built from the full training data."""
        return self._candidate_frame(self.state_, users)

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
        for name, n in (("text", cfg.n_text), ("ease", cfg.n_collaborative), ("popular", cfg.n_popular)):
            if name in src:
                pick[name] = _top(np.where(seen, -np.inf, src[name]), n)[0]
        union = np.logical_or.reduce(list(pick.values())) & ~seen
        union[include] = True
        cols = np.flatnonzero(union)
        cols = cols[np.argsort(tabs.sort_pos[cols], kind="stable")]
        feats: dict[str, np.ndarray] = {
            "is_from_text": pick["text"][cols].astype(float) if "text" in pick else np.zeros(len(cols)),
            "is_from_cf": pick["ease"][cols].astype(float),
            "is_from_popular": pick["popular"][cols].astype(float),
        }
        for name in (*CF_SOURCES, "text"):
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

    def _score(self, rows: np.ndarray) -> np.ndarray:
        users = [self.users_[r] for r in rows]
        frame = self._candidate_frame(self.state_, users)
        out = np.full((len(rows), len(self.item_ids_)), -np.inf)
        if frame.height:
            scores = self.ranker_.predict(frame)
            pos = {u: i for i, u in enumerate(users)}
            r = np.fromiter((pos[u] for u in frame[S.USER_ID].to_list()), dtype=np.int64, count=frame.height)
            c = np.fromiter(
                (self.item_index_[i] for i in frame[S.ITEM_ID].to_list()), dtype=np.int64, count=frame.height
            )
            out[r, c] = scores
            part = frame.select(S.USER_ID, S.ITEM_ID, "is_from_text", "is_from_cf", "is_from_popular")
            self.last_candidates_ = part if self.last_candidates_ is None else pl.concat([self.last_candidates_, part])
        return out

    def evaluation_extras(self, test: pl.DataFrame) -> dict[str, object]:
        """Candidate recall (share of test positives of scored users found in the candidates), per source and
        overall, plus how the ranker's labels were made."""
        importance = self.ranker_.importance()
        return {
            "candidate_recall": candidate_recall(self.last_candidates_, test),
            "ranker_frozen": self.frozen_ranker is not None,
            **self.label_stats_,
            "ranker_best_iteration": self.ranker_.best_iteration,
            "ranker_validation_ndcg": self.ranker_.validation_ndcg,
            "feature_importance": importance.to_dicts(),
        }


def _ndcg_at(frame: pl.DataFrame, scores: np.ndarray, positives: pl.DataFrame, *, k: int) -> float:
    """Mean nDCG@k over the users of `positives` (user_id, item_id) when each user's rows of `frame` are ordered by
    `scores`; the ideal DCG counts every positive, found among the candidates or not."""
    ranked = (
        frame.select(S.USER_ID, S.ITEM_ID)
        .with_columns(pl.Series("_s", scores))
        .sort([S.USER_ID, "_s", S.ITEM_ID], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over(S.USER_ID).alias(S.RANK))
        .filter(pl.col(S.RANK) <= k)
    )
    per_user = user_metrics(ranked, positives.select(S.USER_ID, S.ITEM_ID), ks=(k,))
    return float(per_user[f"ndcg@{k}"].mean()) if per_user.height else 0.0


PIPELINE_MODELS: tuple[str, ...] = ("pipeline", "pipeline-no-text")


def pipeline_factories(
    names: Sequence[str],
    *,
    embedder: Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings],
    cfg: PipelineConfig | None = None,
    protocol: ProtocolName = "temporal",
    seed: int = 42,
) -> dict[str, Callable[[], Recommender]]:
    """Factories for `recsys.evaluation.evaluate(extra_models=...)`: `pipeline` and/or `pipeline-no-text`, sharing
    one (memoised) embedder so the encoder is fine-tuned once per training window."""
    out: dict[str, Callable[[], Recommender]] = {}
    for name in names:
        if name not in PIPELINE_MODELS:
            raise ValueError(f"unknown pipeline model {name!r}; available: {', '.join(PIPELINE_MODELS)}")
        use_text = name == "pipeline"
        out[name] = lambda use_text=use_text: RankingPipeline(
            embedder, cfg=cfg, protocol=protocol, use_text=use_text, seed=seed
        )
    return out


def candidate_recall(candidates: pl.DataFrame | None, test: pl.DataFrame) -> dict[str, float]:
    """Share of test (user, item) positives, over users that have candidates, present in the candidate set."""
    if candidates is None or candidates.height == 0:
        return {}
    users = candidates[S.USER_ID].unique().implode()
    truth = test.filter(pl.col(S.USER_ID).is_in(users)).select(S.USER_ID, S.ITEM_ID).unique()
    hit = truth.join(candidates, on=[S.USER_ID, S.ITEM_ID], how="left")
    n = max(1, truth.height)
    out = {"overall": float(hit["is_from_cf"].is_not_null().sum() / n)}
    for source in ("text", "cf", "popular"):
        out[source] = float(hit[f"is_from_{source}"].fill_null(False).cast(pl.Boolean).sum() / n)
    out["n_test_pairs"] = float(truth.height)
    out["mean_candidates_per_user"] = float(candidates.height / max(1, candidates[S.USER_ID].n_unique()))
    return out
