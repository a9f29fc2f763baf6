"""Ranking quality of the baselines side by side on fixed protocols; writes JSON and prints tables.

    python bench/quality.py --out bench/results/quality.json

Default runs: ML-100k with `ms-stratified` (the Microsoft Recommenders benchmark protocol, with the published SAR
row reproduced alongside) and ml-latest-small with `temporal`. Data is read from RECSYS_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from recsys.data import load_dataset
from recsys.evaluation import evaluate
from recsys.evaluation.render import render_report

# examples/06_benchmarks/movielens.ipynb of Microsoft Recommenders (2025 run), k=10.
PUBLISHED = {
    "ml-100k": {
        "sar": {"map": 0.114038, "ndcg@10": 0.393819, "precision@10": 0.340615, "recall@10": 0.185377},
        "bpr": {"ndcg@10": 0.444991},
        "bivae": {"ndcg@10": 0.468673},
        "lightgcn": {"ndcg@10": 0.416371},
    }
}
RUNS = (("ml-100k", "ms-stratified"), ("ml-latest-small", "temporal"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/quality.json"))
    ap.add_argument("--models", default="toppop,sar,itemknn,ease,als,bpr")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--run", action="append", help="dataset:protocol (repeatable); default: both standard runs")
    args = ap.parse_args()
    console = Console(width=200)
    runs = [tuple(r.split(":", 1)) for r in args.run] if args.run else RUNS
    out: dict[str, object] = {"runs": [], "published": PUBLISHED}
    t0 = time.perf_counter()
    for dataset, protocol in runs:
        report = evaluate(
            load_dataset(dataset),
            protocol=protocol,
            models=args.models.split(","),
            k=10,
            extra_ks=(50,),
            seed=args.seed,
            progress=lambda m: console.log(m),
        )
        console.print(render_report(report))
        entry = report.to_dict()
        ref = PUBLISHED.get(dataset, {}) if protocol == "ms-stratified" else {}
        entry["reproduction"] = {
            model: {
                metric: {
                    "published": value,
                    "ours": report.model(model).metrics[metric],
                    "abs_diff": abs(report.model(model).metrics[metric] - value),
                }
                for metric, value in metrics.items()
            }
            for model, metrics in ref.items()
            if model in args.models.split(",") and model == "sar"
        }
        for model, rows in entry["reproduction"].items():
            for metric, row in rows.items():
                console.print(
                    f"  reproduction {model} {metric}: published {row['published']:.6f} "
                    f"ours {row['ours']:.6f} |diff| {row['abs_diff']:.6f}"
                )
        out["runs"].append(entry)
    out["wall_seconds"] = round(time.perf_counter() - t0, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
