from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.evaluation.splits import make_split
from recsys.ranker import PipelineConfig, RankingPipeline
from recsys.registry import load_bundle
from tests.conftest import save_test_bundle


@pytest.fixture(scope="module")
def trained(synthetic, synthetic_embeddings):
    split = make_split(synthetic.interactions, "temporal")
    items = synthetic.items
    pipe = RankingPipeline(synthetic_embeddings, protocol="temporal").fit(
        split.train, candidates=items["item_id"].to_list(), items=items
    )
    return split, pipe


def test_bundle_round_trip_reproduces_the_pipeline(trained, synthetic, synthetic_embeddings, tmp_path):
    split, pipe = trained
    bundle = save_test_bundle(
        tmp_path / "b",
        pipe,
        split.train,
        synthetic,
        synthetic_embeddings,
        extra={"input_key": "abc"},
        precision="float32",
    )
    loaded = load_bundle(bundle.path)
    assert loaded.digest == bundle.digest and loaded.meta["input_key"] == "abc" and loaded.uses_text
    assert loaded.adapter_path is None
    loaded.meta["encoder"]["adapter_scale"] = 0.25
    assert loaded.encoder_config().adapter_scale == 0.25  # the scale it was saved with
    assert loaded.embeddings.model_version == synthetic_embeddings.model_version
    np.testing.assert_array_equal(loaded.embeddings.vectors, synthetic_embeddings.vectors)
    assert loaded.events().height == split.train.height
    # the restored version (same ranker, sources rebuilt on the same events) ranks exactly as the trained one
    restored = loaded.pipeline().fit(
        loaded.events(), candidates=loaded.items()["item_id"].to_list(), items=loaded.items()
    )
    users = split.test["user_id"].unique().sort().head(30).to_list()
    a, b = pipe.recommend(users, k=20), restored.recommend(users, k=20)
    assert a.equals(b)
    # on-demand re-ranking of a user's own top items gives the same scores and order
    user = users[0]
    top = a.filter(pl.col("user_id") == user)
    shuffled = top.sample(fraction=1.0, shuffle=True, seed=1).select("user_id", "item_id")
    again = restored.rank_candidates(shuffled.vstack(pl.DataFrame({"user_id": [user], "item_id": ["no-such-item"]})))
    assert again.filter(pl.col("item_id") == "no-such-item")["score"].to_list() == [None]
    joined = top.join(again, on=["user_id", "item_id"], suffix="_online")
    np.testing.assert_allclose(joined["score"].to_numpy(), joined["score_online"].to_numpy(), rtol=1e-9)
    assert joined["rank"].to_list() == joined["rank_online"].to_list()


def test_tampered_or_foreign_bundles_are_refused(trained, synthetic, synthetic_embeddings, tmp_path):
    split, pipe = trained
    bundle = save_test_bundle(tmp_path / "b", pipe, split.train, synthetic, synthetic_embeddings)
    model = bundle.path / "ranker" / "ranker.txt"
    model.write_text(model.read_text().replace("shrinkage=0.05", "shrinkage=0.5", 1))
    with pytest.raises(ValueError, match="do not match the digest"):
        load_bundle(bundle.path)
    with pytest.raises(FileNotFoundError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_frozen_ranker_needs_its_embeddings(trained):
    _, pipe = trained
    with pytest.raises(ValueError, match="interest-match features"):
        RankingPipeline(None, use_text=False, ranker=pipe.ranker_)


def test_one_feature_path_whatever_the_batch(trained):
    """Online re-ranking is a batch of one through the nightly feature path: a user's rows (with extra requested
    candidates, seen and cold items among them) are identical alone and within a batch of users."""
    _, pipe = trained
    model = pipe.model_
    rng = np.random.default_rng(1)
    users = sorted(model.state.user_ids)[:25]
    n = len(model.item_ids)
    include = {u: sorted(rng.choice(n, 40, replace=False).tolist()) for u in users}
    batch = model.frame(users, include=include)
    alone = pl.concat([model.frame([u], include={u: include[u]}) for u in users])
    assert batch.columns == alone.columns and batch.height == alone.height
    assert batch.equals(alone)
    np.testing.assert_array_equal(model.ranker.predict(batch), model.ranker.predict(alone))


def test_bundle_model_scores_as_trained_without_fitting(trained, synthetic, synthetic_embeddings, tmp_path):
    """A format-2 bundle carries its training window's state: `model()` ranks exactly as the trained pipeline; a
    format-1 bundle (no state) is refused by `model()` with a message, and its metadata is migrated on load."""
    import json
    import shutil

    from recsys.registry.bundle import BUNDLE_FILE, _digest_tree

    split, pipe = trained
    bundle = save_test_bundle(tmp_path / "b", pipe, split.train, synthetic, synthetic_embeddings)
    model = load_bundle(bundle.path).model()
    users = split.test["user_id"].unique().sort().head(20).to_list()
    frame = pipe.candidates(users)
    assert model.frame(users).equals(frame)
    np.testing.assert_array_equal(model.ranker.predict(model.frame(users)), pipe.ranker_.predict(frame))
    old = tmp_path / "v1"
    shutil.copytree(bundle.path, old)
    shutil.rmtree(old / "state")
    meta = json.loads((old / BUNDLE_FILE).read_text())
    meta["encoder"].pop("adapter_scale")
    meta["pipeline"]["ranker"]["use_text_features"] = True
    (old / BUNDLE_FILE).write_text(json.dumps({**meta, "format": 1, "digest": _digest_tree(old)}))
    v1 = load_bundle(old)
    assert v1.encoder_config().adapter_scale == 1.0 and v1.pipeline().cfg == pipe.resolved_cfg
    with pytest.raises(ValueError, match="no saved state"):
        v1.model()
    (old / BUNDLE_FILE).write_text(json.dumps({**meta, "format": 99, "digest": _digest_tree(old)}))
    with pytest.raises(ValueError, match="upgrade"):
        load_bundle(old)


def test_a_bundle_is_scored_on_its_saved_state_only_for_its_own_window(
    trained, synthetic, synthetic_embeddings, tmp_path
):
    """The night's evaluation of the version it has just trained loads the saved state instead of rebuilding it (the
    state records the key of what it was built from); any other window is rebuilt, and either way the lists are the
    ones a rebuild gives."""
    from recsys.ranker.state import RankingState

    split, pipe = trained
    loaded = load_bundle(save_test_bundle(tmp_path / "b", pipe, split.train, synthetic, synthetic_embeddings).path)
    assert len(pipe.state_.inputs_key) == 40
    assert RankingState.saved_inputs_key(loaded.path / "state") == pipe.state_.inputs_key
    items = synthetic.items
    cands = items["item_id"].to_list()
    users = split.test["user_id"].unique().sort().head(30).to_list()

    def fitted(events, **kw):
        return loaded.pipeline(**kw).fit(events, candidates=cands, items=items)

    reused, rebuilt = fitted(split.train, reuse_state=True), fitted(split.train)
    assert reused.state_reused_ and not rebuilt.state_reused_
    assert reused.evaluation_extras(split.test)["state_reused"] is True
    assert reused.state_.inputs_key == rebuilt.state_.inputs_key == pipe.state_.inputs_key
    assert reused.recommend(users, k=20).equals(pipe.recommend(users, k=20))
    assert rebuilt.recommend(users, k=20).equals(pipe.recommend(users, k=20))
    # another window (one event fewer, or the same events with a rating changed): its own state, never the saved one
    for other in (split.train.head(split.train.height - 1), split.train.with_columns(pl.col("rating").reverse())):
        again = fitted(other, reuse_state=True)
        assert not again.state_reused_ and again.state_.inputs_key != pipe.state_.inputs_key
        assert again.recommend(users, k=20).equals(fitted(other).recommend(users, k=20))


def test_bundle_keeps_the_fitted_source_choices_and_reads_older_bundles(
    trained, synthetic, synthetic_embeddings, tmp_path
):
    split, pipe = trained
    loaded = load_bundle(save_test_bundle(tmp_path / "b", pipe, split.train, synthetic, synthetic_embeddings).path)
    cfg = loaded.pipeline().cfg
    assert (cfg.blend.factors, cfg.blend.weight) == pipe.blend_ and cfg.text_weight == pipe.text_weight_
    # a format-1 bundle written before these options: raw counts, EASE alone as the collaborative source, no text
    from recsys.registry.bundle import _migrate_v1

    meta = dict(loaded.meta)
    meta["pipeline"] = {
        k: v for k, v in meta["pipeline"].items() if k not in ("blend", "relative_counts", "text_weight")
    }
    legacy = PipelineConfig.model_validate(_migrate_v1(meta)["pipeline"])
    assert legacy.relative_counts is False and legacy.blend.weight == 0.0 and legacy.text_weight is None


def test_bundle_carries_the_collaborative_head(trained, synthetic, synthetic_embeddings, tmp_path):
    """A version trained on head-mapped vectors keeps its head: a catalog with new items is re-embedded by the
    encoder and mapped by the same head, so known items get exactly the vectors the ranker was trained on."""
    from recsys.encoder.collab import HeadConfig, train_head
    from recsys.encoder.stage import with_head
    from recsys.registry import save_bundle

    split, pipe = trained
    head = train_head(
        split.train, synthetic_embeddings.item_ids, synthetic_embeddings.vectors, HeadConfig(steps=20), seed=0
    )
    headed = with_head(synthetic_embeddings, head)
    assert "+head-" in headed.model_version
    bundle = save_test_bundle(tmp_path / "b", pipe, split.train, synthetic, headed, precision="float32")
    assert bundle.head is None  # saved without its head: nothing invents one
    from recsys.encoder import EncoderConfig
    from recsys.encoder.text import ItemTextConfig

    bundle = save_bundle(
        tmp_path / "h",
        ranker=pipe.ranker_,
        embeddings=headed,
        adapter=None,
        events=split.train,
        items=synthetic.items,
        encoder=EncoderConfig(precision="float32"),
        text=ItemTextConfig(),
        pipeline=pipe.resolved_cfg,
        protocol="temporal",
        head=head,
    )
    loaded = load_bundle(bundle.path)
    np.testing.assert_array_equal(loaded.head.weight, head.weight)
    assert loaded.meta["head"]["config"]["objective"] == head.cfg.objective
    new_item = synthetic.items.head(1).with_columns(pl.lit("new-item").alias("item_id"))
    catalog = pl.concat([synthetic.items, new_item])
    emb = loaded.embeddings_for(catalog)
    assert emb.model_version == headed.model_version  # the same encoder + head
    rows = {item: r for r, item in enumerate(emb.item_ids)}
    same = [rows[i] for i in headed.item_ids]
    np.testing.assert_allclose(emb.vectors[same], headed.vectors, atol=1e-5)
    # the new item has the first item's text: it lands exactly where that item is
    np.testing.assert_allclose(
        emb.vectors[rows["new-item"]], emb.vectors[rows[synthetic.items["item_id"][0]]], atol=1e-5
    )
