"""Start-up time of the `recsys` command line: `--help` of every command and `registry list` on an empty local
registry, each run `--repeats` times as a fresh process; medians reported. The same-run baseline is a bare
`python -c pass` with the same interpreter (the floor any command pays on this machine), so the table also gives each
command's time as a ratio of it.

    python bench/cli.py --out bench/results/cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

COMMANDS: list[tuple[str, list[str]]] = [
    ("recsys --help", ["--help"]),
    ("recsys evaluate --help", ["evaluate", "--help"]),
    ("recsys run nightly --help", ["run", "nightly", "--help"]),
    ("recsys serve --help", ["serve", "--help"]),
    ("recsys registry list", ["registry", "list"]),
]
TARGETS_S = {"registry list": 3.0, "--help": 1.0}  # issue 20: every --help < 1 s, registry list < 3 s


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/cli.json"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    exe = Path(sys.executable)
    recsys = exe.parent / "recsys"
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)  # an empty local registry (mlflow/ under the working directory)
        env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "120"}
        _time([str(recsys), "registry", "list"], env, cwd)  # warm the OS file cache and create the store once
        rows = []
        base = [_time([str(exe), "-c", "pass"], env, cwd) for _ in range(args.repeats)]
        for name, argv in COMMANDS:
            runs = [_time([str(recsys), *argv], env, cwd) for _ in range(args.repeats)]
            target = next(v for k, v in TARGETS_S.items() if k in name)
            median = statistics.median(runs)
            rows.append(
                {
                    "command": name,
                    "median_s": round(median, 3),
                    "runs_s": [round(r, 3) for r in runs],
                    "target_s": target,
                    "meets_target": median < target,
                    "x_python_startup": round(median / statistics.median(base), 1),
                }
            )
    result = {
        "what": "wall time of a fresh process, medians of --repeats runs; baseline: `python -c pass`",
        "repeats": args.repeats,
        "python_startup_median_s": round(statistics.median(base), 3),
        "rows": rows,
        "environment": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(
        title=f"CLI start-up, medians of {args.repeats} (python -c pass: {result['python_startup_median_s']} s)"
    )
    for col in ("command", "median s", "target s", "ok", "x python"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["command"],
            f"{r['median_s']:.2f}",
            f"{r['target_s']:.1f}",
            "yes" if r["meets_target"] else "NO",
            f"{r['x_python_startup']}",
        )
    Console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
