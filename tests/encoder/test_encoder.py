from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.encoder import EncoderConfig, TextEncoder, build_item_text, embed_items

TEXTS = ["star galaxy alien", "the detective and the murder clue in the kitchen with a chef", "love", "ghost curse"]


def test_tiny_encoder_gives_unit_vectors_independent_of_batching(tiny_model: Path) -> None:
    enc = TextEncoder(EncoderConfig(model_path=str(tiny_model), device="cpu", precision="float32"))
    one_by_one = np.vstack([enc.encode([t]) for t in TEXTS])
    batched = enc.encode(TEXTS, batch_size=3)  # length-sorted batches with padding
    assert batched.shape == (4, 32)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batched, one_by_one, atol=1e-5)  # padding and reordering change nothing


def test_version_identifies_the_weights(tiny_model: Path) -> None:
    a = TextEncoder(EncoderConfig(model_path=str(tiny_model))).version
    weights = next(tiny_model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    assert TextEncoder(EncoderConfig(model_path=str(tiny_model))).version != a


def test_not_a_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        TextEncoder(EncoderConfig(model_path=str(tmp_path)))


def test_cache_embeds_only_new_or_changed_texts(tiny_model: Path, tmp_path: Path) -> None:
    enc = TextEncoder(EncoderConfig(model_path=str(tiny_model)))
    items = pl.DataFrame({"item_id": ["a", "b", "c"], "text": TEXTS[:3]})
    first = embed_items(items, enc, cache_dir=tmp_path / "cache")
    assert first.n_encoded == 3
    again = embed_items(items, enc, cache_dir=tmp_path / "cache")
    assert again.n_encoded == 0 and np.array_equal(again.vectors, first.vectors)
    changed = items.with_columns(
        pl.when(pl.col("item_id") == "b").then(pl.lit("ghost")).otherwise("text").alias("text")
    )
    third = embed_items(
        changed.vstack(pl.DataFrame({"item_id": ["d"], "text": ["ghost curse"]})), enc, cache_dir=tmp_path / "cache"
    )
    assert third.n_encoded == 2 and third.item_ids == ["a", "b", "c", "d"]
    assert np.array_equal(third.vectors[0], first.vectors[0])


def test_item_text_leaves_no_artefacts_for_missing_fields() -> None:
    items = pl.DataFrame(
        {
            "item_id": ["1", "2"],
            "title": ["Heat (1995)", "Plain"],
            "description": [None, " x "],
            "genres": [["Crime"], []],
            "tags": [[], None],
            "year": [1995, 2001],
        },
        schema_overrides={"tags": pl.List(pl.String), "year": pl.Int32},
    )
    texts = build_item_text(items)["text"].to_list()
    assert texts == ["Heat (1995). Genres: Crime", "Plain (2001). x"]
    assert not any(bad in t for t in texts for bad in ("None", "[]", "()", ": ."))


def test_pretrained_minilm_loads_offline_and_ranks_paraphrases_higher() -> None:
    enc = TextEncoder()  # bundled all-MiniLM-L6-v2, loaded from its package folder, no hub
    v = enc.encode(["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today."])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]


def test_bf16_precision_agrees_with_fp32(tiny_model: Path) -> None:
    """The fast CPU/GPU path (bf16) gives the same embeddings as fp32 within tolerance."""
    fp32 = TextEncoder(EncoderConfig(model_path=str(tiny_model), precision="float32"))
    bf16 = TextEncoder(EncoderConfig(model_path=str(tiny_model), precision="bfloat16"))
    assert str(fp32.dtype) == "torch.float32" and str(bf16.dtype) == "torch.bfloat16"
    cos = (fp32.encode(TEXTS) * bf16.encode(TEXTS)).sum(axis=1)
    assert cos.min() > 0.99


def test_cache_is_kept_apart_per_precision(tiny_model: Path, tmp_path: Path) -> None:
    items = pl.DataFrame({"item_id": ["a"], "text": TEXTS[:1]})
    for precision in ("float32", "bfloat16"):
        enc = TextEncoder(EncoderConfig(model_path=str(tiny_model), precision=precision))
        assert embed_items(items, enc, cache_dir=tmp_path).n_encoded == 1
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_loading_draws_no_transformers_bar_and_leaves_the_setting_alone(tiny_model: Path, capfd) -> None:
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    TextEncoder(EncoderConfig(model_path=str(tiny_model), precision="float32"))
    assert "Loading weights" not in capfd.readouterr().err  # the step's own bar covers the load
    assert hf_logging.is_progress_bar_enabled()  # switched off for the load only
