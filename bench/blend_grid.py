"""Cost of the collaborative validation grids and lists on a large catalog: pooled top-k (`recsys.baselines.pooled`)
against dense rows, on the same fitted models, in the same process, alternating, medians of `--repeats`.

What the night runs there: the pipeline chooses the EASE + low-pass blend's (factors, weight) on its inner split
(`EASELowPass.recommend_grid` over the label users, ten combinations), and the evaluation lists `ease` and
`ease-lowpass` for its test users. Above `[scale] dense_item_limit` both now come from a pool per user (EASE's sparse
support plus the low-pass top k outside it) instead of users x items rows.

Data: `--bundle DIR` (a night's bundle: its training window `events.parquet` and catalog; the inner split is the
pipeline's, by the bundle's protocol and the ranker seed) or `--items N,...` (streamed synthetic data,
`recsys.data.synthetic_scale`, 20 events per user, its temporal inner split). Models fitted with the default
`[scale]` (sparse forms above 10k items) and the pipeline's defaults (l2 500, factors 8/16/32 x weights
0/0.25/0.5/1). Agreement: the share of the dense lists' (user, rank, item) the pooled lists give, the largest score
gap at equal ranks, and whether the validation nDCG@10 of every combination and the chosen combination agree.

    python bench/blend_grid.py --bundle work/nightly/bundles/<id> --users 2000 --out bench/results/blend-grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _windows(args: argparse.Namespace) -> list[tuple[str, pl.DataFrame, list[str], str]]:
    """(label, training window, catalog item ids, protocol) per data source."""
    from recsys.data import load_dataset
    from recsys.data.synthetic_scale import write_synthetic_scale

    if args.bundle:
        meta = json.loads((args.bundle / "bundle.json").read_text())
        events = pl.read_parquet(args.bundle / "events.parquet")
        items = pl.read_parquet(args.bundle / "items.parquet")["item_id"].to_list()
        label = f"bundle {args.bundle.name} ({events['user_id'].n_unique()} users, {len(items)} items)"
        return [(label, events, items, meta.get("protocol", "temporal"))]
    out = []
    for n in (int(v) for v in args.items.split(",")):
        users = args.state_users
        with tempfile.TemporaryDirectory() as tmp:
            data = write_synthetic_scale(Path(tmp), n_users=users, n_items=n, n_events=20 * users, seed=args.seed)
            ds = load_dataset(str(data.spec))
        label = f"synthetic_scale ({users} users, {n} items, seed {args.seed})"
        out.append((label, ds.interactions, ds.items["item_id"].to_list(), "temporal"))
    return out


def _agreement(pooled: pl.DataFrame, dense: pl.DataFrame) -> dict[str, float]:
    a = pooled.sort("user_id", "rank")
    both = a.join(dense, on=["user_id", "rank"], how="inner", suffix="_dense")
    return {
        "dense_positions_same_item": round(float((both["item_id"] == both["item_id_dense"]).mean() or 0.0), 6),
        "rows": a.height,
        "dense_rows": dense.height,
        "max_score_gap_at_equal_rank": float((both["score"] - both["score_dense"]).abs().max() or 0.0),
    }


def measure(
    label: str, events: pl.DataFrame, items: list[str], protocol: str, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    from recsys.baselines import EASE, EASELowPass, ScaleConfig
    from recsys.baselines._base import Recommender
    from recsys.evaluation.metrics import mean_or_zero, user_metrics
    from recsys.evaluation.splits import sample_users, validation_split
    from recsys.ranker import PipelineConfig

    cfg = PipelineConfig()
    inner, _ = sample_users(validation_split(events, protocol, seed=args.seed), 20_000, seed=args.seed, tag="label")
    users = inner.test["user_id"].unique(maintain_order=True).to_list()[: args.users]
    combos = [(min(cfg.blend.factors_grid), 0.0)]
    combos += [(f, w) for f in cfg.blend.factors_grid for w in cfg.blend.weight_grid if w > 0]
    t = time.perf_counter()
    blend = EASELowPass(l2=500.0, factors=max(cfg.blend.factors_grid), weight=0.0, scale=ScaleConfig())
    blend.fit(inner.train, candidates=items)
    fit_s = time.perf_counter() - t
    ease = EASE(l2=500.0, scale=ScaleConfig()).fit(inner.train, candidates=items)
    runs: dict[str, Any] = {
        "grid_pooled": lambda: blend.recommend_grid(users, combos, k=10),
        "grid_dense": lambda: blend.dense_grid(users, combos, k=10),
        "ease_pooled": lambda: ease.recommend(users, k=10),
        "ease_dense": lambda: Recommender.recommend(ease, users, k=10),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    results: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    truth = inner.test.filter(pl.col("user_id").is_in(users)).select("user_id", "item_id")  # the judged users

    def ndcg(frame: pl.DataFrame) -> float:
        return round(mean_or_zero(user_metrics(frame, truth, ks=(10,))["ndcg@10"]), 6)

    grid = {
        f"{f}x{w}": {
            "ndcg@10_pooled": ndcg(results["grid_pooled"][(f, w)]),
            "ndcg@10_dense": ndcg(results["grid_dense"][(f, w)]),
            **_agreement(results["grid_pooled"][(f, w)], results["grid_dense"][(f, w)]),
        }
        for f, w in combos
    }

    def chosen(kind: str) -> str:
        return max(grid, key=lambda c: (grid[c][f"ndcg@10_{kind}"], -float(c.split("x")[1]), -int(c.split("x")[0])))

    row = {
        "data": label,
        "items": len(items),
        "users_judged": len(users),
        "fit_seconds": round(fit_s, 1),
        "sparse_forms": bool(sp.issparse(blend.ease_.arrays.weights)),
        "seconds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "ms_per_user": {k: round(1000 * v / max(1, len(users)), 3) for k, v in med.items()},
        "dense_over_pooled": {
            "grid": round(med["grid_dense"] / med["grid_pooled"], 2),
            "ease": round(med["ease_dense"] / med["ease_pooled"], 2),
        },
        "grid": grid,
        "chosen": {"pooled": chosen("pooled"), "dense": chosen("dense")},
        "ease_agreement": _agreement(results["ease_pooled"], results["ease_dense"]),
    }
    console.log(f"{label}: ms/user {row['ms_per_user']}, dense / pooled {row['dense_over_pooled']}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="a night's bundle folder")
    ap.add_argument("--items", default="20000,100000", help="synthetic catalog sizes (without --bundle)")
    ap.add_argument("--state-users", type=int, default=20_000, help="users in the synthetic window")
    ap.add_argument("--users", type=int, default=2000, help="inner hold-out users judged per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42, help="the inner split's and the label sample's seed")
    ap.add_argument("--out", type=Path, default=Path("bench/results/blend-grid.json"))
    args = ap.parse_args()
    console = Console()
    rows = [measure(*w, args, console) for w in _windows(args)]
    out = {
        "benchmark": "collaborative validation grid and lists on a large catalog: pooled top-k vs dense rows",
        "protocol": (
            f"the pipeline's inner split (validation_split by the data's protocol, seed {args.seed}), the first "
            f"{args.users} label users; EASE l2 500, blend grid = PipelineConfig defaults; k = 10; medians of "
            f"{args.repeats} alternating runs in one process; nDCG@10 on the inner hold-out (validation data)"
        ),
        "rows": rows,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    table = Table(title="Blend grid and EASE lists: pooled vs dense (same models, same run; medians)")
    cols = ("items", "grid dense ms", "grid pooled ms", "x", "ease dense ms", "ease pooled ms", "x", "same")
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        ms = r["ms_per_user"]
        same = min(g["dense_positions_same_item"] for g in r["grid"].values())
        table.add_row(
            str(r["items"]),
            f"{ms['grid_dense']:.2f}",
            f"{ms['grid_pooled']:.2f}",
            f"x{r['dense_over_pooled']['grid']}",
            f"{ms['ease_dense']:.2f}",
            f"{ms['ease_pooled']:.2f}",
            f"x{r['dense_over_pooled']['ease']}",
            f"{same:.2%}",
        )
    console.print(table)
    console.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
