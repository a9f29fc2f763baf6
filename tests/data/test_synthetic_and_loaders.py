from __future__ import annotations

import hashlib

import polars as pl
import pytest

from recsys.data import dataset as dataset_module
from recsys.data import fingerprint_frames, generate_synthetic, load_movielens_100k, load_movielens_latest


def test_synthetic_is_deterministic_and_seed_dependent() -> None:
    a = generate_synthetic(n_users=50, n_items=80, seed=11)
    b = generate_synthetic(n_users=50, n_items=80, seed=11)
    c = generate_synthetic(n_users=50, n_items=80, seed=12)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_the_fingerprint_hashed_in_slices_is_the_whole_columns_text(monkeypatch) -> None:
    """Slices of 2 rows give the digest of each column joined whole (so digests recorded before stay valid)."""
    frame = pl.DataFrame(
        {"a": ["x", None, "z", "w", "v"], "b": [["p", "q"], None, [], ["r"], ["s", "t"]], "c": [1.5, 2, 3, 4, 5]}
    )
    h = hashlib.sha256()
    h.update(b"5x3")
    for name in frame.columns:
        col = frame[name].list.join("|") if isinstance(frame[name].dtype, pl.List) else frame[name]
        h.update(name.encode())
        h.update("\x1f".join(col.cast(pl.String).fill_null("\x00").to_list()).encode())
    whole = fingerprint_frames(frame)
    monkeypatch.setattr(dataset_module, "FINGERPRINT_ROWS", 2)
    assert fingerprint_frames(frame) == whole == h.hexdigest()
    assert fingerprint_frames(frame.head(4)) != whole


def test_synthetic_text_reflects_topics_and_has_no_artefacts(synthetic) -> None:
    row = synthetic.items.row(0, named=True)
    assert row["genres"] and row["description"] and "None" not in row["description"]
    assert synthetic.interactions["rating"].is_between(1, 5).all()


@pytest.mark.realdata
def test_wiki_and_tmdb_text_joins(real_data_dir) -> None:
    ml = load_movielens_100k(real_data_dir / "ml-100k", with_wiki=True)
    assert ml.items["description"].is_not_null().sum() > 1400  # 1,529 titles in the summaries file
    latest = load_movielens_latest(real_data_dir / "ml-latest-small", with_tmdb=True)
    assert latest.interactions.height == 100_836 and latest.items.height == 9742
    assert latest.items["description"].is_not_null().sum() == 3537  # links.tmdbId joins (README of the data)
    toy = latest.items.filter(latest.items["item_id"] == "1").row(0, named=True)
    assert toy["genres"][:2] == ["Adventure", "Animation"] and "pixar" in toy["tags"]
