"""The published lists' cost per user under two code trees, on one night's saved served model, in one session.

`RankingModel.top_k` (what the night's `build_lists` runs in each partition) over a seeded sample of `--users` of the
model's users, in a fresh process per run with each tree on `PYTHONPATH` in turn: `--trees` alternate within each
of `--repeats` rounds (old, new, old, new, ...), so a shared machine's load falls on both alike. A run loads the model,
builds its per-state tables and lists a few other users first (compiled loops load or compile then), then times the
sample. Each run's lists are kept, and every tree's are compared with the first tree's: users whose list differs
(items or order) and the largest score difference.

    python bench/lists_ab.py --model <night>/nightly/served/models/<key> --trees <old tree> <new tree> \
        --out bench/results/lists-ab-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from recsys.evaluation.runner import environment_info


def child(
    model_dir: Path, users: int, seed: int, k: int, threads: int, lists_out: Path, *, pooled: bool = False
) -> dict[str, Any]:
    """One timed run in this process (the tree on `sys.path` is the code measured)."""
    import numpy as np
    import polars as pl

    from recsys.baselines._base import score_batch_size
    from recsys.baselines.pooled import PooledBlend
    from recsys.ranker.scoring import RankingModel

    t = time.perf_counter()
    model = RankingModel.load(model_dir)
    model.prepare()
    ids = model.state.user_ids
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ids), min(users, len(ids)), replace=False))
    others = np.sort(rng.choice(np.setdiff1d(np.arange(len(ids)), pick), min(40, len(ids) - len(pick)), replace=False))
    state = model.state
    # --pooled: the state's EASE alone and its blend at three weights (the evaluation's `ease` and `ease-lowpass`
    # baselines and their grids list this way), every user's k best
    combos = [(0, 0.0), *((state.blend.factors, w) for w in (0.25, 0.5, 1.0))]

    def run(rows: np.ndarray) -> pl.DataFrame:
        names = [ids[i] for i in rows]
        if not pooled:
            return model.top_k(names, k=k, threads=threads)
        pool = PooledBlend(state.blend.ease, state.blend.lowpass)
        size = score_batch_size(len(state.item_ids))
        got = pool.recommend(names, rows, state.seen, state.item_ids, combos, k=k, batch_size=size)
        return pl.concat(
            frame.with_columns(pl.format("{}:{}", pl.lit(str(combo)), "user_id").alias("user_id"))
            for combo, frame in got.items()
        )

    run(others)
    ready = time.perf_counter() - t
    t = time.perf_counter()
    lists = run(pick)
    seconds = time.perf_counter() - t
    sample = pick
    lists.write_parquet(lists_out)
    return {
        "ms_per_user": round(1000 * seconds / len(sample), 4),
        "ready_seconds": round(ready, 1),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "users": len(ids),
        "items": len(model.state.item_ids),
        "sample": len(sample),
        "git_sha": environment_info()["git_sha"],  # the revision of the recsys this process imported
    }


def _run(tree: Path, args: argparse.Namespace, lists_out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--model",
        str(args.model),
        "--users",
        str(args.users),
        "--seed",
        str(args.seed),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--lists-out",
        str(lists_out),
        *(["--pooled"] if args.pooled else []),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the run failed\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(first: Path, other: Path) -> dict[str, Any]:
    """Users whose list (items in order) differs between two runs' lists, and the largest score difference."""
    import polars as pl

    a, b = pl.read_parquet(first), pl.read_parquet(other)
    key = [c for c in ("user_id", "rank") if c in a.columns]
    joined = a.join(b, on=key, how="full", suffix="_other", coalesce=True)
    differ = joined.filter(
        pl.col("item_id").ne_missing(pl.col("item_id_other"))
        | pl.col("score").is_null()
        | pl.col("score_other").is_null()
    )
    return {
        "users_with_other_lists": differ["user_id"].n_unique(),
        "max_abs_score_diff": float((joined["score"] - joined["score_other"]).abs().max() or 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a saved ranking model folder (served/models/<key>)")
    ap.add_argument("--trees", type=Path, nargs="+", help="code trees, the first is the baseline")
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0, help="the users' sample")
    ap.add_argument("--k", type=int, default=100, help="list length (the night's serving_k)")
    ap.add_argument("--threads", type=int, default=1, help="user batches side by side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pooled", action="store_true", help="the pooled lists of the state's EASE and blend instead")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lists-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        got = child(args.model, args.users, args.seed, args.k, args.threads, args.lists_out, pooled=args.pooled)
        print(json.dumps(got))
        return
    if not args.trees or not args.out:
        raise SystemExit("--trees and --out are required")
    console = Console()
    runs: dict[str, list[dict[str, Any]]] = {str(t): [] for t in args.trees}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.repeats):
            for i, tree in enumerate(args.trees):
                got = _run(tree, args, Path(tmp) / f"lists-{i}-{rnd}.parquet")
                runs[str(tree)].append(got)
                console.log(f"{tree}: {got['ms_per_user']} ms/user")
        first_lists = Path(tmp) / "lists-0-0.parquet"
        same = [compare(first_lists, Path(tmp) / f"lists-{i}-0.parquet") for i in range(len(args.trees))]
        repeatable = all(
            compare(Path(tmp) / f"lists-{i}-0.parquet", Path(tmp) / f"lists-{i}-{r}.parquet")["users_with_other_lists"]
            == 0
            for i in range(len(args.trees))
            for r in range(1, args.repeats)
        )
    base = statistics.median(r["ms_per_user"] for r in runs[str(args.trees[0])])
    rows = []
    for tree, vs_first in zip(args.trees, same, strict=True):
        got = runs[str(tree)]
        median = statistics.median(r["ms_per_user"] for r in got)
        rows.append(
            {
                "tree": str(tree),
                "git_sha": got[0]["git_sha"],
                "ms_per_user_runs": [r["ms_per_user"] for r in got],
                "ms_per_user_median": median,
                "x_first": round(median / base, 3),
                "ready_seconds": [r["ready_seconds"] for r in got],
                "maxrss_mb": max(r["maxrss_mb"] for r in got),
                "vs_first": vs_first,
            }
        )
    first = runs[str(args.trees[0])][0]
    out = {
        "benchmark": (
            "the pooled lists' cost per user under two code trees: PooledBlend on a night's saved served model's state "
            "(EASE alone and the EASE + low-pass blend at weights 0.25, 0.5 and 1: how the evaluation's ease and "
            "ease-lowpass baselines and their grids list)"
            if args.pooled
            else "the published lists' cost per user under two code trees: RankingModel.top_k on a night's saved "
            "served model"
        ),
        "protocol": f"{'pooled lists (4 per user), ' if args.pooled else ''}a seeded sample (seed {args.seed}) of "
        f"{first['sample']} of the model's {first['users']} users x {first['items']} items, top-{args.k}, "
        f"{args.threads} thread(s); trees alternating, {args.repeats} round(s), a fresh process per run (model "
        "loaded, tables built, 40 other users listed first), medians",
        "model": str(args.model),
        "rows": rows,
        "runs_repeat_their_lists": repeatable,
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    table = Table(title=f"lists per user, {first['users']} users x {first['items']} items")
    for col in ("code", "ms/user runs", "median", "x first", "users with other lists", "max score diff"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["git_sha"][:7],
            ", ".join(f"{x:.3f}" for x in r["ms_per_user_runs"]),
            f"{r['ms_per_user_median']:.3f}",
            f"x{r['x_first']}",
            str(r["vs_first"]["users_with_other_lists"]),
            f"{r['vs_first']['max_abs_score_diff']:.2e}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
