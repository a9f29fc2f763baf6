"""The collaborative head (recsys.encoder.collab) and the text recommender's recency (positional decay and choice)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from recsys.encoder import InterestConfig, ItemEmbeddings, TextRecommender, user_interests
from recsys.encoder.collab import OBJECTIVES, CollabHead, HeadConfig, train_head
from recsys.encoder.stage import with_head
from tests.conftest import make_events

START = datetime(2024, 1, 1)


def _two_clusters(seed: int = 0) -> tuple[pl.DataFrame, ItemEmbeddings]:
    """Users engage with items in pairs (2k, 2k+1) whose texts are unrelated (random vectors): co-occurrence says
    the pair belongs together, the pretrained text space does not."""
    rng = np.random.default_rng(seed)
    n_items, dim = 20, 16
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"i{j}" for j in range(n_items)]
    rows = []
    for u in range(200):
        pair = int(rng.integers(0, n_items // 2))
        for step, j in enumerate((2 * pair, 2 * pair + 1)):
            rows.append((f"u{u}", ids[j], START + timedelta(seconds=step)))
    events = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").with_columns(
        pl.lit(1.0).alias("rating")
    )
    return events, ItemEmbeddings(ids, vectors, "random", n_items)


def _pair_cosine(vectors: np.ndarray) -> float:
    return float(np.mean([vectors[2 * k] @ vectors[2 * k + 1] for k in range(len(vectors) // 2)]))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_pulls_co_consumed_items_together(objective: str) -> None:
    events, emb = _two_clusters()
    cfg = HeadConfig(enabled=True, objective=objective, steps=60, learning_rate=0.02, identity_weight=0.0, ease_l2=1.0)
    head = train_head(events, emb.item_ids, emb.vectors, cfg, seed=1)
    after = head.apply(emb.vectors)
    assert head.result.steps == 60 and head.result.stopped == "completed"
    assert head.result.final_loss < head.result.initial_loss
    assert _pair_cosine(after) > _pair_cosine(emb.vectors) + 0.2
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)


def test_head_is_deterministic_and_round_trips(tmp_path) -> None:
    events, emb = _two_clusters()
    cfg = HeadConfig(enabled=True, objective="elsa", steps=10)
    a = train_head(events, emb.item_ids, emb.vectors, cfg, seed=3)
    b = train_head(events, emb.item_ids, emb.vectors, cfg, seed=3)
    assert np.array_equal(a.weight, b.weight)
    a.save(tmp_path / "head")
    back = CollabHead.load(tmp_path / "head")
    assert np.array_equal(back.weight, a.weight) and back.cfg == cfg and back.result == a.result
    mapped = with_head(emb, a)
    assert mapped.model_version.startswith("random+head-") and mapped.item_ids == emb.item_ids


def test_identity_weight_keeps_the_pretrained_space() -> None:
    events, emb = _two_clusters()
    free = train_head(events, emb.item_ids, emb.vectors, HeadConfig(steps=40, identity_weight=0.0), seed=0)
    held = train_head(events, emb.item_ids, emb.vectors, HeadConfig(steps=40, identity_weight=10.0), seed=0)
    eye = np.eye(emb.vectors.shape[1])
    assert np.abs(held.weight - eye).sum() < np.abs(free.weight - eye).sum()


VEC = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float32)
EMB = ItemEmbeddings(["a", "b", "c", "ab"], VEC, "test", 4)


def test_positional_recency_moves_the_profile_to_the_latest_item() -> None:
    events = make_events([("u", "a", 0, 1.0), ("u", "a2", 1, 1.0), ("u", "b", 2, 1.0)])
    events = events.filter(pl.col("item_id") != "a2")  # two events: a, then b
    as_of = datetime(2024, 2, 1)
    flat = user_interests(events, EMB, as_of=as_of, cfg=InterestConfig(half_life_days=None))
    recent = user_interests(events, EMB, as_of=as_of, cfg=InterestConfig(half_life_days=None, half_life_events=0.1))
    assert flat.profile[0][0] == pytest.approx(flat.profile[0][1])
    assert recent.profile[0][1] > 0.999  # b is the latest


def test_text_recommender_chooses_recency_on_the_inner_split() -> None:
    # Every user's next item is the text neighbour of their latest item, not of their first ones: the last-item
    # profile wins on the inner (leave-last-out) hold-out, and the choice is reported.
    rng = np.random.default_rng(0)
    dim, n = 8, 12
    vec = rng.normal(size=(n, dim)).astype(np.float32)
    vec[n // 2 :] = vec[: n // 2] + 0.05 * rng.normal(size=(n // 2, dim)).astype(np.float32)  # j+6 twins j
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = ItemEmbeddings([f"i{j}" for j in range(n)], vec, "twins", n)
    rows = []
    for u in range(60):
        first = rng.choice(n // 2, size=4, replace=False)
        seq = [*first[:3], first[3], first[3] + n // 2]  # ... then x, then x's twin
        seq2 = [*seq, (seq[-2] + 1) % (n // 2)]
        seq2.append(seq2[-1] + n // 2)
        rows += [(f"u{u}", f"i{j}", t, 1.0) for t, j in enumerate(seq2)]
    events = make_events(rows)
    model = TextRecommender(emb, InterestConfig(half_life_days=None), protocol="leave-last-out", seed=0)
    model.fit(events, candidates=emb.item_ids, items=pl.DataFrame({"item_id": emb.item_ids, "title": emb.item_ids}))
    choice = model.evaluation_extras(events)["recency_validation_ndcg"]
    assert set(choice) == {"None", "4.0", "1.0", "0.25"}
    chosen = model.cfg.half_life_events
    assert chosen is not None and choice[str(chosen)] == max(choice.values()) > choice["None"]
