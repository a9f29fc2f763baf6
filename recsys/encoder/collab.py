"""A collaborative head: a linear map trained on interactions on top of the text encoder's item embeddings.

The encoder turns an item's text into a vector; the head maps that vector into a space where items that users engage
with together lie close. It is trained on the training window's interactions with one of three objectives, and,
being a function of text only, it maps items without any interaction (new items) into the same space:

- `elsa` (beeFormer-style; Vančura et al., RecSys 2024, after ELSA, Vančura et al. 2022): the head's item vectors
  A = normalise(E W) serve as the item factors of a low-rank linear autoencoder; a batch of users' interaction rows
  X is reconstructed as X A Aᵀ - X and the loss is the squared distance between the L2-normalised reconstruction
  and the L2-normalised rows. It learns co-occurrence structure from whole histories.
- `cf-distill`: collaborative distillation. A fitted EASE model's item-item weights (top `neighbours` per item,
  positive part, normalised to sum 1) are the target distribution of each item over the others; the head's cosine
  similarities, softmaxed at `temperature` over the whole catalog, are trained to match it (cross-entropy).
- `next-item`: each user's consecutive positive events (a, b): softmax over the catalog of cos(a, ·) trained to put
  b first; the sequential signal of next-item tasks.

W starts at the identity (the pretrained space) and `identity_weight` * ||W - I||² keeps it near there, so texts
unlike the training items are not mapped far from where the pretrained encoder put them. Training runs a fixed number
of full-catalog steps (every item's vector is recomputed at each step: n_items x dim x dim flops, cheap next to a
transformer), seeded, so the same data, config and seed give the same head.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.baselines.scalable import is_dense, neighbour_ease, top_k_per_column
from recsys.compute.scale import ScaleConfig
from recsys.data import schema as S
from recsys.encoder.config import OBJECTIVES, HeadConfig, Objective

# cf-distill on catalogs above the dense limit: items sampled per step into the softmax (see `_objective`).
DISTILL_SAMPLE = 8192

if TYPE_CHECKING:
    import torch

__all__ = ["HEAD_FILE", "OBJECTIVES", "CollabHead", "HeadConfig", "HeadResult", "Objective", "train_head"]
HEAD_FILE = "head.npz"


@dataclass(frozen=True)
class HeadResult:
    """What training did: steps, the loss at the start and the end, and the wall time."""

    objective: str
    steps: int
    initial_loss: float
    final_loss: float
    wall_seconds: float
    stopped: str  # "completed" (fixed step budget)


@dataclass(frozen=True)
class CollabHead:
    """The trained map W (dim x dim); `apply` gives L2-normalised vectors in the collaborative space."""

    weight: np.ndarray
    cfg: HeadConfig
    result: HeadResult

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        out = vectors.astype(np.float32) @ self.weight
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)

    def save(self, folder: Path) -> Path:
        """`head.npz` (the weights) and `head.json` (config and result) in `folder`; no pickles."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / HEAD_FILE, weight=self.weight.astype(np.float32))
        meta = {"config": self.cfg.model_dump(), "result": asdict(self.result)}
        (folder / "head.json").write_text(json.dumps(meta, indent=2))
        return folder / HEAD_FILE

    @classmethod
    def load(cls, folder: Path) -> CollabHead:
        folder = Path(folder)
        with np.load(folder / HEAD_FILE, allow_pickle=False) as z:
            weight = z["weight"]
        meta = json.loads((folder / "head.json").read_text())
        return cls(weight, HeadConfig.model_validate(meta["config"]), HeadResult(**meta["result"]))


def _interaction_matrix(events: pl.DataFrame, item_index: dict[str, int]) -> tuple[sp.csr_matrix, pl.DataFrame]:
    """Binary user x item matrix of `events` on embedded items, and the coded events (_u, _i) in time order."""
    coded = (
        events.with_row_index("_row")
        .with_columns(pl.col(S.ITEM_ID).replace_strict(item_index, default=None, return_dtype=pl.Int64).alias("_i"))
        .drop_nulls("_i")
        .with_columns(pl.col(S.USER_ID).rank("dense").cast(pl.Int64).alias("_u") - 1)
        .sort("_u", S.TIMESTAMP, "_row")
    )
    n_users = int(coded["_u"].max()) + 1 if coded.height else 0  # type: ignore[arg-type]
    x = sp.csr_matrix(
        (np.ones(coded.height, dtype=np.float32), (coded["_u"].to_numpy(), coded["_i"].to_numpy())),
        shape=(n_users, len(item_index)),
    )
    x.data[:] = 1.0
    return x, coded


def _ease_targets(x: sp.csr_matrix, l2: float, neighbours: int, scale: ScaleConfig) -> sp.csr_matrix:
    """Row-normalised top-`neighbours` positive EASE weights per item with training events (the teacher); above
    `scale.dense_item_limit` items from the neighbour-constrained EASE (`recsys.baselines.scalable`)."""
    has = np.asarray(x.sum(axis=0)).ravel() > 0
    if not is_dense(int(has.sum()), scale.dense_item_limit):
        active = np.flatnonzero(has)
        w = neighbour_ease(x[:, active].tocsr(), l2, scale.neighbours).tocoo()
        keep = w.data > 0
        b = sp.csr_matrix((w.data[keep], (active[w.row[keep]], active[w.col[keep]])), shape=(x.shape[1], x.shape[1]))
        t = top_k_per_column(b.T, min(neighbours, b.shape[1] - 1)).T.tocsr()
        sums = np.asarray(t.sum(axis=1)).ravel()
        return sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ t
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    b = np.maximum(b, 0.0)
    b[~has] = 0.0
    k = min(neighbours, b.shape[1] - 1)
    top = np.argpartition(-b, k, axis=1)[:, :k]
    rows = np.repeat(np.arange(b.shape[0]), k)
    vals = b[rows, top.ravel()]
    t = sp.csr_matrix((vals, (rows, top.ravel())), shape=b.shape)
    t.eliminate_zeros()
    sums = np.asarray(t.sum(axis=1)).ravel()
    return sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ t


def _next_pairs(coded: pl.DataFrame) -> np.ndarray:
    """(previous item, next item) of each user's consecutive events, as rows of an int array."""
    u = coded["_u"].to_numpy()
    i = coded["_i"].to_numpy()
    same = u[1:] == u[:-1]
    return np.stack([i[:-1][same], i[1:][same]], axis=1)


def train_head(
    events: pl.DataFrame,
    embeddings_ids: list[str],
    vectors: np.ndarray,
    cfg: HeadConfig,
    *,
    seed: int = 42,
    progress: Callable[[int, int, float], None] | None = None,
    scale: ScaleConfig | None = None,
) -> CollabHead:
    """Train a head on `events` (the training window only) over the item `vectors` (rows of `embeddings_ids`);
    `scale`: when cf-distill's EASE teacher switches to its sparse form."""
    import torch

    started = time.perf_counter()
    index = {item: r for r, item in enumerate(embeddings_ids)}
    x, coded = _interaction_matrix(events, index)
    rng = np.random.default_rng(seed)
    dim = vectors.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        e = torch.from_numpy(np.array(vectors, dtype=np.float32, copy=True))  # its own, writable memory
        w = torch.nn.Parameter(torch.eye(dim))
        eye = torch.eye(dim)
        optim = torch.optim.Adam([w], lr=cfg.learning_rate)
        batch_fn = _objective(cfg, x, coded, rng, scale or ScaleConfig())

        def head_vectors(rows: np.ndarray | None) -> torch.Tensor:
            """The head's unit vectors of the given item rows (all items: None)."""
            sub = e if rows is None else e[torch.from_numpy(rows)]
            return torch.nn.functional.normalize(sub @ w, dim=1)

        losses: list[float] = []
        for step in range(cfg.steps):
            loss = batch_fn(head_vectors) + cfg.identity_weight * ((w - eye) ** 2).sum()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
            if progress:
                progress(step + 1, cfg.steps, losses[-1])
    result = HeadResult(
        objective=cfg.objective,
        steps=cfg.steps,
        initial_loss=round(losses[0], 6),
        final_loss=round(losses[-1], 6),
        wall_seconds=round(time.perf_counter() - started, 3),
        stopped="completed",
    )
    return CollabHead(w.detach().numpy().copy(), cfg, result)


def _objective(
    cfg: HeadConfig, x: sp.csr_matrix, coded: pl.DataFrame, rng: np.random.Generator, scale: ScaleConfig
) -> Callable[[Callable[[np.ndarray | None], torch.Tensor]], torch.Tensor]:
    """The per-step loss of `cfg.objective` as a function of `vectors(rows)`, the head's unit vectors of item rows
    (None: the whole catalog, A = n_items x dim)."""
    import torch
    import torch.nn.functional as F

    if cfg.objective == "elsa":
        active = np.flatnonzero(np.diff(x.indptr) > 0)

        def elsa(vectors: Callable[[np.ndarray | None], torch.Tensor]) -> torch.Tensor:
            a = vectors(None)
            rows = rng.choice(active, size=min(cfg.batch_users, len(active)), replace=False)
            xb = x[np.sort(rows)]
            dense = torch.from_numpy(xb.toarray())
            coo = xb.tocoo()
            index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            xs = torch.sparse_coo_tensor(index, torch.from_numpy(coo.data), size=xb.shape, check_invariants=True)
            pred = torch.sparse.mm(xs, a) @ a.T - dense
            return ((F.normalize(pred, dim=1) - F.normalize(dense, dim=1)) ** 2).sum(dim=1).mean()

        return elsa
    if cfg.objective == "cf-distill":
        target = _ease_targets(x, cfg.ease_l2, cfg.neighbours, scale).tocsr()
        queries = np.flatnonzero(np.diff(target.indptr) > 0)
        n_items = x.shape[1]
        if n_items > max(scale.dense_item_limit, DISTILL_SAMPLE):
            # a large catalog: the softmax over the batch's own targets plus a uniform sample of DISTILL_SAMPLE items
            # (sampled softmax), so a step costs the same whatever the catalog's size
            def sampled(vectors: Callable[[np.ndarray | None], torch.Tensor]) -> torch.Tensor:
                q = np.sort(rng.choice(queries, size=min(cfg.batch_users, len(queries)), replace=False))
                tq = target[q]
                cols = np.unique(np.concatenate([q, tq.indices, rng.choice(n_items, DISTILL_SAMPLE, replace=False)]))
                logits = (vectors(q) @ vectors(cols).T) / cfg.temperature
                logits[torch.arange(len(q)), torch.from_numpy(np.searchsorted(cols, q))] = float("-inf")
                t = torch.from_numpy(tq[:, cols].toarray().astype(np.float32))
                return -(t * F.log_softmax(logits, dim=1).clamp(min=-1e4)).sum(dim=1).mean()

            return sampled

        def distill(vectors: Callable[[np.ndarray | None], torch.Tensor]) -> torch.Tensor:
            a = vectors(None)
            q = np.sort(rng.choice(queries, size=min(cfg.batch_users, len(queries)), replace=False))
            logits = (a[q] @ a.T) / cfg.temperature
            logits[torch.arange(len(q)), torch.from_numpy(q)] = float("-inf")  # an item is not its own neighbour
            t = torch.from_numpy(target[q].toarray().astype(np.float32))
            return -(t * F.log_softmax(logits, dim=1).clamp(min=-1e4)).sum(dim=1).mean()

        return distill
    pairs = _next_pairs(coded)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) == 0:
        raise ValueError("the next-item objective needs users with at least two events on embedded items")

    def next_item(vectors: Callable[[np.ndarray | None], torch.Tensor]) -> torch.Tensor:
        a = vectors(None)
        b = pairs[rng.choice(len(pairs), size=min(cfg.batch_users, len(pairs)), replace=False)]
        logits = (a[b[:, 0]] @ a.T) / cfg.temperature
        logits[torch.arange(len(b)), torch.from_numpy(b[:, 0])] = float("-inf")
        return F.cross_entropy(logits, torch.from_numpy(b[:, 1]))

    return next_item
