"""The indexed candidate path (`recsys.ranker.indexed`, taken for states fitted with the scalable sources) against the
dense path on the same state: with exact indexes the same candidate rows and features; with HNSW nearly the same
text picks; the indexes travel with the saved state."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest

from recsys.compute import ScaleConfig
from recsys.evaluation import split_temporal
from recsys.ranker import CandidateConfig, PipelineConfig
from recsys.ranker.candidates import Candidates
from recsys.ranker.state import RankingState
from recsys.ranker.window import build_state
from recsys.scoring import vector_index
from recsys.scoring.vector_index import VectorIndex

CFG = CandidateConfig(n_text=15, n_text_tail=5, tail_users=3, n_collaborative=15, n_popular=5)


def _build(train, synthetic, embeddings, *, cfg=None, scale=None, weight: float = 0.5):
    return build_state(
        train,
        synthetic.items,
        synthetic.items["item_id"].to_list(),
        cfg or PipelineConfig(),
        ease_l2=500.0,
        blend=(16, weight),
        embeddings=embeddings,
        scale=scale,
    )


def _state(synthetic, embeddings, *, index: str, weight: float = 0.5):
    # the sparse sources, as above the threshold
    scale = ScaleConfig(dense_item_limit=0, neighbours=30, item_index=index)  # type: ignore[arg-type]
    train = split_temporal(synthetic.interactions).train
    return _build(
        train,
        synthetic,
        embeddings,
        cfg=PipelineConfig(sequence_features=True, candidates=CFG),
        scale=scale,
        weight=weight,
    )


def _dense(c: Candidates) -> Candidates:
    twin = copy.copy(c)
    twin.indexed = None
    return twin


def _compare(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    key = ["user_id", "item_id"]
    assert a.select(key).equals(b.select(key))  # the same candidates, in the same order
    for col in a.columns:
        if col in key:
            continue
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), col
        ok = ~np.isnan(x)
        np.testing.assert_allclose(x[ok], y[ok], rtol=1e-6, atol=1e-6, err_msg=col)


@pytest.mark.parametrize(("text_weight", "blend_weight"), [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0)])
def test_exact_indexes_give_the_dense_paths_rows_and_features(
    synthetic, synthetic_embeddings, text_weight, blend_weight, monkeypatch
) -> None:
    state = _state(synthetic, synthetic_embeddings, index="exact", weight=blend_weight)
    assert state.scalable and state.item_indexes is not None and state.item_indexes.text.kind == "exact"
    # ties at a top-N's last place: the dense path breaks them by column (as the indexed path does) on wide catalogs
    # only, by numpy's partition order below; this small catalog takes the wide catalogs' rule
    monkeypatch.setattr("recsys.ranker._common.PARTITION_COLUMNS", 0)
    lean = Candidates(state, CFG, embeddings=synthetic_embeddings, text_weight=text_weight)
    assert lean.indexed is not None
    users = [*sorted(state.user_ids)[:40], "nobody"]
    include = {users[0]: [0, 1, 2], users[1]: [int(state.seen[state.rows([users[1]])[0]].indices[0])]}  # one seen
    a = lean.frame(users, include=include, batch_size=16)
    b = _dense(lean).frame(users, include=include, batch_size=16)
    _compare(a, b)
    assert a.filter(pl.col("user_id") == users[1]).height > 0 and "nobody" not in a["user_id"].to_list()


def test_hnsw_picks_nearly_the_exact_text_candidates_and_travel_with_the_state(
    synthetic, synthetic_embeddings, tmp_path
) -> None:
    hnsw = _state(synthetic, synthetic_embeddings, index="hnsw")
    exact = _state(synthetic, synthetic_embeddings, index="exact")
    assert hnsw.item_indexes is not None and hnsw.item_indexes.text.kind == "hnsw"
    # the same window again (as the night's evaluation rebuilds the final window's state): every graph is reused
    again = _state(synthetic, synthetic_embeddings, index="hnsw").item_indexes
    assert again is not None
    for name in ("lowpass", "text", "tail"):
        assert getattr(again, name).graph is getattr(hnsw.item_indexes, name).graph, name
    users = sorted(hnsw.user_ids)
    a = Candidates(hnsw, CFG, embeddings=synthetic_embeddings, text_weight=0.5).frame(users)
    b = Candidates(exact, CFG, embeddings=synthetic_embeddings, text_weight=0.5).frame(users)
    from_text = ["user_id", "item_id"]
    ta = a.filter(pl.col("is_from_text") == 1).select(from_text)
    tb = b.filter(pl.col("is_from_text") == 1).select(from_text)
    recall = ta.join(tb, on=from_text).height / tb.height
    assert recall >= 0.95, recall
    ca = a.filter(pl.col("is_from_cf") == 1).select(from_text)
    cb = b.filter(pl.col("is_from_cf") == 1).select(from_text)
    assert ca.join(cb, on=from_text).height / cb.height >= 0.9  # EASE's and the low-pass's own tops, re-scored
    # on shared rows every feature is the same: only the picks are approximate
    both = a.join(b, on=from_text, suffix="_x")
    for col in ("score_prior", "im_profile", "score_blend"):
        np.testing.assert_allclose(both[col].to_numpy(), both[f"{col}_x"].to_numpy(), atol=1e-9)

    # saved and loaded: the same graph (not rebuilt), the same rows
    loaded = RankingState.load(hnsw.save(tmp_path / "state"))
    assert loaded.item_indexes is not None and loaded.item_indexes.text.kind == "hnsw"
    served = Candidates(loaded, CFG, embeddings=synthetic_embeddings, text_weight=0.5)
    served.prepare()  # what the service does before serving: every per-state table made up front
    assert served.indexed is not None
    assert {"text", "lowpass", "similarities", "popular_order"} <= set(vars(served.indexed))
    assert served.frame(users).equals(a)


def test_a_dense_state_keeps_the_dense_path(synthetic, synthetic_embeddings) -> None:
    state = _build(split_temporal(synthetic.interactions).train, synthetic, synthetic_embeddings)
    assert not state.scalable and state.item_indexes is None
    assert Candidates(state, CandidateConfig(), embeddings=synthetic_embeddings).indexed is None


def test_vector_index_search_excludes_and_orders() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 24))
    cols = np.arange(0, 1000, 2)
    queries = rng.standard_normal((6, 24))
    exclude = [np.array([], dtype=np.int64), cols[:50], cols[::3], np.array([1, 3]), cols, cols[-5:]]
    exact = VectorIndex.build(cols, vectors, kind="exact").search(queries, 20, exclude)
    truth = queries @ vectors.T
    for q, (got, skip) in enumerate(zip(exact, exclude, strict=True)):
        allowed = ~np.isin(cols, skip)
        want = cols[allowed][np.argsort(-truth[q, allowed], kind="stable")[:20]]
        assert np.array_equal(got, want)
    hnsw = VectorIndex.build(cols, vectors, kind="hnsw", m=16, ef_search=128)
    # the same vectors again: the process's graph is handed out, not rebuilt; rebuilt, it is the same graph
    assert VectorIndex.build(cols + 1, vectors, kind="hnsw", m=16).graph is hnsw.graph
    assert VectorIndex.build(cols, vectors[::-1], kind="hnsw", m=16).graph is not hnsw.graph
    assert VectorIndex.build(cols, vectors, kind="hnsw", m=8).graph is not hnsw.graph
    vector_index._GRAPHS.clear()
    again = VectorIndex.build(cols, vectors, kind="hnsw", m=16, ef_search=128)
    assert again.graph is not hnsw.graph
    got = hnsw.search(queries, 20, exclude)
    assert all(np.array_equal(x, y) for x, y in zip(got, again.search(queries, 20, exclude), strict=True))
    for g, e, skip in zip(got, exact, exclude, strict=True):
        assert not np.isin(g, skip).any() and len(g) == len(e)
        assert len(np.intersect1d(g, e)) >= 0.9 * len(e)
    # the batch's filter = each row's own: the graph's answer to that row alone, excluded columns dropped, first k
    import faiss

    for q, (g, skip) in enumerate(zip(got, exclude, strict=True)):
        ask = min(len(cols), 20 + -(-len(skip) // vector_index.ASK_STEP) * vector_index.ASK_STEP)
        params = faiss.SearchParametersHNSW(efSearch=max(128, ask))
        _, raw = hnsw.graph.search(queries[q : q + 1].astype(np.float32), ask, params=params)
        own = cols[raw[0][raw[0] >= 0]]
        assert np.array_equal(g, own[~np.isin(own, skip)][:20])
    with pytest.raises(ValueError, match="ascending"):
        VectorIndex.build(cols[::-1], vectors, kind="exact")


def test_the_text_weight_is_chosen_among_the_candidates(synthetic, synthetic_embeddings) -> None:
    from recsys.evaluation import validation_split
    from recsys.ranker.selection import choose_text_weight

    split = split_temporal(synthetic.interactions)
    inner = validation_split(split.train, "temporal", seed=0)
    scale = ScaleConfig(dense_item_limit=0, neighbours=30)
    state = _build(inner.train, synthetic, synthetic_embeddings, scale=scale)
    cfg = PipelineConfig(text_weight=None, text_weight_grid=(0.0, 0.5, 2.0))
    # default candidate counts cover every item of this 200-item catalog: among the candidates = among all items
    lean = Candidates(state, CandidateConfig(), embeddings=synthetic_embeddings)
    assert lean.indexed is not None
    weight, info = choose_text_weight(cfg, lean, inner)
    dense_weight, dense_info = choose_text_weight(cfg, _dense(lean), inner)
    assert info["mode"] == "auto" and weight == dense_weight
    assert info["validation_ndcg@10"] == pytest.approx(dense_info["validation_ndcg@10"], abs=1e-9)
    assert len(set(info["validation_ndcg@10"].values())) > 1, info  # the weights rank differently


def test_the_text_weight_is_the_same_with_batches_in_threads(synthetic, synthetic_embeddings, monkeypatch) -> None:
    """Small batches (many of them) scored side by side give the choice and the table of one batch at a time."""
    from recsys.evaluation import validation_split
    from recsys.ranker import selection

    split = split_temporal(synthetic.interactions)
    inner = validation_split(split.train, "temporal", seed=0)
    state = _build(inner.train, synthetic, synthetic_embeddings, scale=ScaleConfig(dense_item_limit=0, neighbours=30))
    cfg = PipelineConfig(text_weight=None, text_weight_grid=(0.0, 0.5, 2.0))
    monkeypatch.setattr(selection, "user_batch", lambda n_items: 16)
    assert inner.test["user_id"].n_unique() > 3 * 16
    cands = Candidates(state, CandidateConfig(), embeddings=synthetic_embeddings)
    for c in (cands, _dense(cands)):  # the indexed path and the dense one
        assert selection.choose_text_weight(cfg, c, inner, threads=3) == selection.choose_text_weight(cfg, c, inner)


def test_hnsw_picks_of_a_user_do_not_depend_on_the_batch(synthetic, synthetic_embeddings) -> None:
    state = _state(synthetic, synthetic_embeddings, index="hnsw")
    cands = Candidates(state, CFG, embeddings=synthetic_embeddings, text_weight=0.5)
    by_history = sorted(state.user_ids, key=lambda u: (len(state.seen_items(u)), u))
    light, heavy = by_history[:12], by_history[-1]
    assert len(state.seen_items(heavy)) > 2 * len(state.seen_items(light[-1]))  # it raises the batch's search size
    together = cands.frame([*light, heavy]).filter(pl.col("user_id") != heavy)
    alone = pl.concat([cands.frame([u]) for u in light]).sort("user_id", "item_id")
    assert together.equals(alone)


@pytest.mark.parametrize("limit", [10_000, 0])
def test_the_pipelines_lists_come_from_candidate_frames_and_equal_dense_scoring(
    synthetic, synthetic_embeddings, limit
) -> None:
    """`RankingPipeline.recommend` (what an evaluation lists) ranks the candidate frames as the night's published lists
    do, and gives the lists of the dense scoring over every item, with the dense state and with the scalable one."""
    from recsys.baselines._base import Recommender
    from recsys.ranker import RankingPipeline

    split = split_temporal(synthetic.interactions)
    scale = ScaleConfig(dense_item_limit=limit, neighbours=30)
    pipe = RankingPipeline(synthetic_embeddings, seed=1, scale=scale).fit(
        split.train, candidates=synthetic.items["item_id"].to_list(), items=synthetic.items
    )
    assert pipe.state_.scalable == (limit == 0)
    users = [*split.test["user_id"].unique().sort().to_list(), "nobody"]
    lists = pipe.recommend(users, k=20, batch_size=7)
    recorded = pipe.last_candidates_
    assert lists.equals(pipe.model_.top_k(users, k=20))
    pipe.last_candidates_, pipe.recorded_users_ = None, 0
    dense = Recommender.recommend(pipe, users, k=20)
    assert lists.select("user_id", "item_id", "rank").equals(dense.select("user_id", "item_id", "rank"))
    np.testing.assert_allclose(lists["score"].to_numpy(), dense["score"].to_numpy(), rtol=0, atol=1e-12)
    assert recorded is not None and recorded.sort("user_id", "item_id").equals(
        pipe.last_candidates_.sort("user_id", "item_id")
    )
    # user batches side by side in threads (`[scale] batch_threads`; 0 = the cores) give the same rows and lists
    model = pipe.model_
    one = model.candidates.frame(users, batch_size=5, threads=1)
    assert one.height and one.equals(model.candidates.frame(users, batch_size=5, threads=3))
    assert one.equals(model.candidates.frame(users))  # the default batch size: the same rows
    assert lists.equals(model.top_k(users, k=20, batch_size=7, threads=1))
    assert lists.equals(model.top_k(users, k=20, batch_size=7, threads=3))
    pipe.last_candidates_, pipe.recorded_users_ = None, 0
    assert lists.equals(pipe.recommend(users, k=20, batch_size=7))
    assert pipe.last_candidates_ is not None and pipe.last_candidates_.equals(recorded)  # recorded in batch order
