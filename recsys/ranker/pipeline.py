"""The full ranking pipeline: candidates from text, collaborative and popularity sources, point-in-time features
(behavioural + interest-match), and a LightGBM LambdaRank ranker on top.

Training never sees test data: the ranker's labels come from an inner split of the training events (the same
protocol as the outer split: a later time window for `temporal`, a held-out random part for `ms-stratified`), with
features computed from the inner training part only. For recommending, every source and feature is rebuilt on the
full training data and the trained ranker scores the candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, Field

from features import genre_affinity, item_catalog_features, item_popularity, user_activity, user_genre_shares
from recsys.baselines import SAR, EASELowPass, ItemKNN, Recommender, SequenceNeighbours
from recsys.data import schema as S
from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import (
    InterestConfig,
    UserInterests,
    interest_features,
    profile_scores,
    user_interests,
)
from recsys.encoder.recommender import TextRecommender
from recsys.evaluation.runner import EASE_GRID
from recsys.evaluation.splits import ProtocolName, Split, validation_split
from recsys.ranker._choices import ValidationChoices
from recsys.ranker._common import FEATURE_DECIMALS, SCORED, TEXT_FEATURES, _prior_score, _top
from recsys.ranker._online import OnlineScoring
from recsys.ranker.model import LambdaRanker, RankerConfig, train_ranker


class CandidateConfig(BaseModel, frozen=True, extra="forbid"):
    """Top-N per source; the union (deduplicated, seen items removed) is what the ranker orders."""

    n_text: int = Field(100, ge=0, description="by interest match (reaches cold items)")
    n_collaborative: int = Field(100, ge=0, description="by the EASE + low-pass blend")
    n_popular: int = Field(50, ge=0, description="by events in the trailing popularity window (trending)")
    popular_window_days: int = Field(30, ge=1)


class BlendConfig(BaseModel, frozen=True, extra="forbid"):
    """The collaborative source: z(EASE) + weight * z(low-pass filter with `factors` components), per user
    (`recsys.baselines.EASELowPass`). `factors` / `weight` None: chosen per fit on the pipeline's inner split of
    the training data (never the test data) among the grids; weight 0 (EASE alone) is always among them."""

    factors: int | None = Field(None, ge=1)
    weight: float | None = Field(None, ge=0)
    factors_grid: tuple[int, ...] = (8, 16, 32)
    weight_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    item_norm: float = Field(0.35, ge=0, le=1, description="item-degree normalisation exponent of the filter")

    def resolved(self) -> tuple[int, float]:
        """(factors, weight) when both are set; otherwise the defaults measured on ML-100k (16, 0.5)."""
        return (self.factors or 16, 0.5 if self.weight is None else self.weight)


class PipelineConfig(BaseModel, frozen=True, extra="forbid"):
    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    blend: BlendConfig = Field(default_factory=BlendConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    ranker_prior: Literal["auto", "on", "off", "prior-only"] = Field(
        "auto",
        description="the ranker's base margin + monotone constraints ([ranker] margin_feature, monotone): on, off, "
        "prior-only (the margin's order, trees switched off), or auto = whichever ranks best on a validation split "
        "one level further inside the training data",
    )
    text_weight: float | None = Field(
        None,
        ge=0,
        description="weight of z(im_profile) in the prior score (score_prior = blend + text_weight * z(text)); None: "
        "chosen among text_weight_grid on the inner split, with the encoder fine-tuned without its hold-out",
    )
    text_weight_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    exclude_features: tuple[str, ...] = Field((), description="features the ranker does not use")
    prior_fallback: Literal["off", "prior-only"] | None = Field(
        None,
        description="what `auto` keeps unless an option beats it significantly; None: off for temporal splits, "
        "prior-only otherwise",
    )
    prior_min_users: int = Field(
        200,
        ge=1,
        description="`auto` leaves the fallback only when the nested comparison judges at least this many users",
    )
    prior_weights: tuple[float, ...] = Field(
        (1.0, 2.0, 4.0),
        description="margin weights `auto` tries with the prior on; a heavier margin keeps the trees' corrections "
        "small next to the collaborative order (on ML-100k's random split they did not transfer to the full window)",
    )
    interest: InterestConfig = Field(default_factory=InterestConfig)
    ease_l2: float | None = Field(
        500.0,
        gt=0,
        description="EASE's l2 in the collaborative source; None: chosen among ease_l2_grid on the inner split "
        "(nDCG@10 of EASE alone on the inner hold-out), as the `ease` row chooses it. Not the default: on "
        "amazon-scientific's validation split that choice (l2 50) lost 0.0032 nDCG@10 (p 0.007) against 500 for the "
        "whole pipeline (bench/results/pipeline-validation-l2.json): the ranker wants the smoother source",
    )
    ease_l2_grid: tuple[float, ...] = EASE_GRID
    relative_counts: bool = Field(
        True,
        description="count features (item popularity, user activity) divided by their mean over the window's "
        "items / users, so a ranker trained on the inner split's smaller window transfers to the full one",
    )
    popularity_windows: tuple[int, ...] = (7, 30, 90)
    sequence_features: bool = Field(
        False,
        description="sequence neighbours' score and rank as features (recsys.baselines.SequenceNeighbours: items "
        "near each other in users' time-ordered histories, and what follows the last one)",
    )


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


# Count features: their scale grows with the window, so the inner split's ranker would read the full window's
# counts as ~4/3 larger than anything it was trained on (ms-stratified keeps 75% of the events in each split).
ITEM_COUNTS = re.compile(r"^item_(pop_.*|users_all|rating_count)$")
USER_COUNTS = re.compile(r"^user_n_events.*$")


def _relative(frame: pl.DataFrame, pattern: re.Pattern[str]) -> pl.DataFrame:
    """Columns of `frame` matching `pattern` divided by their mean over the frame's rows (0 where the mean is 0)."""
    cols = [c for c in frame.columns if pattern.match(c)]
    return frame.with_columns(
        pl.when(pl.col(c).mean() > 0).then(pl.col(c) / pl.col(c).mean()).otherwise(0.0).alias(c) for c in cols
    )


class RankingPipeline(ValidationChoices, OnlineScoring, Recommender):
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
            self.blend_ = self.cfg.blend.resolved()
            self.ease_l2_ = self.cfg.ease_l2 or 500.0  # bundles store the l2 they were trained with
            self.text_weight_ = self.cfg.text_weight or 0.0
            self.state_ = self._state(train)
            self.last_candidates_ = None
            return
        inner = validation_split(train, self.protocol, seed=self.seed)
        self.ease_l2_, l2_info = self._choose_ease_l2(inner)
        self.blend_, blend_info = self._choose_blend(inner)
        if self.embedder is not None:
            # Fine-tuned on the inner training part only: the ranker's labels come from the inner hold-out, which the
            # encoder must not have seen, or the ranker would over-trust the text features. The same encoder then
            # serves the final state (it has not seen the last part of the training window; nothing leaks).
            self.embeddings = self.embedder(inner.train, self.items_)
        self._index_embeddings()
        self.users_ = list(self.user_index_)
        inner_state = self._state(inner.train)
        self.text_weight_ = 0.0  # until chosen: the choice scores every weight on the same source scores
        self.text_weight_, text_info = self._choose_text_weight(inner_state, inner)
        frame, positives = self._labelled_frame(inner, inner_state)
        self.features_ = self.feature_names(frame)
        self.label_stats_ = {
            "label_users": positives[S.USER_ID].n_unique(),
            "label_rows": frame.height,
            "label_positives": int(frame["label"].sum()),
            "inner_candidate_recall": float(frame["label"].sum() / max(1, positives.height)),
            "ease_l2": l2_info,
            "blend": blend_info,
            "text_weight": text_info,
        }
        ranker_cfg, self.label_stats_["ranker_prior"] = self._choose_prior(inner, frame, positives)
        self.ranker_: LambdaRanker = train_ranker(frame, self.features_, cfg=ranker_cfg, seed=self.seed)
        if self.label_stats_["ranker_prior"]["chosen"] == "prior-only":
            self.ranker_ = replace(self.ranker_, use_trees=False)
        self.state_ = self._state(train)
        self.last_candidates_: pl.DataFrame | None = None

    def _labelled_frame(self, split: Split, state: _State | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Candidates of the hold-out's users with features from `split.train` (its `state` when already built) and
        label 1 where the hold-out has the item; plus the hold-out's distinct (user_id, item_id, label=1) positives."""
        users = split.test[S.USER_ID].unique(maintain_order=True).to_list()
        frame = self._candidate_frame(state or self._state(split.train), users)
        positives = split.test.select(S.USER_ID, S.ITEM_ID).unique().with_columns(pl.lit(1).alias("label"))
        frame = frame.join(positives, on=[S.USER_ID, S.ITEM_ID], how="left").with_columns(pl.col("label").fill_null(0))
        return frame, positives

    def _seen_mask(self, state: _State, users: list[str]) -> np.ndarray:
        mask = np.zeros((len(users), len(self.item_ids_)), dtype=bool)
        for r, u in enumerate(users):
            mask[r, [self.item_index_[i] for i in state.seen.get(u, ()) if i in self.item_index_]] = True
        return mask

    @property
    def resolved_cfg(self) -> PipelineConfig:
        """The config with the fitted choices filled in (EASE's l2, the blend's factors and weight, the text weight):
        what a bundle stores, so a trained version rebuilds exactly the sources and prior its ranker was trained on."""
        f, w = self.blend_
        blend = self.cfg.blend.model_copy(update={"factors": f, "weight": w})
        return self.cfg.model_copy(update={"blend": blend, "text_weight": self.text_weight_, "ease_l2": self.ease_l2_})

    def _index_embeddings(self) -> None:
        if self.embeddings is not None:  # embedding row of each candidate item (-1: no text)
            row = {item: i for i, item in enumerate(self.embeddings.item_ids)}
            self.text_rows_ = np.fromiter((row.get(i, -1) for i in self.item_ids_), dtype=np.int64)

    def feature_names(self, frame: pl.DataFrame) -> list[str]:
        drop = {S.USER_ID, S.ITEM_ID, "label", *self.cfg.exclude_features}
        names = [c for c in frame.columns if c not in drop]
        if not self.use_text:
            names = [c for c in names if c not in TEXT_FEATURES]
        return names

    def _state(self, train: pl.DataFrame) -> _State:
        as_of = after_last_event(train)
        cands = self.item_ids_.tolist()
        models: dict[str, Recommender] = {
            "blend": EASELowPass(
                l2=self.ease_l2_, factors=self.blend_[0], weight=self.blend_[1], item_norm=self.cfg.blend.item_norm
            ).fit(train, candidates=cands),
            "sar": SAR().fit(train, candidates=cands),
            "itemknn": ItemKNN().fit(train, candidates=cands),
        }
        if self.cfg.sequence_features:
            models["seqnb"] = SequenceNeighbours().fit(train, candidates=cands)
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
        user_features = user_activity(train, as_of=as_of)
        if self.cfg.relative_counts:
            item_features, user_features = _relative(item_features, ITEM_COUNTS), _relative(user_features, USER_COUNTS)
        return _State(as_of, models, interests, user_features, item_features, popular, seen, train, shares)

    # -- candidates and features ---------------------------------------------------------------------------------
    def _source_scores(
        self, state: _State, users: list[str], *, seen: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per-source scores (len(users) x candidates) and the prior; `seen`: the users' seen mask, if built."""
        scores: dict[str, np.ndarray] = {}
        for name, m in state.models.items():
            parts = m.component_scores(users) if isinstance(m, EASELowPass) else {name: m.score(users)}
            scores.update({part: np.nan_to_num(v, nan=0.0) for part, v in parts.items()})
        if state.interests is not None and self.embeddings is not None:
            full = profile_scores(state.interests, self.embeddings, users)
            cols = self.text_rows_
            text = np.full((len(users), len(cols)), -np.inf)
            text[:, cols >= 0] = full[:, cols[cols >= 0]]
            scores["text"] = text
        scores["popular"] = np.broadcast_to(state.popular, (len(users), len(self.item_ids_))).copy()
        weight = self.text_weight_ if self.use_text else 0.0
        if weight > 0 and "text" in scores and seen is None:
            seen = self._seen_mask(state, users)
        scores["prior"] = _prior_score(scores, seen, weight)
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
            seen_mask = self._seen_mask(state, batch)
            src = self._source_scores(state, batch, seen=seen_mask)
            pick = {}
            for name, n in (("text", cfg.n_text), ("blend", cfg.n_collaborative), ("popular", cfg.n_popular)):
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
                "is_from_cf": pick["blend"][r, c],
                "is_from_popular": pick["popular"][r, c],
            }
            for name in (*SCORED, "text"):
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
        # polars' parallel aggregations (a std, a mean over genres) may differ in the last bits between processes;
        # rounded, the same data gives the same features, hence the same ranker and metrics, in every run
        floats = [c for c, t in frame.schema.items() if t == pl.Float64]
        bools = [c for c, t in frame.schema.items() if t == pl.Boolean]
        return frame.with_columns(pl.col(floats).round(FEATURE_DECIMALS), pl.col(bools).cast(pl.Float64)).sort(
            S.USER_ID, S.ITEM_ID
        )

    # -- scoring -------------------------------------------------------------------------------------------------
    def candidates(self, users: list[str]) -> pl.DataFrame:
        """The candidate frame (with features) of `users`, built from the full training data."""
        return self._candidate_frame(self.state_, users)

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


PIPELINE_MODELS: tuple[str, ...] = ("pipeline", "pipeline-no-text")
# Text alone: `text` ranks by the pipeline's encoder (fine-tuned and/or with a collaborative head, as configured),
# `text-pretrained` by the pretrained encoder; both choose their profile's recency on the inner split.
TEXT_MODELS: tuple[str, ...] = ("text", "text-pretrained")


def pipeline_factories(
    names: Sequence[str],
    *,
    embedder: Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings],
    cfg: PipelineConfig | None = None,
    protocol: ProtocolName = "temporal",
    seed: int = 42,
    pretrained: Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings] | None = None,
) -> dict[str, Callable[[], Recommender]]:
    """Factories for `recsys.evaluation.evaluate(extra_models=...)`: `pipeline`, `pipeline-no-text`, `text` and
    `text-pretrained` (needs `pretrained`, an embedder without fine-tuning or head), sharing one (memoised) embedder
    so the encoder is fine-tuned once per training window."""
    out: dict[str, Callable[[], Recommender]] = {}
    for name in names:
        if name in TEXT_MODELS:
            emb = pretrained if name == "text-pretrained" else embedder
            if emb is None:
                raise ValueError("the text-pretrained row needs a pretrained embedder")
            interest = (cfg or PipelineConfig()).interest
            out[name] = lambda emb=emb, interest=interest: TextRecommender(emb, interest, protocol=protocol, seed=seed)
            continue
        if name not in PIPELINE_MODELS:
            raise ValueError(
                f"unknown pipeline model {name!r}; available: {', '.join((*PIPELINE_MODELS, *TEXT_MODELS))}"
            )
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
