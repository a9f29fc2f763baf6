"""Text encoder benchmark: text-only ranking quality of the pretrained vs the LoRA fine-tuned encoder, embedding
throughput against sentence-transformers, and fine-tuning throughput. Writes JSON and prints tables.

    python bench/encoder.py --out bench/results/encoder.json

Protocol: `temporal` (global cutoff at the 80% time quantile; candidates = the whole catalog; users without
training history are not judged), seed 42. Text-only recommendation ranks every candidate by the interest-match
score `im_profile` (cosine between the user's time-decayed, rating-weighted interest vector and the item text's
embedding); seen items are excluded. Fine-tuning reads only training events (before the cutoff), validates on the
last 10% of that window, and runs a fixed number of steps (`--max-steps`; a wall-time cap guards it). Metrics: nDCG@10
and Recall@50 with binary relevance (every test event is relevant), overall and on the cold-item slice (test events
on items without training events).

The `finetuned` row applies the adapter at the scale (WiSE-FT weight interpolation, `[encoder.model] adapter_scale`)
chosen on a validation split of the training window by the rule in `SELECTION_RULE`; `finetuned_unscaled` is the
same adapter at scale 1.

Embedding section: the same model and texts (all ML-100k+wiki item texts), our `TextEncoder.encode` vs
sentence-transformers' `SentenceTransformer.encode` (its defaults: batch 32, fp32, length-sorted), both truncating at
the same `max_length`; repeats alternate the order, medians are quoted, and the speedup is a ratio measured in the
same run. `--gpu-json` merges the numbers of `bench/encoder_gpu.py` run on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from recsys.config import public_data_dir
from recsys.data import load_dataset
from recsys.encoder import (
    EncoderConfig,
    FineTuneConfig,
    ItemEmbeddings,
    PairConfig,
    TextEncoder,
    TextRecommender,
    build_item_text,
    build_pairs,
    cpu_has_fast_bf16,
    embed_items,
    fine_tune,
)
from recsys.evaluation import evaluate
from recsys.evaluation.splits import make_split, validation_split
from recsys.progress import count_bar, training_bar

DATASETS = ("ml-100k+wiki", "ml-latest-small+tmdb")
SELECTION_RULE = (
    "among scales whose validation cold-item nDCG@10 and cold-item Recall@50 both reach the pretrained encoder's, "
    "the one with the best validation nDCG@10; if none qualifies, the one with the best cold-item Recall@50"
)


def _embed_all(item_text, encoder: TextEncoder, label: str, console: Console) -> tuple[ItemEmbeddings, float]:
    t0 = time.perf_counter()
    with count_bar(f"embed ({label})", item_text.height, console=console) as advance:
        emb = embed_items(item_text, encoder, progress=advance)
    return emb, time.perf_counter() - t0


def _row(report, name: str) -> dict[str, object]:
    m = report.model(name)
    cold = m.slices.get("cold_items", {})
    return {
        "ndcg@10": round(m.metrics["ndcg@10"], 6),
        "recall@50": round(m.metrics["recall@50"], 6),
        "recall@10": round(m.metrics["recall@10"], 6),
        "cold_items": {k: round(cold[k], 6) for k in ("ndcg@10", "recall@10", "recall@50") if k in cold}
        | {"n_users": cold.get("n_users", 0), "n_events": cold.get("n_events", 0)},
    }


def _tune(events, cutoff: datetime, item_text, out: Path, ft_cfg: FineTuneConfig, args, console: Console, label: str):
    """Pairs from `events` before `cutoff` and a fine-tuned adapter written to `out`: (pairs, result)."""
    pairs = build_pairs(events, item_text, as_of=cutoff, cfg=PairConfig(), seed=args.seed)
    with training_bar(label, console=console) as update:
        result = fine_tune(
            pairs.train,
            pairs.valid,
            out=out,
            cfg=ft_cfg,
            seed=args.seed,
            time_budget_s=args.time_budget,
            progress=update,
        )
    return pairs, result


def quality_run(name: str, args: argparse.Namespace, console: Console) -> dict[str, object]:
    ds = load_dataset(name, data_dir=public_data_dir())
    split = make_split(ds.interactions, "temporal")
    cutoff = datetime.fromisoformat(str(split.params["cutoff"]))
    item_text = build_item_text(ds.items)
    console.rule(f"{name}: temporal cutoff {cutoff}")
    pretrained, pre_s = _embed_all(item_text, TextEncoder(EncoderConfig()), "pretrained", console)
    ft_cfg = FineTuneConfig(logq_strength=args.logq_strength, max_steps=args.max_steps)

    selection = (
        select_scale(ds, split, item_text, pretrained, ft_cfg, args, console) if len(args.scale_grid) > 1 else None
    )
    scale = selection["chosen"] if selection else args.scale_grid[0]
    adapter = args.work / name / "adapter"
    pairs, result = _tune(split.train, cutoff, item_text, adapter, ft_cfg, args, console, f"fine-tune ({name})")
    console.print(f"pairs: {pairs.stats}")
    encoders = {"finetuned": scale} | ({"finetuned_unscaled": 1.0} if scale != 1.0 else {})
    embedded = {
        row: _embed_all(
            item_text,
            TextEncoder(EncoderConfig(adapter_path=str(adapter), adapter_scale=s)),
            f"fine-tuned, scale {s}",
            console,
        )
        for row, s in encoders.items()
    }
    report = evaluate(
        ds,
        protocol="temporal",
        models=("toppop",),
        extra_ks=(50,),
        seed=args.seed,
        extra_models={
            "pretrained": lambda: TextRecommender(pretrained),
            **{row: (lambda emb=emb: TextRecommender(emb)) for row, (emb, _) in embedded.items()},
        },
    )
    rows = {row: _row(report, row) for row in ("pretrained", *encoders)}
    comparisons = {
        metric: report.compare("pretrained", "finetuned", metric=metric).to_dict()
        for metric in ("ndcg@10", "recall@50")
    }
    return {
        "dataset": report.dataset,
        "protocol": {"name": "temporal", "params": split.params, "split": split.stats},
        "seed": args.seed,
        "rows": rows,
        "adapter_scale": scale,
        "reference_toppop": _row(report, "toppop"),
        "finetuned_minus_pretrained": comparisons,
        "pairs": pairs.stats,
        "scale_selection": selection,
        "fine_tune": {
            "config": ft_cfg.model_dump(),
            "time_budget_s": args.time_budget,
            **{k: v for k, v in result.to_dict().items() if k != "adapter_path"},
        },
        "embedding_seconds": {"pretrained": round(pre_s, 2), "items": item_text.height}
        | {row: round(sec, 2) for row, (_, sec) in embedded.items()},
    }


def select_scale(
    ds,
    split,
    item_text,
    pretrained: ItemEmbeddings,
    ft_cfg: FineTuneConfig,
    args: argparse.Namespace,
    console: Console,
) -> dict[str, object]:
    """Choose the adapter scale (WiSE-FT) on a validation split of the *training* window (never on test).

    The validation split is the later part of the training window (the same temporal protocol one level down); an
    adapter is fine-tuned on the part before it with the same settings and step count as the final one, and the
    catalog is embedded at each scale. The cold slice is the validation events on items with no events before the
    validation cutoff. Rule, fixed in advance: `SELECTION_RULE`.
    """
    inner = validation_split(split.train, "temporal", seed=args.seed)
    inner_cutoff = datetime.fromisoformat(str(inner.params["cutoff"]))
    models = {"pretrained": lambda: TextRecommender(pretrained)}
    out = args.work / ds.name / "select-adapter"
    _, result = _tune(inner.train, inner_cutoff, item_text, out, ft_cfg, args, console, "select: fine-tune")
    for scale in args.scale_grid:
        emb = embed_items(item_text, TextEncoder(EncoderConfig(adapter_path=str(out), adapter_scale=scale)))
        models[f"scale={scale}"] = lambda emb=emb: TextRecommender(emb)
    report = evaluate(
        ds, protocol="temporal", models=(), extra_ks=(50,), seed=args.seed, extra_models=models, split=inner
    )
    rows = {n: _row(report, n) for n in models}
    cold = {n: r["cold_items"] for n, r in rows.items()}
    grid = [f"scale={g}" for g in args.scale_grid]
    ok = [
        g for g in grid if all(cold[g].get(m, 0.0) >= cold["pretrained"].get(m, 0.0) for m in ("ndcg@10", "recall@50"))
    ]
    by_ndcg, by_cold = (lambda g: rows[g]["ndcg@10"]), (lambda g: cold[g].get("recall@50", 0.0))
    best = max(ok, key=by_ndcg) if ok else max(grid, key=by_cold)
    chosen = float(best.split("=")[1])
    console.print(f"adapter scale chosen on validation (cutoff {inner_cutoff}): {chosen}")
    for n, r in rows.items():
        console.print(f"  {n}: ndcg@10 {r['ndcg@10']:.4f} recall@50 {r['recall@50']:.4f} cold {r['cold_items']}")
    return {
        "rule": SELECTION_RULE,
        "validation_protocol": {"params": inner.params, "split": inner.stats},
        "validation_fine_tune": {k: v for k, v in result.to_dict().items() if k != "adapter_path"},
        "validation_rows": rows,
        "qualified": [float(g.split("=")[1]) for g in ok],
        "chosen": chosen,
    }


def embedding_run(args: argparse.Namespace, console: Console) -> dict[str, object]:
    """Our encode vs sentence-transformers' encode on the same model and texts; quality of both as text-only recs."""
    import torch
    from sentence_transformers import SentenceTransformer

    ds = load_dataset(DATASETS[0], data_dir=public_data_dir())
    item_text = build_item_text(ds.items)
    texts = item_text["text"].to_list()
    ours = TextEncoder(EncoderConfig())
    ours_fp32 = TextEncoder(EncoderConfig(precision="float32"))
    st = SentenceTransformer(str(ours.path), device="cpu")
    st.max_seq_length = ours.cfg.max_length
    runs: dict[str, list[float]] = {"sentence_transformers": [], "ours": [], "ours_fp32": []}
    vectors: dict[str, np.ndarray] = {}
    fns = {
        "sentence_transformers": lambda: st.encode(texts, batch_size=32, normalize_embeddings=True),
        "ours": lambda: ours.encode(texts),
        "ours_fp32": lambda: ours_fp32.encode(texts),
    }
    order = list(fns)
    with count_bar("embedding speed (repeats)", args.repeats * len(order), console=console) as advance:
        for rep in range(args.repeats):
            for key in order if rep % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                vectors[key] = np.asarray(fns[key](), dtype=np.float32)
                runs[key].append(time.perf_counter() - t0)
                advance(1)
    med = {k: statistics.median(v) for k, v in runs.items()}
    cos = (vectors["ours"] * vectors["sentence_transformers"]).sum(axis=1)
    cos32 = (vectors["ours_fp32"] * vectors["sentence_transformers"]).sum(axis=1)

    def as_embeddings(key: str) -> ItemEmbeddings:
        return ItemEmbeddings(item_text["item_id"].to_list(), vectors[key], key, len(texts))

    report = evaluate(
        ds,
        protocol="temporal",
        models=(),
        seed=args.seed,
        extra_models={
            "sentence_transformers": lambda: TextRecommender(as_embeddings("sentence_transformers")),
            "ours": lambda: TextRecommender(as_embeddings("ours")),
        },
    )
    nd = {k: report.model(k).metrics["ndcg@10"] for k in ("sentence_transformers", "ours")}
    return {
        "dataset": ds.name,
        "texts": len(texts),
        "max_length": ours.cfg.max_length,
        "ours": {
            "dtype": str(ours.dtype),
            "batch_size": ours.cfg.batch_size,
            "batching": "tokenise once, sort by length",
        },
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "torch_threads": torch.get_num_threads(),
        "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        "texts_per_second_median": {k: round(len(texts) / v, 1) for k, v in med.items()},
        "speedup": round(med["sentence_transformers"] / med["ours"], 3),
        "speedup_fp32_batching_only": round(med["sentence_transformers"] / med["ours_fp32"], 3),
        "cosine_vs_sentence_transformers": {"mean": float(cos.mean()), "min": float(cos.min())},
        "cosine_fp32_vs_sentence_transformers": {"mean": float(cos32.mean()), "min": float(cos32.min())},
        "text_only_ndcg@10": {k: round(v, 6) for k, v in nd.items()},
        "text_only_ndcg@10_abs_diff": round(abs(nd["ours"] - nd["sentence_transformers"]), 6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/encoder.json"))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument(
        "--max-steps",
        type=int,
        default=120,
        help="fine-tuning steps (the same for the validation and the final adapter, so the scale chosen on one "
        "transfers to the other; a step count, unlike a time budget, does not depend on machine load)",
    )
    ap.add_argument("--time-budget", type=float, default=900.0, help="wall-seconds cap per fine-tuning run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("results/bench-encoder"))
    ap.add_argument("--gpu-json", type=Path, help="output of bench/encoder_gpu.py from a GPU machine, merged in")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--logq-strength", type=float, default=1.0, help="[encoder.fine_tune] logq_strength")
    ap.add_argument(
        "--scale-grid",
        default="0.1,0.25,0.5,0.75,1.0",
        help="adapter scales (WiSE-FT) to choose among on a validation split of the training window "
        "(one value: no selection)",
    )
    args = ap.parse_args()
    args.scale_grid = [float(x) for x in args.scale_grid.split(",")]
    console = Console(width=160)
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    out: dict[str, object] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "datasets": {},
    }
    if not args.skip_quality:
        for name in args.datasets.split(","):
            out["datasets"][name] = quality_run(name, args, console)  # type: ignore[index]
    out["embedding"] = embedding_run(args, console)
    out["gpu"] = (
        json.loads(args.gpu_json.read_text())
        if args.gpu_json and args.gpu_json.is_file()
        else {"available": False, "note": "no GPU in this run; see bench/encoder_gpu.py"}
    )
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print_tables(out, console)
    console.print(f"wrote {args.out}")


def print_tables(out: dict, console: Console) -> None:
    for name, run in out["datasets"].items():
        t = Table(title=f"{name} (temporal, text-only ranking by interest match)")
        for col in ("encoder", "nDCG@10", "Recall@50", "cold nDCG@10", "cold Recall@50"):
            t.add_column(col)
        for row_name, row in run["rows"].items():
            cold = row["cold_items"]
            t.add_row(
                row_name,
                f"{row['ndcg@10']:.4f}",
                f"{row['recall@50']:.4f}",
                f"{cold.get('ndcg@10', 0):.4f}",
                f"{cold.get('recall@50', 0):.4f}",
            )
        console.print(t)
        sel = run.get("scale_selection") or {}
        console.print(f"  adapter scale {run.get('adapter_scale')} (qualified on validation: {sel.get('qualified')})")
        ft = run["fine_tune"]
        console.print(
            f"  fine-tune: {ft['pairs_seen']} pairs in {ft['train_seconds']} s ({ft['pairs_per_second']} pairs/s), "
            f"wall {ft['wall_seconds']} s, stopped: {ft['stopped']}, best step {ft['best_step']}, "
            f"val loss {ft['initial_val_loss']:.3f} -> {ft['best_val_loss']:.3f}"
        )
    e = out["embedding"]
    t = Table(title=f"embedding {e['texts']} texts ({e['dataset']}), median of repeats")
    for col in ("encoder", "texts/s"):
        t.add_column(col)
    for k, v in e["texts_per_second_median"].items():
        t.add_row(k, f"{v:,.1f}")
    console.print(t)
    console.print(
        f"  speedup {e['speedup']}x (fp32 batching only: {e['speedup_fp32_batching_only']}x); cosine mean "
        f"{e['cosine_vs_sentence_transformers']['mean']:.6f} min {e['cosine_vs_sentence_transformers']['min']:.6f}; "
        f"text-only nDCG@10 {e['text_only_ndcg@10']} (|diff| {e['text_only_ndcg@10_abs_diff']})"
    )


if __name__ == "__main__":
    main()
