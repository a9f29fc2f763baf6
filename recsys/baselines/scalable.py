"""The collaborative models' scalable forms: memory and time that grow with the interactions, not with items^2.

Above `ScaleConfig.dense_item_limit` items with training events, the models that need an items x items matrix switch
to sparse forms (below it they keep their exact dense fits, so small data keeps today's models and numbers):

* EASE -> neighbour-constrained EASE. EASE's closed form equals, column by column, a ridge regression of item j's
  column on every other item's (B[:, j] = (G_-j,-j + l2 I)^-1 G_-j,j with G = X^T X). Here each item is regressed on
  its `neighbours` most co-occurring items only, drawn from the POOL_ITEMS items with the most events: one k x k
  solve per item, a sparse items x items B with k entries per column. With k = all items it is EASE exactly.
* the low-pass filter -> the same leading eigenvectors of the normalised Gram matrix, from a Lanczos solver
  (`scipy.sparse.linalg.eigsh`) on the sparse user x item matrix, never forming the Gram matrix densely;
* SAR and item-kNN -> the co-occurrence computed in item chunks and each item's `neighbours` most similar items kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

# Items per chunk of the chunked co-occurrence and of the neighbour-constrained solves.
ITEM_CHUNK = 2048
SOLVE_CHUNK = 256
MEMO_BYTES = 2 * 2**30  # neighbour-constrained EASE fits remembered (see `neighbour_ease`)
POOL_ITEMS = 16_384  # the neighbour-constrained EASE's regressors: the items with the most events (dense Gram)


_MEMO: OrderedDict[tuple[str, float, int, int, int], sp.csr_matrix] = OrderedDict()


def is_dense(n_items: int, limit: int) -> bool:
    return n_items <= limit


def best_per_segment(indptr: np.ndarray, keys: np.ndarray, vals: np.ndarray, k: int) -> np.ndarray:
    """A mask of each segment's (entries indptr[j]:indptr[j + 1]) k largest `vals`, ties by the smaller `keys`;
    every entry of a segment of k or fewer. Values must not be NaN.

    A segment longer than k is cut at its k-th largest value by a partition of its own entries, and only its ties
    at the cut are ordered. Ordering every entry by (segment, value, key) in one lexsort kept the same entries and
    was a quarter of a ranking state's build at 100k items (SAR's and item-kNN's co-occurrence chunks hold millions
    of entries, of which 100 per item are kept)."""
    keep = np.ones(len(vals), dtype=bool)
    if np.isnan(vals).any():
        raise ValueError("NaN values have no order")
    counts = np.diff(indptr)
    for j in np.flatnonzero(counts > k).tolist():
        lo, hi = int(indptr[j]), int(indptr[j + 1])
        if k <= 0:
            keep[lo:hi] = False
            continue
        v = vals[lo:hi]
        kth = np.partition(v, len(v) - k)[len(v) - k]  # the k-th largest
        chosen = v > kth  # fewer than k of them
        need = k - int(np.count_nonzero(chosen))
        ties = np.flatnonzero(v == kth)
        if len(ties) > need:
            ties = ties[np.argsort(keys[lo:hi][ties], kind="stable")[:need]]
        chosen[ties] = True
        keep[lo:hi] = chosen
    return keep


def top_k_per_column(m: sp.spmatrix, k: int, *, skip_diagonal: bool = True) -> sp.csr_matrix:
    """Each column's k largest entries (ties: the smaller row index; `best_per_segment`); optionally without the
    diagonal."""
    c = sp.csc_matrix(m, copy=True)
    c.sum_duplicates()
    rows, vals, counts = c.indices, c.data, np.diff(c.indptr)
    cols = np.repeat(np.arange(c.shape[1]), counts)
    if skip_diagonal:
        off = rows != cols
        rows, vals, cols = rows[off], vals[off], cols[off]
        counts = np.bincount(cols, minlength=c.shape[1])
    keep = best_per_segment(np.concatenate(([0], np.cumsum(counts))), rows, vals, k)
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=m.shape)


def chunked_similarity(
    x: sp.csr_matrix,
    k: int,
    similarity: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> sp.csr_matrix:
    """items x items: `similarity(cooc, row, col, diag)` of the co-occurrence, computed ITEM_CHUNK target columns at
    a time with each column's k largest entries kept (the diagonal and zeros dropped); memory O(chunk x items).
    A chunk's co-occurrence is made as rows (its targets' items x users rows times the users x items matrix, both
    CSR: no conversion per chunk), so each target's entries are one row to cut."""
    x = sp.csr_matrix(x)
    xt = x.T.tocsr()
    diag = np.asarray(x.sum(axis=0)).ravel()
    parts = []
    for lo in range(0, x.shape[1], ITEM_CHUNK):
        hi = min(x.shape[1], lo + ITEM_CHUNK)
        block = sp.csr_matrix(xt[lo:hi] @ x)  # targets x items; each row's entries in no particular order
        col = lo + np.repeat(np.arange(hi - lo), np.diff(block.indptr))  # the target of each entry
        row = block.indices
        vals = np.where(row == col, 0.0, similarity(block.data, row, col, diag))
        nonzero = vals != 0
        row, col, vals = row[nonzero], col[nonzero], vals[nonzero]
        indptr = np.concatenate(([0], np.cumsum(np.bincount(col - lo, minlength=hi - lo))))
        keep = best_per_segment(indptr, row, vals, k)
        parts.append((row[keep], col[keep], vals[keep]))
    n = x.shape[1]
    if not parts:
        return sp.csr_matrix((n, n))
    rows, cols, data = (np.concatenate(p) for p in zip(*parts, strict=True))
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


def cap_rows(w: sp.csr_matrix, fanout: int) -> sp.csr_matrix:
    """Each row's `fanout` largest entries by magnitude (ties: the smaller column), the rest dropped; `w` itself when
    no row is longer (or `fanout` is 0).

    Why: neighbour EASE keeps k weights per column (item j regressed on k items), but a popular item is a regressor
    of a large share of the catalog, so its row reaches that share, and a user's score row (the sum of their items'
    rows) grows with the catalog: at 1M users x 100k items ~52k terms per user. Capped rows bound a user's terms by
    history length x `fanout`, whatever the catalog."""
    w = sp.csr_matrix(w)
    counts = np.diff(w.indptr)
    if fanout <= 0 or not len(counts) or int(counts.max()) <= fanout:
        return w
    keep = best_per_segment(w.indptr, w.indices, np.abs(w.data), fanout)
    kept = np.bincount(np.repeat(np.arange(len(counts)), counts)[keep], minlength=len(counts))
    indptr = np.concatenate(([0], np.cumsum(kept))).astype(w.indptr.dtype)
    return sp.csr_matrix((w.data[keep], w.indices[keep], indptr), shape=w.shape)


def neighbour_ease(
    x: sp.csr_matrix, l2: float, neighbours: int, *, fanout: int = 0, grid: Sequence[float] = ()
) -> sp.csr_matrix:
    """`_neighbour_ease`, remembered: a night fits EASE on the same window several times (the l2 grid of the
    pipeline and of the `ease` baseline share one inner split; the candidate, the champion and the baselines share
    the split's training part), so the last fits are kept (MEMO_BYTES at most; same inputs, same weights).

    `fanout`: each item's row of weights capped to its largest entries (`cap_rows`; 0 = uncapped).

    `grid`: the other l2 values the caller will ask for on the same `x` (a validation grid). They are fitted in the
    same pass, as many as the memo holds: the neighbours, their Gram blocks and right-hand sides do not depend on l2,
    only each solve does, so a grid of seven costs about one fit and seven solves instead of seven fits (the same
    weights as separate fits)."""
    x = x.tocsr()
    h = hashlib.blake2b(digest_size=16)
    for part in (np.asarray(x.shape), x.indptr, x.indices):
        h.update(np.ascontiguousarray(part).tobytes())
    digest = h.hexdigest()

    def key(v: float) -> tuple[str, float, int, int, int]:
        return (digest, float(v), int(neighbours), POOL_ITEMS, int(fanout))

    if key(l2) in _MEMO:
        _MEMO.move_to_end(key(l2))
        return _MEMO[key(l2)]
    # what the memo can hold of the grid beside this fit (a fit stores about items x neighbours entries of 12 bytes)
    room = max(1, MEMO_BYTES // max(1, x.shape[1] * neighbours * 12))
    extra = [float(v) for v in dict.fromkeys(grid) if float(v) != float(l2) and key(v) not in _MEMO][: room - 1]
    fits = [cap_rows(w, fanout) for w in _neighbour_ease(x, [float(l2), *extra], neighbours)]
    for v, weights in zip([l2, *extra], fits, strict=True):
        _MEMO[key(v)] = weights  # new keys: appended, so the oldest fits are evicted first
    _MEMO.move_to_end(key(l2))  # the fit asked for is the newest: evicted last
    while len(_MEMO) > 1 and sum(_nbytes(w) for w in _MEMO.values()) > MEMO_BYTES:
        _MEMO.popitem(last=False)
    return fits[0]


def _nbytes(m: sp.csr_matrix) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def _neighbour_ease(x: sp.csr_matrix, l2s: Sequence[float], neighbours: int) -> list[sp.csr_matrix]:
    """Neighbour-constrained EASE weights (items x items, CSR), one per ridge value of `l2s`: column j regresses item
    j on its `neighbours` most co-occurring items among the regressor pool (the POOL_ITEMS items with the most
    events; every item when the catalog is smaller). See the module docstring.

    The pool's Gram matrix is held dense (float32, at most POOL_ITEMS^2 x 4 bytes: 1 GiB), so each item's k x k
    system is a gather from it; SOLVE_CHUNK items are solved at once. Cost: O(items x k^3) for the solves plus one
    sparse product per chunk, never items^2."""
    n = x.shape[1]
    x = x.tocsc()
    degree = np.asarray(x.sum(axis=0)).ravel()
    pool = np.sort(np.argsort(-degree, kind="stable")[: min(n, POOL_ITEMS)])
    in_pool = np.full(n, -1, dtype=np.int64)
    in_pool[pool] = np.arange(len(pool))
    xp = x[:, pool].tocsc()
    xpt = xp.T.tocsr()
    gp = np.zeros((len(pool), len(pool)), dtype=np.float32)
    for lo in range(0, len(pool), ITEM_CHUNK):
        gp[:, lo : lo + ITEM_CHUNK] = (xpt @ xp[:, lo : lo + ITEM_CHUNK]).toarray()
    k = min(neighbours, len(pool) - 1) if len(pool) > 1 else 0
    # Each k x k solve is tiny: BLAS threads only add synchronisation, and on a busy machine their spin-waits made a
    # chunk of 256 solves take 0.02-4.5 s (measured at 20k items); one thread takes 0.02 s every time, same result.
    with threadpool_limits(1, "blas"):
        return _solve_columns(x.T.tocsr(), xp.tocsr(), gp, pool, in_pool, k, l2s)


def _solve_columns(
    xt: sp.csr_matrix,
    xp: sp.csr_matrix,
    gp: np.ndarray,
    pool: np.ndarray,
    in_pool: np.ndarray,
    k: int,
    l2s: Sequence[float],
) -> list[sp.csr_matrix]:
    """The columns of `_neighbour_ease` for each of `l2s`, SOLVE_CHUNK targets at a time (the neighbours and their
    systems gathered once per chunk, solved once per l2). `xt`: items x users; `xp`: users x pool items (both CSR:
    a chunk's co-occurrence is its targets' rows times `xp`, with no conversion per chunk)."""
    n = xt.shape[0]
    out_rows, out_cols = [], []
    out_vals: list[list[np.ndarray]] = [[] for _ in l2s]
    for lo in range(0, n if k > 0 else 0, SOLVE_CHUNK):
        targets = np.arange(lo, min(n, lo + SOLVE_CHUNK))
        counts = (xt[lo : lo + len(targets)] @ xp).toarray()  # targets x pool: co-occurrence with every pool item
        own = in_pool[targets]
        has_own = own >= 0
        counts[np.flatnonzero(has_own), own[has_own]] = -1.0  # an item never regresses on itself
        # the k largest counts per target (partition: deterministic, not a full sort), in pool order
        nb = np.argpartition(-counts, k - 1, axis=1)[:, :k] if k < counts.shape[1] else np.argsort(-counts, axis=1)
        nb.sort(axis=1)
        rhs = np.take_along_axis(counts, nb, axis=1)
        valid = rhs > 0  # pool items the target never co-occurs with carry no signal: identity rows
        gathered = gp[nb[:, :, None], nb[:, None, :]].astype(np.float64)
        gathered *= valid[:, :, None] & valid[:, None, :]
        b = np.where(valid, rhs, 0.0)[:, :, None]
        for i, l2 in enumerate(l2s):
            a = gathered.copy() if i < len(l2s) - 1 else gathered  # the last solve may take the gathered systems
            a[:, np.arange(k), np.arange(k)] += np.where(valid, l2, 1.0)
            out_vals[i].append(np.linalg.solve(a, b)[:, :, 0][valid])
        out_rows.append(pool[nb[valid]])
        out_cols.append(np.broadcast_to(targets[:, None], nb.shape)[valid])
    if not out_rows:
        return [sp.csr_matrix((n, n)) for _ in l2s]
    rows, cols = np.concatenate(out_rows), np.concatenate(out_cols)
    return [sp.csr_matrix((np.concatenate(v), (rows, cols)), shape=(n, n)) for v in out_vals]


def lowpass_components(norm: sp.csr_matrix, k: int) -> np.ndarray:
    """The k leading eigenvectors (largest first, items x k) of norm^T norm by Lanczos on the sparse matrix (the
    Gram matrix is never formed); deterministic start vector."""
    n = norm.shape[1]
    k = min(k, n - 1)
    op = spla.LinearOperator((n, n), matvec=lambda v: norm.T @ (norm @ v), dtype=np.float64)
    v0 = np.ones(n) / np.sqrt(n)
    _, vectors = spla.eigsh(op, k=k, which="LA", v0=v0, tol=1e-8)
    return np.ascontiguousarray(vectors[:, ::-1])
