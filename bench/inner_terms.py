"""Candidate terms for the collaborative blend, judged on inner validation splits only; writes JSON, prints a table.

    python bench/inner_terms.py --out bench/results/inner-terms.json

Protocol: ML-100k, the outer `ms-stratified` split (seed 42, the split of bench/quality.py); its training part is
split again with the same protocol at each inner seed (default 42, 1, 2: seed 42 is the pipeline's own inner
split). Every model is fitted on an inner training part and judged by nDCG@10 (binary relevance, all training
items ranked, seen items excluded: `recsys.evaluation.metrics`) on that inner hold-out. The outer test data is
never read, so nothing here is tuned on test.

The base is the pipeline's collaborative source as it chooses it on ML-100k: z(EASE, l2 500) + 0.5 z(low-pass, 16
factors). Rows:
- `term:` the base plus w * z(term), for a term and weight; the terms are sequence neighbours (`seqnb`), user-side
  EASE (the dual regression over users), time-local popularity (how much of the catalogue's rating traffic each
  item had on the days the user was active, Gaussian kernel over days);
- `ease->`: EASE in the base replaced by a variant: higher-order EASE (Steck & Liang, RecSys 2021: the m most
  co-occurring item pairs as extra inputs, fitted alternately with EASE; a pair never predicts its own items) or
  EASE with each user's row weighted by n_u^-beta;
- `joint`: weights of the low-pass filter, seqnb, time-local popularity and user-EASE together, with a
  leave-one-seed-out check: the weights best on one seed, judged on the others.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from recsys.baselines import EASELowPass, SequenceNeighbours
from recsys.config import public_data_dir
from recsys.data import load_dataset
from recsys.data import schema as S
from recsys.evaluation.metrics import user_metrics
from recsys.evaluation.runner import environment_info
from recsys.evaluation.splits import make_split, validation_split
from recsys.progress import count_bar
from recsys.scoring.sources import zscore_rows

K = 10
BASE = {"l2": 500.0, "factors": 16, "weight": 0.5}
TERM_WEIGHTS = (0.1, 0.25, 0.5, 1.0)
JOINT = {"lowpass": (0.5, 1.0), "seqnb": (0.0, 0.25, 0.5, 1.0), "timepop": (0.0, 0.1, 0.25), "user-ease": (0.0, 0.25)}


def ndcg(users: list[str], item_ids: np.ndarray, scores: np.ndarray, seen: np.ndarray, truth: pl.DataFrame) -> float:
    """Mean nDCG@K over the hold-out's users of the lists `scores` give (seen items excluded)."""
    masked = np.where(seen, -np.inf, scores)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :K]
    recs = pl.DataFrame(
        {
            S.USER_ID: np.repeat(np.asarray(users, dtype=object), K).tolist(),
            S.ITEM_ID: item_ids[top].ravel().tolist(),
            S.RANK: np.tile(np.arange(1, K + 1), len(users)).tolist(),
        }
    )
    return float(user_metrics(recs, truth, ks=(K,))[f"ndcg@{K}"].mean() or 0.0)


def ease_weights(x: np.ndarray, l2: float, target: np.ndarray | None = None, row_w: np.ndarray | None = None):
    """min ||W^1/2 (Y - X B)||^2 + l2 ||B||^2, diag(B) = 0 (EASE for Y = X, W = I), closed form."""
    target = x if target is None else target
    xw = x if row_w is None else x * row_w[:, None]
    gram = x.T @ xw
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    w = p @ (xw.T @ target)
    return w - p * (np.diag(w) / np.diag(p))[None, :]


def higher_order_ease(x: np.ndarray, l2: float, pairs: int, pair_l2: float, rounds: int = 3) -> np.ndarray:
    """Scores of EASE with the `pairs` most co-occurring item pairs as extra inputs (Steck & Liang 2021), fitted by
    alternating the item weights B (given the pairs' part) and the pair weights C (given B; a pair's weight on its
    own two items is held at 0 by a per-item constrained solve)."""
    co = x.T @ x
    iu = np.triu_indices_from(co, 1)
    order = np.argsort(-co[iu], kind="stable")[:pairs]
    pi, pj = iu[0][order], iu[1][order]
    z = x[:, pi] * x[:, pj]
    h = z.T @ z
    h[np.diag_indices_from(h)] += pair_l2
    q = np.linalg.inv(h)
    owned: list[list[int]] = [[] for _ in range(x.shape[1])]
    for p, (a, b) in enumerate(zip(pi, pj, strict=True)):
        owned[a].append(p)
        owned[b].append(p)
    c = np.zeros((pairs, x.shape[1]))
    for _ in range(rounds):
        b_ = ease_weights(x, l2, target=x - z @ c)
        c = q @ (z.T @ (x - x @ b_))
        for k, s in enumerate(owned):
            if s:
                c[:, k] -= q[:, s] @ np.linalg.solve(q[np.ix_(s, s)], c[s, k])
    return x @ b_ + z @ c


def time_local_popularity(coded: pl.DataFrame, n_users: int, n_items: int, bandwidth_days: float) -> np.ndarray:
    """log of sum over the user's active days d of the share of day-d rating traffic (kernel-smoothed) item i had;
    `coded` holds the events with the fitted model's user and item codes (`_u`, `_i`)."""
    day = coded[S.TIMESTAMP].dt.epoch("s") // 86400
    d = (day - day.min()).to_numpy()
    u, i = coded["_u"].to_numpy(), coded["_i"].to_numpy()
    a = np.zeros((n_users, d.max() + 1))
    np.add.at(a, (u, d), 1.0)
    a /= a.sum(axis=1, keepdims=True)
    traffic = np.zeros((d.max() + 1, n_items))
    np.add.at(traffic, (d, i), 1.0)
    lag = np.arange(d.max() + 1)
    kernel = np.exp(-0.5 * ((lag[:, None] - lag[None, :]) / bandwidth_days) ** 2)
    smooth = kernel @ traffic
    smooth /= np.maximum(smooth.sum(axis=1, keepdims=True), 1e-12)
    return np.log(a @ smooth + 1e-6)


def seed_terms(inner, *, pairs: int, quick: bool) -> dict[str, object]:
    """Every score matrix of one inner split (rows: the hold-out's users; columns: the training items)."""
    base = EASELowPass(l2=BASE["l2"], factors=BASE["factors"], weight=0.0).fit(inner.train)
    users = [u for u in inner.test[S.USER_ID].unique(maintain_order=True).to_list() if u in base.user_index_]
    rows = np.array([base.user_index_[u] for u in users])
    seen_all = base.seen_.toarray()
    seen = seen_all[rows].astype(bool)
    valid = ~seen

    def z(s: np.ndarray) -> np.ndarray:
        return zscore_rows(s, valid)

    comp = base.components(rows)
    terms = {"ease": z(comp["ease"]), "lowpass": z(comp["lowpass"])}
    seq = SequenceNeighbours().fit(inner.train, candidates=base.item_ids_.tolist())
    terms["seqnb"] = z(np.asarray(seq._score(np.array([seq.user_index_[u] for u in users]))))
    # user-side EASE: the same regression over users (X^T as input), so a user scores by the users like them
    terms["user-ease"] = z((ease_weights(seen_all.T, 300.0).T @ seen_all)[rows])
    coded = base._encode(inner.train)
    terms["timepop"] = z(time_local_popularity(coded, *seen_all.shape, 7.0)[rows])
    variants: dict[str, np.ndarray] = {}
    pair_l2s = (500.0,) if quick else (500.0, 1e5)
    for pl2 in pair_l2s:
        variants[f"higher-order ease (pairs {pairs}, pair l2 {pl2:g})"] = z(
            higher_order_ease(seen_all, BASE["l2"], pairs, pl2)[rows]
        )
    for beta in (0.25, 0.5):
        w = np.asarray(seen_all.sum(axis=1)) ** -beta
        variants[f"user-weighted ease (beta {beta:g})"] = z(
            seen_all[rows] @ ease_weights(seen_all, BASE["l2"] * float(w.mean()), row_w=w / w.mean())
        )
    truth = inner.test.filter(pl.col(S.USER_ID).is_in(users)).select(S.USER_ID, S.ITEM_ID)
    return {"users": users, "items": base.item_ids_, "seen": seen, "truth": truth, "terms": terms, "variants": variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/inner-terms.json"))
    ap.add_argument("--seeds", default="42,1,2", help="inner split seeds (the outer split is always seed 42)")
    ap.add_argument("--pairs", type=int, default=1000, help="item pairs of the higher-order EASE")
    ap.add_argument("--quick", action="store_true", help="fewer higher-order variants")
    args = ap.parse_args()
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset("ml-100k", data_dir=public_data_dir())
    outer = make_split(ds.interactions, "ms-stratified", seed=42)
    results: dict[str, dict[int, float]] = {}
    joint_grid = list(itertools.product(*JOINT.values()))
    joint: dict[tuple[float, ...], dict[int, float]] = {g: {} for g in joint_grid}
    with count_bar("inner seeds", len(seeds)) as advance:
        for seed in seeds:
            s = seed_terms(
                validation_split(outer.train, "ms-stratified", seed=seed), pairs=args.pairs, quick=args.quick
            )
            t = s["terms"]

            def score(m: np.ndarray, s=s) -> float:
                return ndcg(s["users"], s["items"], m, s["seen"], s["truth"])

            base = t["ease"] + BASE["weight"] * t["lowpass"]
            results.setdefault("base: ease + 0.5 lowpass", {})[seed] = score(base)
            results.setdefault("ease alone", {})[seed] = score(t["ease"])
            for name in ("seqnb", "user-ease", "timepop"):
                results.setdefault(f"{name} alone", {})[seed] = score(t[name])
                for w in TERM_WEIGHTS:
                    results.setdefault(f"term: base + {w:g} {name}", {})[seed] = score(base + w * t[name])
            for name, v in s["variants"].items():
                results.setdefault(f"ease-> {name}", {})[seed] = score(v + BASE["weight"] * t["lowpass"])
            for g in joint_grid:
                wl, wq, wp, wu = g
                joint[g][seed] = score(
                    t["ease"] + wl * t["lowpass"] + wq * t["seqnb"] + wp * t["timepop"] + wu * t["user-ease"]
                )
            advance(1)
    base_name = "base: ease + 0.5 lowpass"
    base_of = results[base_name]
    rows = []
    for name, per in results.items():
        diffs = [per[s] - base_of[s] for s in seeds]
        rows.append(
            {
                "row": name,
                "ndcg@10": per,
                "mean": statistics.fmean(per.values()),
                "diff_vs_base": diffs,
                "mean_diff": statistics.fmean(diffs),
            }
        )
    key = lambda g: "lowpass {} seqnb {} timepop {} user-ease {}".format(*g)  # noqa: E731
    base_g = (BASE["weight"], 0.0, 0.0, 0.0)
    transfer = []
    for s in seeds:
        best = max(joint_grid, key=lambda g, s=s: joint[g][s])
        transfer.append(
            {
                "chosen_on": s,
                "weights": key(best),
                "on_chosen_seed": joint[best][s] - joint[base_g][s],
                "on_other_seeds": {o: joint[best][o] - joint[base_g][o] for o in seeds if o != s},
            }
        )
    joint_rows = sorted(
        (
            {
                "weights": key(g),
                "ndcg@10": joint[g],
                "mean": statistics.fmean(joint[g].values()),
                "mean_diff": statistics.fmean(joint[g][s] - joint[base_g][s] for s in seeds),
            }
            for g in joint_grid
        ),
        key=lambda r: -r["mean"],
    )
    out = {
        "dataset": "ml-100k",
        "protocol": "ms-stratified outer split (seed 42); inner splits of its training part, same protocol",
        "inner_seeds": seeds,
        "metric": f"nDCG@{K}, binary relevance, IDCG over min(|relevant|, {K}); training items ranked, seen excluded",
        "base": BASE,
        "test_data_read": False,
        "rows": rows,
        "joint_top10": joint_rows[:10],
        "joint_base": {"weights": key(base_g), "ndcg@10": joint[base_g]},
        "joint_transfer": transfer,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    table = Table(title=f"ML-100k inner splits (seeds {args.seeds}), nDCG@{K}; diff vs base per seed")
    for col in ("row", *map(str, seeds), "mean", "mean diff"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["row"], *(f"{r['ndcg@10'][s]:.4f}" for s in seeds), f"{r['mean']:.4f}", f"{r['mean_diff']:+.4f}"
        )
    Console().print(table)
    t2 = Table(title="joint weights: best on one seed, judged on the others (diff vs base)")
    for col in ("chosen on", "weights", "there", "elsewhere"):
        t2.add_column(col)
    for tr in transfer:
        t2.add_row(
            str(tr["chosen_on"]),
            tr["weights"],
            f"{tr['on_chosen_seed']:+.4f}",
            " ".join(f"{o}: {d:+.4f}" for o, d in tr["on_other_seeds"].items()),
        )
    Console().print(t2)
    print(f"wrote {args.out} in {out['wall_seconds']} s")


if __name__ == "__main__":
    main()
