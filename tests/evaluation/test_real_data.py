"""Protocols on the real public datasets (read from RECSYS_DATA_DIR, never committed)."""

from __future__ import annotations

import pytest

from recsys.data import load_movielens_100k
from recsys.evaluation import evaluate

pytestmark = pytest.mark.realdata

# Microsoft Recommenders benchmark (examples/06_benchmarks/movielens.ipynb), ML-100k, stratified by item, 0.75, seed 42.
PUBLISHED_SAR = {"map": 0.114038, "ndcg@10": 0.393819, "precision@10": 0.340615, "recall@10": 0.185377}


def test_movielens_100k_loads_with_documented_counts(real_data_dir) -> None:
    ds = load_movielens_100k(real_data_dir / "ml-100k")
    assert ds.interactions.height == 100_000 and ds.items.height == 1682
    assert ds.interactions["user_id"].n_unique() == 943
    assert "Misérables, Les (1995)" in ds.items["title"].to_list()  # latin-1 decoded
    assert ds.report.n_quarantined == 0


def test_sar_reproduces_the_published_ms_recommenders_row(real_data_dir) -> None:
    report = evaluate(
        load_movielens_100k(real_data_dir / "ml-100k"),
        protocol="ms-stratified",
        models=["toppop", "sar"],
        k=10,
        seed=42,
    )
    assert report.split_stats["n_train"] == 75_066
    sar = report.model("sar").metrics
    for metric, published in PUBLISHED_SAR.items():
        assert sar[metric] == pytest.approx(published, abs=0.002), metric
    assert report.model("toppop").metrics["ndcg@10"] < sar["ndcg@10"]


def test_temporal_protocol_on_ml_latest_small_reports_cold_items(real_data_dir) -> None:
    from recsys.data import load_movielens_latest

    report = evaluate(
        load_movielens_latest(real_data_dir / "ml-latest-small"), protocol="temporal", models=["toppop", "sar"], k=10
    )
    cold = report.model("sar").slices["cold_items"]
    assert cold["n_events"] > 0 and cold["recall@10"] == 0.0  # collaborative models cannot reach cold items
    assert report.split_stats["n_test_users"] > 0
