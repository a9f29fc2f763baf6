"""Wall time of each step of the nightly flow on a real dataset (default ML-100k with Wikipedia summaries).

Night 1 starts from an empty registry (no champion: nothing to compare or warm-start); night 2 runs on the same data
with `force` (a new version warm-started from night 1's champion, evaluated against it, gated, published). Both run
through the real Prefect flow with MLflow on a local sqlite store. Writes JSON and prints a table.

    python bench/pipeline.py --out bench/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k+wiki")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    parser.add_argument("--time-budget", type=float, default=120.0, help="fine-tuning wall seconds per night")
    parser.add_argument("--nights", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a fresh temp dir)")
    args = parser.parse_args()
    from recsys.config import local_run_environment

    local_run_environment()
    from pipelines.nightly import nightly
    from recsys.evaluation.runner import environment_info

    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="recsys-bench-pipeline-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    overrides = {
        "data": {"dataset": args.dataset},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "artifact_dir": str(work / "artifacts")},
        "nightly": {"work_dir": str(work / "nightly"), "store_path": str(work / "serving.db")},
        "run": {"fine_tune_time_budget_s": args.time_budget, "cache_dir": str(work / "embeddings")},
    }
    nights = []
    for night in range(1, args.nights + 1):
        t0 = time.perf_counter()
        out = nightly(overrides=overrides, force=night > 1)
        wall = time.perf_counter() - t0
        nights.append(
            {
                "night": night,
                "status": out["status"],
                "version": out["version"],
                "champion_after": out["champion"],
                "wall_seconds": round(wall, 2),
                "steps_seconds": out["seconds"],
                "overhead_seconds": round(wall - sum(out["seconds"].values()), 2),
                "gate": {k: out["gate"][k] for k in ("promote", "reason")},
                "ndcg@10": {m: round(v["ndcg@10"], 6) for m, v in out["metrics"].items()},
            }
        )
        console.print(f"night {night}: {out['status']} in {wall:.1f} s")
    result = {
        "benchmark": "nightly flow wall time per step",
        "dataset": args.dataset,
        "protocol": "temporal (global cutoff at the 80% time quantile; the nightly evaluation split)",
        "fine_tune_time_budget_s": args.time_budget,
        "target_end_to_end_s": 300,
        "nights": nights,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    steps = list(dict.fromkeys(s for n in nights for s in n["steps_seconds"]))
    table = Table(title=f"nightly flow on {args.dataset}: wall seconds per step (target <= 300 s end to end)")
    table.add_column("step")
    for n in nights:
        table.add_column(f"night {n['night']}", justify="right")
    for step in steps:
        table.add_row(step, *(f"{n['steps_seconds'].get(step, 0):.1f}" for n in nights))
    table.add_row("flow overhead", *(f"{n['overhead_seconds']:.1f}" for n in nights))
    table.add_row("[bold]end to end", *(f"[bold]{n['wall_seconds']:.1f}" for n in nights))
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
