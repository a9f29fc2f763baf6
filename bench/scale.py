"""How the nightly's cost grows with the data, and what the scalable models cost in quality.

Two parts (JSON + a table each; this machine is shared, so times are upper bounds):

* `--sizes` (default: the issue's three grids, users x items x events): streamed synthetic data with text
  (`recsys.data.synthetic_scale`), then the full nightly (`recsys run nightly`: validate, fine-tune with a fixed step
  budget, embed, candidates, features, train, evaluate, register, build lists, publish) in a fresh process per size.
  Per step: wall seconds and peak resident memory (the night meters each step, `recsys.nightly.metering`); per size:
  the process's wall time and peak RSS (`os.wait4`). Growth between consecutive sizes is reported as ratios.
* `--quality DATASETS`: `ease`, `ease-lowpass` and `pipeline` evaluated twice on the same split, with the exact dense
  models (the default `[scale]`) and with the scalable forms forced (`dense_item_limit = 0`); nDCG@10 of both and
  their ratio.

    python bench/scale.py --sizes 10000x2000x100000,100000x20000x1000000
    python bench/scale.py --quality ml-100k,amazon-scientific
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = "10000x2000x100000,100000x20000x1000000,1000000x100000x10000000"
PROTOCOLS = {"ml-100k": "ms-stratified", "amazon-scientific": "fixed"}


def _size(text: str) -> tuple[int, int, int]:
    users, items, events = (int(v) for v in text.lower().split("x"))
    return users, items, events


def _settings(folder: Path, spec: Path, fine_tune_steps: int, engine: str) -> Path:
    cfg = folder / f"settings-{engine}.toml"
    cfg.write_text(
        f'[data]\ndataset = "{spec}"\n'
        f'[run]\nwork_dir = "{folder / "work"}"\ncache_dir = "{folder / "embeddings"}"\n'
        f'[nightly]\nwork_dir = "{folder / "nightly"}"\nstore_path = "{folder / "snapshots.db"}"\n'
        f'[tracking]\nuri = "sqlite:///{folder / "mlflow.db"}"\n'
        # a fixed step budget (never wall time) so the runs repeat; forced on also without a GPU
        f"[encoder]\nenabled_fine_tune = true\n[encoder.fine_tune]\nmax_steps = {fine_tune_steps}\n"
        f'[compute]\nengine = "{engine}"\n'
    )
    return cfg


def _run(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MiB) of a child process (its own peak, from wait4)."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024


def run_size(
    size: str, root: Path, *, fine_tune_steps: int, seed: int, engine: str, console: Console
) -> dict[str, Any]:
    users, items, events = _size(size)
    folder = (root / f"{users}x{items}x{events}-seed{seed}").resolve()
    data = folder / "data"
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    folder.mkdir(parents=True, exist_ok=True)
    gen = (
        "from recsys.data.synthetic_scale import write_synthetic_scale; import json, sys; "
        f"d = write_synthetic_scale({str(data)!r}, n_users={users}, n_items={items}, n_events={events}, seed={seed}); "
        "print(json.dumps({'spec': str(d.spec), 'events': d.n_events}))"
    )
    console.log(f"{size}: generating synthetic data")
    code, gen_s, gen_rss = _run([sys.executable, "-c", gen], folder / "generate.log", env)
    if code != 0:
        raise SystemExit(f"data generation failed; see {folder / 'generate.log'}")
    written = json.loads((folder / "generate.log").read_text().strip().splitlines()[-1])
    # a first night from a clean state (no champion, no cached embeddings or adapters): the same work at every size
    for old in ("work", "embeddings", "nightly", "mlflow.db", "snapshots.db", "snapshots.db-wal", "snapshots.db-shm"):
        path = folder / old
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    cfg = _settings(folder, Path(written["spec"]), fine_tune_steps, engine)
    summary = folder / f"summary-{engine}.json"
    summary.unlink(missing_ok=True)
    console.log(f"{size}: nightly ({written['events']} events)")
    cmd = [str(Path(sys.executable).with_name("recsys")), "run", "nightly", "--config", str(cfg), "--force"]
    code, wall, rss = _run([*cmd, "--summary", str(summary)], folder / f"nightly-{engine}.log", env)
    row: dict[str, Any] = {
        "size": size,
        "engine": engine,
        "users": users,
        "items": items,
        "events": written["events"],
        "generate": {"seconds": round(gen_s, 1), "peak_rss_mb": round(gen_rss)},
        "completed": code == 0,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(rss),
        "log": str(folder / f"nightly-{engine}.log"),
    }
    if code == 0:
        out = json.loads(summary.read_text())
        # the night resets the kernel's high-water mark before each step (per-step peaks), which also resets what
        # wait4 reports: the process's peak is the largest of the two
        row["peak_rss_mb"] = round(max(rss, *out["peak_rss_mb"].values()))
        row |= {
            "steps_seconds": out["seconds"],
            "steps_peak_rss_mb": out["peak_rss_mb"],
            "metrics": out["metrics"],
            "compute": out.get("compute"),
        }
    console.log(f"{size}: {'done' if code == 0 else f'FAILED (exit {code})'} in {wall:.0f} s, peak {rss:.0f} MiB")
    return row


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step, the ratio of wall seconds and peak memory between consecutive completed sizes."""
    done = [r for r in rows if r["completed"]]
    out = []
    for small, big in itertools.pairwise(done):
        steps = {}
        for step, s in big["steps_seconds"].items():
            s0 = small["steps_seconds"].get(step)
            m0, m1 = small["steps_peak_rss_mb"].get(step), big["steps_peak_rss_mb"].get(step)
            steps[step] = {
                "seconds_ratio": round(s / s0, 2) if s0 else None,
                "peak_rss_ratio": round(m1 / m0, 2) if m0 and m1 else None,
            }
        out.append(
            {
                "from": small["size"],
                "to": big["size"],
                "events_ratio": round(big["events"] / small["events"], 2),
                "wall_ratio": round(big["wall_seconds"] / small["wall_seconds"], 2),
                "peak_rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 2),
                "steps": steps,
            }
        )
    return out


def previous_rows(paths: list[Path], *, skip: list[str]) -> list[dict[str, Any]]:
    """The completed rows of earlier runs' JSON whose sizes are not in `skip` (a later file's row wins for the same
    size), in size order, each with the code it ran (`git_sha`; its run's when the row has none) and its file."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        sha = data.get("environment", {}).get("git_sha")
        for r in data["rows"]:
            if r["completed"] and r["size"] not in skip:
                rows[r["size"]] = {**r, "git_sha": r.get("git_sha", sha), "from": r.get("from", str(path))}
    return sorted(rows.values(), key=lambda r: _size(r["size"]))


def compare_lists(mine: Path, other: Path) -> dict[str, Any]:
    """The published lists of two runs of the same size (e.g. the dask engine's and the local one's): users whose
    items and order are identical, and the largest score difference among them."""
    from recsys.serving import SQLiteSnapshotStore

    a, b = SQLiteSnapshotStore(mine).read_all(), SQLiteSnapshotStore(other).read_all()
    same = [u for u in a if u in b and a[u][0] == b[u][0]]
    gap = max((abs(x - y) for u in same for x, y in zip(a[u][1], b[u][1], strict=True)), default=0.0)
    return {
        "other": str(other),
        "users": len(a),
        "users_other": len(b),
        "identical_lists": len(same),
        "identical": len(same) == len(a) == len(b),
        "max_score_difference": gap,
    }


def quality(datasets: list[str], *, seed: int, console: Console) -> list[dict[str, Any]]:
    from recsys.baselines import ScaleConfig
    from recsys.config import public_data_dir
    from recsys.data import load_dataset
    from recsys.encoder import EncoderStageConfig, TextEmbedder
    from recsys.evaluation import evaluate
    from recsys.ranker import pipeline_factories

    rows = []
    for name in datasets:
        protocol = PROTOCOLS.get(name, "temporal")
        ds = load_dataset(name, data_dir=public_data_dir())
        embedder = TextEmbedder(
            EncoderStageConfig(), work_dir=Path("results/bench-scale"), seed=seed, cache_dir=Path("results/embeddings")
        )
        result: dict[str, Any] = {"dataset": name, "protocol": protocol, "seed": seed, "models": {}}
        for label, scale in (("exact", ScaleConfig()), ("scalable", ScaleConfig(dense_item_limit=0))):
            t0 = time.perf_counter()
            extra = pipeline_factories(["pipeline"], embedder=embedder, protocol=protocol, seed=seed, scale=scale)  # type: ignore[arg-type]
            report = evaluate(
                ds, protocol=protocol, models=("ease", "ease-lowpass"), seed=seed, extra_models=extra, scale=scale
            )  # type: ignore[arg-type]
            for m in report.models:
                result["models"].setdefault(m.name, {})[label] = {
                    "ndcg@10": m.metrics["ndcg@10"],
                    "fit_seconds": m.fit_seconds,
                }
            console.log(f"{name} {label}: {time.perf_counter() - t0:.0f} s")
        for m in result["models"].values():
            m["ratio"] = round(m["scalable"]["ndcg@10"] / m["exact"]["ndcg@10"], 4) if m["exact"]["ndcg@10"] else None
        rows.append(result)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=SIZES, help="comma-separated users x items x events, e.g. 10000x2000x100000")
    ap.add_argument("--quality", default=None, help="instead: exact vs scalable models on these datasets")
    ap.add_argument("--fine-tune-steps", type=int, default=20)
    ap.add_argument("--engine", default="local", choices=("local", "dask"), help="[compute] engine of the nights")
    ap.add_argument("--seed", type=int, default=7, help="the synthetic data's seed (the night's is [run] seed)")
    ap.add_argument("--root", type=Path, default=Path("results/scale"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="another run's root (e.g. results/scale for the local engine): compare the published lists per size",
    )
    ap.add_argument("--compare-only", action="store_true", help="only add --compare-with's comparison to the JSON")
    ap.add_argument(
        "--previous",
        type=Path,
        action="append",
        default=[],
        help="an earlier run's JSON (repeatable; a later file's row wins for the same size): its completed sizes not "
        "in --sizes join the table and the growth ratios, each row with the code it ran; --sizes '' only combines",
    )
    args = ap.parse_args()
    if args.compare_only:  # a finished run: its JSON gets the comparison of its lists with another run's
        out = args.out or Path(f"bench/results/scale{'' if args.engine == 'local' else '-' + args.engine}.json")
        data = json.loads(out.read_text())
        for row in data["rows"]:
            if row["completed"] and args.compare_with:
                folder = f"{row['size']}-seed{args.seed}"
                row["lists_vs"] = compare_lists(
                    args.root / folder / "snapshots.db", args.compare_with / folder / "snapshots.db"
                )
        out.write_text(json.dumps(data, indent=2, default=str))
        print(json.dumps([r.get("lists_vs") for r in data["rows"]], indent=2))
        return
    console = Console(width=160)
    from recsys.evaluation.runner import environment_info

    if args.quality:
        out = args.out or Path("bench/results/scale-quality.json")
        rows = quality(args.quality.split(","), seed=42, console=console)
        result: dict[str, Any] = {
            "benchmark": "exact dense models vs their scalable forms forced ([scale] dense_item_limit = 0)",
            "metric": "ndcg@10, binary relevance, seen items excluded, full ranking (recsys.evaluation.metrics)",
            "rows": rows,
            "environment": environment_info(),
        }
        table = Table(title="exact vs scalable: nDCG@10 on the test split")
        for col in ("dataset", "protocol", "model", "exact", "scalable", "ratio"):
            table.add_column(col)
        for r in rows:
            for model, m in r["models"].items():
                table.add_row(
                    r["dataset"], r["protocol"], model, f"{m['exact']['ndcg@10']:.4f}",
                    f"{m['scalable']['ndcg@10']:.4f}", f"{m['ratio']:.3f}",
                )  # fmt: skip
    else:
        out = args.out or Path(f"bench/results/scale{'' if args.engine == 'local' else '-' + args.engine}.json")
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        if not sizes and not args.previous:
            raise SystemExit("--sizes is empty: name the earlier runs to combine with --previous")
        earlier = previous_rows(args.previous, skip=sizes)
        rows: list[dict[str, Any]] = earlier
        result = {}
        if not sizes:  # nothing to run: the earlier runs' rows combined (the last file's description)
            result = {**json.loads(args.previous[-1].read_text()), "rows": rows, "growth": growth(rows)}
        for size in sizes:  # the JSON is rewritten after each size: a long run that is stopped keeps what finished
            sha = environment_info().get("git_sha")  # the code the night starts on (a commit during it is not its)
            row = run_size(
                size,
                args.root,
                fine_tune_steps=args.fine_tune_steps,
                seed=args.seed,
                engine=args.engine,
                console=console,
            )
            other = args.compare_with / f"{size}-seed{args.seed}" / "snapshots.db" if args.compare_with else None
            if row["completed"] and other is not None and other.is_file():
                row["lists_vs"] = compare_lists(args.root / f"{size}-seed{args.seed}" / "snapshots.db", other)
            row["git_sha"] = sha
            rows = sorted([*rows, row], key=lambda r: _size(r["size"]))
            result = {
                "benchmark": "the full nightly on streamed synthetic data, per size: wall time and peak memory by step",
                "protocol": "a first night from a clean state (no champion, empty caches); the nightly's own split "
                f"(auto: temporal, last 20% of events held out); fine-tuning {args.fine_tune_steps} steps; data seed "
                f"{args.seed}, run seed 42; [compute] engine {args.engine}",
                "sizes_requested": sizes,
                "rows": rows,
                "growth": growth(rows),
                "environment": environment_info(),
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=str))
        table = Table(title="nightly cost per size (wall seconds / peak MiB per step)")
        steps = list(dict.fromkeys(k for r in rows if r["completed"] for k in r["steps_seconds"]))
        for col in ("size", "events", "done", "wall s", "peak MiB", *steps):
            table.add_column(col, justify="right")
        for r in rows:
            cells = [
                f"{r['steps_seconds'][s]:.0f} / {r['steps_peak_rss_mb'][s]:.0f}"
                if r["completed"] and s in r["steps_seconds"]
                else "-"
                for s in steps
            ]
            table.add_row(
                r["size"], str(r["events"]), "yes" if r["completed"] else "NO", f"{r['wall_seconds']:.0f}",
                str(r["peak_rss_mb"]), *cells,
            )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(table)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
