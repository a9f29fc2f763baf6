from __future__ import annotations

from datetime import datetime

import polars as pl

from recsys.encoder import PairConfig, build_pairs
from tests.conftest import make_events

TEXT = pl.DataFrame({"item_id": [f"i{k}" for k in range(8)], "text": [f"text {k}" for k in range(8)]})


def test_pairs_follow_time_and_ignore_everything_after_the_cutoff() -> None:
    events = make_events(
        [
            ("u", "i0", 0, 5.0),
            ("u", "i1", 1, 4.0),
            ("u", "i2", 2, 1.0),  # disliked: not a positive
            ("u", "i3", 3, 5.0),
            ("u", "i4", 40, 5.0),  # after the cutoff: must not appear anywhere
        ]
    )
    as_of = datetime(2024, 1, 10)
    cfg = PairConfig(validation_fraction=0.0, hard_negatives=True, history_size=1)
    pairs = build_pairs(events, TEXT, as_of=as_of, cfg=cfg)
    train = pairs.train
    assert list(zip(train.query_keys, train.target_keys, strict=True)) == [("i0", "i1"), ("i1", "i3")]
    assert train.negatives == ["text 2", "text 2"]  # the disliked item of the same user
    everything = train.queries + train.targets + [n for n in train.negatives if n]
    assert "text 4" not in everything
    assert pairs.stats["positives"] == 3 and pairs.stats["events_before_cutoff"] == 4


def test_history_queries_join_recent_texts_most_recent_first() -> None:
    events = make_events([("u", f"i{k}", k, 5.0) for k in range(4)])
    cfg = PairConfig(query="history", history_size=2, validation_fraction=0.0)
    pairs = build_pairs(events, TEXT, as_of=datetime(2025, 1, 1), cfg=cfg)
    assert pairs.train.queries[-1] == "text 2 | text 1"
    assert pairs.train.query_keys[-1] == "i2|i1"
    assert pairs.train.targets[-1] == "text 3"


def test_validation_pairs_are_later_than_training_pairs_and_caps_apply() -> None:
    rows = [(f"u{u}", f"i{(u + d) % 8}", d, 5.0) for u in range(5) for d in range(30)]
    events = make_events(rows)
    pairs = build_pairs(
        events, TEXT, as_of=datetime(2025, 1, 1), cfg=PairConfig(validation_fraction=0.2, max_pairs_per_user=20)
    )
    assert len(pairs.train) > 0 and len(pairs.valid) > 0
    assert len(pairs.train) + len(pairs.valid) == 5 * 20  # each user's 20 most recent targets
    cutoff = datetime.fromisoformat(str(pairs.stats["validation_cutoff"]))
    assert cutoff > datetime(2024, 1, 1)
    capped = build_pairs(events, TEXT, as_of=datetime(2025, 1, 1), cfg=PairConfig(max_pairs=10))
    assert len(capped.train) == 10


def test_same_seed_same_pairs() -> None:
    rows = [(f"u{u}", f"i{(u * 3 + d) % 8}", d, 5.0) for u in range(6) for d in range(12)]
    events = make_events(rows)
    a = build_pairs(events, TEXT, as_of=datetime(2025, 1, 1), seed=3)
    b = build_pairs(events, TEXT, as_of=datetime(2025, 1, 1), seed=3)
    assert a.train == b.train and a.valid == b.valid


def test_auto_threshold_is_decided_by_the_events() -> None:
    rated = make_events([("u", "i0", 0, 5.0), ("u", "i1", 1, 2.0), ("u", "i2", 2, 4.0), ("u", "i3", 3, 1.0)])
    cfg = PairConfig(validation_fraction=0.0)
    explicit = build_pairs(rated, TEXT, as_of=datetime(2025, 1, 1), cfg=cfg)
    assert explicit.stats["positive_threshold"] == 4.0 and explicit.stats["positives"] == 2  # 0.8 x 5
    clicks = rated.drop("rating")  # implicit: no rating column, every event is a positive
    implicit = build_pairs(clicks, TEXT, as_of=datetime(2025, 1, 1), cfg=cfg)
    assert implicit.stats["positive_threshold"] is None and len(implicit.train) == 3
    typed = rated.with_columns(event_type=pl.lit("view"))  # an event log: weights are not a rating scale
    assert build_pairs(typed, TEXT, as_of=datetime(2025, 1, 1), cfg=cfg).stats["positives"] == 4
    given = build_pairs(rated, TEXT, as_of=datetime(2025, 1, 1), cfg=PairConfig(positive_threshold=2))
    assert given.stats["positives"] == 3  # a number is kept as it is
