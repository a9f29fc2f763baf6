"""Inner-product top-k over a fixed set of item vectors: exact, or an HNSW graph (faiss) for large catalogs.

The indexed candidate path (`recsys.ranker.indexed`) asks one of these for each user's best items by interest
match (and by low-pass score), the user's seen items excluded. `exact` multiplies the queries with every vector in
float64 and ranks the products rounded to float32 (the dense path's interest match, so its picks are the dense
path's); `hnsw` walks a graph built once per window, in float32, at a small loss of recall (measured on the
100k-item synthetic night's embeddings and interest profiles: 0.97 of the exact top-150 at about half the exact
search's time; the graph's cost grows with log(items), the product's with items).

Why faiss: the reference implementation of HNSW (and of the index family around it), wheels on PyPI for every
platform we run on, an index serialises to a byte array (stored in the state's npz, no pickles), and on this
machine it built and searched faster, at higher recall, than usearch with the same graph parameters
(100k x 384 MiniLM vectors: build 33 s vs 54 s, 0.39 vs 0.96 ms per query, recall@150 0.97 vs 0.97).

The graph is built on one thread, so the same vectors give the same graph (and the same picks) in every run;
searching is multi-threaded and deterministic per query. The serving process only loads what a night built.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recsys.scoring.pairs import first_allowed
from recsys.scoring.topk import top_k_indices

IndexKind = Literal["exact", "hnsw"]
# HNSW build breadth: candidates kept while linking a new vector (faiss' default is 40; 128 gave recall 0.97 at
# efSearch 256 on MiniLM vectors, see above)
EF_CONSTRUCTION = 128
# A search asks for k + the row's excluded count rounded up to a multiple of this (rows with similar histories share
# one faiss call; one call per row loses faiss' parallelism over queries)
ASK_STEP = 64


# Graphs built in this process, by content (`_hnsw_graph`): the most recent few are kept.
_GRAPHS: OrderedDict[str, Any] = OrderedDict()
GRAPHS_KEPT = 4


def _hnsw_graph(vectors: np.ndarray, m: int) -> Any:
    """The HNSW graph (inner product) of `vectors` with `m` links, built on one thread, so the same vectors give the
    same graph. A night builds several states whose graphs are often the same (the text index over one catalog's
    embeddings in the ranker's inner, nested and final windows; the final window's every graph again in the
    evaluation): the last GRAPHS_KEPT graphs are kept by a digest of their vectors and parameters and handed out
    again instead of rebuilt (searching never modifies a graph, so sharing one is safe)."""
    import faiss

    v32 = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.blake2b(v32.tobytes(), digest_size=20)
    digest.update(np.asarray([*v32.shape, m, EF_CONSTRUCTION], dtype=np.int64).tobytes())
    key = digest.hexdigest()
    if key in _GRAPHS:
        _GRAPHS.move_to_end(key)
        return _GRAPHS[key]
    graph = faiss.IndexHNSWFlat(int(v32.shape[1]), m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one thread: the same vectors give the same graph
    try:
        graph.add(v32)
    finally:
        faiss.omp_set_num_threads(threads)
    _GRAPHS[key] = graph
    while len(_GRAPHS) > GRAPHS_KEPT:
        _GRAPHS.popitem(last=False)
    return graph


@dataclass(frozen=True)
class VectorIndex:
    """Item `cols` (ascending) with their vectors; `search` returns item columns, best first."""

    kind: IndexKind
    cols: np.ndarray  # item column of each index row, ascending
    vectors: np.ndarray  # float64 rows (exact) or an empty array (hnsw: the graph holds them)
    graph: Any = None  # faiss.IndexHNSWFlat
    ef_search: int = 256

    @classmethod
    def build(
        cls, cols: np.ndarray, vectors: np.ndarray, *, kind: IndexKind, m: int = 16, ef_search: int = 256
    ) -> VectorIndex:
        """An index over `vectors` (one row per item column of `cols`, ascending). `m`: HNSW links per vector."""
        cols = np.asarray(cols, dtype=np.int64)
        if len(cols) and np.any(np.diff(cols) <= 0):
            raise ValueError("index columns must be strictly ascending")
        if kind == "exact":
            return cls("exact", cols, np.asarray(vectors, dtype=np.float64), None, ef_search)
        return cls("hnsw", cols, np.zeros((0, vectors.shape[1])), _hnsw_graph(vectors, m), ef_search)

    def __len__(self) -> int:
        return len(self.cols)

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray]) -> list[np.ndarray]:
        """Per query row, the item columns of its k best inner products (fewer if the index has fewer), best first,
        without that row's `exclude` columns. What a row gets depends on that row alone, never on the others
        searched with it (a night's batch and an online request of one give the same picks): `exact` ranks the
        products rounded to float32 (as the dense interest match is), ties by column; `hnsw` asks each row for
        k + its own excluded count (rounded up to a multiple of ASK_STEP), with efSearch at least that."""
        n = len(queries)
        if k <= 0 or len(self.cols) == 0 or n == 0:
            return [np.zeros(0, dtype=np.int64) for _ in range(n)]
        # ask for enough that k remain after the row's excluded items, rounded up to a multiple of ASK_STEP so that
        # most rows of a batch share one search (a row's ask still depends on that row alone)
        excluded = np.asarray([len(e) for e in exclude], dtype=np.int64)
        asks = np.minimum(len(self.cols), k + -(-excluded // ASK_STEP) * ASK_STEP)
        # every row's found index rows in one matrix, best first; -1 where nothing was found or past the row's ask
        found = np.full((n, int(asks.max())), -1, dtype=np.int64)
        if self.kind == "exact":
            scores = (np.asarray(queries, dtype=np.float64) @ self.vectors.T).astype(np.float32)
            found[:] = top_k_indices(scores, found.shape[1])
            found[np.arange(found.shape[1]) >= asks[:, None]] = -1
        else:
            import faiss

            assert self.graph is not None
            q32 = np.ascontiguousarray(queries, dtype=np.float32)
            for ask in np.unique(asks):  # one search per distinct ask: the same efSearch for a row in any batch
                at = np.flatnonzero(asks == ask)
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, int(ask)))  # type: ignore[attr-defined]
                _, got = self.graph.search(q32[at], int(ask), params=params)
                found[at, : int(ask)] = got
        # the index rows as item columns, then each row's first k that it does not exclude
        ex_rows = np.repeat(np.arange(n), excluded)
        ex_values = np.concatenate(exclude).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        return first_allowed(np.where(found >= 0, self.cols[np.maximum(found, 0)], -1), ex_rows, ex_values, k)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of index rows `rows` (float64)."""
        if self.kind == "exact":
            return self.vectors[rows]
        assert self.graph is not None
        return np.stack([self.graph.reconstruct(int(r)) for r in rows]).astype(np.float64)

    # -- files -----------------------------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The index as plain arrays under `prefix` (the HNSW graph serialised to bytes)."""
        out = {
            f"{prefix}_cols": self.cols,
            f"{prefix}_meta": np.asarray([self.kind == "hnsw", self.ef_search], dtype=np.int64),
        }
        if self.kind == "exact":
            out[f"{prefix}_vectors"] = self.vectors
        else:
            import faiss

            out[f"{prefix}_graph"] = faiss.serialize_index(self.graph)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> VectorIndex:
        """Read back what `to_arrays` wrote (nothing is rebuilt)."""
        hnsw, ef = (int(v) for v in arrays[f"{prefix}_meta"])
        cols = np.asarray(arrays[f"{prefix}_cols"], dtype=np.int64)
        if not hnsw:
            return cls("exact", cols, np.asarray(arrays[f"{prefix}_vectors"], dtype=np.float64), None, ef)
        import faiss

        graph = faiss.deserialize_index(np.asarray(arrays[f"{prefix}_graph"], dtype=np.uint8))
        return cls("hnsw", cols, np.zeros((0, graph.d)), graph, ef)


@dataclass(frozen=True)
class ItemIndexes:
    """A scalable ranking state's indexes: the low-pass filter's item factors (its top-N outside EASE's support), and,
    with text, every item with text and the tail's (items with at most `tail_users` users in the window)."""

    lowpass: VectorIndex
    text: VectorIndex | None
    tail: VectorIndex | None
    tail_users: int

    @property
    def kind(self) -> IndexKind:
        return self.lowpass.kind

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {**self.lowpass.to_arrays("index_lowpass"), "index_tail_users": np.asarray([self.tail_users])}
        if self.text is not None and self.tail is not None:
            out |= self.text.to_arrays("index_text") | self.tail.to_arrays("index_tail")
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ItemIndexes:
        text = "index_text_cols" in arrays
        return cls(
            VectorIndex.from_arrays(arrays, "index_lowpass"),
            VectorIndex.from_arrays(arrays, "index_text") if text else None,
            VectorIndex.from_arrays(arrays, "index_tail") if text else None,
            int(arrays["index_tail_users"][0]),
        )
