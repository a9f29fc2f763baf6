"""The `fixed` protocol (the split shipped with the data) and `cold-items` (held-out items, ranked from text)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.baselines import Recommender
from recsys.data.dataset import Dataset
from recsys.data.report import ValidationReport
from recsys.evaluation import (
    cold_only_slice,
    evaluate,
    make_split,
    split_cold_items,
    split_fixed,
    user_metrics,
    validation_split,
)
from recsys.evaluation.render import markdown_report
from tests.conftest import make_events

T0 = datetime(2024, 1, 1)


def tiny_with_holdout() -> Dataset:
    ev = make_events(
        [
            ("a", "x", 1, 1.0),
            ("a", "y", 2, 1.0),  # a's valid
            ("a", "z", 3, 1.0),  # a's test
            ("b", "y", 1, 1.0),
            ("b", "x", 2, 1.0),  # b's valid
            ("b", "w", 3, 1.0),  # b's test
            ("c", "z", 1, 1.0),  # c ships no hold-out
        ]
    )
    holdout = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["y", "z", "x", "w"],
            "timestamp": [T0 + timedelta(days=d) for d in (2, 3, 2, 3)],
            "role": ["valid", "test", "valid", "test"],
        }
    )
    items = pl.DataFrame(
        {"item_id": ["w", "x", "y", "z"], "title": ["W", "X", "Y", "Z"], "genres": [["g"]] * 4},
        schema_overrides={"genres": pl.List(pl.String)},
    )
    return Dataset("tiny", ev, items, ValidationReport({}, {}), pl.DataFrame(), holdout=holdout)


def pairs(df: pl.DataFrame) -> list[tuple[str, str]]:
    return df.select("user_id", "item_id").rows()


def test_fixed_tests_on_the_shipped_events_and_validates_on_the_last_training_event() -> None:
    ds = tiny_with_holdout()
    split = make_split(ds.interactions, "fixed", holdout=ds.holdout)
    assert split.protocol == "fixed" and split.candidate_items == "catalog"
    assert pairs(split.test) == [("a", "z"), ("b", "w")]
    assert pairs(split.train) == [("a", "x"), ("a", "y"), ("b", "y"), ("b", "x"), ("c", "z")]  # valid events kept
    inner = validation_split(split.train, "fixed")
    assert inner.protocol == "fixed" and pairs(inner.test) == [("a", "y"), ("b", "x")]  # the shipped valid events
    assert pairs(inner.train) == [("a", "x"), ("b", "y"), ("c", "z")]


def test_fixed_without_a_shipped_holdout_is_a_clear_error() -> None:
    ds = tiny_with_holdout()
    msg = r"protocol 'fixed' needs a dataset that ships its test events \(e\.g\. amazon-scientific\)"
    with pytest.raises(ValueError, match=msg):
        make_split(ds.interactions, "fixed")
    with pytest.raises(ValueError, match=msg):
        evaluate(Dataset("none", ds.interactions, ds.items, ds.report, ds.quarantine), protocol="fixed")
    with pytest.raises(ValueError, match=r"1 of the holdout's 2 test events are not in the interactions"):
        split_fixed(ds.interactions.filter(pl.col("item_id") != "w"), ds.holdout)


def test_evaluate_on_the_fixed_split_judges_the_shipped_test_events() -> None:
    report = evaluate(tiny_with_holdout(), protocol="fixed", models=["toppop"], k=2)
    assert report.split_stats["n_test"] == 2 and report.split_stats["n_test_users"] == 2
    assert report.model("toppop").per_user["user_id"].to_list() == ["a", "b"]


def test_cold_items_holds_out_a_seeded_fifth_of_the_items_with_all_their_events(synthetic) -> None:
    ev = synthetic.interactions
    split = split_cold_items(ev, seed=42)
    n_items = ev["item_id"].n_unique()
    assert len(split.held_out_items) == split.stats["n_cold_items"] == round(0.2 * n_items)
    assert split.held_out_items == split_cold_items(ev, seed=42).held_out_items  # deterministic
    assert split.held_out_items != split_cold_items(ev, seed=7).held_out_items  # seed-sensitive
    assert len(split_cold_items(ev, seed=42, cold_fraction=0.1).held_out_items) == round(0.1 * n_items)
    cold = set(split.held_out_items)
    assert not cold & set(split.train["item_id"]) and set(split.test["item_id"]) <= cold
    assert set(split.test["user_id"]) <= set(split.train["user_id"])  # judged users have training history
    held = ev.filter(pl.col("item_id").is_in(list(cold)))
    assert split.train.height + held.height == ev.height and split.stats["n_cold_events"] == held.height
    assert split.stats["n_judged_users"] == split.test["user_id"].n_unique() > 0
    assert split.candidate_items == "catalog"
    assert make_split(ev, "cold-items", seed=42).held_out_items == split.held_out_items
    inner = validation_split(split.train, "cold-items")
    assert not set(inner.held_out_items) & cold and not set(inner.test["item_id"]) & set(inner.train["item_id"])


class GenreMatch(Recommender):
    """Items scored by how many of their genres the user has had in training: reaches items without events."""

    name: ClassVar[str] = "genre-match"
    scores_cold_items: ClassVar[bool] = True

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        assert items is not None
        genres = items.select("item_id", "genres").explode("genres").drop_nulls()
        vocab = {g: j for j, g in enumerate(genres["genres"].unique().sort().to_list())}
        coded = genres.filter(pl.col("item_id").is_in(list(self.item_index_)))
        rows = [self.item_index_[i] for i in coded["item_id"].to_list()]
        cols = [vocab[g] for g in coded["genres"].to_list()]
        self.item_genres_ = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.item_ids_), len(vocab)))
        self.user_genres_ = seen @ self.item_genres_

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.user_genres_[rows] @ self.item_genres_.T).todense())


def test_cold_only_slice_ranks_among_the_held_out_items(synthetic) -> None:
    report = evaluate(
        synthetic, protocol="cold-items", models=["toppop", "itemknn"], extra_models={"genre": GenreMatch}, k=10
    )
    n_cold = report.split_stats["n_cold_items"]
    for name in ("toppop", "itemknn"):  # collaborative: no held-out item has a training event
        sl = report.model(name).slices["cold_only"]
        assert sl["n_items"] == n_cold and sl["n_users"] == report.split_stats["n_test_users"]
        assert sl["ndcg@10"] == 0.0 and sl["recall@10"] == 0.0
    genre = report.model("genre")
    assert genre.slices["cold_only"]["ndcg@10"] > 0
    # fewer competitors (only held-out items) never lowers a hit: at least the full-catalog recall
    assert genre.slices["cold_only"]["recall@10"] >= genre.metrics["recall@10"]
    assert f"Ranked among the {n_cold} held-out items only" in markdown_report(report)


def test_cold_only_lists_hold_only_unseen_held_out_items(synthetic) -> None:
    split = split_cold_items(synthetic.interactions, seed=3)
    model = GenreMatch().fit(split.train, candidates=synthetic.items["item_id"].to_list(), items=synthetic.items)
    sl = cold_only_slice(model, split, (10,), batch_size=7)  # several batches
    users = split.test["user_id"].unique(maintain_order=True).to_list()
    scores = model.score(users)
    keep = np.isin(model.item_ids_.astype(str), list(split.held_out_items))
    scores[:, ~keep] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    recs = pl.DataFrame(
        {
            "user_id": np.repeat(users, 10).tolist(),
            "item_id": model.item_ids_[top].ravel().tolist(),
            "rank": np.tile(np.arange(1, 11, dtype=np.int32), len(users)),
        }
    )
    assert set(recs["item_id"]) <= set(split.held_out_items)
    expected = user_metrics(recs, split.test, ks=(10,))
    assert sl["ndcg@10"] == pytest.approx(float(expected["ndcg@10"].mean()))


def test_the_table_fits_an_80_column_terminal_without_truncating_numbers(synthetic) -> None:
    from rich.console import Console

    from recsys.evaluation.render import render_report

    report = evaluate(synthetic, protocol="leave-last-out", models=["toppop", "itemknn"], k=10, extra_ks=(50,))
    for width in (80, 200):
        console = Console(width=width, record=True, color_system=None)
        console.print(render_report(report, width=width))
        text = console.export_text()
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        for name in ("toppop", "itemknn"):  # every metric of every row is printed in full
            for metric, value in report.model(name).metrics.items():
                if metric in {"ndcg@10", "recall@50", "coverage@10", "mrr"}:
                    assert f"{value:.4f}" in text, (width, name, metric)
    narrow = Console(width=80, record=True, color_system=None)
    narrow.print(render_report(report, width=80))
    assert narrow.export_text().count("┃ model") >= 2  # split over several tables rather than squeezed
