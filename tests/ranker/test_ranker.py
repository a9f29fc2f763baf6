from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.ranker import TEXT_FEATURES, LambdaRanker, RankerConfig, RankingPipeline, candidate_recall, train_ranker


def ranking_frame(seed: int = 0, users: int = 60, per_user: int = 20) -> pl.DataFrame:
    """Relevance depends on f_signal (and a little on f_weak); f_noise is noise."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    signal, weak, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    label = (signal + 0.3 * weak + 0.3 * rng.normal(size=n) > 1.0).astype(int)
    return pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i:03d}" for i in range(users)], per_user),
            "item_id": [f"i{j}" for j in range(n)],
            "f_signal": signal,
            "f_weak": weak,
            "f_noise": noise,
            "label": label,
        }
    )


FEATURES = ["f_signal", "f_weak", "f_noise"]
CFG = RankerConfig(n_estimators=60, min_data_in_leaf=5, early_stopping_rounds=10, margin_feature=None)


def test_ranker_learns_the_signal_and_reports_gain_importance() -> None:
    model = train_ranker(ranking_frame(), FEATURES, cfg=CFG, seed=1)
    test = ranking_frame(seed=9)
    ranked = test.with_columns(pl.Series("score", model.predict(test)))

    def precision_at_3(col: str) -> float:
        top = ranked.sort(col, descending=True).group_by("user_id", maintain_order=True).head(3)
        return float(top["label"].mean())

    assert precision_at_3("score") > 2 * precision_at_3("f_noise")
    assert precision_at_3("score") >= 0.9 * precision_at_3("f_signal")  # as good as the true signal
    imp = model.importance()
    assert imp["feature"][0] == "f_signal" and imp.columns == ["feature", "gain", "split"]
    assert model.validation_ndcg is not None and 0 < model.validation_ndcg <= 1


def test_ranker_is_deterministic_and_round_trips_through_the_text_format(tmp_path: Path) -> None:
    frame = ranking_frame()
    a = train_ranker(frame, FEATURES, cfg=CFG, seed=1)
    b = train_ranker(frame, FEATURES, cfg=CFG, seed=1)
    test = ranking_frame(seed=9)
    assert np.array_equal(a.predict(test), b.predict(test))
    folder = a.save(tmp_path / "ranker")
    assert (folder / "ranker.txt").read_text().startswith("tree")  # LightGBM's text format, not a pickle
    loaded = LambdaRanker.load(folder)
    assert loaded.features == FEATURES
    assert np.allclose(loaded.predict(test), a.predict(test))
    with pytest.raises(ValueError, match="lacks feature columns"):
        loaded.predict(test.drop("f_weak"))


def test_rounds_are_chosen_on_the_mean_curve_of_user_folds_then_refitted_on_every_user() -> None:
    import lightgbm as lgb

    frame = ranking_frame(users=90)
    cfg = CFG.model_copy(update={"stopping_folds": 3, "early_stopping_rounds": 8})
    model = train_ranker(frame, FEATURES, cfg=cfg, seed=3)
    curve = np.array(model.curve)
    # the chosen round is the mean curve's best, and training went on `early_stopping_rounds` past it (or to the end)
    assert model.best_iteration == int(np.argmax(curve)) + 1
    assert len(curve) == min(cfg.n_estimators, model.best_iteration + cfg.early_stopping_rounds)
    assert model.validation_ndcg == pytest.approx(curve.max())
    # the mean curve is the three folds' curves averaged: the same folds trained one by one reproduce it (users with
    # a positive, in user and item order, dealt into folds by the seeded permutation)
    frame = frame.filter(pl.col("label").max().over("user_id") > 0).sort("user_id", "item_id", maintain_order=True)
    users = frame["user_id"].unique(maintain_order=True).to_numpy()
    fold_of = np.empty(len(users), dtype=np.int64)
    fold_of[np.random.default_rng(3).permutation(len(users))] = np.arange(len(users)) % 3
    fold = frame["user_id"].replace_strict(dict(zip(users.tolist(), fold_of.tolist(), strict=True)))
    params = {
        "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": cfg.num_leaves,
        "learning_rate": cfg.learning_rate, "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction, "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1,
        "lambda_l2": cfg.lambda_l2, "lambdarank_truncation_level": cfg.truncation_level, "seed": 3,
        "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1,
        "monotone_constraints": [0, 0, 0],
    }  # fmt: skip

    def data(part: pl.DataFrame, ref: lgb.Dataset | None = None) -> lgb.Dataset:
        groups = part.group_by("user_id", maintain_order=True).len()["len"].to_numpy()
        x = part.select(FEATURES).to_numpy()
        return lgb.Dataset(x, part["label"].to_numpy(), group=groups, feature_name=FEATURES, reference=ref)

    curves = []
    for f in range(3):
        history: dict[str, dict[str, list[float]]] = {}
        train = data(frame.filter(fold != f))
        lgb.train(
            params, train, num_boost_round=len(curve), valid_sets=[data(frame.filter(fold == f), train)],
            callbacks=[lgb.record_evaluation(history)],
        )  # fmt: skip
        curves.append(history["valid_0"]["ndcg@10"])
    assert np.allclose(np.mean(curves, axis=0), curve)
    # the final booster is refitted on every user with exactly the chosen number of rounds
    assert model.booster.num_trees() == model.best_iteration  # type: ignore[attr-defined]
    # one fold: the seeded hold-out of validation_fraction of the users, as before
    single = train_ranker(frame, FEATURES, cfg=cfg.model_copy(update={"stopping_folds": 1}), seed=3)
    assert single.booster.num_trees() == single.best_iteration == int(np.argmax(single.curve)) + 1  # type: ignore[attr-defined]


def test_users_without_a_positive_are_skipped_and_all_negative_is_an_error() -> None:
    frame = ranking_frame().with_columns(pl.lit(0).alias("label"))
    with pytest.raises(ValueError, match="no user has a positive"):
        train_ranker(frame, FEATURES, cfg=CFG)


def test_pipeline_beats_popularity_and_the_ablation_drops_only_text_features(synthetic, synthetic_embeddings) -> None:
    from recsys.baselines import TopPop
    from recsys.evaluation import split_temporal, user_metrics

    split = split_temporal(synthetic.interactions)
    cands = synthetic.items["item_id"].to_list()
    users = split.test["user_id"].unique().sort().to_list()
    full = RankingPipeline(synthetic_embeddings, seed=1).fit(split.train, candidates=cands, items=synthetic.items)
    no_text = RankingPipeline(synthetic_embeddings, use_text=False, seed=1).fit(
        split.train, candidates=cands, items=synthetic.items
    )
    assert set(full.features_) - set(no_text.features_) == set(TEXT_FEATURES)
    assert not set(no_text.features_) & set(TEXT_FEATURES)
    assert not [f for f in no_text.features_ if "text" in f or f.startswith("im_")]  # no text signal leaks in
    recs_full, recs_no_text = full.recommend(users, k=10), no_text.recommend(users, k=10)
    assert not recs_full.equals(recs_no_text)  # dropping the text features changes the ranking
    pop = TopPop().fit(split.train, candidates=cands)
    ndcg = {
        name: user_metrics(recs, split.test)["ndcg@10"].mean()
        for name, recs in (("pipeline", recs_full), ("toppop", pop.recommend(users, k=10)))
    }
    assert ndcg["pipeline"] > 1.2 * ndcg["toppop"], ndcg  # (vs the best baselines: bench/quality.py)
    recall = candidate_recall(full.last_candidates_, split.test)
    assert 0 < recall["text"] <= recall["overall"] <= 1 and recall["mean_candidates_per_user"] > 100


def prior_frame(seed: int = 0, users: int = 80, per_user: int = 30) -> pl.DataFrame:
    """A strong source ranks the candidates (rank_ease, 1 = best) with noise; labels follow its true order, plus a
    small effect of f_extra that the source misses."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        truth = rng.normal(size=per_user)
        extra = rng.normal(size=per_user)
        observed = truth + 0.5 * rng.normal(size=per_user)
        rank = np.empty(per_user)
        rank[np.argsort(-observed)] = np.arange(1, per_user + 1)
        label = (truth + 0.4 * extra > 1.0).astype(int)
        for j in range(per_user):
            rows.append((f"u{u:03d}", f"i{u}-{j}", float(rank[j]), float(-rank[j]), float(extra[j]), int(label[j])))
    columns = ["user_id", "item_id", "rank_ease", "score_ease", "f_extra", "label"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def test_base_margin_and_monotone_constraints(tmp_path: Path) -> None:
    features = ["rank_ease", "score_ease", "f_extra"]
    frame = prior_frame()
    # One round with a tiny learning rate: the scores are the margin's order, so the top is the source's top.
    cfg = RankerConfig(n_estimators=1, learning_rate=1e-6, min_data_in_leaf=5, margin_feature="rank_ease")
    prior_only = train_ranker(frame, features, cfg=cfg, seed=1)
    assert prior_only.margin_feature == "rank_ease" and prior_only.margin_weight == 1.0
    s = prior_only.predict(frame)
    assert np.allclose(s, -np.log2(1 + frame["rank_ease"].to_numpy()), atol=1e-4)

    model = train_ranker(frame, features, cfg=CFG.model_copy(update={"margin_feature": "rank_ease"}), seed=1)
    test = prior_frame(seed=5)

    def precision_at_3(scores: np.ndarray) -> float:
        ranked = test.with_columns(pl.Series("s", scores)).sort("s", descending=True)
        return float(ranked.group_by("user_id", maintain_order=True).head(3)["label"].mean())

    # learns the correction the source misses (f_extra), on top of the source's order
    assert precision_at_3(model.predict(test)) > precision_at_3(-test["rank_ease"].to_numpy())
    # monotone: a better rank or score of the collaborative source never lowers the trees' output (without the
    # constraints the same data gives hundreds of violations)
    x = test.select(pl.col(f).cast(pl.Float64) for f in features).to_numpy()
    for col, step in ((0, -3.0), (1, 3.0)):
        better = x.copy()
        better[:, col] = np.maximum(1.0, better[:, col] + step) if col == 0 else better[:, col] + step
        assert np.all(model.booster.predict(better) >= model.booster.predict(x) - 1e-12)
    # the margin travels with the saved model
    loaded = LambdaRanker.load(model.save(tmp_path / "ranker"))
    assert loaded.margin_feature == "rank_ease" and np.allclose(loaded.predict(test), model.predict(test))
    with pytest.raises(ValueError, match="margin feature 'rank_prior' is not among"):
        train_ranker(frame, ["score_ease", "f_extra"], cfg=RankerConfig(), seed=1)
    # trees switched off: exactly the margin, also after a round trip
    margin_only = replace(model, use_trees=False)
    assert np.array_equal(margin_only.predict(test), -np.log2(1 + test["rank_ease"].to_numpy()))
    reloaded = LambdaRanker.load(margin_only.save(tmp_path / "margin-only"))
    assert not reloaded.use_trees and np.array_equal(reloaded.predict(test), margin_only.predict(test))


def test_ranker_prior_is_chosen_on_a_nested_validation_split(synthetic, synthetic_embeddings) -> None:
    from recsys.evaluation import split_temporal
    from recsys.ranker import PipelineConfig

    split = split_temporal(synthetic.interactions)
    cands = synthetic.items["item_id"].to_list()

    def fit(prior: str, **extra: object) -> RankingPipeline:
        # prior_min_users=1: the synthetic nested split judges a few dozen users; the significance rule is under test
        cfg = PipelineConfig(ranker_prior=prior, **{"prior_min_users": 1, **extra})  # type: ignore[arg-type]
        return RankingPipeline(synthetic_embeddings, cfg=cfg, use_text=False, seed=1).fit(
            split.train, candidates=cands, items=synthetic.items
        )

    on, off, auto = fit("on"), fit("off"), fit("auto")
    assert on.ranker_.margin_feature == "rank_prior" and off.ranker_.margin_feature is None
    chosen = auto.label_stats_["ranker_prior"]
    assert chosen["mode"] == "auto"
    assert set(chosen["validation_ndcg@10"]) == {"prior-only", "on@1", "on@2", "on@4", "off"}
    # temporal split: the plain ranker unless an option beats it significantly; then the best of those
    assert chosen["fallback"] == "off"
    scores, p_values = chosen["validation_ndcg@10"], chosen["p_holm_vs_off"]
    # Holm over the four options: each adjusted p-value is at least its raw one
    assert all(p_values[n] >= chosen["p_vs_off"][n] for n in p_values) and chosen["alpha"] == 0.05
    better = {n: v for n, v in scores.items() if n != "off" and v > scores["off"] and p_values[n] < 0.05}
    assert chosen["chosen"] == (max(better, key=better.__getitem__) if better else "off")
    assert auto.ranker_.use_trees == (chosen["chosen"] != "prior-only")
    # fewer nested users than prior_min_users: the same comparison is reported, the fallback kept
    strict = fit("auto", prior_min_users=chosen["nested_label_users"] + 1).label_stats_["ranker_prior"]
    assert strict["min_users"] > strict["nested_label_users"] == chosen["nested_label_users"]
    assert strict["validation_ndcg@10"] == scores and strict["chosen"] == "off"
    # the chosen variant is exactly the fixed one with that margin weight
    if chosen["chosen"] == "off":
        twin = off
    elif chosen["chosen"] == "prior-only":
        twin = fit("prior-only")
    else:
        cfg = PipelineConfig(ranker_prior="on", ranker={"margin_weight": float(chosen["chosen"].split("@")[1])})
        twin = RankingPipeline(synthetic_embeddings, cfg=cfg, use_text=False, seed=1).fit(
            split.train, candidates=cands, items=synthetic.items
        )
    assert auto.ranker_.margin_weight == twin.ranker_.margin_weight
    users = split.test["user_id"].unique().sort().head(20).to_list()
    assert auto.recommend(users, k=10).equals(twin.recommend(users, k=10))


def test_prior_score_is_the_blend_plus_the_interest_match_weighted_as_validation_chose(
    synthetic, synthetic_embeddings
) -> None:
    from recsys.evaluation import split_temporal
    from recsys.ranker import PipelineConfig
    from recsys.scoring.sources import zscore_rows

    split = split_temporal(synthetic.interactions)
    cands = synthetic.items["item_id"].to_list()
    cfg = PipelineConfig(ranker_prior="prior-only")
    pipe = RankingPipeline(synthetic_embeddings, cfg=cfg, seed=1).fit(
        split.train, candidates=cands, items=synthetic.items
    )
    info = pipe.label_stats_["text_weight"]
    scores = {float(k): v for k, v in info["validation_ndcg@10"].items()}
    assert info["mode"] == "auto" and set(scores) == set(cfg.text_weight_grid)
    assert pipe.text_weight_ == info["weight"] and scores[pipe.text_weight_] == max(scores.values())
    assert pipe.text_weight_ > 0  # the synthetic items' text carries the users' topics
    assert scores[pipe.text_weight_] > scores[0.0]
    assert pipe.resolved_cfg.text_weight == pipe.text_weight_ and pipe.resolved_cfg.blend.factors in (8, 16, 32)

    state = pipe.state_
    users = sorted(state.user_ids)[:15]
    src = pipe.model_.candidates.source_scores(users)
    valid = np.isfinite(src["text"]) & ~state.seen_mask(state.rows(users))
    z_text = np.where(valid, zscore_rows(np.where(valid, src["text"], 0.0), valid), 0.0)
    assert np.allclose(src["prior"], src["blend"] + pipe.text_weight_ * z_text)
    # prior-only: the lists are the candidates in the prior's order
    frame = pipe.candidates(users)
    recs = pipe.recommend(users, k=5)
    for user in users[:5]:
        top = frame.filter(pl.col("user_id") == user).sort(["rank_prior", "item_id"]).head(5)["item_id"].to_list()
        assert recs.filter(pl.col("user_id") == user)["item_id"].to_list() == top
    # the ablation's prior is the collaborative blend alone
    no_text = RankingPipeline(synthetic_embeddings, cfg=cfg, use_text=False, seed=1).fit(
        split.train, candidates=cands, items=synthetic.items
    )
    assert no_text.text_weight_ == 0.0 and no_text.label_stats_["text_weight"] == {"mode": "no text"}
    src = no_text.model_.candidates.source_scores(users)
    assert np.array_equal(src["prior"], src["blend"])


def test_random_split_keeps_the_priors_order_unless_trees_beat_it_significantly(synthetic) -> None:
    from recsys.evaluation import split_ms_stratified

    split = split_ms_stratified(synthetic.interactions)
    from recsys.ranker import PipelineConfig

    cfg = PipelineConfig(prior_min_users=1)  # the synthetic nested split judges fewer than the default 200
    pipe = RankingPipeline(None, cfg=cfg, use_text=False, protocol="ms-stratified", seed=1).fit(
        split.train, items=synthetic.items
    )
    chosen = pipe.label_stats_["ranker_prior"]
    assert chosen["fallback"] == "prior-only"
    scores, p_values = chosen["validation_ndcg@10"], chosen["p_holm_vs_prior-only"]
    assert set(p_values) == {"on@1", "on@2", "on@4", "off"}
    better = {n: v for n, v in scores.items() if n in p_values and v > scores["prior-only"] and p_values[n] < 0.05}
    assert chosen["chosen"] == (max(better, key=better.__getitem__) if better else "prior-only")
    assert pipe.ranker_.use_trees == (chosen["chosen"] != "prior-only")


def test_text_candidates_reach_the_tail_the_overall_text_top_n_misses(synthetic, synthetic_embeddings) -> None:
    from recsys.evaluation import split_temporal
    from recsys.ranker import CandidateConfig, PipelineConfig
    from recsys.ranker.candidates import Candidates
    from recsys.ranker.window import build_state

    split = split_temporal(synthetic.interactions)
    cands = synthetic.items["item_id"].to_list()
    state = build_state(
        split.train,
        synthetic.items,
        cands,
        PipelineConfig(),
        ease_l2=500.0,
        blend=(16, 0.5),
        embeddings=synthetic_embeddings,
    )
    users = sorted(state.user_ids)[:30]
    item_users = np.asarray(state.seen.getnnz(axis=0)).ravel()
    tail_users = int(np.quantile(item_users, 0.25))  # the quarter of the catalog fewest users chose
    base = CandidateConfig(n_text=10, n_collaborative=10, n_popular=5, n_text_tail=0, tail_users=tail_users)
    with_tail = base.model_copy(update={"n_text_tail": 8})

    def text_items(cfg: CandidateConfig) -> pl.DataFrame:
        frame = Candidates(state, cfg, embeddings=synthetic_embeddings).frame(users)
        return frame.filter(pl.col("is_from_text") == 1).select("user_id", "item_id")

    before, after = text_items(base), text_items(with_tail)
    assert before.join(after, on=["user_id", "item_id"], how="anti").height == 0  # the overall top-N stays
    added = after.join(before, on=["user_id", "item_id"], how="anti")
    assert added.height > 0
    # what was added: per user, exactly the best 8 unseen tail items by interest match
    tail = item_users <= tail_users
    src = Candidates(state, base, embeddings=synthetic_embeddings).source_scores(users)
    seen = state.seen_mask(state.rows(users))
    for row, user in enumerate(users[:10]):
        text = np.where(seen[row] | ~tail, -np.inf, src["text"][row])
        best = set(state.item_ids[np.argsort(-text, kind="stable")[:8]].tolist()) - {
            i for i, s in zip(state.item_ids.tolist(), text, strict=True) if not np.isfinite(s)
        }
        mine = set(after.filter(pl.col("user_id") == user)["item_id"].to_list())
        assert best <= mine
        assert all(
            item_users[state.item_index[i]] <= tail_users
            for i in set(mine) - set(before.filter(pl.col("user_id") == user)["item_id"].to_list())
        )


def test_a_config_saved_before_the_tail_source_keeps_its_candidates() -> None:
    from recsys.ranker import PipelineConfig
    from recsys.ranker.config import saved_pipeline_config

    now = PipelineConfig()
    assert saved_pipeline_config(now.model_dump(mode="json")) == now and now.candidates.n_text_tail == 50
    older = now.model_dump(mode="json")
    del older["candidates"]["n_text_tail"]
    assert saved_pipeline_config(older).candidates.n_text_tail == 0
    assert "n_text_tail" not in older["candidates"]  # the saved data itself is not changed


def test_the_text_weight_grid_reads_the_same_blend_and_text_as_the_candidates(synthetic, synthetic_embeddings) -> None:
    """`choose_text_weight` scores its grid from `prior_inputs` (the blend and the interest match only) and one
    `text_z` per batch: the same numbers as the full `source_scores` and `prior_score` per weight."""
    from recsys.evaluation import split_temporal
    from recsys.ranker import CandidateConfig, PipelineConfig
    from recsys.ranker._common import prior_score, text_z
    from recsys.ranker.candidates import Candidates
    from recsys.ranker.window import build_state

    split = split_temporal(synthetic.interactions)
    state = build_state(
        split.train,
        synthetic.items,
        synthetic.items["item_id"].to_list(),
        PipelineConfig(),
        ease_l2=500.0,
        blend=(16, 0.5),
        embeddings=synthetic_embeddings,
    )
    cands = Candidates(state, CandidateConfig(), embeddings=synthetic_embeddings)
    users = sorted(state.user_ids)[:25]
    seen = state.seen_mask(state.rows(users))
    full, lean = cands.source_scores(users, seen=seen), cands.prior_inputs(users)
    assert set(lean) == {"blend", "text"}
    for name in lean:
        np.testing.assert_array_equal(lean[name], full[name])
    z = text_z(lean["text"], seen)
    for w in (0.0, 0.3, 1.0):
        np.testing.assert_array_equal(prior_score(lean, seen, w, z=z), prior_score(full, seen, w))
