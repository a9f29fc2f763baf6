"""Which training objective makes the text encoder carry collaborative signal? Judged on validation data only.

For each objective (pretrained MiniLM; a collaborative head trained with `elsa`, `cf-distill` or `next-item`; see
`recsys.encoder.collab`), the text recommender alone ranks the whole catalog by the cosine to the user's latest item
(`half_life_events` 0.25; the encoder is what is compared, not the profile):

- warm: `fixed` protocol's inner split (each user's shipped valid item, the events before it as input); nDCG@10 and
  Recall@20, every item rankable;
- cold: a seeded `cold-items` split of the `fixed` training data (20% of the items held out with all their events;
  the encoder and head never see them); Recall@20 and nDCG@10 ranking among the held-out items only.

The test events are never read (the `fixed` split removes them first). Writes JSON and prints a table.
Usage: python bench/objectives.py --dataset amazon-scientific --out bench/results/objectives.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.config import public_data_dir
from recsys.data import schema as S
from recsys.data.registry import load_dataset
from recsys.encoder import EncoderConfig, InterestConfig, TextEncoder, TextRecommender, build_item_text
from recsys.encoder.cache import ItemEmbeddings, embed_items
from recsys.encoder.collab import OBJECTIVES, HeadConfig, train_head
from recsys.encoder.stage import with_head
from recsys.encoder.text import ItemTextConfig
from recsys.evaluation.metrics import mean_metrics, user_metrics
from recsys.evaluation.runner import cold_only_slice, environment_info
from recsys.evaluation.splits import make_split, split_cold_items, validation_split

LAST_ITEM = InterestConfig(positive_threshold=None, half_life_events=0.25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--protocol", default="fixed", help="outer protocol whose training part is used (test unread)")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--steps", default="150", help="comma-separated head step budgets")
    ap.add_argument("--identity-weight", type=float, default=0.001)
    ap.add_argument("--learning-rate", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache-dir", type=Path, default=Path("results/embeddings"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/objectives.json"))
    args = ap.parse_args()
    console = Console()
    started = time.perf_counter()
    ds = load_dataset(args.dataset, data_dir=public_data_dir())
    outer = make_split(ds.interactions, args.protocol, seed=args.seed, holdout=ds.holdout)  # type: ignore[arg-type]
    warm = validation_split(outer.train, args.protocol, seed=args.seed)
    cold = split_cold_items(outer.train, seed=args.seed)
    items = ds.items[S.ITEM_ID].to_list()
    with Progress(console=console) as bar:
        task = bar.add_task("embedding the catalog (pretrained)", total=ds.items.height)
        text = build_item_text(ds.items, ItemTextConfig())
        base = embed_items(
            text,
            TextEncoder(EncoderConfig()),
            cache_dir=args.cache_dir,
            progress=lambda n: bar.advance(task, n),
        )
        variants: list[tuple[str, int, ItemEmbeddings, ItemEmbeddings, dict]] = [("pretrained", 0, base, base, {})]
        combos = [(o, int(s)) for o in args.objectives.split(",") for s in args.steps.split(",")]
        task = bar.add_task("training heads", total=2 * len(combos))
        for objective, steps in combos:
            cfg = HeadConfig(
                enabled=True,
                objective=objective,  # type: ignore[arg-type]
                steps=steps,
                identity_weight=args.identity_weight,
                learning_rate=args.learning_rate,
            )
            h_warm = train_head(warm.train, base.item_ids, base.vectors, cfg, seed=args.seed)
            bar.advance(task)
            h_cold = train_head(cold.train, base.item_ids, base.vectors, cfg, seed=args.seed)
            bar.advance(task)
            info = {"warm_head": h_warm.result.__dict__, "cold_head": h_cold.result.__dict__}
            variants.append((objective, steps, with_head(base, h_warm), with_head(base, h_cold), info))
    rows = []
    for name, steps, emb_warm, emb_cold, info in variants:
        model = TextRecommender(emb_warm, LAST_ITEM).fit(warm.train, candidates=items, items=ds.items)
        users = warm.test[S.USER_ID].unique(maintain_order=True).to_list()
        w = mean_metrics(user_metrics(model.recommend(users, k=20), warm.test, ks=(10, 20)))
        cmodel = TextRecommender(emb_cold, LAST_ITEM).fit(cold.train, candidates=items, items=ds.items)
        c = cold_only_slice(cmodel, cold, (10, 20))
        rows.append({"objective": name, "steps": steps, "warm": w, "cold_only": c, **info})
    base_w, base_c = rows[0]["warm"]["ndcg@10"], rows[0]["cold_only"]["recall@20"]
    table = Table(title=f"{args.dataset}: text alone, last-item cosine (validation only; seed {args.seed})")
    for col in ("objective", "steps", "warm nDCG@10", "× pre", "warm R@20", "cold-only R@20", "× pre", "cold nDCG@10"):
        table.add_column(col)
    for r in rows:
        w, c = r["warm"], r["cold_only"]
        table.add_row(
            r["objective"],
            str(r["steps"]),
            f"{w['ndcg@10']:.4f}",
            f"{w['ndcg@10'] / base_w:.3f}",
            f"{w['recall@20']:.4f}",
            f"{c['recall@20']:.4f}",
            f"{c['recall@20'] / base_c:.3f}",
            f"{c['ndcg@10']:.4f}",
        )
    console.print(table)
    out = {
        "dataset": ds.summary(),
        "protocol": {
            "outer": args.protocol,
            "warm": "inner split of the outer training part (fixed: each user's shipped valid item)",
            "cold": "cold-items split (20% of items, seeded) of the outer training part; ranking among cold items",
            "test_data_read": False,
            "warm_split": warm.stats,
            "cold_split": cold.stats,
        },
        "seed": args.seed,
        "scoring": "TextRecommender, InterestConfig(half_life_events=0.25): cosine to the user's latest item",
        "head": {"identity_weight": args.identity_weight, "learning_rate": args.learning_rate},
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "environment": environment_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
