"""The LoRA training loop on a tiny random BERT: learning, saving, reloading, warm start, budgets, AdaLoRA."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from recsys.encoder import EncoderConfig, FineTuneConfig, LoRAConfig, PairSet, TextEncoder, fine_tune
from recsys.encoder.adapter import read_adapter_meta
from recsys.encoder.model import model_digest

# Two "topics": every query of a topic should retrieve a target of the same topic.
TOPICS = {
    "space": ["star galaxy", "alien planet", "galaxy of star", "planet alien star"],
    "crime": ["detective murder", "murder clue", "the detective clue", "clue of murder"],
    "food": ["kitchen recipe", "chef recipe", "the chef kitchen", "recipe of chef"],
    "horror": ["ghost curse", "curse of ghost", "the ghost story", "a curse story"],
}


def make_pairs(n: int, seed: int) -> PairSet:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    queries, targets, qk, tk = [], [], [], []
    for _ in range(n):
        topic = names[rng.integers(len(names))]
        a, b = rng.choice(len(TOPICS[topic]), 2, replace=False)
        queries.append(TOPICS[topic][a])
        targets.append(TOPICS[topic][b])
        qk.append(f"{topic}{a}")
        tk.append(f"{topic}{b}")
    return PairSet(queries, targets, qk, tk)


def cfg(**kw: object) -> FineTuneConfig:
    base = {"batch_size": 8, "learning_rate": 5e-3, "eval_every": 10, "epochs": 3, "warmup_fraction": 0.0}
    return FineTuneConfig(**{**base, **kw})  # type: ignore[arg-type]


def enc(model: Path, **kw: object) -> EncoderConfig:
    return EncoderConfig(model_path=str(model), precision="float32", **kw)  # type: ignore[arg-type]


def test_training_lowers_validation_loss_and_saves_a_loadable_adapter(tiny_model: Path, tmp_path: Path) -> None:
    res = fine_tune(make_pairs(240, 0), make_pairs(48, 1), out=tmp_path / "adapter", encoder=enc(tiny_model), cfg=cfg())
    assert res.initial_val_loss is not None and res.best_val_loss is not None
    assert res.best_val_loss < res.initial_val_loss - 0.05
    assert res.steps > 0 and res.pairs_seen == res.steps * 8 and res.pairs_per_second > 0
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "recsys.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # no pickles
    meta = read_adapter_meta(tmp_path / "adapter")
    assert meta["base_model_path"] == str(tiny_model) and len(meta["base_model_digest"]) == 64
    assert meta["fine_tune"]["lora"]["r"] == 16 and meta["result"]["best_step"] == res.best_step

    base = TextEncoder(enc(tiny_model))
    tuned = TextEncoder(enc(tiny_model, adapter_path=str(tmp_path / "adapter"), adapter_scale=1.0))
    assert tuned.version != base.version  # the embedding cache keys on the adapter too
    texts = ["star galaxy", "alien planet", "ghost curse", "murder clue"]
    v = tuned.encode(texts)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v, base.encode(texts), atol=1e-4)
    same_topic, other_topic = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert same_topic > other_topic


def test_same_seed_gives_the_same_adapter(tiny_model: Path, tmp_path: Path) -> None:
    kw = {"encoder": enc(tiny_model), "cfg": cfg(epochs=1, eval_every=100), "seed": 5}
    fine_tune(make_pairs(64, 0), None, out=tmp_path / "a", **kw)  # type: ignore[arg-type]
    fine_tune(make_pairs(64, 0), None, out=tmp_path / "b", **kw)  # type: ignore[arg-type]
    fine_tune(make_pairs(64, 0), None, out=tmp_path / "c", **{**kw, "seed": 6})  # type: ignore[arg-type]
    a, b, c = (load_file(str(tmp_path / x / "adapter_model.safetensors")) for x in "abc")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_adapter_scale_interpolates_between_pretrained_and_fine_tuned_weights(tiny_model: Path, tmp_path: Path) -> None:
    fine_tune(make_pairs(240, 0), make_pairs(48, 1), out=tmp_path / "adapter", encoder=enc(tiny_model), cfg=cfg())
    adapter = str(tmp_path / "adapter")
    base = TextEncoder(enc(tiny_model))
    by_scale = {s: TextEncoder(enc(tiny_model, adapter_path=adapter, adapter_scale=s)) for s in (0.0, 0.5, 1.0)}
    state = {s: e.model.state_dict() for s, e in by_scale.items()}
    changed = [k for k in state[1.0] if not np.allclose(state[1.0][k], state[0.0][k])]
    assert changed  # the adapter changes some weights
    for k in base.model.state_dict():
        assert np.allclose(state[0.0][k], base.model.state_dict()[k])  # scale 0 = the pretrained weights
    for k in changed:  # scale 0.5 = the midpoint of the two weight sets
        assert np.allclose(state[0.5][k], (state[0.0][k] + state[1.0][k]) / 2, atol=1e-6)
    # each scale is its own embedding-cache key; 1.0 keeps the key it had before the option existed
    versions = {s: e.version for s, e in by_scale.items()}
    assert len(set(versions.values())) == 3
    before = hashlib.sha256(model_digest(tiny_model).encode())
    before.update(model_digest(Path(adapter)).encode())
    assert versions[1.0] == before.hexdigest()[:16]
    assert TextEncoder(enc(tiny_model, adapter_path=adapter)).version == versions[1.0]  # the default is 1
    with pytest.raises(ValueError):
        enc(tiny_model, adapter_path=adapter, adapter_scale=1.5)


def test_warm_start_continues_from_the_previous_adapter(tiny_model: Path, tmp_path: Path) -> None:
    train, valid = make_pairs(240, 0), make_pairs(48, 1)
    first = fine_tune(train, valid, out=tmp_path / "first", encoder=enc(tiny_model), cfg=cfg(epochs=2))
    second = fine_tune(
        train,
        valid,
        out=tmp_path / "second",
        encoder=enc(tiny_model),
        cfg=cfg(epochs=1),
        init_adapter=tmp_path / "first",
    )
    # Step 0 of the warm start is the first adapter: same validation loss, far below a cold start's.
    assert second.initial_val_loss == pytest.approx(first.best_val_loss, rel=1e-4)
    assert read_adapter_meta(tmp_path / "second")["warm_start_from"] == str(tmp_path / "first")


def test_an_adapter_refuses_a_different_base_model(tiny_model: Path, tmp_path: Path) -> None:
    fine_tune(make_pairs(32, 0), None, out=tmp_path / "adapter", encoder=enc(tiny_model), cfg=cfg(epochs=1))
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    config["layer_norm_eps"] = 1e-5
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="adapter was trained on base model"):
        TextEncoder(enc(other, adapter_path=str(tmp_path / "adapter")))
    with pytest.raises(FileNotFoundError, match="not a recsys LoRA adapter"):
        TextEncoder(enc(tiny_model, adapter_path=str(tmp_path)))


def test_time_budget_and_max_steps_bound_the_run(tiny_model: Path, tmp_path: Path) -> None:
    pairs = make_pairs(200, 0)
    timed = fine_tune(
        pairs, make_pairs(16, 1), out=tmp_path / "t", encoder=enc(tiny_model), cfg=cfg(), time_budget_s=0.0
    )
    assert timed.stopped == "time_budget" and timed.steps == 1
    assert timed.history[-1]["step"] == 1  # the steps before the budget ran out were validated, not dropped
    capped = fine_tune(pairs, None, out=tmp_path / "m", encoder=enc(tiny_model), cfg=cfg(max_steps=3))
    assert capped.steps == 3 and capped.stopped == "max_steps"


def test_early_stopping_keeps_the_best_weights(tiny_model: Path, tmp_path: Path) -> None:
    res = fine_tune(
        make_pairs(400, 0),
        make_pairs(32, 1),
        out=tmp_path / "a",
        encoder=enc(tiny_model),
        cfg=cfg(learning_rate=1e-9, eval_every=1, patience=2, min_delta=0.5),
    )
    assert res.stopped == "early_stopping" and res.steps == 2
    assert res.best_step == 0 and res.best_val_loss == res.initial_val_loss


def test_adalora_and_learned_temperature_train(tiny_model: Path, tmp_path: Path) -> None:
    res = fine_tune(
        make_pairs(240, 0),
        make_pairs(48, 1),
        out=tmp_path / "ada",
        encoder=enc(tiny_model),
        cfg=cfg(lora=LoRAConfig(method="adalora", r=8, adalora_target_r=4), learn_temperature=True),
    )
    assert res.steps == 90 and res.best_val_loss is not None and res.best_val_loss < res.initial_val_loss
    assert res.temperature != pytest.approx(0.05)
    assert json.loads((tmp_path / "ada" / "adapter_config.json").read_text())["peft_type"] == "ADALORA"
    v = TextEncoder(enc(tiny_model, adapter_path=str(tmp_path / "ada"))).encode(["star galaxy"])
    assert np.isfinite(v).all()


def test_hard_negatives_enter_the_loss(tiny_model: Path, tmp_path: Path) -> None:
    p = make_pairs(64, 0)
    with_hard = PairSet(p.queries, p.targets, p.query_keys, p.target_keys, ["ghost curse"] * len(p))
    res = fine_tune(with_hard, None, out=tmp_path / "h", encoder=enc(tiny_model), cfg=cfg(epochs=1))
    assert res.steps == 8


def test_bad_inputs_are_clear_errors(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 training pairs"):
        fine_tune(make_pairs(1, 0), None, out=tmp_path / "x", encoder=enc(tiny_model))
    with pytest.raises(ValueError, match="differ in length"):
        PairSet(["a"], ["b", "c"], ["a"], ["b"])
