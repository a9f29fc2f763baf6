"""Two nights of `bench/scale.py` at one size, before and after a change, side by side: each step's wall seconds and
peak memory with their ratios (after / before), and whether the two nights' metrics are identical.

Run both nights in one session, one after the other on the same machine (a shared machine's load differs between
sessions more than within one), e.g. from two git worktrees:

    PYTHONPATH=<old tree> python bench/scale.py --sizes 100000x20000x1000000 --root <dir>/old --out old.json
    PYTHONPATH=<new tree> python bench/scale.py --sizes 100000x20000x1000000 --root <dir>/new --out new.json
    python bench/scale_ab.py --before old.json --after new.json --out bench/results/scale-ab-middle.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _row(data: dict[str, Any], path: Path) -> dict[str, Any]:
    rows = [r for r in data["rows"] if r.get("completed")]
    if len(rows) != 1:
        raise SystemExit(f"{path}: expected one completed night, found {len(rows)}")
    return rows[0]


def _ratio(after: float, before: float) -> float | None:
    return round(after / before, 3) if before > 0 else None


def compare(before: dict[str, Any], after: dict[str, Any], *, before_path: Path, after_path: Path) -> dict[str, Any]:
    """The comparison of two `bench/scale.py` JSONs of one size (one completed night each)."""
    a, b = _row(before, before_path), _row(after, after_path)
    if a["size"] != b["size"] or a["events"] != b["events"]:
        raise SystemExit(f"the nights differ in size: {a['size']} ({a['events']}) vs {b['size']} ({b['events']})")
    steps = list(dict.fromkeys([*a["steps_seconds"], *b["steps_seconds"]]))

    def side(row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        sha = str(row.get("git_sha") or data.get("environment", {}).get("git_sha", "?"))
        return {
            "git_sha": sha,
            "wall_seconds": row["wall_seconds"],
            "peak_rss_mb": max([row["peak_rss_mb"], *row["steps_peak_rss_mb"].values()]),
            "steps_seconds": row["steps_seconds"],
            "steps_peak_rss_mb": row["steps_peak_rss_mb"],
            "metrics": row.get("metrics", {}),
        }

    sa, sb = side(a, before), side(b, after)
    return {
        "benchmark": "the same night before and after a change (bench/scale.py twice, one session)",
        "protocol": after.get("protocol", ""),
        "size": a["size"],
        "events": a["events"],
        "before": sa,
        "after": sb,
        "wall_ratio": _ratio(sb["wall_seconds"], sa["wall_seconds"]),
        "peak_rss_ratio": _ratio(sb["peak_rss_mb"], sa["peak_rss_mb"]),
        "steps": {
            s: {
                "before_seconds": sa["steps_seconds"].get(s),
                "after_seconds": sb["steps_seconds"].get(s),
                "seconds_ratio": _ratio(sb["steps_seconds"].get(s, 0.0), sa["steps_seconds"].get(s, 0.0)),
                "before_peak_rss_mb": sa["steps_peak_rss_mb"].get(s),
                "after_peak_rss_mb": sb["steps_peak_rss_mb"].get(s),
            }
            for s in steps
        },
        "metrics_identical": sa["metrics"] == sb["metrics"],
        "environment": {"before": before.get("environment", {}), "after": after.get("environment", {})},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="bench/scale.py JSON of the old code")
    ap.add_argument("--after", type=Path, required=True, help="bench/scale.py JSON of the new code (same size)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out = compare(
        json.loads(args.before.read_text()),
        json.loads(args.after.read_text()),
        before_path=args.before,
        after_path=args.after,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    before, after = out["before"]["git_sha"][:7], out["after"]["git_sha"][:7]
    table = Table(title=f"{out['size']}: {before} -> {after} (metrics identical: {out['metrics_identical']})")
    for col in ("step", f"{before} s", f"{after} s", "ratio", f"{before} MiB", f"{after} MiB"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for s, v in out["steps"].items():
        table.add_row(
            s,
            f"{v['before_seconds'] or 0:.1f}",
            f"{v['after_seconds'] or 0:.1f}",
            f"{v['seconds_ratio']}",
            f"{v['before_peak_rss_mb'] or 0:.0f}",
            f"{v['after_peak_rss_mb'] or 0:.0f}",
        )
    table.add_row(
        "night",
        f"{out['before']['wall_seconds']:.0f}",
        f"{out['after']['wall_seconds']:.0f}",
        f"{out['wall_ratio']}",
        f"{out['before']['peak_rss_mb']:.0f}",
        f"{out['after']['peak_rss_mb']:.0f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
