"""Load test of the HTTP service on loopback with wrk: GET /v1/users/{id}/recommendations and POST /v1/rank with 500
candidates, plus GET /healthz as the same-run baseline (the framework's floor on this machine).

Set-up, all in this run: the ranking pipeline is trained on ML-100k+wiki (temporal split, pretrained MiniLM
embeddings: the bench measures serving, not training), every user's top-100 is published to a SQLite snapshot store
exactly as the nightly flow does, and `recsys serve` (one uvicorn process) serves it. wrk (Debian's package) runs in
a second process with one thread; each endpoint gets a warm-up, then `--repeats` timed runs; medians are reported.

    python bench/serving.py --out bench/results/serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
    + summary.errors.timeout
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "errors": %d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), latency.max, errors))
end
"""


def lua_get(users: list[str], k: int) -> str:
    paths = ",".join(f'"/v1/users/{u}/recommendations?k={k}"' for u in users)
    return f"""
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
{DONE}"""


def lua_post(bodies: list[str]) -> str:
    quoted = ",".join("[[" + b + "]]" for b in bodies)
    return f"""
local bodies = {{{quoted}}}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/rank", nil, bodies[(i % #bodies) + 1])
end
{DONE}"""


def lua_plain() -> str:
    return DONE


def run_wrk(url: str, script: Path, *, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return {
        "rps": r["requests"] / r["seconds"],
        "p50_ms": r["p50_us"] / 1000,
        "p95_ms": r["p95_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["errors"],
        "requests": r["requests"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, dataset: str, console: Console) -> tuple[Path, list[str], list[str]]:
    """Train, publish, and write a settings TOML for `recsys serve`. Returns (config, users, catalog)."""
    from recsys.config import load_settings, public_data_dir
    from recsys.data import load_dataset
    from recsys.encoder import EncoderConfig, TextEncoder, build_item_text, embed_items
    from recsys.encoder.text import ItemTextConfig
    from recsys.evaluation.splits import make_split
    from recsys.nightly.publishing import publish, ranked_lists
    from recsys.ranker import RankingPipeline
    from recsys.registry import save_bundle
    from recsys.serving import SQLiteSnapshotStore

    ds = load_dataset(dataset, data_dir=public_data_dir())
    console.print(f"{dataset}: embedding {ds.items.height} item texts and training the ranker")
    emb = embed_items(build_item_text(ds.items), TextEncoder(EncoderConfig()), cache_dir=work / "emb")
    split = make_split(ds.interactions, "temporal")
    catalog = ds.items["item_id"].to_list()
    pipe = RankingPipeline(emb, protocol="temporal").fit(split.train, candidates=catalog, items=ds.items)
    bundle = save_bundle(
        work / "bundle",
        ranker=pipe.ranker_,
        embeddings=emb,
        adapter=None,
        events=split.train,
        items=ds.items,
        encoder=EncoderConfig(),
        text=ItemTextConfig(),
        pipeline=pipe.resolved_cfg,
        protocol="temporal",
        state=pipe.state_,
    )
    settings = load_settings()
    parts, fallback, model = ranked_lists(bundle, ds, settings.run, k=100, work_dir=settings.nightly.work_dir)
    lists = parts.collect()
    store = SQLiteSnapshotStore(work / "serving.db")
    publish(
        store,
        lists,
        fallback,
        model_version="bench/1",
        bundle=bundle,
        model=model,
        dataset=ds,
    )
    config = work / "recsys.toml"
    config.write_text(f'[serving]\nstore_path = "{work / "serving.db"}"\nreload_interval_s = 30\n')
    return config, lists["user_id"].unique().sort().to_list(), catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/serving.json"))
    parser.add_argument("--dataset", default="ml-100k+wiki")
    parser.add_argument("--seconds", type=int, default=10, help="per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="wrk connections for GET and /healthz")
    parser.add_argument("--rank-connections", type=int, default=1, help="wrk connections for POST /v1/rank")
    parser.add_argument("--candidates", type=int, default=500)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-serving-"))
    config, users, catalog = prepare(work, args.dataset, console)
    rng = np.random.default_rng(0)
    get_users = [str(u) for u in rng.choice(users, 500)] + ["unknown-user-1", "unknown-user-2"]
    bodies = [
        json.dumps({"user_id": str(u), "candidates": [str(c) for c in rng.choice(catalog, args.candidates, False)]})
        for u in rng.choice(users, 50)
    ]
    scripts = {"healthz": lua_plain(), "get": lua_get(get_users, 10), "rank": lua_post(bodies)}
    paths = {}
    for name, text in scripts.items():
        paths[name] = work / f"{name}.lua"
        paths[name].write_text(text)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "recsys"), "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                sys.exit(f"server exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.2)
        else:
            sys.exit("server never became ready")
        check = httpx.post(f"{base}/v1/rank", content=bodies[0], headers={"Content-Type": "application/json"})
        assert check.status_code == 200 and check.json()["method"] == "ranker", check.text[:300]
        plan = {
            "healthz": (f"{base}/healthz", args.connections),
            "get": (base, args.connections),
            "rank": (base, args.rank_connections),
        }
        runs: dict[str, list[dict]] = {k: [] for k in plan}
        for name, (url, conns) in plan.items():
            run_wrk(url, paths[name], seconds=2, connections=conns)  # warm-up
        for _ in range(args.repeats):  # interleaved, so drift of the shared machine hits every endpoint alike
            for name, (url, conns) in plan.items():
                runs[name].append(run_wrk(url, paths[name], seconds=args.seconds, connections=conns))
    finally:
        server.terminate()
        server.wait(10)

    def median(name: str) -> dict:
        keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")
        out = {k: round(statistics.median(r[k] for r in runs[name]), 3) for k in keys}
        out["errors"] = sum(r["errors"] for r in runs[name])
        out["requests"] = sum(r["requests"] for r in runs[name])
        return out

    result = {
        "benchmark": "HTTP service load on loopback (wrk, 1 thread; recsys serve = 1 uvicorn process)",
        "dataset": args.dataset,
        "protocol": "lists: top-100 per user from the pipeline trained on the temporal split (pretrained MiniLM)",
        "get": {**median("get"), "connections": args.connections, "k": 10, "users": len(get_users)},
        "rank": {**median("rank"), "connections": args.rank_connections, "candidates": args.candidates},
        "healthz_baseline": {**median("healthz"), "connections": args.connections},
        "ratios": {
            "get_rps_over_healthz_rps": round(median("get")["rps"] / median("healthz")["rps"], 3),
        },
        "targets": {"get": "p99 <= 5 ms at >= 2000 rps", "rank": "p99 <= 25 ms"},
        "repeats": args.repeats,
        "seconds_per_run": args.seconds,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    table = Table(title=f"recsys serve on {args.dataset}: medians of {args.repeats} x {args.seconds} s (wrk)")
    for col in ("endpoint", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right" if col != "endpoint" else "left")
    for name, label in (("healthz", "GET /healthz (baseline)"), ("get", "GET recommendations"), ("rank", "POST rank")):
        m = median(name)
        table.add_row(
            label,
            str(plan[name][1]),
            f"{m['rps']:,.0f}",
            f"{m['p50_ms']:.2f}",
            f"{m['p95_ms']:.2f}",
            f"{m['p99_ms']:.2f}",
            str(m["errors"]),
        )
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
