"""Ranking quality of the baselines side by side on fixed protocols; writes JSON and prints tables.

    python bench/quality.py --out bench/results/quality.json

Default runs: ML-100k with `ms-stratified` (the Microsoft Recommenders benchmark protocol, with the published SAR
row reproduced alongside) and ml-latest-small with `temporal`, each with the item texts joined (`+wiki`, `+tmdb`:
same interactions, so the baselines are unaffected). Data is read from RECSYS_DATA_DIR.

Rows `pipeline` (candidates + features + LightGBM LambdaRank with interest-match features from the LoRA fine-tuned
encoder) and `pipeline-no-text` (the same without the interest-match features) are added unless `--no-pipeline`;
the encoder is fine-tuned on the inner training part of each split only, for `--max-steps` steps (default 120, the
cap of bench/encoder.py; 0 = one full epoch of the training pairs). A step cap keeps runs repeatable; `--time-budget`
(a wall-time cap) does not, since the steps reached then depend on the machine's load. Paired
comparisons: pipeline vs no-text and pipeline vs the best baseline. Feature importance (gain) is written as CSV and
PNG beside the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from rich.console import Console

from recsys.data import load_dataset
from recsys.encoder import EncoderStageConfig, FineTuneConfig, TextEmbedder
from recsys.evaluation import evaluate
from recsys.evaluation.plots import plot_importance
from recsys.evaluation.render import render_report
from recsys.progress import training_bar
from recsys.ranker import PIPELINE_MODELS, pipeline_factories

# examples/06_benchmarks/movielens.ipynb of Microsoft Recommenders (2025 run), k=10.
PUBLISHED = {
    "ml-100k": {
        "sar": {"map": 0.114038, "ndcg@10": 0.393819, "precision@10": 0.340615, "recall@10": 0.185377},
        "bpr": {"ndcg@10": 0.444991},
        "bivae": {"ndcg@10": 0.468673},
        "lightgcn": {"ndcg@10": 0.416371},
    }
}
RUNS = (("ml-100k+wiki", "ms-stratified"), ("ml-latest-small+tmdb", "temporal"))
BASELINES = ("toppop", "sar", "itemknn", "ease", "ease-lowpass", "seqnb", "als", "bpr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/quality.json"))
    ap.add_argument("--models", default="toppop,sar,itemknn,ease,ease-lowpass,seqnb,als,bpr")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--run", action="append", help="dataset:protocol (repeatable); default: both standard runs")
    ap.add_argument("--no-pipeline", action="store_true", help="baselines only")
    ap.add_argument("--max-steps", type=int, default=120, help="encoder fine-tuning steps per run (0: one full epoch)")
    ap.add_argument(
        "--time-budget", type=float, default=None, help="wall-time cap of fine-tuning, seconds (not repeatable)"
    )
    args = ap.parse_args()
    console = Console(width=200)
    runs = [tuple(r.split(":", 1)) for r in args.run] if args.run else RUNS
    stage = EncoderStageConfig(
        fine_tune=FineTuneConfig(max_steps=args.max_steps or None),
        time_budget_s=args.time_budget,
        cache_dir=Path("results/embeddings"),
    )
    out: dict[str, object] = {
        "settings": {
            "seed": args.seed,
            "fine_tune_max_steps": stage.fine_tune.max_steps,  # None: one full epoch
            "fine_tune_time_budget_s": stage.time_budget_s,
        },
        "runs": [],
        "published": PUBLISHED,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)  # importance CSV/PNG land there before the JSON
    t0 = time.perf_counter()
    for dataset, protocol in runs:
        extra = {}
        embedder = None
        with contextlib.ExitStack() as stack:
            if not args.no_pipeline:
                update = stack.enter_context(training_bar(f"fine-tune ({dataset})", console=console))
                work = Path("results/bench-quality") / dataset
                embedder = TextEmbedder(stage, work_dir=work, seed=args.seed, training_progress=update)
                extra = pipeline_factories(PIPELINE_MODELS, embedder=embedder, protocol=protocol, seed=args.seed)
            report = evaluate(
                load_dataset(dataset),
                protocol=protocol,
                extra_models=extra,
                models=args.models.split(","),
                k=10,
                extra_ks=(50,),
                seed=args.seed,
                progress=lambda m: console.log(m),
            )
        console.print(render_report(report))
        entry = report.to_dict()
        entry["topk_lists"] = [str(p) for p in report.export_recommendations(Path("results/bench-quality") / dataset)]
        if not args.no_pipeline:
            entry["pipeline"] = pipeline_summary(report, embedder, args.out.parent, dataset, console)
        ref = PUBLISHED.get(dataset.split("+")[0], {}) if protocol == "ms-stratified" else {}
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
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out}")


def pipeline_summary(report, embedder, folder: Path, dataset: str, console: Console) -> dict[str, object]:
    """Paired comparisons, cold-item slice, candidate recall and feature importance (CSV + PNG) of the pipeline."""
    import polars as pl

    baselines = [m for m in report.models if m.name in BASELINES]
    best = max(baselines, key=lambda m: m.metrics[f"ndcg@{report.k}"]).name if baselines else None
    comparisons = {"pipeline_vs_no_text": report.compare("pipeline-no-text", "pipeline").to_dict()}
    if best:
        comparisons["pipeline_vs_best_baseline"] = report.compare(best, "pipeline").to_dict()
    for key, c in comparisons.items():
        console.print(
            f"  {key}: {c['metric']} {c['mean_b']:.4f} - {c['mean_a']:.4f} = {c['diff']:+.4f} "
            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p_t={c['p_ttest']:.2g} ({c['a']} -> {c['b']})"
        )
    params = report.model("pipeline").params
    importance = pl.DataFrame(params["feature_importance"])
    stem = folder / f"importance-{dataset}"
    importance.write_csv(stem.with_suffix(".csv"))
    plot_importance(importance, stem.with_suffix(".png"), f"{dataset}: LambdaRank feature importance (gain)")
    return {
        "best_baseline": best,
        "comparisons": comparisons,
        "candidate_recall": params.get("candidate_recall"),
        "cold_items": {m: report.model(m).slices.get("cold_items") for m in ("pipeline", "pipeline-no-text", best)},
        "feature_importance_csv": str(stem.with_suffix(".csv")),
        "feature_importance_png": str(stem.with_suffix(".png")),
        "fine_tune": {k: r.to_dict() for k, r in embedder.results.items()},
    }


if __name__ == "__main__":
    main()
