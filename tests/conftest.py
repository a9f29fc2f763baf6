from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from recsys.config import public_data_dir
from recsys.data import generate_synthetic
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
    root = public_data_dir()
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


WORDS = [
    "star",
    "galaxy",
    "alien",
    "planet",
    "detective",
    "murder",
    "clue",
    "love",
    "wedding",
    "heart",
    "kitchen",
    "recipe",
    "chef",
    "ghost",
    "curse",
    "the",
    "a",
    "of",
    "and",
    "in",
    "is",
    "with",
    "story",
]


@pytest.fixture(scope="session")
def tiny_model_master(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT + WordPiece tokenizer, built locally once per run."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
        *"abcdefghijklmnopqrstuvwxyz.,():",
    ]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=True)
    assert tok("star galaxy")["input_ids"][1] > 4, "the tiny tokenizer must know its words"
    tok.save_pretrained(root)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(root)
    return root


@pytest.fixture
def tiny_model(tiny_model_master: Path, tmp_path: Path) -> Path:
    """A private copy per test, so a test may modify it."""
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_master, dst)
    return dst


def save_test_bundle(
    folder: Path, pipe, events: pl.DataFrame, dataset: Dataset, embeddings, *, extra: dict | None = None, **encoder
):
    """A trained RankingPipeline saved as a registry bundle (no adapter: pretrained embeddings)."""
    from recsys.encoder import EncoderConfig
    from recsys.encoder.text import ItemTextConfig
    from recsys.registry import save_bundle

    return save_bundle(
        folder,
        ranker=pipe.ranker_,
        embeddings=embeddings,
        adapter=None,
        events=events,
        items=dataset.items,
        encoder=EncoderConfig(**encoder),
        text=ItemTextConfig(),
        pipeline=pipe.resolved_cfg,  # the fitted choices (blend, text weight), as the nightly flow stores them
        protocol="temporal",
        state=pipe.state_,
        extra=extra,
    )
