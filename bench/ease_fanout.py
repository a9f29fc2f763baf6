"""What capping sparse EASE's rows (`[scale] ease_fanout`) costs in quality and saves in time, on validation data.

Neighbour EASE keeps k weights per column (each item regressed on its k most co-occurring items), but a popular item
is a regressor of much of the catalog, so its row reaches that share of it; a user's score row is the sum of their
items' rows, and its terms grow with the catalog (~52k per user at 1M users x 100k items). `ease_fanout` keeps each
row's largest weights by magnitude (`recsys.baselines.scalable.cap_rows`), bounding a user's terms by their history.

Per data source and fanout (0 = uncapped, the reference), the sparse form forced (`dense_item_limit = 0`), l2 500 (the
pipeline's default) for every fanout: EASE fitted on the inner training part of the protocol's validation split
(`recsys.evaluation.splits.validation_split` of the outer split's training part: the test split is never read),
then lists of k = 100 for the inner hold-out's label users (at most 20,000, the night's `label_users`, stratified
sample) through the pooled path (what the night's EASE baseline, its l2 grid and the blend's pool run).

Reported: nDCG@10 and recall@100 on the inner hold-out, their ratio to the uncapped fit, the share of the uncapped
top-100 each list keeps, a user's terms (the median over judged users of the summed row lengths of their history),
and ms per user of the lists (medians of `--repeats` runs, the fanouts alternating in one process: ratios to the
uncapped run in the same round are what to read on a shared machine).

    python bench/ease_fanout.py --datasets ml-100k,amazon-scientific --synthetic 1000000x100000x10000000 \\
        --fanouts 0,4000,2000,1000,500 --out bench/results/ease-fanout.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROTOCOLS = {"ml-100k": "ms-stratified", "amazon-scientific": "fixed"}


def _sources(args: argparse.Namespace) -> list[tuple[str, pl.DataFrame, list[str], str]]:
    """(label, the outer split's training part, catalog item ids, protocol) per data source."""
    from recsys.config import public_data_dir
    from recsys.data import load_dataset
    from recsys.data.synthetic_scale import write_synthetic_scale
    from recsys.evaluation.splits import make_split

    out = []
    for name in [d for d in args.datasets.split(",") if d]:
        protocol = PROTOCOLS.get(name, "temporal")
        ds = load_dataset(name, data_dir=public_data_dir())
        outer = make_split(ds.interactions, protocol, seed=args.seed, holdout=ds.holdout)  # type: ignore[arg-type]
        out.append((name, outer.train, ds.items["item_id"].to_list(), protocol))
    for size in [s for s in args.synthetic.split(",") if s]:
        users, n_items, events = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            data = write_synthetic_scale(Path(tmp), n_users=users, n_items=n_items, n_events=events, seed=7)
            ds = load_dataset(str(data.spec))
            outer = make_split(ds.interactions, "temporal", seed=args.seed)
            out.append((f"synthetic {size} (data seed 7)", outer.train, ds.items["item_id"].to_list(), "temporal"))
    return out


def measure(
    label: str, train: pl.DataFrame, items: list[str], protocol: str, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    from recsys.baselines import EASE, ScaleConfig
    from recsys.evaluation.metrics import mean_or_zero, user_metrics
    from recsys.evaluation.splits import sample_users, validation_split

    inner, _ = sample_users(validation_split(train, protocol, seed=args.seed), 20_000, seed=args.seed, tag="label")
    users = inner.test["user_id"].unique(maintain_order=True).sort().to_list()
    truth = inner.test.select("user_id", "item_id")
    fanouts = [int(v) for v in args.fanouts.split(",")]
    models, fit_s = {}, {}
    for f in fanouts:
        t = time.perf_counter()
        models[f] = EASE(l2=500.0, scale=ScaleConfig(dense_item_limit=0, ease_fanout=f)).fit(
            inner.train, candidates=items
        )
        fit_s[f] = time.perf_counter() - t
    models[ref := fanouts[0]].recommend(users[:64], k=100)  # compiles the loops (once per machine) and warms caches
    times: dict[int, list[float]] = {f: [] for f in fanouts}
    lists: dict[int, pl.DataFrame] = {}
    for _ in range(args.repeats):
        for f in fanouts:
            t = time.perf_counter()
            lists[f] = models[f].recommend(users, k=100)
            times[f].append(time.perf_counter() - t)
    rows = {}
    for f in fanouts:
        m = user_metrics(lists[f], truth, ks=(10, 100))
        w = models[f].arrays.weights
        lengths = np.diff(w.indptr)
        seen = models[f].seen_[[models[f].user_index_[u] for u in users]]
        active = np.zeros(models[f].seen_.shape[1], dtype=np.int64)
        active[models[f].active_] = lengths
        terms = np.asarray(seen @ active).ravel()
        same = lists[f].join(lists[ref], on=["user_id", "item_id"], how="semi").height / max(1, lists[ref].height)
        rows[str(f)] = {
            "ndcg@10": round(mean_or_zero(m["ndcg@10"]), 6),
            "recall@100": round(mean_or_zero(m["recall@100"]), 6),
            "top100_kept": round(same, 4),
            "stored_weights": int(w.nnz),
            "longest_row": int(lengths.max()) if len(lengths) else 0,
            "terms_per_user_median": float(np.median(terms)) if len(terms) else 0.0,
            "fit_seconds": round(fit_s[f], 2),
            "seconds": [round(v, 3) for v in times[f]],
            "ms_per_user": round(1000 * statistics.median(times[f]) / max(1, len(users)), 3),
        }
    for f in fanouts:
        r, base = rows[str(f)], rows[str(ref)]
        r["ndcg@10_ratio"] = round(r["ndcg@10"] / base["ndcg@10"], 4) if base["ndcg@10"] else None
        r["recall@100_ratio"] = round(r["recall@100"] / base["recall@100"], 4) if base["recall@100"] else None
        ratios = [a / b for a, b in zip(times[f], times[ref], strict=True)]  # the same round
        r["time_ratio_median"] = round(statistics.median(ratios), 3)
        console.log(f"{label} fanout {f}: {r}")
    return {"data": label, "protocol": protocol, "items": len(items), "users_judged": len(users), "fanouts": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,amazon-scientific", help="public datasets (RECSYS_DATA_DIR)")
    ap.add_argument("--synthetic", default="", help="streamed synthetic sizes, users x items x events")
    ap.add_argument("--fanouts", default="0,4000,2000,1000,500", help="the first is the reference (0 = uncapped)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42, help="the splits' and the label sample's seed")
    ap.add_argument("--out", type=Path, default=Path("bench/results/ease-fanout.json"))
    args = ap.parse_args()
    console = Console(width=150)
    from recsys.evaluation.runner import environment_info

    rows = [measure(*s, args, console) for s in _sources(args)]
    out = {
        "benchmark": "sparse EASE with capped rows ([scale] ease_fanout): quality and list time against uncapped",
        "protocol": (
            f"validation data only: the protocol's outer split (seed {args.seed}), then its validation_split; EASE "
            f"(sparse form forced, l2 500, 100 neighbours) fitted on the inner training part; k = 100 lists for at "
            f"most 20,000 inner hold-out users (stratified sample, seed {args.seed}), pooled path, seen items "
            f"excluded; nDCG@10 and recall@100 with binary relevance (recsys.evaluation.metrics); times are medians "
            f"of {args.repeats} rounds, fanouts alternating in one process"
        ),
        "rows": rows,
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    table = Table(title="Sparse EASE rows capped (validation data; ratios to the uncapped fit in the same run)")
    for col in ("data", "fanout", "nDCG@10", "x", "recall@100", "x", "top-100 kept", "terms/user", "ms/user", "x"):
        table.add_column(col, justify="right")
    for r in rows:
        for f, v in r["fanouts"].items():
            table.add_row(
                r["data"],
                f,
                f"{v['ndcg@10']:.4f}",
                f"x{v['ndcg@10_ratio']}",
                f"{v['recall@100']:.4f}",
                f"x{v['recall@100_ratio']}",
                f"{v['top100_kept']:.2%}",
                f"{v['terms_per_user_median']:.0f}",
                f"{v['ms_per_user']:.2f}",
                f"x{v['time_ratio_median']}",
            )
    console.print(table)
    console.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
