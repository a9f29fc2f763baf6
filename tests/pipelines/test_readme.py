"""Every command in the README runs, in a temporary folder, in the README's order.

Commands are read from the README's ```bash blocks (continuation lines joined, comments dropped), so a command added
to or changed in the README is tested without touching this file. What differs from a user's terminal, and why:

- the public datasets the README names are replaced by the embedded `synthetic` data (minutes -> seconds), except
  `amazon-scientific` (its `fixed` protocol needs its shipped split; read from RECSYS_DATA_DIR, quick for the rows
  asked); ML-Latest's cutoff becomes one inside the synthetic year;
  `events.csv`, `catalog.csv` and `shop.toml` are written here (a shop's export with its own column names);
- `recsys` commands run as the installed `recsys` script, each its own process, with the flows reporting to
  Prefect's test harness server (PREFECT_API_URL) rather than each starting an ephemeral one;
- `recsys serve ... &` starts the real service on a free port of 127.0.0.1, and the `curl` lines run against it;
- long-running servers (`prefect server start`, `recsys schedule`, `mlflow server`) are checked, not started: each
  flag the README gives them must be one their `--help` lists, and `prefect deployment run` must name a deployment
  `recsys schedule` registers;
- `make demo` / `make test` are the set-up commands CI runs itself (they must be Makefile targets here).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from pipelines.cli import app

ROOT = Path(__file__).resolve().parents[2]
RECSYS = Path(sys.executable).with_name("recsys")  # the script the README's `.venv/bin/recsys` is
SYNTHETIC = {"ml-100k", "ml-100k+wiki", "ml-latest-small", "ml-latest-small+tmdb"}
CUTOFFS = {"2017-01-01": "2024-10-01"}  # ML-Latest's cutoff -> one inside the synthetic data's year


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shop_files(folder: Path) -> None:
    """A shop's own export: its column names, ISO times, a repeated row (the README drops duplicates)."""
    from recsys.data import load_dataset

    ds = load_dataset("synthetic")
    events = ds.interactions.select(
        pl.col("user_id").alias("customer"),
        pl.col("item_id").alias("sku"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "rating",
    )
    pl.concat([events, events.head(1)]).write_csv(folder / "events.csv")
    ds.items.select(
        pl.col("item_id").alias("sku"), "title", "description", pl.col("genres").list.join("|"), "year"
    ).write_csv(folder / "catalog.csv")
    (folder / "shop.toml").write_text(
        'name = "shop"\ninteractions = "events.csv"\nitems = "catalog.csv"\ntimestamp_unit = "iso"\n'
        '[columns]\nuser_id = "customer"\nitem_id = "sku"\n[policy]\non_duplicate = "drop"\n'
    )


def _recsys_args(words: list[str]) -> list[str]:
    args = list(words[1:])
    for i, w in enumerate(args[:-1]):
        if w == "--dataset" and args[i + 1] in SYNTHETIC:
            args[i + 1] = "synthetic"
        if w == "--cutoff":
            args[i + 1] = CUTOFFS.get(args[i + 1], args[i + 1])
    return args


def _flags(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if w.startswith("--")]


def _check_help(words: list[str], folder: Path) -> None:
    """A long-running server: every flag the README gives it is one its --help lists."""
    cmd = [w for w in words if "=" not in w or w.startswith("--")]  # drop VAR=value prefixes
    program = ROOT / cmd[0] if cmd[0].startswith(".venv/") else Path(shutil.which(cmd[0]) or cmd[0])
    sub = []  # the subcommand: the words before the first flag
    for w in cmd[1:]:
        if w.startswith("-"):
            break
        sub.append(w)
    if program.name == "recsys":
        result = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200)
        said = result.output
    else:
        exe = Path(sys.executable).with_name(program.name)
        said = subprocess.run(
            [str(exe), *sub, "--help"], capture_output=True, text=True, cwd=folder, timeout=120
        ).stdout
    for flag in _flags(cmd):
        assert flag in said, f"{' '.join(words)}: {flag} is not an option of {program.name} {' '.join(sub)}"


def test_every_readme_command_runs(tmp_path, monkeypatch):
    commands = readme_commands()
    assert [c[:2] for c in commands[:2]] == [["make", "demo"], ["make", "test"]]  # the two set-up commands first
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    shutil.copy(ROOT / "recsys.example.toml", tmp_path / "recsys.example.toml")
    _shop_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # every relative path of the defaults (mlflow/, results/) lands here
    # the harness's Prefect server for the flows (no ephemeral server per command); COLUMNS: wide tables
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    port, server = _free_port(), None
    ran: list[str] = []
    try:
        for words in commands[2:]:
            line, started = " ".join(words), time.perf_counter()
            program = Path(next(w for w in words if "=" not in w or w.startswith("--"))).name
            if words[0] == "export":
                continue
            if program == "recsys" and words[1] == "serve":
                args = [w if w != "8000" else str(port) for w in words[1:] if w != "&"]
                server = subprocess.Popen(
                    [str(RECSYS), *args],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                _wait_ready(port, server)
            elif program == "curl":
                cmd = [w.replace(":8000/", f":{port}/") for w in words]
                done = subprocess.run([*cmd, "--silent", "--show-error", "--fail-with-body"], capture_output=True)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                assert b'"model_version"' in done.stdout or b'"ready"' in done.stdout, (line, done.stdout)
            elif words[-1] == "&" or program in ("mlflow", "prefect"):
                if program == "prefect" and words[1] == "deployment":
                    from pipelines.deploy import NIGHTLY_DEPLOYMENT
                    from pipelines.nightly import nightly

                    assert words[3] == f"{nightly.name}/{NIGHTLY_DEPLOYMENT}", line
                else:
                    _check_help([w for w in words if w != "&"], tmp_path)
            elif program == "recsys":
                done = subprocess.run(
                    [str(RECSYS), *_recsys_args(words)], cwd=tmp_path, env=env, capture_output=True, text=True
                )
                assert done.returncode == 0, (line, (done.stdout + done.stderr)[-3000:])
            else:
                pytest.fail(f"README command not covered by this test: {line}")
            ran.append(f"{time.perf_counter() - started:6.1f} s  {line}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print("\n".join(ran))  # what each command cost (pytest -s)
    assert len(ran) >= 20  # the README's commands, not a silently empty parse
    assert (tmp_path / "report.json").is_file() and any((tmp_path / "topk").iterdir())


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise AssertionError(f"recsys serve exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("recsys serve did not become ready")
