"""docs/results.md from the benchmark JSON in bench/results/, so the published figures cannot drift from the runs.

    python bench/results_md.py            # writes docs/results.md
    python bench/results_md.py --check    # exit 1 when docs/results.md differs from what the JSON gives

Every table names its dataset, protocol, seed and metric; numbers are copied from the JSON, never typed in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "results.md"

ROW_ORDER = ("toppop", "sar", "itemknn", "ease", "ease-lowpass", "seqnb", "als", "bpr", "text-pretrained", "text")
PROTOCOLS = {
    "fixed": "the split shipped with the data (leave-one-out: each user's last item is the test, the one before it "
    "the validation item; input = every earlier item), full ranking over all items",
    "cold-items": "a seeded 20% of the items held out with all their events; test = those events of users with other "
    "history; `cold-only` ranks among the held-out items only",
    "ms-stratified": "Microsoft Recommenders' stratified random 75/25 split (by item, seed 42), every test rating "
    "relevant, candidates = items seen in training, as in their benchmark notebook",
    "leave-last-out": "each user's last event by time is the test; full ranking",
    "temporal": "a global time cutoff; the last 20% of events are the test",
}


def _f(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return f"{x:.2g}"


def quality_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Ranking quality (`bench/quality.py`)", ""]
    stage = data["settings"].get("encoder_stage", {})
    head = stage.get("head", {})
    env = data["runs"][0].get("environment", {}) if data.get("runs") else {}
    lora = stage.get("enabled_fine_tune")
    if lora == "auto":  # resolved per machine: on only where CUDA is present
        lora = "cu" in str(env.get("torch", "")) and "+cpu" not in str(env.get("torch", ""))
        lora_text = f"`auto`, so {'on' if lora else 'off'} here (torch {env.get('torch')})"
    else:
        lora_text = "on" if lora else "off"
    lines += [
        f"Seed {data['settings']['seed']}. Encoder stage: MiniLM-L6 (pretrained) + collaborative head "
        f"(`{head.get('objective')}`, {head.get('steps')} steps{'' if head.get('enabled') else ', disabled'}); LoRA "
        f"fine-tuning {lora_text}. Metrics: binary relevance, seen items "
        "excluded, ties never favour the target (recsys.evaluation.metrics). p: paired t-test over users. "
        f"Code {str(env.get('git_sha', '?'))[:10]} (plus uncommitted changes when run during development), "
        f"CPU {env.get('cpu', '?')}.",
        "",
    ]
    for run in data["runs"]:
        proto = run["protocol"]["name"]
        ds = run["dataset"]["name"]
        split = run["protocol"]["split"]
        lines += [
            f"### {ds}, `{proto}`",
            "",
            f"{PROTOCOLS.get(proto, proto)}. {split.get('n_test_users', '?')} judged users, "
            f"{split.get('n_test', '?')} test events.",
            "",
        ]
        models = run["models"]
        cold = proto == "cold-items"
        head_cols = ["model", "nDCG@10", "Recall@10", "Recall@20", "nDCG@50", "Recall@50"]
        if cold:
            head_cols += ["cold-only Recall@20", "cold-only nDCG@10"]
        lines += ["| " + " | ".join(head_cols) + " |", "|" + "---|" * len(head_cols)]
        order = [m for m in ROW_ORDER if m in models] + [m for m in models if m not in ROW_ORDER]
        for name in order:
            m = models[name]["metrics"]
            row = [
                f"`{name}`",
                _f(m.get("ndcg@10")),
                _f(m.get("recall@10")),
                _f(m.get("recall@20")),
                _f(m.get("ndcg@50")),
                _f(m.get("recall@50")),
            ]
            if cold:
                c = models[name]["slices"].get("cold_only", {})
                row += [_f(c.get("recall@20")), _f(c.get("ndcg@10"))]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        for model, rows in (run.get("reproduction") or {}).items():
            for metric, r in rows.items():
                if metric == "published":
                    published = ", ".join(f"{k} {v}" for k, v in r.items())
                    lines.append(f"Published on this split: {model} {published} (not run here).")
                else:
                    lines.append(
                        f"Reproduction: {model} {metric} published {r['published']:.6f}, ours {r['ours']:.6f}."
                    )
        t = run.get("targets")
        if t:
            b, lift = t["pipeline_vs_best_single"], t["text_lift"]
            lines += [
                "",
                f"- `pipeline` vs the best single model (`{b['best']}`): {b['mean_b']:.4f} / {b['mean_a']:.4f} = "
                f"**×{b['ratio']:.3f}**, diff {b['diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}], "
                f"p {_p(b['p_ttest'])}.",
                f"- Text lift, `pipeline` / `pipeline-no-text`: {lift['mean_b']:.4f} / {lift['mean_a']:.4f} = "
                f"**×{lift['ratio']:.3f}**, diff {lift['diff']:+.4f} [{lift['ci_low']:+.4f}, {lift['ci_high']:+.4f}], "
                f"p {_p(lift['p_ttest'])}, {lift['n_users']} users.",
            ]
            if cold:
                r = t["cold_only_recall@20"]
                lines.append(
                    f"- Cold-only Recall@20: `text` {r['text']:.4f} / `text-pretrained` {r['text-pretrained']:.4f} = "
                    f"**×{t['cold_text_vs_pretrained']:.3f}**; `pipeline` {r['pipeline']:.4f} = "
                    f"**×{t['cold_pipeline_vs_text']:.3f}** of `text`."
                )
            p = run.get("pipeline", {})
            feats = ", ".join(f"`{f['feature']}`" for f in p.get("top_features", [])[:8])
            if feats:
                lines.append(f"- Ranker's top features by gain: {feats} ({p.get('feature_importance_csv')}).")
            cr = p.get("candidate_recall") or {}
            if cr:
                lines.append(
                    f"- Candidate recall (test items among the ~{cr.get('mean_candidates_per_user', 0):.0f} candidates "
                    f"per user): {cr.get('overall', 0):.3f} (text {cr.get('text', 0):.3f}, collaborative "
                    f"{cr.get('cf', 0):.3f}, trending {cr.get('popular', 0):.3f})."
                )
        lines.append("")
    lines.append(f"Wall time of the whole run: {data.get('wall_seconds', 0):,.0f} s.")
    lines.append("")
    return lines


def objectives_section(data: dict[str, Any]) -> list[str]:
    ds = data["dataset"]["name"]
    lines = [
        "## Encoder objectives, validation only (`bench/objectives.py`)",
        "",
        f"{ds}, seed {data['seed']}; the test events are never read. Scoring: {data['scoring']}. Warm: "
        f"{data['protocol']['warm']} ({data['protocol']['warm_split']['n_test_users']} users). Cold: "
        f"{data['protocol']['cold']} ({data['protocol']['cold_split']['n_test_cold_items']} items, "
        f"{data['protocol']['cold_split']['n_test_users']} users).",
        "",
        "| objective | steps | warm nDCG@10 | warm Recall@20 | cold-only Recall@20 | cold-only nDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['objective']} | {r['steps']} | {_f(r['warm']['ndcg@10'])} | {_f(r['warm']['recall@20'])} | "
            f"{_f(r['cold_only']['recall@20'])} | {_f(r['cold_only']['ndcg@10'])} |"
        )
    return [*lines, ""]


def validation_section(data: dict[str, Any], name: str) -> list[str]:
    lines = [
        f"## Pipeline choices on validation (`bench/pipeline_validation.py`, {name})",
        "",
        f"{data['dataset']} `{data['protocol']}`, seed {data['seed']}: {data['judged_on']}.",
        "",
        "| variant | settings | nDCG@10 | Recall@50 | cold-only Recall@20 | diff vs first | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row_name, row in data["rows"].items():
        base = row_name.removesuffix("-no-text")
        settings = data["variants"].get(base, {}) if row_name != "ease" else {}
        c = row.get("vs_ref")
        diff, p = (f"{c['diff']:+.4f}", _p(c["p_ttest"])) if c else ("", "")
        lines.append(
            f"| `{row_name}` | `{json.dumps(settings)}` | {_f(row['metrics']['ndcg@10'])} | "
            f"{_f(row['metrics'].get('recall@50'))} | {_f((row.get('cold_only') or {}).get('recall@20'))} | "
            f"{diff} | {p} |"
        )
    return [*lines, ""]


def stability_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## The pipeline across ranker seeds, on validation (`bench/ranker_stability.py`)",
        "",
        f"{data['dataset']}, {data['protocol']}; {data['metric']}; encoder seed {data['encoder_seed']}, "
        f"{data['n_judged_users']} judged users. Each row is one fit with that ranker seed (LightGBM's bagging, "
        "feature sampling and the users' early-stopping folds; docs/decisions/ranker-rounds.md).",
        "",
        "| model | seed | nDCG@10 | boosting rounds | prior |",
        "|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| `{r['model']}` | {r['seed']} | {_f(r['ndcg@10'])} | {r['best_iteration']} | {r['prior_chosen']} |"
        )
    lines.append("")
    for name, v in data["summary"].items():
        lines.append(
            f"- `{name}`: median {_f(v['median'])}, range [{_f(v['min'])}, {_f(v['max'])}], spread {_f(v['spread'])}."
        )
    lifts = ", ".join(f"×{x:.3f}" for x in data["text_lift_per_seed"])
    return [*lines, f"- Text lift per seed (`pipeline` / `pipeline-no-text`, same seed): {lifts}.", ""]


def cli_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Command-line start-up (`bench/cli.py`)",
        "",
        f"{data['what']}; {data['repeats']} runs; `python -c pass`: {data['python_startup_median_s']} s "
        f"({data['environment']['cpu']}).",
        "",
        "| command | median s | target s | × python start-up |",
        "|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(f"| `{r['command']}` | {r['median_s']:.2f} | {r['target_s']:.1f} | {r['x_python_startup']} |")
    return [*lines, ""]


def scale_section(data: dict[str, Any]) -> list[str]:
    env = data.get("environment", {})
    lines = [
        "## The nightly at growing size (`bench/scale.py`)",
        "",
        f"{data['benchmark']}. Streamed synthetic data (users x items x events); {data['protocol']}. "
        f"Wall seconds and peak resident memory (MiB) per step from the night's own meter (the process's resident "
        "baseline included); the night's peak is the largest of the step peaks and `wait4`'s (which only sees the "
        "last step, since the meter resets the high-water mark). One run per size on a shared 2-core machine (other "
        "jobs ran beside it): upper bounds. "
        f"CPU {env.get('cpu', '?')}; each row names the code it ran (rows of earlier runs joined with `--previous`).",
        "",
    ]
    done = [r for r in data["rows"] if r["completed"]]
    steps = list(dict.fromkeys(k for r in done for k in r["steps_seconds"]))
    lines += [
        "| size | code | events | completed | wall s | peak MiB | " + " | ".join(steps) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(steps),
    ]
    code = {r["size"]: str(r.get("git_sha", env.get("git_sha", "?")))[:7] for r in data["rows"]}
    for r in data["rows"]:
        cells = [
            f"{r['steps_seconds'][s]:.0f} s / {r['steps_peak_rss_mb'][s]:.0f}"
            if r["completed"] and s in r["steps_seconds"]
            else "–"
            for s in steps
        ]
        lines.append(
            f"| {r['size']} | {code[r['size']]} | {r['events']} | "
            f"{'yes' if r['completed'] else 'no'} | {r['wall_seconds']:.0f} | "
            f"{max([r['peak_rss_mb'], *r.get('steps_peak_rss_mb', {}).values()]):.0f} | " + " | ".join(cells) + " |"
        )
    if data.get("growth"):
        lines.append("")
    for g in data.get("growth", []):
        worst = max(
            ((s, v["seconds_ratio"]) for s, v in g["steps"].items() if v["seconds_ratio"] is not None),
            key=lambda sv: sv[1],
            default=("–", 0.0),
        )
        a, b = code.get(g["from"], "?"), code.get(g["to"], "?")
        mixed = (
            "" if a == b else f" The two rows ran different code ({a} -> {b}): the ratios mix its changes with growth."
        )
        lines.append(
            f"- {g['from']} -> {g['to']} (events x{g['events_ratio']}): wall x{g['wall_ratio']}, peak memory "
            f"x{g['peak_rss_ratio']}; the step that grew most: `{worst[0]}` x{worst[1]}.{mixed}"
        )
    return [*lines, ""]


def scale_ab_section(files: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """`bench/scale_ab.py`: one size's night on the code before and after a change, run in one session."""
    lines = [
        "## The same night before and after a change (`bench/scale_ab.py`)",
        "",
        "Two runs of `bench/scale.py` at one size in one session, one after the other on the same machine (old code, "
        "then new), so the ratios compare code rather than sessions; one run each, so a ratio within about 10% of 1 "
        "is noise. Identical metrics: every metric of every model equal in both nights.",
        "",
    ]
    for name, d in files:
        a, b = d["before"]["git_sha"][:7], d["after"]["git_sha"][:7]
        lines += [
            f"{name}: {d['size']} ({d['events']} events), {d['protocol']}; CPU "
            f"{d['environment']['after'].get('cpu', '?')}. Identical metrics: "
            f"{'yes' if d['metrics_identical'] else 'no'}.",
            "",
            f"| step | {a} s | {b} s | x | {a} peak MiB | {b} peak MiB |",
            "|---|---|---|---|---|---|",
        ]
        for step, v in d["steps"].items():
            lines.append(
                f"| {step} | {v['before_seconds'] or 0:.1f} | {v['after_seconds'] or 0:.1f} | "
                f"{v['seconds_ratio'] if v['seconds_ratio'] is not None else '–'} | "
                f"{v['before_peak_rss_mb'] or 0:.0f} | {v['after_peak_rss_mb'] or 0:.0f} |"
            )
        lines += [
            f"| **night** | {d['before']['wall_seconds']:.0f} | {d['after']['wall_seconds']:.0f} | "
            f"{d['wall_ratio']} | {d['before']['peak_rss_mb']:.0f} | {d['after']['peak_rss_mb']:.0f} |",
            "",
        ]
    return lines


def state_build_section(files: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """`bench/state_build.py`: a ranking state's build under two code trees, alternating in one session."""
    lines = [
        "## A ranking state's build, code against code (`bench/state_build.py`)",
        "",
        "What the night's list building fits before it lists (sources, features, indexes on all events), in a fresh "
        "process per run, the trees alternating in one session. Same state: sha256 of EASE's weights, SAR's and "
        "item-kNN's similarities and the low-pass components equal to the first tree's.",
        "",
        "| file | protocol | code | seconds | median | x first | maxrss MiB | same state |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in files:
        for r in d["rows"]:
            lines.append(
                f"| {name} | {d['protocol']} | {r['git_sha'][:7]} | {', '.join(str(x) for x in r['seconds'])} | "
                f"{r['seconds_median']:.1f} | x{r['x_first']} | {r['maxrss_mb']} | "
                f"{'yes' if r['same_state_as_first'] else 'NO'} |"
            )
    return [*lines, ""]


def lists_ab_section(files: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """`bench/lists_ab.py`: the published lists' cost per user under two code trees, alternating in one session."""
    lines = [
        "## Lists per user, code against code (`bench/lists_ab.py`)",
        "",
        "`RankingModel.top_k` (the published lists) or, with `--pooled`, the pooled lists of the evaluation's `ease` "
        "and `ease-lowpass` baselines, on a night's saved served model, in a fresh process per run, the trees "
        "alternating in one session. Other lists: the sample's users whose items or order differ from the first "
        "tree's; score diff: the largest difference of a listed score.",
        "",
        "| file | protocol | code | ms/user runs | median | x first | other lists | max score diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in files:
        for r in d["rows"]:
            vs = r["vs_first"]
            lines.append(
                f"| {name} | {d['protocol']} | {r['git_sha'][:7]} | "
                f"{', '.join(f'{x:.3f}' for x in r['ms_per_user_runs'])} | {r['ms_per_user_median']:.3f} | "
                f"x{r['x_first']} | {vs['users_with_other_lists']} | {vs['max_abs_score_diff']:.1e} |"
            )
    return [*lines, ""]


def scale_engine_section(data: dict[str, Any], local: dict[str, Any] | None) -> list[str]:
    """`bench/scale.py --engine dask`: the same night on a Dask LocalCluster, beside the local engine's run."""
    env = data.get("environment", {})
    lines = [
        "## The nightly on the Dask engine (`bench/scale.py --engine dask`)",
        "",
        f"{data['protocol']}. The lists are built by user partitions on the cluster's workers (the other steps run "
        "in the night's process); `local` is the same size from the section above. Identical lists: every user's items "
        "and order equal to the local run's (compared when both ran the same code). "
        f"CPU {env.get('cpu', '?')}.",
        "",
        "| size | engine | code | completed | wall s | peak MiB | build_lists s | where | identical lists |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # each row's own code (a joined JSON's rows ran different commits; its environment is the newest run's)
    fallback = {
        "local": str((local or {}).get("environment", {}).get("git_sha", "?")),
        "dask": str(env.get("git_sha", "?")),
    }
    local_cpu = (local or {}).get("environment", {}).get("cpu")
    if local_cpu and local_cpu != env.get("cpu"):
        lines[2] = lines[2][:-1] + f"; the local rows' JSON ran on {local_cpu}: across machines, compare with care."
    by_size = {r["size"]: r for r in (local or {}).get("rows", []) if r["completed"]}
    for r in data["rows"]:
        ref = by_size.get(r["size"])
        for row, engine in ((ref, "local"), (r, "dask")):
            if row is None:
                continue
            done = row["completed"]
            code = str(row.get("git_sha") or fallback[engine])[:7]
            comp = row.get("compute") or {}
            where = f"{comp.get('partitions', '?')} partitions on {len(comp.get('ran_on', [])) or '?'} worker(s)"
            same = row.get("lists_vs")
            ident = (
                f"{same['identical_lists']} of {same['users']} users"
                + (f" (max score diff {same['max_score_difference']:.1e})" if same["max_score_difference"] else "")
                if same
                else ""
            )
            lines.append(
                f"| {row['size']} | {engine} | {code} | {'yes' if done else 'no'} | "
                f"{row['wall_seconds']:.0f} | {row['peak_rss_mb']:.0f} | "
                f"{row['steps_seconds'].get('build_lists', 0):.0f} | {where} | {ident} |"
                if done
                else f"| {row['size']} | {engine} | {code} | no | {row['wall_seconds']:.0f} | – | – | – | |"
            )
    return [*lines, ""]


def scale_quality_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Exact vs scalable models (`bench/scale.py --quality`)",
        "",
        f"{data['benchmark']}; {data['metric']}. Machine: {data.get('environment', {}).get('cpu', 'not recorded')}; "
        f"commit {data.get('environment', {}).get('git_sha', '?')[:10]}.",
        "",
        "| dataset | protocol | seed | model | exact nDCG@10 | scalable nDCG@10 | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        for model, m in r["models"].items():
            lines.append(
                f"| {r['dataset']} | {r['protocol']} | {r['seed']} | `{model}` | {_f(m['exact']['ndcg@10'])} | "
                f"{_f(m['scalable']['ndcg@10'])} | {m['ratio']:.3f} |"
            )
    return [*lines, ""]


def candidates_section(data: dict[str, Any], name: str) -> list[str]:
    machine = data["machine"].get("processor") or data["machine"]["platform"]
    lines = [
        f"## Candidate rows per user, indexed vs dense (`bench/candidates.py`, {name})",
        "",
        f"{data['benchmark']}; {data['protocol']}. Machine: {machine}, "
        f"{data['machine']['cpu_count']} cores. Found: the share of the dense path's candidate rows (text picks, "
        "collaborative picks) the HNSW path also gives.",
        "",
        "| state | items | dense ms/user | exact-index ms/user | HNSW ms/user | dense / HNSW | rows found | text found "
        "| collab. found | index build s (HNSW) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        ag = r["agreement_with_dense"]["hnsw"]
        ms = r["ms_per_user"]
        lines.append(
            f"| {r['state']} | {r['items']} | {ms['dense']:.2f} | {ms['exact']:.2f} | {ms['hnsw']:.2f} | "
            f"x{r['dense_over']['hnsw']} | {ag['dense_rows_found']:.2%} | {ag['dense_text_picks_found']:.2%} | "
            f"{ag['dense_collaborative_picks_found']:.2%} | {r['index_build_seconds']['hnsw']} |"
        )
    return [*lines, ""]


def lists_section(files: list[tuple[str, dict[str, Any]]]) -> list[str]:
    machine = files[0][1]["machine"]
    lines = [
        "## Published lists per user by candidate batch size (`bench/lists.py`)",
        "",
        f"{files[0][1]['benchmark']}. Machine: {machine['processor']}, {machine['cpu_count']} cores. Same lists: every "
        "user's items, order and scores equal to the first size's.",
        "",
        *[f"- {name}: {data['protocol']}." for name, data in files],
        "",
        "| file | model (users x items) | code | default batch | batch users | ms/user | x first | same lists |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, data in files:
        st = data["state"]
        for r in data["rows"]:
            lines.append(
                f"| {name} | {st['users']} x {st['items']} | {data['git_sha'][:7]} | "
                f"{data['default_batch_users']} | {r['batch_users']} | {r['ms_per_user_median']:.3f} | "
                f"x{r['x_first']} | {'yes' if r['same_lists_as_first'] else 'NO'} |"
            )
    return [*lines, ""]


def blend_grid_section(data: dict[str, Any]) -> list[str]:
    machine = data["machine"].get("processor") or data["machine"]["platform"]
    lines = [
        "## Collaborative grid and lists on a large catalog, pooled vs dense (`bench/blend_grid.py`)",
        "",
        f"{data['benchmark']}; {data['protocol']}. Machine: {machine}, {data['machine']['cpu_count']} cores. "
        "Same item: the share of the dense lists' (user, rank) positions where the pooled list has the same item "
        "(the lowest over the grid's combinations); chosen: the (factors x weight) each picks by validation nDCG@10.",
        "",
        "| data | grid dense ms/user | grid pooled ms/user | dense / pooled | EASE dense ms/user | EASE pooled ms/user "
        "| dense / pooled | same item (grid) | same item (EASE) | chosen pooled / dense |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        ms, x = r["ms_per_user"], r["dense_over_pooled"]
        same = min(g["dense_positions_same_item"] for g in r["grid"].values())
        same_ease = r["ease_agreement"]["dense_positions_same_item"]
        lines.append(
            f"| {r['data']} | {ms['grid_dense']:.2f} | {ms['grid_pooled']:.2f} | x{x['grid']} | {ms['ease_dense']:.2f} "
            f"| {ms['ease_pooled']:.2f} | x{x['ease']} | {same:.2%} | {same_ease:.2%} | "
            f"{r['chosen']['pooled']} / {r['chosen']['dense']} |"
        )
    return [*lines, ""]


def ease_fanout_section(data: dict[str, Any]) -> list[str]:
    """`bench/ease_fanout.py`: sparse EASE with capped rows against uncapped, on validation data."""
    env = data["environment"]
    lines = [
        "## Sparse EASE's rows capped (`[scale] ease_fanout`, `bench/ease_fanout.py`)",
        "",
        f"{data['benchmark']}; {data['protocol']}. Code {env.get('git_sha', '?')[:7]}, CPU {env.get('cpu', '?')}. "
        "x: the ratio to the uncapped fit (fanout 0) of the same run; top-100 kept: the share of the uncapped "
        "lists' (user, item) pairs the capped lists hold; terms: a judged user's summed row lengths (median).",
        "",
        "| data | items | fanout | nDCG@10 | x | recall@100 | x | top-100 kept | terms per user | ms per user | x |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        for f, v in r["fanouts"].items():
            lines.append(
                f"| {r['data']} | {r['items']} | {f} | {v['ndcg@10']:.4f} | x{v['ndcg@10_ratio']} | "
                f"{v['recall@100']:.4f} | x{v['recall@100_ratio']} | {v['top100_kept']:.2%} | "
                f"{v['terms_per_user_median']:.0f} | {v['ms_per_user']:.3f} | x{v['time_ratio_median']} |"
            )
    return [*lines, ""]


def serving_scale_section(data: dict[str, Any]) -> list[str]:
    env = data["environment"]
    lines = [
        "## Serving on the scale bench's snapshots (`bench/serving_scale.py`)",
        "",
        f"{data['benchmark']}; {data['protocol']}. Machine: {env['machine']}, {env['cpus']} cores; each row names "
        "the code it ran (rows of an earlier run joined with `--previous`). Memory at ready: the server's resident "
        "set once the lists and the model are loaded. A snapshot above the service's in-memory default "
        "(`[serving] lists_in_memory_max_entries`) is measured from the store only, as the service serves it.",
        "",
        "| night | code | lists | users | items | entries | start-up s | RSS at ready MB | peak RSS MB | GET p50 ms "
        "| GET p99 ms | req/s | /healthz p99 ms | lists made by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['night']} | {r.get('commit', env['commit'])} | {r['mode']} | {r['snapshot_users']:,} "
            f"| {r['items']:,} | {r['entries']:,} "
            f"| {r['startup_s']:.1f} | {r['ready_rss_mb']:.0f} | {r['after_load_peak_rss_mb']:.0f} "
            f"| {r['get_p50_ms']:.2f} | {r['get_p99_ms']:.2f} | {r['get_rps']:.0f} | {r['healthz_p99_ms']:.2f} "
            f"| {r['lists_from']} |"
        )
    return [*lines, ""]


def render() -> str:
    lines = [
        "# Measured results",
        "",
        "Generated by `python bench/results_md.py` from the JSON in `bench/results/` (do not edit by hand). Each "
        "benchmark's command is in its file's docstring; every figure comes with its dataset, protocol and seed.",
        "",
    ]
    q = RESULTS / "quality.json"
    if q.is_file():
        lines += quality_section(json.loads(q.read_text()))
    o = RESULTS / "objectives.json"
    if o.is_file():
        lines += objectives_section(json.loads(o.read_text()))
    for v in sorted(RESULTS.glob("pipeline-validation*.json")):
        lines += validation_section(json.loads(v.read_text()), v.name)
    st = RESULTS / "ranker-stability.json"
    if st.is_file():
        lines += stability_section(json.loads(st.read_text()))
    sc = RESULTS / "scale.json"
    if sc.is_file():
        lines += scale_section(json.loads(sc.read_text()))
    ab = [(f.name, json.loads(f.read_text())) for f in sorted(RESULTS.glob("scale-ab-*.json"))]
    if ab:
        lines += scale_ab_section(ab)
    builds = [(f.name, json.loads(f.read_text())) for f in sorted(RESULTS.glob("state-build*.json"))]
    if builds:
        lines += state_build_section(builds)
    lists_ab = [(f.name, json.loads(f.read_text())) for f in sorted(RESULTS.glob("lists-ab-*.json"))]
    if lists_ab:
        lines += lists_ab_section(lists_ab)
    sd = RESULTS / "scale-dask.json"
    if sd.is_file():
        lines += scale_engine_section(json.loads(sd.read_text()), json.loads(sc.read_text()) if sc.is_file() else None)
    sq = RESULTS / "scale-quality.json"
    if sq.is_file():
        lines += scale_quality_section(json.loads(sq.read_text()))
    for cf in sorted(RESULTS.glob("candidates*.json")):
        lines += candidates_section(json.loads(cf.read_text()), cf.name)
    lists = [
        (f.name, json.loads(f.read_text()))
        for f in sorted(RESULTS.glob("lists*.json"))
        if not f.name.startswith("lists-ab-")  # code against code: their own section
    ]
    if lists:
        lines += lists_section(lists)
    bg = RESULTS / "blend-grid.json"
    if bg.is_file():
        lines += blend_grid_section(json.loads(bg.read_text()))
    ef = RESULTS / "ease-fanout.json"
    if ef.is_file():
        lines += ease_fanout_section(json.loads(ef.read_text()))
    ss = RESULTS / "serving-scale.json"
    if ss.is_file():
        lines += serving_scale_section(json.loads(ss.read_text()))
    c = RESULTS / "cli.json"
    if c.is_file():
        lines += cli_section(json.loads(c.read_text()))
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when docs/results.md is not what the JSON gives")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python bench/results_md.py", file=sys.stderr)
            raise SystemExit(1)
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
