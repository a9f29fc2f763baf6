from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
