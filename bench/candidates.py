"""Cost of building candidate rows per user on a large catalog: the indexed path (`recsys.ranker.indexed`) with an HNSW
text index and with an exact one, against the dense path, on the same fitted state, in the same process,
alternating, medians of `--repeats`.

Two kinds of state:
- `--items N,...`: streamed synthetic data (`recsys.data.synthetic_scale`, 20 events per user on average) fitted
  with the scalable sources (`[scale] dense_item_limit = 0`); item vectors built from the items' genres (the sum of
  a seeded random unit vector per genre plus noise, normalised: items sharing genres are near, as with a text
  encoder; the real encoder would take minutes per size here);
- `--bundle DIR`: a night's bundle (its `state/` fitted with the scalable sources and its `embeddings.parquet`), the
  real encoder's vectors and the real interest profiles; its HNSW and exact text indexes are built here (timed).

Each timed run builds `Candidates.frame` for the same `--users` users with a text weight of 0.5. Agreement with the
dense path: the share of its candidate rows each indexed path gives, the share of its text picks, and the largest
absolute difference of any feature on the common rows.

    python bench/candidates.py --items 20000,100000 --users 500 --out bench/results/candidates.json
    python bench/candidates.py --bundle work/nightly/bundles/<id> --users 500 --out bench/results/candidates-bundle.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
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

KEY = ["user_id", "item_id"]


def _synthetic_state(n_items: int, n_users: int, seed: int) -> tuple[Any, Any, str]:
    from recsys.compute import ScaleConfig
    from recsys.data import load_dataset
    from recsys.data.synthetic_scale import write_synthetic_scale
    from recsys.encoder.cache import ItemEmbeddings
    from recsys.ranker import PipelineConfig
    from recsys.ranker.window import build_state

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_scale(Path(tmp), n_users=n_users, n_items=n_items, n_events=20 * n_users, seed=seed)
        ds = load_dataset(str(data.spec))
    items = ds.items["item_id"].to_list()
    rng = np.random.default_rng(seed)
    genres = ds.items["genres"].to_list()
    names = sorted({g for gs in genres for g in (gs or [])})
    centre = dict(zip(names, rng.standard_normal((len(names), 384)), strict=True))
    vectors = rng.standard_normal((len(items), 384)) * 0.6
    for i, gs in enumerate(genres):
        for g in gs or []:
            vectors[i] += centre[g]
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    emb = ItemEmbeddings(items, vectors, "genre-structured-random", len(items))
    state = build_state(
        ds.interactions,
        ds.items,
        items,
        PipelineConfig(),
        ease_l2=500.0,
        blend=(16, 0.5),
        embeddings=emb,
        scale=ScaleConfig(dense_item_limit=0, item_index="exact"),
    )
    return state, emb, f"synthetic_scale ({n_users} users, {n_items} items, seed {seed}), genre-structured vectors"


def _bundle_state(folder: Path) -> tuple[Any, Any, str]:
    from recsys.encoder.cache import ItemEmbeddings
    from recsys.ranker.state import RankingState

    state = RankingState.load(folder / "state")
    emb = ItemEmbeddings.load(folder / "embeddings.parquet")
    return state, emb, f"bundle {folder.name} ({len(state.user_ids)} users, {len(state.item_ids)} items)"


def measure(state: Any, emb: Any, label: str, users: int, repeats: int, console: Console) -> dict[str, Any]:
    from recsys.compute import ScaleConfig
    from recsys.ranker import CandidateConfig
    from recsys.ranker.candidates import Candidates
    from recsys.ranker.window import item_indexes

    cfg = CandidateConfig()
    variants: dict[str, Any] = {}
    build_s: dict[str, float] = {}
    for kind in ("hnsw", "exact"):
        t = time.perf_counter()
        idx = item_indexes(
            state.seen, state.item_ids.tolist(), state.blend, emb, cfg.tail_users, ScaleConfig(item_index=kind)
        )
        build_s[kind] = round(time.perf_counter() - t, 1)
        variants[kind] = Candidates(dataclasses.replace(state, item_indexes=idx), cfg, embeddings=emb, text_weight=0.5)
        assert variants[kind].indexed is not None
    dense = copy.copy(variants["exact"])
    dense.indexed = None
    variants["dense"] = dense
    chosen = sorted(state.user_ids)[:users]
    times: dict[str, list[float]] = {k: [] for k in variants}
    frames: dict[str, pl.DataFrame] = {}
    for _ in range(repeats):
        for name, c in variants.items():
            t = time.perf_counter()
            frames[name] = c.frame(chosen)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = frames["dense"]
    base_text = base.filter(pl.col("is_from_text") == 1).select(KEY)
    base_cf = base.filter(pl.col("is_from_cf") == 1).select(KEY)
    agreement = {}
    for name in ("hnsw", "exact"):
        a = frames[name]
        both = a.join(base, on=KEY, how="inner", suffix="_dense")
        diff = 0.0
        for col in a.columns:
            if col in KEY:
                continue
            x, y = both[col].to_numpy(), both[f"{col}_dense"].to_numpy()
            ok = ~(np.isnan(x) | np.isnan(y))
            if ok.any():
                diff = max(diff, float(np.abs(x[ok] - y[ok]).max()))
        text = a.filter(pl.col("is_from_text") == 1).select(KEY)
        cf = a.filter(pl.col("is_from_cf") == 1).select(KEY)
        agreement[name] = {
            "rows": a.height,
            "dense_rows_found": round(both.height / max(base.height, 1), 6),
            "dense_text_picks_found": round(text.join(base_text, on=KEY).height / max(base_text.height, 1), 6),
            "dense_collaborative_picks_found": round(cf.join(base_cf, on=KEY).height / max(base_cf.height, 1), 6),
            "max_feature_abs_diff_on_common_rows": diff,
        }
    row = {
        "state": label,
        "items": len(state.item_ids),
        "users_in_state": len(state.user_ids),
        "users_scored": len(chosen),
        "index_build_seconds": build_s,
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ms_per_user": {k: round(1000 * v / len(chosen), 3) for k, v in med.items()},
        "dense_over": {k: round(med["dense"] / med[k], 2) for k in ("hnsw", "exact")},
        "dense_rows": base.height,
        "agreement_with_dense": agreement,
    }
    console.log(
        f"{label}: ms/user {row['ms_per_user']}, dense / indexed {row['dense_over']}, "
        f"picks found (hnsw): text {agreement['hnsw']['dense_text_picks_found']:.2%}, "
        f"collaborative {agreement['hnsw']['dense_collaborative_picks_found']:.2%}"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="20000,100000", help="synthetic catalog sizes")
    ap.add_argument("--bundle", type=Path, help="a night's bundle folder instead of synthetic data")
    ap.add_argument("--state-users", type=int, default=20_000, help="users in the synthetic window")
    ap.add_argument("--users", type=int, default=500, help="users whose candidates are built per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("bench/results/candidates.json"))
    args = ap.parse_args()
    console = Console()
    if args.bundle:
        states = [_bundle_state(args.bundle)]
    else:
        states = [_synthetic_state(int(n), args.state_users, args.seed) for n in args.items.split(",")]
    rows = [measure(s, e, label, args.users, args.repeats, console) for s, e, label in states]
    out = {
        "benchmark": "candidate rows per user: indexed path (HNSW / exact text index) vs dense path, same state",
        "protocol": (
            f"scalable sources, text weight 0.5, default CandidateConfig; {args.users} users per run (the first by "
            f"user id), medians of {args.repeats} alternating runs in one process"
        ),
        "rows": rows,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    table = Table(
        title="Candidate rows per user: indexed vs dense (same state, same run; medians); the dense path's rows and "
        "picks the HNSW path finds"
    )
    for col in ("state", "items", "dense ms", "exact ms", "hnsw ms", "dense/hnsw", "rows", "text", "collab."):
        table.add_column(col, justify="right")
    for r in rows:
        ag = r["agreement_with_dense"]["hnsw"]
        table.add_row(
            r["state"][:28],
            str(r["items"]),
            f"{r['ms_per_user']['dense']:.2f}",
            f"{r['ms_per_user']['exact']:.2f}",
            f"{r['ms_per_user']['hnsw']:.2f}",
            f"x{r['dense_over']['hnsw']}",
            f"{ag['dense_rows_found']:.2%}",
            f"{ag['dense_text_picks_found']:.2%}",
            f"{ag['dense_collaborative_picks_found']:.2%}",
        )
    console.print(table)
    console.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
