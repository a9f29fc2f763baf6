"""The published lists' cost per user on a night's saved served model, by candidate batch size.

`RankingModel.top_k` (what the night's `build_lists` runs in each partition) over a seeded sample of `--users` of the
model's users, after the model is loaded and its per-state tables are built, with the candidate frames built
`--batch-sizes` users at a time (the default is `recsys.ranker.candidates.user_batch`: 40 users at 100k items).
Sizes alternate within one process, `--repeats` runs each, medians reported, so a shared machine's load falls on
every size alike; every size's lists are compared with the first's (each user's items and order, scores).

    python bench/lists.py --model <night>/nightly/served/models/<key> --out bench/results/lists.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from recsys.evaluation.runner import environment_info
from recsys.ranker import candidates as candidates_module
from recsys.ranker.candidates import user_batch
from recsys.ranker.scoring import RankingModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a saved ranking model folder (served/models/<key>)")
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--batch-sizes", default="40,80,160,256", help="users per candidate batch; the first: baseline")
    ap.add_argument("--threads", type=int, default=1, help="user batches side by side (the night: the cores)")
    ap.add_argument("--k", type=int, default=100, help="list length (the night's serving_k)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="the users' sample")
    ap.add_argument("--out", type=Path, default=Path("bench/results/lists.json"))
    args = ap.parse_args()
    console = Console()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    t0 = time.perf_counter()
    model = RankingModel.load(args.model)
    model.prepare()
    load_s = time.perf_counter() - t0
    ids = model.state.user_ids
    pick = np.sort(np.random.default_rng(args.seed).choice(len(ids), min(args.users, len(ids)), replace=False))
    users = [ids[i] for i in pick]
    n_items = len(model.state.item_ids)
    runs: dict[int, list[float]] = {s: [] for s in sizes}
    lists: dict[int, Any] = {}
    default = candidates_module.user_batch
    try:
        for rep in range(args.repeats):
            for size in sizes if rep % 2 == 0 else sizes[::-1]:
                candidates_module.user_batch = lambda _n, size=size: size  # type: ignore[assignment]
                t0 = time.perf_counter()
                lists[size] = model.top_k(users, k=args.k, threads=args.threads)
                runs[size].append(1000 * (time.perf_counter() - t0) / len(users))
                console.print(f"batch {size}: {runs[size][-1]:.3f} ms/user")
    finally:
        candidates_module.user_batch = default
    base = lists[sizes[0]]
    rows = []
    for size in sizes:
        ms = statistics.median(runs[size])
        rows.append(
            {
                "batch_users": size,
                "ms_per_user_runs": [round(x, 4) for x in runs[size]],
                "ms_per_user_median": round(ms, 4),
                "x_first": round(ms / statistics.median(runs[sizes[0]]), 3),
                "same_lists_as_first": bool(lists[size].equals(base)),
            }
        )
    result = {
        "benchmark": "the published lists' cost per user by candidate batch size: RankingModel.top_k on a night's "
        "saved served model, after it is loaded and its tables built",
        "protocol": f"a seeded sample (seed {args.seed}) of {len(users)} of the model's {len(ids)} users, "
        f"top-{args.k}, {args.threads} thread(s); batch sizes alternating in one process, {args.repeats} runs "
        "each, medians",
        "model": str(args.model),
        "state": {
            "users": len(ids),
            "items": n_items,
            "scalable": model.state.scalable,
            "as_of": model.state.as_of.isoformat(),
        },
        "default_batch_users": user_batch(n_items),
        "load_seconds": round(load_s, 1),
        "rows": rows,
        "git_sha": environment_info()["git_sha"],
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"published lists per user, {len(ids)} users x {n_items} items ({args.threads} thread(s))")
    for col in ("batch users", "ms/user", "x first", "same lists"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["batch_users"]), f"{r['ms_per_user_median']:.3f}", str(r["x_first"]), str(r["same_lists_as_first"])
        )
    console.print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
