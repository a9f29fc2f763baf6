"""A published model that does not load never takes the service down: the last good lists and model keep serving,
readiness follows the lists, the model's health is reported beside it, and the load is retried until it works."""

from __future__ import annotations

import shutil
import time

import polars as pl

from recsys.serving import RankingService, ServingConfig
from recsys.serving.store import SQLiteSnapshotStore
from tests.serving.test_app import TOKEN, Server, create_app


def _broken_copy(published, tmp_path):
    """The published ranking model copied and damaged (its LightGBM file removed)."""
    source = published["store"].current().meta["model"]
    broken = tmp_path / "broken-model"
    shutil.copytree(source, broken)
    shutil.rmtree(broken / "ranker")
    return source, broken


def _publish(store, published, version: str, model_folder) -> str:
    info = store.publish(
        published["lists"],
        model_version=version,
        fallback=pl.DataFrame({"item_id": ["i0001"], "score": [1.0]}),
        meta={"model": str(model_folder)},
    )
    return info.snapshot_id


def test_a_broken_model_keeps_the_last_good_one_serving_until_repaired(published, tmp_path):
    good, broken = _broken_copy(published, tmp_path)
    store = SQLiteSnapshotStore(tmp_path / "serving.db", retention=5)
    first = _publish(store, published, "recsys/1", good)
    service = RankingService(store, ServingConfig(admin_token=TOKEN, reload_interval_s=0.1, max_k=50))
    user = published["lists"]["user_id"][0]
    candidates = published["lists"].filter(pl.col("user_id") == user)["item_id"].head(5).to_list()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with Server(create_app(service)) as http:
        assert http.get("/readyz").json()["model"] == "ok"
        second = _publish(store, published, "recsys/2", broken)  # a night publishes a damaged model
        time.sleep(1.0)  # several reload polls
        # still the last good snapshot and model: lists and re-ranking answer, readiness holds
        body = http.get(f"/v1/users/{user}/recommendations").json()
        assert body["snapshot_id"] == first and body["model_version"] == "recsys/1"
        assert http.post("/v1/rank", json={"user_id": user, "candidates": candidates}).status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"] == "ok"
        assert second in ready.json()["last_error"] and "attempt" in ready.json()["last_error"]
        assert service.failures[second][0] >= 2  # retried, with backoff
        # repaired in place: the next forced reload (the admin endpoint) picks it up and clears the error
        shutil.rmtree(broken)
        shutil.copytree(good, broken)
        again = http.post("/admin/reload", headers=auth).json()
        assert again["reloaded"] is True, (again, http.get("/readyz").json())
        ready = http.get("/readyz").json()
        assert ready["snapshot_id"] == second and ready["model"] == "ok" and ready["last_error"] is None
        assert http.get(f"/v1/users/{user}/recommendations").json()["model_version"] == "recsys/2"


def test_with_nothing_better_the_lists_serve_and_the_model_is_reported_down(published, tmp_path):
    _, broken = _broken_copy(published, tmp_path)
    store = SQLiteSnapshotStore(tmp_path / "serving.db", retention=5)
    _publish(store, published, "recsys/3", broken)
    service = RankingService(store, ServingConfig(admin_token=TOKEN, reload_interval_s=0.1, max_k=50))
    user = published["lists"]["user_id"][0]
    with Server(create_app(service)) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"].startswith("not loaded:")
        assert http.get(f"/v1/users/{user}/recommendations").status_code == 200
        assert http.post("/v1/rank", json={"user_id": user, "candidates": ["i0001"]}).status_code == 503
        assert "recsys_model_loaded 0.0" in http.get("/metrics").text
