"""How much the full pipeline's ranking moves with the ranker's seed, measured on validation data only.

The outer split's training part is split once more by the same protocol (`validation_split`): the pipeline is fitted
on that inner training part and judged on the inner hold-out, once per ranker seed (LightGBM's bagging, feature
sampling and early-stopping users; the encoder stage and its seed stay fixed). The outer test data is never read.
Writes JSON and prints a table: nDCG@10 per seed, LightGBM's early-stopping iteration, the prior choice, and the
spread (max - min) beside the no-text ablation's, fitted with the same seeds.

    python bench/ranker_stability.py --dataset amazon-scientific --protocol fixed --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.config import public_data_dir
from recsys.data import load_dataset
from recsys.data import schema as S
from recsys.encoder import EncoderStageConfig, TextEmbedder
from recsys.evaluation.metrics import mean_or_zero, user_metrics
from recsys.evaluation.runner import environment_info
from recsys.evaluation.splits import make_split, validation_split
from recsys.ranker import RankingPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--protocol", default="fixed")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--encoder-seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ranker-stability.json"))
    args = ap.parse_args()
    console = Console(width=160)
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset(args.dataset, data_dir=public_data_dir())
    outer = make_split(ds.interactions, args.protocol, seed=args.encoder_seed, holdout=ds.holdout)
    val = validation_split(outer.train, args.protocol, seed=args.encoder_seed)  # the test data is not used below
    items = ds.items
    catalog = items[S.ITEM_ID].to_list()
    users = val.test[S.USER_ID].unique(maintain_order=True).to_list()
    embedder = TextEmbedder(
        EncoderStageConfig(),
        work_dir=Path("results/bench-stability"),
        seed=args.encoder_seed,
        cache_dir=Path("results/embeddings"),
    )
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for seed in seeds:
        for name, use_text in (("pipeline", True), ("pipeline-no-text", False)):
            t = time.perf_counter()
            pipe = RankingPipeline(embedder, protocol=args.protocol, use_text=use_text, seed=seed)  # type: ignore[arg-type]
            pipe.fit(val.train, candidates=catalog, items=items)
            ndcg = mean_or_zero(user_metrics(pipe.recommend(users, k=10), val.test, ks=(10,))["ndcg@10"])
            prior = pipe.label_stats_.get("ranker_prior", {})
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "ndcg@10": ndcg,
                    "best_iteration": pipe.ranker_.best_iteration,
                    "ranker_validation_ndcg": pipe.ranker_.validation_ndcg,
                    "prior_chosen": prior.get("chosen") if isinstance(prior, dict) else None,
                    "seconds": round(time.perf_counter() - t, 1),
                }
            )
            console.log(f"{name} seed {seed}: ndcg@10 {ndcg:.4f}, best iteration {pipe.ranker_.best_iteration}")
    summary = {}
    for name in ("pipeline", "pipeline-no-text"):
        values = [r["ndcg@10"] for r in rows if r["model"] == name]
        summary[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "spread": max(values) - min(values),
        }
    lifts = [
        p["ndcg@10"] / n["ndcg@10"]
        for p in rows
        if p["model"] == "pipeline"
        for n in rows
        if n["model"] == "pipeline-no-text" and n["seed"] == p["seed"] and n["ndcg@10"] > 0
    ]
    result = {
        "benchmark": "pipeline nDCG@10 on the inner validation split, per ranker seed",
        "dataset": args.dataset,
        "protocol": f"{args.protocol}, then validation_split of its training part (outer test data unread)",
        "metric": "ndcg@10, binary relevance, seen items excluded (recsys.evaluation.metrics)",
        "encoder_seed": args.encoder_seed,
        "n_judged_users": len(users),
        "rows": rows,
        "summary": summary,
        "text_lift_per_seed": lifts,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    table = Table(title=f"{args.dataset} ({args.protocol}) inner validation split: nDCG@10 per ranker seed")
    for col in ("model", "seed", "ndcg@10", "best iteration", "prior"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"], str(r["seed"]), f"{r['ndcg@10']:.4f}", str(r["best_iteration"]), str(r["prior_chosen"])
        )
    console.print(table)
    for name, s in summary.items():
        console.print(
            f"{name}: median {s['median']:.4f}, range [{s['min']:.4f}, {s['max']:.4f}], spread {s['spread']:.4f}"
        )
    console.print(f"text lift per seed: {', '.join(f'x{v:.3f}' for v in lifts)}")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
