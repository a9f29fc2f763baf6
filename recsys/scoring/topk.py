"""Each row's top k of a users x items score matrix: the one selection kernel of lists and candidates."""

from __future__ import annotations

import numpy as np


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest scores, best first, ties by column order (exactly, also at the k-th
    place): what a stable descending sort's first k columns are, without sorting the whole catalog (the k-th value
    from `torch.topk`, ~20x faster than numpy's partition here, then masks). NaN ranks below everything."""
    n_rows, n_cols = scores.shape
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    nan = np.isnan(s)
    if nan.any():  # (np.nan_to_num is ~20x slower than this on a large matrix)
        s = np.where(nan, -np.inf, s)
    if k >= n_cols or n_cols <= 4 * k:
        return np.argsort(-s, axis=1, kind="stable")[:, :k]
    import torch

    kth = torch.topk(torch.from_numpy(s), k, dim=1, sorted=False).values.min(dim=1).values.numpy()[:, None]
    above = s > kth
    at = s == kth
    room = k - above.sum(axis=1)
    keep = above | at
    tied = np.flatnonzero(at.sum(axis=1) > room)  # more ties at the k-th value than places: first ones by column
    if len(tied):
        keep[tied] = above[tied] | (at[tied] & (np.cumsum(at[tied], axis=1) <= room[tied, None]))
    cols = np.nonzero(keep)[1].reshape(n_rows, k)  # ascending columns per row
    order = np.argsort(-np.take_along_axis(s, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)
