"""Pipeline variants judged on validation data only: the outer split's training part, split once more.

    python bench/pipeline_validation.py --dataset amazon-scientific --protocol fixed \
        --variant base:ease_l2=500 --variant auto: --out bench/results/pipeline-validation.json

The outer split's test events are removed first and never read; the judged hold-out is the inner split of the outer
training data (for `fixed`: each user's shipped valid item, history before it as input), and each pipeline then
makes its own choices one level further in. Each `--variant NAME:key=value,...` sets PipelineConfig fields (JSON
values; dotted keys for nested ones, e.g. candidates.n_collaborative=200); the first variant is the reference of the
paired comparisons. The encoder stage is the library default (pretrained MiniLM + collaborative head), shared by all
variants. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.config import public_data_dir
from recsys.data import load_dataset
from recsys.encoder import EncoderStageConfig, TextEmbedder
from recsys.evaluation import evaluate
from recsys.evaluation.runner import environment_info
from recsys.evaluation.splits import make_split, validation_split
from recsys.ranker import PipelineConfig, RankingPipeline


def _variant(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, body = spec.partition(":")
    data: dict[str, Any] = {}
    for pair in filter(None, body.split(",")):
        key, value = pair.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(value)
    PipelineConfig.model_validate(data)  # a bad key or value fails here, before any work
    return name, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--protocol", default="fixed")
    ap.add_argument("--variant", action="append", required=True, help="NAME:key=json,... (repeatable)")
    ap.add_argument("--no-text", action="store_true", help="also each variant without text features")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("bench/results/pipeline-validation.json"))
    args = ap.parse_args()
    console = Console(width=200)
    started = time.perf_counter()
    ds = load_dataset(args.dataset, data_dir=public_data_dir())
    outer = make_split(ds.interactions, args.protocol, seed=args.seed, holdout=ds.holdout)  # type: ignore[arg-type]
    inner = validation_split(outer.train, args.protocol, seed=args.seed)  # type: ignore[arg-type]
    embedder = TextEmbedder(
        EncoderStageConfig(), work_dir=Path("results/bench-validation"), cache_dir=Path("results/embeddings")
    )
    variants = dict(_variant(v) for v in args.variant)
    factories: dict[str, Any] = {}
    for name, overrides in variants.items():
        cfg = PipelineConfig.model_validate(overrides)
        factories[name] = lambda cfg=cfg: RankingPipeline(embedder, cfg=cfg, protocol=args.protocol, seed=args.seed)
        if args.no_text:
            factories[f"{name}-no-text"] = lambda cfg=cfg: RankingPipeline(
                embedder, cfg=cfg, protocol=args.protocol, use_text=False, seed=args.seed
            )
    report = evaluate(
        ds,
        protocol=args.protocol,  # type: ignore[arg-type]
        models=["ease"],
        extra_models=factories,
        k=10,
        extra_ks=(20, 50),
        seed=args.seed,
        split=inner,
        progress=lambda m: console.log(m),
    )
    ref = next(iter(variants))
    table = Table(title=f"{args.dataset} {args.protocol}: validation (inner split), seed {args.seed}")
    for col in ("model", "ndcg@10", "recall@10", "recall@50", "cold-only recall@20", "vs " + ref, "p"):
        table.add_column(col)
    rows = {}
    for m in report.models:
        c = report.compare(ref, m.name).to_dict() if m.name != ref else None
        choices = {k: m.params.get(k) for k in ("ease_l2", "blend", "text_weight", "ranker_prior")}
        rows[m.name] = {"metrics": m.metrics, "cold_only": m.slices.get("cold_only"), "vs_ref": c, "choices": choices}
        table.add_row(
            m.name,
            f"{m.metrics['ndcg@10']:.4f}",
            f"{m.metrics['recall@10']:.4f}",
            f"{m.metrics['recall@50']:.4f}",
            f"{m.slices['cold_only']['recall@20']:.4f}" if "cold_only" in m.slices else "",
            f"{c['diff']:+.4f}" if c else "",
            f"{c['p_ttest']:.2g}" if c else "",
        )
    console.print(table)
    out = {
        "dataset": args.dataset,
        "protocol": args.protocol,
        "judged_on": "inner split of the outer training data (validation); outer test never read",
        "seed": args.seed,
        "variants": variants,  # the settings each variant set, as given (the rest: PipelineConfig's defaults)
        "command": " ".join(sys.argv),
        "split": report.split_stats,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
