"""The collaborative sources' scoring kernels over fitted arrays. Each takes the scored users' rows (their history
as a CSR matrix, or their row numbers) and returns dense scores over the candidate items.

These are the only definitions: `recsys.baselines` fits the arrays and scores through these kernels, and the
ranking state a night saves (`recsys.ranker.state`) scores through them again when it is loaded, so training,
the published lists and online re-ranking compute identical numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Gaps (consecutive pairs of a history) scored at once by `SequenceGraph`: bounds the temporary sparse products.
GAP_CHUNK = 8192


@dataclass(frozen=True)
class EaseWeights:
    """EASE's item-item weights over the items with training events (`active`, ascending columns)."""

    active: np.ndarray
    weights: np.ndarray | sp.csr_matrix  # len(active) x len(active): dense (C order) or sparse (neighbour EASE)

    def score(self, history: sp.csr_matrix, n_items: int) -> np.ndarray:
        """X B for the users' binary histories (rows x n_items)."""
        out = np.zeros((history.shape[0], n_items))
        product = history[:, self.active] @ self.weights
        out[:, self.active] = product.toarray() if sp.issparse(product) else product
        return out


@dataclass(frozen=True)
class LowPassFactors:
    """The low-pass filter's leading components over the active items, and their degree scale."""

    active: np.ndarray
    components: np.ndarray  # len(active) x kept factors, largest first
    item_scale: np.ndarray

    @property
    def factors(self) -> int:
        return int(self.components.shape[1])

    def score(self, history: sp.csr_matrix, n_items: int, factors: int) -> np.ndarray:
        """(x D^-a) V V^T D^a with the first `factors` components."""
        v = self.components[:, :factors]
        x = history[:, self.active] @ sp.diags(1.0 / self.item_scale)
        out = np.zeros((history.shape[0], n_items))
        out[:, self.active] = ((x @ v) @ v.T) * self.item_scale
        return out


def zscore_rows(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row minus its mean over `valid` entries, divided by their standard deviation (rows with fewer than two
    valid entries are only centred)."""
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = np.where(valid, scores, 0.0).sum(axis=1, keepdims=True) / n
    dev = scores - mean  # reused for the variance and the result: the same numbers in fewer passes
    sq = dev * dev
    np.copyto(sq, 0.0, where=~valid)
    sd = np.sqrt(sq.sum(axis=1, keepdims=True) / n)
    dev /= np.where(sd > 0, sd, 1.0)
    return dev


@dataclass(frozen=True)
class BlendParts:
    """EASE and the low-pass filter blended: z(EASE) + weight * z(low-pass with `factors`), per user."""

    ease: EaseWeights
    lowpass: LowPassFactors
    factors: int
    weight: float
    has_train_events: np.ndarray  # bool per candidate item

    def components(self, history: sp.csr_matrix) -> dict[str, np.ndarray]:
        """Raw EASE and low-pass scores and the blend for the users' binary histories (items without training
        events: neither model knows them, so the blend is neutral there)."""
        n = len(self.has_train_events)
        ease = np.asarray(self.ease.score(history, n))
        low = self.lowpass.score(history, n, self.factors)
        return blend_components(ease, low, history, self.has_train_events, self.weight)


def blend_components(
    ease: np.ndarray, low: np.ndarray, history: sp.csr_matrix, has_train_events: np.ndarray, weight: float
) -> dict[str, np.ndarray]:
    """{"ease", "lowpass", "blend"}: the blend z-normalises each over the items the user can be recommended (items
    with training events, not yet seen); items without training events get a neutral 0."""
    valid = np.broadcast_to(has_train_events, ease.shape) & ~history.toarray().astype(bool)
    blend = zscore_rows(ease, valid)
    if weight > 0:
        blend = blend + weight * zscore_rows(low, valid)
    blend = np.where(has_train_events, blend, 0.0)
    return {"ease": ease, "lowpass": low, "blend": blend}


@dataclass(frozen=True)
class ItemSimilarity:
    """An item x item similarity (CSR): scores = history @ similarity (SAR: the time-decayed affinities as history;
    item-kNN: the binary history)."""

    similarity: sp.csr_matrix

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        return (history @ self.similarity).toarray()


@dataclass(frozen=True)
class SequenceGraph:
    """Sequence neighbours: the normalised adjacency of items near each other in users' time-ordered histories,
    and each user's history in time order (`sequence[starts[u] : starts[u + 1]]`)."""

    adjacency: sp.csr_matrix
    starts: np.ndarray
    sequence: np.ndarray

    def _gaps(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left, right, owner) item codes of every consecutive pair of the users' histories, plus (last, last) for
        the tail; owner = position of the user in `rows`."""
        left, right, owner = [], [], []
        for pos, r in enumerate(rows):
            s = self.sequence[self.starts[r] : self.starts[r + 1]]
            if len(s) == 0:
                continue
            left.append(np.append(s[:-1], s[-1]))
            right.append(np.append(s[1:], s[-1]))
            owner.append(np.full(len(s), pos))
        if not left:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(left), np.concatenate(right), np.concatenate(owner)

    def _chunks(self, rows: np.ndarray) -> Iterator[sp.csr_matrix]:
        """Per chunk of gaps, its users x items contribution (sparse)."""
        left, right, owner = self._gaps(rows)
        for start in range(0, len(left), GAP_CHUNK):
            sl = slice(start, start + GAP_CHUNK)
            # sqrt(A[l, j] * A[j, r]) per gap (A is symmetric); for the tail (l = r) that is A[l, j] itself
            both = self.adjacency[left[sl]].multiply(self.adjacency[right[sl]]).tocsr()
            both.data = np.sqrt(both.data)
            to_user = sp.csr_matrix(
                (np.ones(len(owner[sl])), (owner[sl], np.arange(len(owner[sl])))), shape=(len(rows), len(owner[sl]))
            )
            yield sp.csr_matrix(to_user @ both)

    def score(self, rows: np.ndarray, n_items: int) -> np.ndarray:
        out = np.zeros((len(rows), n_items))
        for part in self._chunks(rows):
            out += part.toarray()
        return out

    def score_sparse(self, rows: np.ndarray, n_items: int) -> sp.csr_matrix:
        """`score` as a sparse matrix (the same sums, chunk by chunk)."""
        out = sp.csr_matrix((len(rows), n_items))
        for part in self._chunks(rows):
            out = sp.csr_matrix(out + part)
        return out
