from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from recsys.data import data_dir, generate_synthetic
from recsys.data.dataset import Dataset


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    return generate_synthetic(n_users=120, n_items=200, mean_events=25, seed=3)


@pytest.fixture(scope="session")
def synthetic_embeddings(synthetic: Dataset):
    """The synthetic items' texts embedded by the real pretrained MiniLM (200 short texts: ~1 s)."""
    from recsys.encoder import EncoderConfig, TextEncoder, build_item_text, embed_items

    return embed_items(build_item_text(synthetic.items), TextEncoder(EncoderConfig(precision="float32")))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The public datasets; in CI their absence is a failure, elsewhere a skip."""
    root = data_dir()
    if not (root / "ml-100k" / "u.data").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"real datasets missing at {root} (set RECSYS_DATA_DIR); CI must have them")
        pytest.skip(f"real datasets not found at {root}")
    return root


def make_events(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    """(user, item, day, rating) -> canonical interactions."""
    t0 = datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [t0 + timedelta(days=r[2]) for r in rows],
            "rating": [r[3] for r in rows],
        }
    )
