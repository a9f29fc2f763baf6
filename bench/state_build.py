"""A ranking state's build on a night's data, as `build_lists` rebuilds it, under two code trees in one session.

A `bench/scale.py` night root holds the data and the bundles the night saved; the newest bundle's pipeline is fitted
on all of the data's events (sources, features, indexes: what the night's list building fits before it lists), in
a fresh process per run, with each tree on `PYTHONPATH` in turn: `--trees` alternate within each of `--repeats`
rounds (old, new, old, new, ...), so a shared machine's load falls on both alike. Each run reports its wall seconds,
its high-water resident memory and sha256 digests of the state's collaborative arrays (EASE's weights, SAR's and
item-kNN's similarities, the low-pass components): equal digests mean the two trees built the same state.

    python bench/state_build.py --root <scale root>/<size>-seed7 --trees <old tree> <new tree> \
        --out bench/results/state-build-1m.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from recsys.evaluation.runner import environment_info


def _digest(*arrays: Any) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def child(root: Path, bundle: Path) -> dict[str, Any]:
    """One build in this process (the tree on `sys.path` is the code measured)."""
    import polars as pl

    from recsys.compute import ScaleConfig
    from recsys.data import schema as S
    from recsys.registry.bundle import load_bundle

    loaded = load_bundle(bundle)
    events = pl.read_parquet(root / "data" / "events.parquet")
    items = pl.read_parquet(root / "data" / "items.parquet")
    emb = loaded.embeddings_for(items, cache_dir=root / "embeddings")
    t = time.perf_counter()
    pipe = loaded.pipeline(embeddings=emb, seed=42, scale=ScaleConfig()).fit(
        events, candidates=items[S.ITEM_ID].to_list(), items=items
    )
    seconds = time.perf_counter() - t
    state = pipe.model_.state
    sparse = {"ease": state.blend.ease.weights, "sar": state.sar.similarity, "itemknn": state.itemknn.similarity}
    digests = {name: _digest(m.indptr, m.indices, m.data) for name, m in sparse.items()}
    digests["lowpass"] = _digest(state.blend.lowpass.components)
    return {
        "seconds": round(seconds, 1),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "events": events.height,
        "users": len(state.user_ids),
        "items": len(state.item_ids),
        "digests": digests,
        "git_sha": environment_info()["git_sha"],  # the revision of the recsys this process imported
    }


def _run(tree: Path, root: Path, bundle: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(root), "--bundle", str(bundle)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the build failed\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="a bench/scale.py night root (<size>-seed<N>)")
    ap.add_argument("--bundle", type=Path, help="the bundle folder (default: the newest under nightly/bundles)")
    ap.add_argument("--trees", type=Path, nargs="+", help="code trees, the first is the baseline")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    bundle = args.bundle or max((args.root / "nightly" / "bundles").iterdir(), key=lambda p: p.stat().st_mtime)
    if args.child:
        print(json.dumps(child(args.root, bundle)))
        return
    if not args.trees or not args.out:
        raise SystemExit("--trees and --out are required")
    runs: dict[str, list[dict[str, Any]]] = {str(t): [] for t in args.trees}
    for _ in range(args.repeats):
        for tree in args.trees:
            runs[str(tree)].append(_run(tree, args.root, bundle))
            Console().log(f"{tree}: {runs[str(tree)][-1]['seconds']} s")
    base = statistics.median(r["seconds"] for r in runs[str(args.trees[0])])
    rows = []
    for tree in args.trees:
        got = runs[str(tree)]
        median = statistics.median(r["seconds"] for r in got)
        rows.append(
            {
                "tree": str(tree),
                "git_sha": got[0]["git_sha"],
                "seconds": [r["seconds"] for r in got],
                "seconds_median": median,
                "x_first": round(median / base, 3),
                "maxrss_mb": max(r["maxrss_mb"] for r in got),
                "digests": got[0]["digests"],
                "same_state_as_first": got[0]["digests"] == runs[str(args.trees[0])][0]["digests"],
            }
        )
    first = runs[str(args.trees[0])][0]
    out = {
        "benchmark": "a ranking state's build on all of a night's events, as build_lists rebuilds it",
        "protocol": f"the night root {args.root.name}'s bundle {bundle.name}, fitted on {first['events']} events "
        f"({first['users']} users x {first['items']} items), run seed 42, [scale] defaults; trees alternating, "
        f"{args.repeats} round(s), a fresh process per run",
        "rows": rows,
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    table = Table(title=str(out["benchmark"]))
    for col in ("code", "seconds", "median", "x first", "maxrss MiB", "same state"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["git_sha"][:7],
            ", ".join(str(s) for s in r["seconds"]),
            f"{r['seconds_median']:.1f}",
            f"x{r['x_first']}",
            str(r["maxrss_mb"]),
            "yes" if r["same_state_as_first"] else "NO",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
