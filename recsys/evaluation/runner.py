"""Side-by-side offline evaluation of recommenders on a fixed protocol, with slices and paired comparisons."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from recsys.baselines import EASE, EASELowPass, Recommender, ScaleConfig, build_baseline
from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.evaluation.compare import PairedComparison, paired_comparison
from recsys.evaluation.metrics import coverage, intra_list_diversity, mean_metrics, novelty, user_metrics
from recsys.evaluation.selection import EASE_GRID, inner_split, select_by_validation, select_ease_lowpass
from recsys.evaluation.splits import ProtocolName, Split, make_split, sample_users

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ModelResult:
    """One model's metrics overall and per slice, with timings; per-user frame and lists kept for comparisons."""

    name: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    params: dict[str, object]
    fit_seconds: float
    recommend_seconds: float
    per_user: pl.DataFrame = field(repr=False)
    recommendations: pl.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "metrics": self.metrics,
            "slices": self.slices,
            "params": self.params,
            "fit_seconds": round(self.fit_seconds, 4),
            "recommend_seconds": round(self.recommend_seconds, 4),
        }


@dataclass(frozen=True)
class EvaluationReport:
    """Everything a number needs to travel with: dataset fingerprint, protocol, seed, metric definitions."""

    dataset: dict[str, object]
    protocol: str
    protocol_params: dict[str, object]
    split_stats: dict[str, object]
    seed: int
    k: int
    ks: tuple[int, ...]
    models: list[ModelResult]
    comparisons: list[PairedComparison]
    wall_seconds: float
    environment: dict[str, str]

    def model(self, name: str) -> ModelResult:
        return next(m for m in self.models if m.name == name)

    def compare(self, a: str, b: str, *, metric: str | None = None, seed: int | None = None) -> PairedComparison:
        """Paired comparison `b - a` over users on `metric` (default: nDCG at the primary K)."""
        metric = metric or f"ndcg@{self.k}"
        return paired_comparison(
            self.model(a).per_user,
            self.model(b).per_user,
            metric=metric,
            names=(a, b),
            seed=self.seed if seed is None else seed,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "protocol": {"name": self.protocol, "params": self.protocol_params, "split": self.split_stats},
            "seed": self.seed,
            "k": self.k,
            "ks": list(self.ks),
            "metric_definitions": "see recsys.evaluation.metrics (MS Recommenders conventions; binary relevance)",
            "models": {m.name: m.to_dict() for m in self.models},
            "comparisons": [c.to_dict() for c in self.comparisons],
            "wall_seconds": round(self.wall_seconds, 3),
            "environment": self.environment,
        }

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def export_recommendations(self, folder: Path) -> list[Path]:
        """One Parquet file per model: user_id, item_id, rank, score."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for m in self.models:
            p = folder / f"{m.name}.parquet"
            m.recommendations.write_parquet(p)
            paths.append(p)
        return paths


def environment_info() -> dict[str, str]:
    """Versions and code revision, for reproducibility."""
    import lightgbm
    import scipy

    from recsys import __version__

    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
                cwd=Path(__file__).resolve().parent,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    info = {
        "python": platform.python_version(),
        "polars": pl.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "lightgbm": lightgbm.__version__,
        "recsys": __version__,
        "git_sha": sha,
    }
    # The encoder's stack and the CPU: bf16 fine-tuning is repeatable on one machine and library set, not across
    # them (kernels differ), and the pipeline rows move with it. Read from metadata, so torch is not imported here.
    for dist in ("torch", "transformers", "peft", "tokenizers"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "absent"
    info["cpu"] = _cpu_model()
    return info


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo, with AMX noted: it decides the bf16 kernels), else platform's."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = text.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith("flags")), "")
    return f"{name or platform.machine()}{' (amx)' if ' amx_bf16' in flags else ''}"


def _candidates(split: Split, dataset: Dataset) -> list[str] | None:
    return dataset.items[S.ITEM_ID].to_list() if split.candidate_items == "catalog" else None


def _slices(per_user: pl.DataFrame, recs: pl.DataFrame, split: Split, ks: Sequence[int]) -> dict[str, dict]:
    out: dict[str, dict[str, float]] = {}
    train_items = split.train[S.ITEM_ID].unique().implode()
    cold_truth = split.test.filter(~pl.col(S.ITEM_ID).is_in(train_items))
    if cold_truth.height:
        warm_truth = split.test.filter(pl.col(S.ITEM_ID).is_in(train_items))
        out["cold_items"] = {
            "n_users": cold_truth[S.USER_ID].n_unique(),
            "n_events": cold_truth.height,
            **mean_metrics(user_metrics(recs, cold_truth, ks=ks)),
        }
        if warm_truth.height:  # none under cold-items, whose test is the held-out items only
            out["warm_items"] = {
                "n_users": warm_truth[S.USER_ID].n_unique(),
                "n_events": warm_truth.height,
                **mean_metrics(user_metrics(recs, warm_truth, ks=ks)),
            }
    activity = split.train.group_by(S.USER_ID).len("n_train")
    judged = per_user.join(activity, on=S.USER_ID, how="left").fill_null(0)
    median_value = judged["n_train"].median()
    median = float(median_value) if isinstance(median_value, int | float) else 0.0
    for label, mask in (("light_users", pl.col("n_train") <= median), ("heavy_users", pl.col("n_train") > median)):
        part = judged.filter(mask)
        if part.height:
            out[label] = {
                "n_users": part.height,
                "train_events_threshold": median,
                **mean_metrics(part.drop("n_train")),
            }
    return out


def cold_only_slice(
    model: Recommender, split: Split, ks: Sequence[int], *, batch_size: int = 512
) -> dict[str, float | int]:
    """`model` ranking among `split.held_out_items` only (the cold-items protocol): its raw scores (`score`) with
    every other candidate, every item it cannot score and the user's seen items set to -inf, the top max(ks) taken
    with `Recommender._top_k`'s tie rule (candidate order), and scored against `split.test`. Batched over users.
    Collaborative models score 0 here by construction: they cannot rank items without training events."""
    users = split.test[S.USER_ID].unique(maintain_order=True).to_list()
    is_cold = np.isin(model.item_ids_.astype(str), np.asarray(split.held_out_items, dtype=str))
    cannot = ~model.has_train_events_ if not model.scores_cold_items else np.zeros_like(is_cold)
    parts = []
    for start in range(0, len(users), batch_size):
        batch = [u for u in users[start : start + batch_size] if u in model.user_index_]
        if not batch:
            continue
        scores = np.asarray(model.score(batch), dtype=np.float64).copy()
        scores[~np.isfinite(scores)] = -np.inf  # NaN: unscorable
        scores[:, ~is_cold | cannot] = -np.inf
        rows = np.fromiter((model.user_index_[u] for u in batch), dtype=np.int64, count=len(batch))
        seen = model.seen_[rows].tocoo()
        scores[seen.row, seen.col] = -np.inf
        parts.append(model._top_k(batch, scores, max(ks)))
    recs = pl.concat(parts) if parts else pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
    return {
        "n_items": int(is_cold.sum()),
        "n_users": len(users),
        "n_events": split.test.height,
        **mean_metrics(user_metrics(recs, split.test, ks=ks)),
    }


def evaluate(
    dataset: Dataset,
    *,
    protocol: ProtocolName,
    models: Sequence[str] = ("toppop", "sar", "itemknn", "ease", "als"),
    k: int = 10,
    extra_ks: Sequence[int] = (),
    seed: int = 42,
    ease_grid: Sequence[float] = EASE_GRID,
    protocol_params: dict[str, object] | None = None,
    extra_models: dict[str, Callable[[], Recommender]] | None = None,
    progress: ProgressFn | None = None,
    split: Split | None = None,
    scale: ScaleConfig | None = None,
) -> EvaluationReport:
    """Split `dataset` by `protocol`, fit each model on train, rank candidates for every test user, and score.

    Every model ranks all candidate items (no sampled negatives) and excludes the user's training items.
    `protocol_params` go to the split (e.g. `cutoff` or `test_fraction` for `temporal`, `ratio` for
    `ms-stratified`, `cold_fraction` for `cold-items`); `fixed` uses the dataset's shipped hold-out
    (`dataset.holdout`). Under `cold-items` each model also gets the slice `cold_only` (see `cold_only_slice`).
    EASE's l2 is chosen on an inner validation split of the training data. `extra_models` adds recommenders
    built elsewhere (e.g. the full pipeline) under their own names. `split`: a split already made from `dataset`
    by this protocol (so several evaluations share it); made here when None. `scale`: when the collaborative
    baselines switch to their sparse forms and how many users are judged (`recsys.baselines.ScaleConfig`: at most
    `eval_users` test users, a stratified seeded sample the same for every model; validation choices on at most
    `label_users` inner hold-out users; default: its defaults).
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    ks = (k, *[x for x in extra_ks if x != k])
    if split is None:
        split = make_split(
            dataset.interactions, protocol, seed=seed, holdout=dataset.holdout, **(protocol_params or {})
        )
    # above `scale.eval_users` test users, every model is judged on the same stratified, seeded sample of them
    split, user_sample = sample_users(split, (scale or ScaleConfig()).eval_users, seed=seed, tag="eval")
    candidates = _candidates(split, dataset)
    n_candidates = len(candidates) if candidates is not None else split.train[S.ITEM_ID].n_unique()
    users = split.test[S.USER_ID].unique(maintain_order=True).to_list()
    factories: dict[str, Callable[[], Recommender]] = {}
    params: dict[str, dict[str, object]] = {}
    ease_choice: tuple[float, dict[float, float]] | None = None  # EASE's l2, chosen once for ease and ease-lowpass
    for name in models:
        if name in ("ease", "ease-lowpass") and ease_choice is None:
            say("ease: choosing l2 on a validation split of train")
            ease_choice = select_by_validation(
                lambda v: EASE(l2=v, scale=scale, l2_grid=ease_grid),
                ease_grid,
                split.train,
                protocol=protocol,
                seed=seed,
                k=k,
                candidates=candidates,
                scale=scale,
            )
        if name == "ease":
            best, grid_scores = ease_choice  # type: ignore[misc]
            factories[name] = partial(EASE, l2=best, scale=scale)
            params[name] = {"l2": best, "validation_ndcg": {str(g): round(s, 6) for g, s in grid_scores.items()}}
        elif name == "ease-lowpass":
            say("ease-lowpass: choosing factors and weight on a validation split of train")
            l2 = ease_choice[0]  # type: ignore[index]
            inner = inner_split(split.train, protocol, seed=seed, scale=scale)
            (f, w), fw_scores = select_ease_lowpass(inner, l2=l2, k=k, candidates=candidates, scale=scale)
            factories[name] = partial(EASELowPass, l2=l2, factors=f, weight=w, scale=scale)
            params[name] = {"l2": l2, "factors": f, "weight": w, "validation_ndcg": fw_scores}
        else:
            factories[name] = partial(build_baseline, name, seed=seed, scale=scale)
    factories.update(extra_models or {})
    results = []
    for name, make in factories.items():
        say(f"{name}: fit")
        t0 = time.perf_counter()
        model = make().fit(split.train, candidates=candidates, items=dataset.items)
        t1 = time.perf_counter()
        say(f"{name}: recommend for {len(users)} users")
        recs = model.recommend(users, k=max(ks))
        t2 = time.perf_counter()
        per_user = user_metrics(recs, split.test, ks=ks)
        metrics = mean_metrics(per_user)
        metrics[f"coverage@{k}"] = coverage(recs, k=k, n_candidates=n_candidates)
        metrics[f"novelty@{k}"] = novelty(recs, split.train, k=k)
        metrics[f"ild@{k}"] = intra_list_diversity(recs, dataset.items, k=k)
        extras = getattr(model, "evaluation_extras", None)  # e.g. the pipeline's candidate recall
        model_params = {
            **params.get(name, {}),
            **(extras(split.test) if callable(extras) else {}),
            **{a: v for a, v in vars(model).items() if not a.endswith("_") and isinstance(v, int | float | str)},
        }
        slices = _slices(per_user, recs, split, ks)
        if split.held_out_items:  # after evaluation_extras: scoring again may add to a model's bookkeeping
            slices["cold_only"] = cold_only_slice(model, split, ks)
        results.append(ModelResult(name, metrics, slices, model_params, t1 - t0, t2 - t1, per_user, recs))
    comparisons = []
    if len(results) > 1:
        primary = f"ndcg@{k}"
        best = max(results, key=lambda r: r.metrics[primary])
        comparisons = [
            paired_comparison(r.per_user, best.per_user, metric=primary, names=(r.name, best.name), seed=seed)
            for r in results
            if r is not best
        ]
    return EvaluationReport(
        dataset=dataset.summary(),
        protocol=protocol,
        protocol_params=split.params,
        split_stats={**split.stats, "judged_users": user_sample},
        seed=seed,
        k=k,
        ks=ks,
        models=results,
        comparisons=comparisons,
        wall_seconds=time.perf_counter() - started,
        environment=environment_info(),
    )
