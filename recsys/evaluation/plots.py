"""Plots that travel with a run: feature importance and metric@K per model (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_importance(importance: pl.DataFrame, path: Path, title: str, *, top: int = 25) -> Path:
    """Horizontal bars of the `top` features by total gain (frame: feature, gain)."""
    plt = _pyplot()
    head = importance.head(top)
    fig, ax = plt.subplots(figsize=(8, 0.32 * head.height + 1.2))
    ax.barh(head["feature"].to_list()[::-1], head["gain"].to_list()[::-1], color="#3b75af")
    ax.set_xlabel("total gain")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_metric_at_k(
    metrics: dict[str, dict[str, float]], path: Path, *, ks: Sequence[int], names: Sequence[str] = ("ndcg", "recall")
) -> Path:
    """One panel per metric name, one line per model: value at each K (metrics: model -> {"ndcg@10": ...})."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    ks = sorted(ks)
    for ax, name in zip(axes[0], names, strict=True):
        for model, values in metrics.items():
            ys = [values.get(f"{name}@{k}") for k in ks]
            if all(y is not None for y in ys):
                ax.plot(ks, ys, marker="o", label=model)
        ax.set_xlabel("K")
        ax.set_title(f"{name}@K", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
