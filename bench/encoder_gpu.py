"""The encoder's CUDA path on a GPU machine: embedding texts/s, LoRA / AdaLoRA fine-tuning pairs/s, and agreement of
GPU (bf16) embeddings with CPU (fp32) ones. Writes JSON that `bench/encoder.py --gpu-json` merges.

Two steps, because the GPU machine has torch, transformers and peft but no data stack and no model hub:

    python bench/encoder_gpu.py prepare --dir .gpu       # here: MiniLM stored as fp16 (45 MB), synthetic texts/pairs
    python bench/encoder_gpu.py run --dir .gpu --out OUT/encoder_gpu.json   # there (imports no polars)

Texts and pairs come from the synthetic default dataset (our own data), so nothing licensed travels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def prepare(folder: Path) -> None:
    import shutil

    import torch

    from recsys.data.synthetic import generate_synthetic
    from recsys.encoder import PairConfig, build_item_text, build_pairs, default_model_path
    from recsys.encoder.model import load_base_model

    model_dir = folder / "minilm-fp16"
    shutil.rmtree(model_dir, ignore_errors=True)
    src = Path(default_model_path())
    load_base_model(src, torch.float16).save_pretrained(model_dir)
    for f in src.iterdir():
        if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("vocab.txt", "special_tokens_map.json")):
            shutil.copy(f, model_dir / f.name)
    ds = generate_synthetic(n_users=1500, n_items=4000, seed=7)
    item_text = build_item_text(ds.items)
    (folder / "texts.json").write_text(json.dumps(item_text["text"].to_list()))
    as_of = ds.interactions["timestamp"].max()
    pairs = build_pairs(
        ds.interactions, item_text, as_of=as_of, cfg=PairConfig(positive_threshold=None, max_pairs=26000)
    )
    dump = {
        name: {
            "queries": p.queries,
            "targets": p.targets,
            "query_keys": p.query_keys,
            "target_keys": p.target_keys,
        }
        for name, p in (("train", pairs.train), ("valid", pairs.valid))
    }
    (folder / "pairs.json").write_text(json.dumps(dump))
    print(f"prepared {folder}: {item_text.height} texts, {len(pairs.train)} train / {len(pairs.valid)} valid pairs")


def run(folder: Path, out: Path) -> None:
    import numpy as np
    import torch

    from recsys.encoder.finetune import FineTuneConfig, LoRAConfig, PairSet, fine_tune
    from recsys.encoder.model import EncoderConfig, TextEncoder

    result: dict[str, object] = {"available": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        out.write_text(json.dumps(result))
        sys.exit("no CUDA device")
    result["device"] = torch.cuda.get_device_name(0)
    result["torch"] = torch.__version__
    model_dir = folder / "minilm-fp16"
    texts = json.loads((folder / "texts.json").read_text())
    big = (texts * (20000 // len(texts) + 1))[:20000]

    gpu = TextEncoder(EncoderConfig(model_path=str(model_dir)))  # auto: CUDA, bf16
    result["dtype"] = str(gpu.dtype)
    gpu.encode(big[:2000], batch_size=256)  # warm-up
    speeds: dict[str, float] = {}
    for bs in (64, 256, 1024):
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            gpu.encode(big, batch_size=bs)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        speeds[str(bs)] = round(len(big) / statistics.median(times), 1)
    result["embedding_texts_per_second"] = {"texts": len(big), "by_batch_size": speeds}

    cpu = TextEncoder(EncoderConfig(model_path=str(model_dir), device="cpu", precision="float32"))
    ref = cpu.encode(texts[:2000])
    got = gpu.encode(texts[:2000])
    cos = (ref * got).sum(axis=1)
    result["gpu_bf16_vs_cpu_fp32_cosine"] = {"n": len(ref), "mean": float(cos.mean()), "min": float(cos.min())}

    pairs = json.loads((folder / "pairs.json").read_text())
    train = PairSet(**pairs["train"])
    valid = PairSet(**pairs["valid"])
    runs = {}
    for label, cfg in (
        ("lora_b64", FineTuneConfig(batch_size=64, max_steps=200, eval_every=100)),
        ("lora_b256", FineTuneConfig(batch_size=256, max_steps=100, eval_every=50)),
        ("adalora_b64", FineTuneConfig(batch_size=64, max_steps=100, eval_every=50, lora=LoRAConfig(method="adalora"))),
    ):
        res = fine_tune(
            train,
            valid,
            out=Path("/tmp") / f"adapter-{label}",
            encoder=EncoderConfig(model_path=str(model_dir)),
            cfg=cfg,
        )
        runs[label] = {
            "pairs_per_second": res.pairs_per_second,
            "steps": res.steps,
            "pairs_seen": res.pairs_seen,
            "train_seconds": res.train_seconds,
            "wall_seconds": res.wall_seconds,
            "val_loss": [res.initial_val_loss, res.best_val_loss],
            "dtype": res.dtype,
            "device": res.device,
        }
    result["fine_tune"] = runs
    tuned = TextEncoder(EncoderConfig(model_path=str(model_dir), adapter_path="/tmp/adapter-lora_b64"))
    v = tuned.encode(texts[:512])
    result["finetuned_embedding_ok"] = bool(np.isfinite(v).all() and abs(float(np.linalg.norm(v[0])) - 1) < 1e-3)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("prepare", "run"))
    ap.add_argument("--dir", type=Path, default=Path(".gpu"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/encoder_gpu.json"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.step == "prepare":
        prepare(args.dir)
    else:
        run(args.dir, args.out)


if __name__ == "__main__":
    main()
