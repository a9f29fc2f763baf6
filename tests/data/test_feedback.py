from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys.data import (
    DataValidationError,
    Feedback,
    ValidationPolicy,
    generate_synthetic,
    infer_feedback,
    load_dataset,
    load_files,
)
from recsys.data.dataset import after_last_event
from recsys.data.feedback import resolve_threshold
from recsys.encoder import PairConfig, build_item_text, build_pairs

ITEMS = "item_id,title\nA,Alpha\nB,Beta\nC,Gamma\n"


def write(tmp_path: Path, events: str, items: str = ITEMS) -> tuple[Path, Path]:
    e, i = tmp_path / "events.csv", tmp_path / "items.csv"
    e.write_text(events)
    i.write_text(items)
    return e, i


def test_a_log_without_ratings_is_implicit_and_gives_training_pairs(tmp_path: Path) -> None:
    rows = "".join(f"u{u},{'ABC'[(u + d) % 3]},{1700000000 + 100 * d}\n" for u in range(4) for d in range(3))
    ds = load_files(*write(tmp_path, "user_id,item_id,timestamp\n" + rows))
    assert ds.feedback == Feedback("implicit", None, "no rating column; every event is a positive")
    assert ds.summary()["feedback"]["kind"] == "implicit"
    pairs = build_pairs(ds.interactions, build_item_text(ds.items), as_of=after_last_event(ds.interactions))
    # Every event is a positive: each user's 2nd and 3rd events are targets (a 4.0 threshold found none).
    assert pairs.stats["positives"] == 12 and len(pairs.train) + len(pairs.valid) == 8
    assert pairs.stats["positive_threshold"] is None


def test_explicit_ratings_resolve_to_four_on_movielens_scales(tmp_path: Path) -> None:
    ds = load_files(*write(tmp_path, "user_id,item_id,timestamp,rating\nu,A,1700000000,1\nu,B,1700000100,5\n"))
    assert ds.feedback.kind == "explicit" and ds.feedback.positive_threshold == 4.0
    assert "0.8 x the highest rating" in ds.feedback.reason
    half_stars = pl.DataFrame({"rating": [0.5, 3.5, 5.0]})
    assert infer_feedback(half_stars).positive_threshold == 4.0  # ml-latest's 0.5-5 scale
    assert generate_synthetic(n_users=30, n_items=40, seed=1).feedback.positive_threshold == 4.0


def test_spec_threshold_and_event_weights(tmp_path: Path) -> None:
    events = "cust,sku,when,kind\na,A,1700000000,view\na,B,1700000100,purchase\nb,A,1700000200,cart\n"
    write(tmp_path, events)
    spec = tmp_path / "shop.toml"
    spec.write_text(
        'interactions = "events.csv"\nitems = "items.csv"\npositive_threshold = 3\n'
        '[columns]\nuser_id = "cust"\nitem_id = "sku"\ntimestamp = "when"\nevent_type = "kind"\n'
        "[event_weights]\nview = 1\ncart = 3\npurchase = 5\n"
    )
    ds = load_dataset(str(spec))
    assert ds.interactions["rating"].to_list() == [1.0, 5.0, 3.0]  # each event's weight
    assert ds.feedback.kind == "implicit" and ds.feedback.positive_threshold == 3.0
    assert "event weights (view=1, cart=3, purchase=5)" in ds.feedback.reason
    # Without a threshold every event is a positive.
    spec.write_text(spec.read_text().replace("positive_threshold = 3\n", ""))
    assert load_dataset(str(spec)).feedback.positive_threshold is None


def test_unknown_event_type_errors_naming_file_row_and_type_then_quarantines(tmp_path: Path) -> None:
    e, i = write(tmp_path, "user_id,item_id,timestamp,event_type\nu,A,1700000000,view\nu,B,1700000100,share\n")
    weights = {"view": 1.0, "purchase": 5.0}
    with pytest.raises(DataValidationError, match=r"events\.csv: 1 row\(s\) .*'share'.*'event_type', first at row 2"):
        load_files(e, i, event_weights=weights)
    ds = load_files(e, i, event_weights=weights, policy=ValidationPolicy(on_unknown_event_type="drop"))
    assert ds.interactions.height == 1 and ds.quarantine["reason"].to_list() == ["unknown_event_type"]
    with pytest.raises(DataValidationError, match="event_weights need an 'event_type' column"):
        load_files(*write(tmp_path, "user_id,item_id,timestamp\nu,A,1700000000\n"), event_weights=weights)


def test_explicit_spec_threshold_is_kept(tmp_path: Path) -> None:
    e, i = write(tmp_path, "user_id,item_id,timestamp,rating\nu,A,1700000000,1\nu,B,1700000100,10\n")
    assert load_files(e, i).feedback.positive_threshold == 8.0  # a 1-10 scale
    fb = load_files(e, i, positive_threshold=7).feedback
    assert fb == Feedback("explicit", 7.0, fb.reason) and "positive_threshold of the dataset spec" in fb.reason


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (pl.DataFrame({"user_id": ["u"]}), None),  # no rating column
        (pl.DataFrame({"rating": [1.0, 1.0]}), None),  # a constant rating: not a scale
        (pl.DataFrame({"rating": [1.0, 5.0], "event_type": ["view", "buy"]}), None),  # an event log
        (pl.DataFrame({"rating": [1, 2, 5]}), 4.0),
    ],
)
def test_auto_falls_back_to_the_frame(frame: pl.DataFrame, expected: float | None) -> None:
    assert resolve_threshold("auto", frame) == expected
    assert resolve_threshold(2.5, frame) == 2.5 and resolve_threshold(None, frame) is None
    assert PairConfig().positive_threshold == "auto"
