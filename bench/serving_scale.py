"""Serving at scale: start-up, memory and GET latency of `recsys serve` on the snapshots `bench/scale.py`'s nights
published, with the lists held in memory and read from the store per request.

For each night folder (`results/scale/<size>`, left by `bench/scale.py`): the snapshot store is copied, the served
ranking model is loaded and saved again in the current artifact layout (its arrays memory-mapped on load), and the
copy's snapshot points at it. Then `recsys serve` (one uvicorn process, a subprocess) starts with
`[serving] lists_in_memory_max_entries` above the snapshot's entries ("in memory": every list read at start-up) or 0
("from the store": one indexed read per request); start-up is the time from the process's start to a `/readyz` that
reports the model loaded, memory is the server's resident set (VmRSS) and peak (VmHWM) then, and wrk (1 thread,
`--connections`) asks 1,000 random users' lists (k = 10) for `--seconds` after a 2 s warm-up, then `GET /healthz`
as long (the framework's floor in the same process, the same minute). Medians of `--repeats` starts. Both modes run
in this process's run, alternating, so their ratio is what to read on a noisy machine.

    python bench/serving_scale.py --nights results/scale/10000x2000x100000-seed7 \\
        results/scale/100000x20000x1000000-seed7 --out bench/results/serving-scale.json

A size no night reaches on this machine (`--synthetic 1000000x100000x10000000 --bundle <a 100k-item night's
bundle>`): the streamed synthetic data (seed 7; the catalog is the same as that night's, so its embeddings come from
`--cache-dir`), the served model rebuilt on all its events with the bundle's ranker (`ModelBundle.pipeline(...).fit`,
what a night's `build_lists` does), and every user's list published to a fresh store. Ranking a million users'
lists takes over an hour here, so these lists are the trending items minus the user's own (the `toppop` rule): the
service reads a list the same way whatever made it. Only "from the store" is measured at that size (in memory it
would hold ~100M entries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import free_port, lua_get, lua_plain, run_wrk
from recsys.serving.service import ServingConfig

MODES = {"in memory": 10**15, "from the store": 0}


def prepare(night: Path, work: Path) -> tuple[Path, list[str], dict]:
    """Copy the night's store into `work`, re-save its served model there, point the copy at it. Returns (store,
    1,000 sampled users, the snapshot's facts)."""
    from recsys.ranker.scoring import RankingModel

    settings = tomllib.loads((night / "settings-local.toml").read_text())
    source = sqlite3.connect(settings["nightly"]["store_path"])
    store = work / "serving.db"
    with sqlite3.connect(store) as copy:
        source.backup(copy)
    source.close()
    con = sqlite3.connect(store)
    sid, meta_text, n_users, k = con.execute(
        "SELECT s.id, s.meta, s.n_users, s.k FROM pointer p JOIN snapshots s ON s.id = p.snapshot_id"
    ).fetchone()
    meta = json.loads(meta_text)
    model = RankingModel.load(Path(meta["model"]))
    saved = model.save(work / "model")
    meta["model"] = str(saved)
    con.execute("UPDATE snapshots SET meta = ? WHERE id = ?", (json.dumps(meta), sid))
    con.commit()
    users = [r[0] for r in con.execute("SELECT user_id FROM lists WHERE snapshot_id = ?", (sid,))]
    con.close()
    rng = np.random.default_rng(0)
    picked = [str(u) for u in rng.choice([u for u in users if not u.startswith("\x00")], 1000, replace=False)]
    facts = {
        "snapshot_users": n_users,
        "k": k,
        "entries": n_users * k,
        "items": len(model.state.item_ids),
        "state_users": len(model.state.user_ids),
    }
    return store, picked, facts


def synthetic_night(size: str, bundle_dir: Path, cache_dir: Path, console: Console) -> Path:
    """A night folder (as `bench/scale.py` leaves) for `size` = USERSxITEMSxEVENTS; reused when already made."""
    from recsys.data import load_dataset
    from recsys.data import schema as S
    from recsys.data.synthetic_scale import write_synthetic_scale
    from recsys.nightly.publishing import publish_parts, served_model_dir, trending
    from recsys.registry import load_bundle
    from recsys.serving import SQLiteSnapshotStore

    n_users, n_items, n_events = (int(x) for x in size.split("x"))
    folder = Path("results/scale") / f"serving-{size}-seed7"
    settings = folder / "settings-local.toml"
    if settings.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = write_synthetic_scale(folder / "data", n_users=n_users, n_items=n_items, n_events=n_events, seed=7)
    ds = load_dataset(str(data.spec))
    console.print(f"{size}: {ds.interactions.height:,} events written and read ({time.perf_counter() - started:.0f} s)")
    bundle = load_bundle(bundle_dir)
    emb = bundle.embeddings_for(ds.items, cache_dir=cache_dir)
    started = time.perf_counter()
    model = (
        bundle.pipeline(embeddings=emb, seed=42)
        .fit(ds.interactions, candidates=ds.items[S.ITEM_ID].to_list(), items=ds.items)
        .model_
    )
    served = served_model_dir(folder / "nightly", bundle, ds)
    model.save(served)
    console.print(f"{size}: the served model rebuilt on every event and saved ({time.perf_counter() - started:.0f} s)")
    fallback = trending(ds.interactions, k=100, window_days=30)
    top = trending(ds.interactions, k=400, window_days=30).with_columns(pl.int_range(1, pl.len() + 1).alias("_order"))
    events = ds.interactions.select(S.USER_ID, S.ITEM_ID)
    users = events[S.USER_ID].unique().sort()

    def frames():  # whole users per frame: the trending items minus the user's own, best first, 100 at most
        for start in range(0, users.len(), 50_000):
            chunk = pl.DataFrame({S.USER_ID: users[start : start + 50_000]})
            yield (
                chunk.join(top, how="cross")
                .join(events, on=[S.USER_ID, S.ITEM_ID], how="anti")
                .sort(S.USER_ID, "_order")
                .group_by(S.USER_ID, maintain_order=True)
                .head(100)
                .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(S.USER_ID).alias(S.RANK))
                .select(S.USER_ID, S.ITEM_ID, S.RANK, S.SCORE)
            )

    started = time.perf_counter()
    store = SQLiteSnapshotStore(folder / "snapshots.db")
    publish_parts(
        store,
        frames(),  # type: ignore[arg-type]  # frames in turn, as the store takes them
        fallback,
        model_version="bench/trending-lists",
        model=served,
        bundle_digest=bundle.digest,
        data_fingerprint=ds.fingerprint,
    )
    console.print(f"{size}: {users.len():,} lists published ({time.perf_counter() - started:.0f} s)")
    settings.write_text(f'[nightly]\nstore_path = "{folder / "snapshots.db"}"\n')
    return folder


def memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[name].split()[0]) / 1024 for key, name in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))}


def one_start(config: Path, script: Path, *, seconds: int, connections: int) -> dict:
    port = free_port()
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "recsys"), "serve", "--config", str(config), "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"recsys serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                r = httpx.get(f"{url}/readyz", timeout=2)
                if r.status_code == 200 and r.json()["model"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 600:
                raise RuntimeError("recsys serve not ready after 600 s")
            time.sleep(0.05)
        startup = time.perf_counter() - started
        at_ready = memory_mb(proc.pid)
        run_wrk(url, script, seconds=2, connections=connections)  # warm-up
        load = run_wrk(url, script, seconds=seconds, connections=connections)
        floor = run_wrk(url, script.with_name("healthz.lua"), seconds=seconds, connections=connections)
        after = memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "startup_s": startup,
        **{f"ready_{k}": v for k, v in at_ready.items()},
        "after_load_peak_rss_mb": after["peak_rss_mb"],
        **{f"get_{k}": v for k, v in load.items()},
        **{f"healthz_{k}": v for k, v in floor.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", nargs="*", type=Path, default=[], help="bench/scale.py run folders")
    parser.add_argument("--synthetic", help="USERSxITEMSxEVENTS: a size served from a synthetic night (docstring)")
    parser.add_argument("--bundle", type=Path, help="with --synthetic: the bundle whose ranker serves it")
    parser.add_argument("--cache-dir", type=Path, help="with --synthetic: the embedding cache of that bundle's night")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/serving-scale.json"))
    parser.add_argument(
        "--previous",
        type=Path,
        help="an earlier run's JSON: its rows of nights not measured here are kept (each with the commit it ran)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    console = Console()
    rows = []
    nights = [(night, MODES, "the night's ranked lists") for night in args.nights]
    if args.synthetic:
        if args.bundle is None or args.cache_dir is None:
            sys.exit("--synthetic needs --bundle and --cache-dir")
        big = synthetic_night(args.synthetic, args.bundle, args.cache_dir, console)
        nights.append((big, {"from the store": 0}, "trending items minus the user's own (synthetic size)"))
    for night, modes, made_by in nights:
        with tempfile.TemporaryDirectory(prefix="serving-scale-") as tmp:
            work = Path(tmp)
            console.print(f"{night.name}: copying the store and re-saving the served model")
            store, users, facts = prepare(night, work)
            if facts["entries"] > ServingConfig().lists_in_memory_max_entries and "in memory" in modes:
                # the service reads such a snapshot from the store by default; holding it would take ~120 B an entry
                modes = {"from the store": 0}
                console.print(f"  {facts['entries']:,} entries: above the in-memory default, from the store only")
            script = work / "get.lua"
            script.write_text(lua_get(users, 10))
            script.with_name("healthz.lua").write_text(lua_plain())
            runs: dict[str, list[dict]] = {mode: [] for mode in modes}
            for repeat in range(args.repeats):
                for mode, limit in modes.items():
                    config = work / "recsys.toml"
                    config.write_text(
                        f'[serving]\nstore_path = "{store}"\nreload_interval_s = 300\n'
                        f"lists_in_memory_max_entries = {limit}\n"
                    )
                    got = one_start(config, script, seconds=args.seconds, connections=args.connections)
                    console.print(
                        f"  {mode} #{repeat + 1}: start-up {got['startup_s']:.1f} s, "
                        f"{got['ready_rss_mb']:.0f} MB, GET p99 {got['get_p99_ms']:.2f} ms"
                    )
                    runs[mode].append(got)
            for mode, got in runs.items():
                med = {key: statistics.median(r[key] for r in got) for key in got[0]}
                rows.append({"night": night.name, "mode": mode, "lists_from": made_by, **facts, **med, "runs": got})
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    for row in rows:
        row["commit"] = commit
    if args.previous is not None:
        earlier = json.loads(args.previous.read_text())
        measured = {row["night"] for row in rows}
        kept = [
            {**row, "commit": row.get("commit", earlier["environment"]["commit"])}
            for row in earlier["rows"]
            if row["night"] not in measured
        ]
        rows = kept + rows
    result = {
        "benchmark": "recsys serve start-up, memory and GET latency on bench/scale.py's published snapshots",
        "protocol": (
            "per night: the store copied, the served model re-saved in the current layout; recsys serve (1 uvicorn "
            f"process) with lists in memory and from the store, alternating; {args.repeats} starts each (medians); "
            f"wrk -t1 -c{args.connections}, {args.seconds} s after a 2 s warm-up, GET k=10 over 1,000 random users "
            "(seed 0), then GET /healthz as long (the floor); start-up = process start to /readyz with the model "
            "loaded; memory = VmRSS / VmHWM. A synthetic size (--synthetic): streamed data seed 7, the served model "
            "rebuilt on all events with the given bundle's ranker, lists = trending items minus the user's own"
        ),
        "rows": rows,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "commit": commit,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    table = Table(title="recsys serve on the scale bench's snapshots (medians)")
    for col in ("night", "lists", "users", "items", "start-up s", "RSS MB", "GET p50 ms", "GET p99 ms", "req/s"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["night"],
            r["mode"],
            f"{r['snapshot_users']:,}",
            f"{r['items']:,}",
            f"{r['startup_s']:.1f}",
            f"{r['ready_rss_mb']:.0f}",
            f"{r['get_p50_ms']:.2f}",
            f"{r['get_p99_ms']:.2f}",
            f"{r['get_rps']:.0f}",
        )
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
