"""A rich rendering of an evaluation report (used by the CLI and the benchmarks)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from recsys.evaluation.runner import EvaluationReport

SHOWN = (
    "ndcg@{k}",
    "precision@{k}",
    "recall@{k}",
    "map",
    "map@{k}",
    "mrr",
    "hitrate@{k}",
    "coverage@{k}",
    "novelty@{k}",
    "ild@{k}",
)


def render_report(report: EvaluationReport, *, width: int | None = None) -> Group:
    """Side-by-side table (best value per accuracy column in bold), cold-item slices and paired comparisons.

    With `width` (the terminal's columns), the metric columns are split over as many tables as needed so that no
    number is ever truncated (an 80-column terminal gets two or three narrower tables instead of `0.2…`)."""
    ds = report.dataset
    title = (
        f"{ds['name']} | protocol {report.protocol} | seed {report.seed} | "
        f"{report.split_stats['n_test_users']} test users | fingerprint {str(ds['fingerprint'])[:12]}"
    )
    cols = [c.format(k=report.k) for c in SHOWN]
    for extra in report.ks[1:]:
        cols += [f"ndcg@{extra}", f"recall@{extra}"]
    cols.append("fit s")
    best = {c: max(m.metrics.get(c, 0.0) for m in report.models) for c in cols if c != "fit s"}
    name_width = max([len("model"), *(len(m.name) for m in report.models)]) + 4  # borders and padding
    groups: list[list[str]] = [[]]
    used = name_width
    for c in cols:
        need = max(len(c), 7) + 3
        if width is not None and groups[-1] and used + need > width:
            groups.append([])
            used = name_width
        groups[-1].append(c)
        used += need
    tables: list[Text | Table] = []
    for i, group in enumerate(groups):
        table = Table(title=title if i == 0 else None)
        table.add_column("model", no_wrap=True)
        for c in group:
            table.add_column(c, justify="right", no_wrap=True)
        for m in report.models:
            cells = []
            for c in group:
                if c == "fit s":
                    cells.append(f"{m.fit_seconds:.2f}")
                    continue
                v = m.metrics.get(c, float("nan"))
                bold = v == best[c] and not c.startswith(("novelty", "ild"))
                cells.append(f"[bold]{v:.4f}[/bold]" if bold else f"{v:.4f}")
            table.add_row(m.name, *cells)
        tables.append(table)
    lines: list[Text | Table] = tables
    k = report.k
    for m in report.models:
        if "cold_items" in m.slices:
            s = m.slices["cold_items"]
            lines.append(
                Text(
                    f"  cold-item slice {m.name}: ndcg@{k}={s[f'ndcg@{k}']:.4f} "
                    f"recall@{k}={s[f'recall@{k}']:.4f} ({s['n_events']} events)"
                )
            )
        if "cold_only" in m.slices:
            s = m.slices["cold_only"]
            lines.append(
                Text(
                    f"  among the {s['n_items']} held-out items only, {m.name}: ndcg@{k}={s[f'ndcg@{k}']:.4f} "
                    f"recall@{k}={s[f'recall@{k}']:.4f}"
                )
            )
    for cmp in report.comparisons:
        lines.append(
            Text(
                f"  {cmp.b} vs {cmp.a}: Δ{cmp.metric}={cmp.diff:+.4f} [{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}] "
                f"p_t={cmp.p_ttest:.2g} p_w={cmp.p_wilcoxon:.2g}"
            )
        )
    return Group(*lines)


def markdown_report(report: EvaluationReport, *, notes: list[str] | None = None) -> str:
    """The side-by-side table, slices and paired comparisons as Markdown (Prefect artifacts, MLflow, PRs)."""
    ds, k = report.dataset, report.k
    cols = [c.format(k=k) for c in SHOWN]
    for extra in report.ks[1:]:
        cols += [f"ndcg@{extra}", f"recall@{extra}"]
    lines = [
        f"### {ds['name']}: protocol `{report.protocol}`, seed {report.seed}",
        "",
        f"{report.split_stats.get('n_test_users')} test users; data fingerprint `{str(ds['fingerprint'])[:16]}`; "
        f"code `{report.environment.get('git_sha', 'unknown')[:12]}`; binary relevance, seen items excluded, "
        "all candidates ranked.",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for m in report.models:
        lines.append(f"| {m.name} | " + " | ".join(f"{m.metrics.get(c, float('nan')):.4f}" for c in cols) + " |")
    cold = [(m.name, m.slices["cold_items"]) for m in report.models if "cold_items" in m.slices]
    if cold:
        lines += ["", f"Cold-item slice ({cold[0][1]['n_events']} events):", ""]
        lines += [f"- {name}: ndcg@{k} {s[f'ndcg@{k}']:.4f}, recall@{k} {s[f'recall@{k}']:.4f}" for name, s in cold]
    only = [(m.name, m.slices["cold_only"]) for m in report.models if "cold_only" in m.slices]
    if only:
        lines += ["", f"Ranked among the {only[0][1]['n_items']} held-out items only:", ""]
        lines += [f"- {name}: ndcg@{k} {s[f'ndcg@{k}']:.4f}, recall@{k} {s[f'recall@{k}']:.4f}" for name, s in only]
    if report.comparisons:
        lines += ["", "Paired comparisons over users (b − a, 95% bootstrap CI, paired t-test):", ""]
        lines += [
            f"- {c.b} − {c.a}: {c.metric} {c.diff:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p={c.p_ttest:.3g}"
            for c in report.comparisons
        ]
    if notes:
        lines += ["", *[f"> {n}" for n in notes]]
    return "\n".join(lines) + "\n"
