"""The full ranking pipeline as a `Recommender` (what evaluation and the night fit): candidates from text,
collaborative and popularity sources, point-in-time features (behavioural + interest-match), and a LightGBM
LambdaRank ranker on top.

Training never sees test data: the ranker's labels come from an inner split of the training events (the same
protocol as the outer split: a later time window for `temporal`, a held-out random part for `ms-stratified`), with
features computed from the inner training part only. For recommending, the state (sources and features) is rebuilt
on the full training data and the trained ranker scores its candidates. The pieces: `config` (settings),
`selection` (the validation choices), `window` / `state` (a window's fitted state), `candidates` (the one feature
path), `training` (LightGBM), `scoring` (the trained `RankingModel` a night saves and the service loads).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.baselines import Recommender, ScaleConfig
from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.recommender import TextRecommender
from recsys.evaluation.splits import ProtocolName, validation_split
from recsys.ranker._common import TEXT_FEATURES
from recsys.ranker.candidates import Candidates
from recsys.ranker.config import PipelineConfig
from recsys.ranker.model import LambdaRanker
from recsys.ranker.scoring import RankingModel
from recsys.ranker.selection import (
    choose_blend,
    choose_ease_l2,
    choose_prior,
    choose_text_weight,
    labelled_frame,
    sample_label_users,
)
from recsys.ranker.state import RankingState
from recsys.ranker.training import train_ranker
from recsys.ranker.window import build_state, window_key

Embedder = Callable[[pl.DataFrame, pl.DataFrame], ItemEmbeddings]


class RankingPipeline(Recommender):
    """Candidates + features + LambdaRank. `use_text=False` is the ablation without interest-match features."""

    name: ClassVar[str] = "pipeline"
    scores_cold_items: ClassVar[bool] = True

    def __init__(
        self,
        embeddings: ItemEmbeddings | Embedder | None,
        *,
        cfg: PipelineConfig | None = None,
        protocol: ProtocolName = "temporal",
        use_text: bool = True,
        seed: int = 42,
        ranker: LambdaRanker | None = None,
        scale: ScaleConfig | None = None,
        saved_state: Path | None = None,
    ) -> None:
        """`ranker`: an already trained ranker (e.g. a registered version's). `fit` then only rebuilds the state
        (sources and features) on the given events (a newer window, or the split under evaluation) and keeps it;
        `saved_state`: a state folder saved with that ranker, loaded instead of rebuilt when it was built from the
        same inputs (its `window_key`: the night's evaluation of the version it has just trained).
        `scale`: when the collaborative sources switch to their sparse forms (large catalogs)."""
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
        self.saved_state = saved_state
        self.scale = scale or ScaleConfig()
        if ranker is not None and embeddings is None and any(f in TEXT_FEATURES for f in ranker.features):
            raise ValueError("this ranker uses interest-match features: pass the item embeddings it was trained with")

    # -- fitting -----------------------------------------------------------------------------------------------------
    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        train = events.drop("_u", "_i")
        self.items_ = items if items is not None else pl.DataFrame({S.ITEM_ID: self.item_ids_.tolist()})
        if S.GENRES not in self.items_.columns:
            self.items_ = self.items_.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias(S.GENRES))
        self.users_ = list(self.user_index_)
        self.last_candidates_: pl.DataFrame | None = None
        self.recorded_users_ = 0
        self.state_reused_ = False  # set when a frozen ranker's saved state stands in for a rebuild
        if self.frozen_ranker is not None:  # a trained version: rebuild the state on `train` only
            if self.embedder is not None:
                self.embeddings = self.embedder(train, self.items_)
            self.label_stats_: dict[str, object] = {}
            self.blend_ = self.cfg.blend.resolved()
            self.ease_l2_ = self.cfg.ease_l2 or 500.0  # bundles store the l2 they were trained with
            self.text_weight_ = self.cfg.text_weight or 0.0
            self.model_ = RankingModel(
                self._saved_or_built(train),
                self.frozen_ranker,
                self.resolved_cfg,
                embeddings=self.embeddings,
                use_text=self.use_text,
            )
            return
        cands = self.item_ids_.tolist()
        # the label users (and the users every validation choice judges): all of them, or a stratified sample above
        # `scale.label_users`; the training windows stay whole
        inner, sample_info = sample_label_users(
            validation_split(train, self.protocol, seed=self.seed), self.scale.label_users, seed=self.seed
        )
        self.ease_l2_, l2_info = choose_ease_l2(self.cfg, inner, cands, scale=self.scale)
        self.blend_, blend_info = choose_blend(self.cfg, inner, cands, l2=self.ease_l2_, scale=self.scale)
        if self.embedder is not None:
            # Fine-tuned on the inner training part only: the ranker's labels come from the inner hold-out, which the
            # encoder must not have seen, or the ranker would over-trust the text features. The same encoder then
            # serves the final state (it has not seen the last part of the training window; nothing leaks).
            self.embeddings = self.embedder(inner.train, self.items_)
        inner_cands = self._candidates(self._build(inner.train), 0.0)
        self.text_weight_, text_info = choose_text_weight(self.cfg, inner_cands, inner)
        inner_cands = inner_cands.with_text_weight(self.text_weight_)
        frame, positives = labelled_frame(inner_cands, inner)
        features = self.feature_names(frame)
        # the inner state is done with: at 1M users a state holds GBs (the interest profiles), and the nested and
        # final states are built next (candidates and their indexed tables refer to each other: a cycle, so collect)
        del inner_cands
        gc.collect()

        def nested() -> tuple[pl.DataFrame, pl.DataFrame]:
            split = validation_split(inner.train, self.protocol, seed=self.seed)
            split = sample_label_users(split, self.scale.label_users, seed=self.seed)[0]
            return labelled_frame(self._candidates(self._build(split.train), self.text_weight_), split)

        ranker_cfg, prior_info = choose_prior(
            self.cfg,
            protocol=self.protocol,
            frame=frame,
            positives=positives,
            features=features,
            nested=nested,
            seed=self.seed,
        )
        self.label_stats_ = {
            "label_users": positives[S.USER_ID].n_unique(),
            "label_user_sample": sample_info,
            "label_rows": frame.height,
            "label_positives": int(frame["label"].sum()),
            "inner_candidate_recall": float(frame["label"].sum() / max(1, positives.height)),
            "ease_l2": l2_info,
            "blend": blend_info,
            "text_weight": text_info,
            "ranker_prior": prior_info,
        }
        ranker = train_ranker(frame, features, cfg=ranker_cfg, seed=self.seed)
        if prior_info["chosen"] == "prior-only":
            ranker = ranker.with_trees(False)
        del frame, positives  # and the nested state (a cycle as above), before the final state is built
        gc.collect()
        self.model_ = RankingModel(
            self._build(train), ranker, self.resolved_cfg, embeddings=self.embeddings, use_text=self.use_text
        )

    def _build(self, train: pl.DataFrame, inputs_key: str | None = None) -> RankingState:
        return build_state(**self._window_inputs(train), inputs_key=inputs_key)

    def _window_inputs(self, train: pl.DataFrame) -> dict[str, Any]:
        """What `build_state` (and `window_key`) read for the window `train`."""
        return {
            "train": train,
            "items": self.items_,
            "item_ids": self.item_ids_.tolist(),
            "cfg": self.cfg,
            "ease_l2": self.ease_l2_,
            "blend": self.blend_,
            "embeddings": self.embeddings,
            "scale": self.scale,
        }

    def _saved_or_built(self, train: pl.DataFrame) -> RankingState:
        """The state of `train`: `saved_state` when its key is this window's (`state_reused_`), else built."""
        if self.saved_state is None:
            return self._build(train)
        key = window_key(**self._window_inputs(train))
        if RankingState.saved_inputs_key(self.saved_state) == key:
            self.state_reused_ = True
            return RankingState.load(self.saved_state)
        return self._build(train, inputs_key=key)

    def _candidates(self, state: RankingState, text_weight: float) -> Candidates:
        return Candidates(
            state, self.cfg.candidates, embeddings=self.embeddings, text_weight=text_weight, use_text=self.use_text
        )

    @property
    def ranker_(self) -> LambdaRanker:
        return self.model_.ranker

    @property
    def state_(self) -> RankingState:
        return self.model_.state

    @property
    def features_(self) -> list[str]:
        return list(self.model_.ranker.features)

    @property
    def resolved_cfg(self) -> PipelineConfig:
        """The config with the fitted choices filled in (EASE's l2, the blend's factors and weight, the text weight):
        what a bundle stores, so a trained version rebuilds exactly the sources and prior its ranker was trained on."""
        f, w = self.blend_
        blend = self.cfg.blend.model_copy(update={"factors": f, "weight": w})
        return self.cfg.model_copy(update={"blend": blend, "text_weight": self.text_weight_, "ease_l2": self.ease_l2_})

    def feature_names(self, frame: pl.DataFrame) -> list[str]:
        drop = {S.USER_ID, S.ITEM_ID, "label", *self.cfg.exclude_features}
        names = [c for c in frame.columns if c not in drop]
        if not self.use_text:
            names = [c for c in names if c not in TEXT_FEATURES]
        return names

    # -- scoring -----------------------------------------------------------------------------------------------------
    def candidates(self, users: list[str]) -> pl.DataFrame:
        """The candidate frame (with features) of `users`, built from the full training data."""
        return self.model_.frame(users)

    def rank_candidates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """See `RankingModel.rank_candidates`."""
        return self.model_.rank_candidates(pairs)

    def recommend(
        self, users: Sequence[str], *, k: int = 10, exclude_seen: bool = True, batch_size: int | None = None
    ) -> pl.DataFrame:
        """Top-k lists from each batch's candidate frame (`RankingModel.ranked`: the lists a night publishes), never a
        users x items matrix; the candidates hold no seen item, so these are `Recommender.recommend`'s lists (a test
        compares both). `exclude_seen=False` scores through the dense path."""
        if not exclude_seen:
            return super().recommend(users, k=k, exclude_seen=False, batch_size=batch_size)
        known = [u for u in users if u in self.user_index_]
        size = batch_size or 1024
        parts = []
        for start in range(0, len(known), size):
            batch = known[start : start + size]
            frame = self.model_.frame(batch)
            if frame.height:
                self._record(batch, frame)
                parts.append(self.model_.ranked(frame, k=k))
        return pl.concat(parts) if parts else pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)

    def _record(self, users: list[str], frame: pl.DataFrame) -> None:
        """Keep the candidates for the candidate recall of `evaluation_extras`, for the first `scale.label_users`
        users only (a bounded record: every user's candidates of a large night would not fit in memory)."""
        room = self.scale.label_users - self.recorded_users_
        if room > 0:
            part = frame.filter(pl.col(S.USER_ID).is_in(users[:room])).select(
                S.USER_ID, S.ITEM_ID, "is_from_text", "is_from_cf", "is_from_popular"
            )
            self.recorded_users_ += min(room, len(users))
            self.last_candidates_ = part if self.last_candidates_ is None else pl.concat([self.last_candidates_, part])

    def _score(self, rows: np.ndarray) -> np.ndarray:
        users = [self.users_[r] for r in rows]
        frame = self.model_.frame(users)
        out = np.full((len(rows), len(self.item_ids_)), -np.inf)
        if frame.height:
            scores = self.ranker_.predict(frame)
            pos = {u: i for i, u in enumerate(users)}
            r = np.fromiter((pos[u] for u in frame[S.USER_ID].to_list()), dtype=np.int64, count=frame.height)
            c = np.fromiter(
                (self.item_index_[i] for i in frame[S.ITEM_ID].to_list()), dtype=np.int64, count=frame.height
            )
            out[r, c] = scores
            self._record(users, frame)
        return out

    def evaluation_extras(self, test: pl.DataFrame) -> dict[str, object]:
        """Candidate recall (share of test positives of scored users found in the candidates), per source and
        overall, plus how the ranker's labels were made."""
        importance = self.ranker_.importance()
        return {
            "candidate_recall": candidate_recall(self.last_candidates_, test),
            "ranker_frozen": self.frozen_ranker is not None,
            "state_reused": self.state_reused_,
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
    embedder: Embedder,
    cfg: PipelineConfig | None = None,
    protocol: ProtocolName = "temporal",
    seed: int = 42,
    pretrained: Embedder | None = None,
    scale: ScaleConfig | None = None,
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
            out[name] = partial(TextRecommender, emb, interest, protocol=protocol, seed=seed)
            continue
        if name not in PIPELINE_MODELS:
            raise ValueError(
                f"unknown pipeline model {name!r}; available: {', '.join((*PIPELINE_MODELS, *TEXT_MODELS))}"
            )
        use_text = name == "pipeline"
        out[name] = partial(
            RankingPipeline, embedder, cfg=cfg, protocol=protocol, use_text=use_text, seed=seed, scale=scale
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
