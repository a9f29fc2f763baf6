"""The fitted state of one training window: everything candidates and features need, as arrays and tables.

A night builds it (`recsys.ranker.window.build_state`, which fits the collaborative sources) and saves it; the serving
process and MLflow's pyfunc load it and score through the same kernels (`recsys.scoring`) and the same feature path
(`recsys.ranker.candidates`). Nothing here fits anything, and the files are npz (no pickles) and Parquet:

    state.json       as_of, the format version, names and shapes
    arrays.npz       item ids, user ids, seen items, the sources' weights, popularity, genre and interest arrays, and
                     on a large catalog the candidate indexes (HNSW graphs as bytes)
    users.parquet    user features, one row per user in user-id order of arrays.npz
    items.parquet    item features, one row per candidate item
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.encoder.interest import UserInterests
from recsys.scoring import (
    BlendParts,
    EaseWeights,
    ItemSimilarity,
    LowPassFactors,
    SequenceGraph,
    load_arrays,
    save_arrays,
)
from recsys.scoring.vector_index import ItemIndexes

STATE_FORMAT = 1
STATE_FILE = "state.json"


@dataclass(frozen=True)
class RankingState:
    """One window's fitted sources and per-entity features, indexed by `user_ids` rows and `item_ids` columns."""

    as_of: datetime
    item_ids: np.ndarray  # candidate items (object array of str); column order of every matrix
    user_ids: list[str]  # users with events in the window; row order of `seen`, the sources and `genre_shares`
    seen: sp.csr_matrix  # users x items, 1 where the user has an event on the item
    blend: BlendParts  # EASE + low-pass (the collaborative candidate source)
    sar_affinity: sp.csr_matrix  # users x items, SAR's time-decayed affinities
    sar: ItemSimilarity
    itemknn: ItemSimilarity
    seqnb: SequenceGraph | None  # sequence neighbours (only with `sequence_features`)
    popular: np.ndarray  # trending score per item
    user_features: pl.DataFrame  # user_id + features, rows in `user_ids` order
    item_features: pl.DataFrame  # item_id + features, rows in `item_ids` order
    genres: list[str]
    genre_shares: np.ndarray  # users x genres: share of the user's events per genre
    genre_counts: np.ndarray  # items x genres: how often the genre is listed for the item
    interests: UserInterests | None  # interest vectors (None: no text)
    # the text indexes of the indexed candidate path (`recsys.ranker.indexed`): built with a state fitted with the
    # scalable sources and text, None otherwise
    item_indexes: ItemIndexes | None = None
    # `recsys.ranker.window.window_key` of the inputs it was built from ("" when unknown: never taken for a rebuild)
    inputs_key: str = ""
    user_index: dict[str, int] = field(init=False, repr=False)
    item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "item_index", {it: i for i, it in enumerate(self.item_ids.tolist())})

    # -- lookups ---------------------------------------------------------------------------------------------------
    def rows(self, users: list[str]) -> np.ndarray:
        """Row per user (-1: no events in the window)."""
        return np.fromiter((self.user_index.get(u, -1) for u in users), dtype=np.int64, count=len(users))

    def seen_mask(self, rows: np.ndarray) -> np.ndarray:
        """Dense boolean users x items of the given (known) rows."""
        return self.seen[rows].toarray().astype(bool)

    def seen_items(self, user: str) -> set[str]:
        """The candidate items the user has events on in the window (empty for unknown users)."""
        row = self.user_index.get(user)
        if row is None:
            return set()
        return set(self.item_ids[self.seen.indices[self.seen.indptr[row] : self.seen.indptr[row + 1]]].tolist())

    @property
    def scalable(self) -> bool:
        """Fitted with the scalable sources (EASE's sparse neighbour form): candidates take the indexed path."""
        return sp.issparse(self.blend.ease.weights)

    def blend_scores(self, rows: np.ndarray) -> np.ndarray:
        """The blend of known user rows (`source_scores(rows)["blend"]`, without the other sources)."""
        return _finite(self.blend.components(self.seen[rows])["blend"])

    def source_scores(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Collaborative source scores (len(rows) x items) of known user rows: ease, lowpass, blend, sar, itemknn and
        seqnb when kept."""
        history = self.seen[rows]
        out = dict(self.blend.components(history))
        out["sar"] = self.sar.score(self.sar_affinity[rows])
        out["itemknn"] = self.itemknn.score(history)
        if self.seqnb is not None:
            out["seqnb"] = self.seqnb.score(rows, len(self.item_ids))
        return {name: _finite(v) for name, v in out.items()}

    # -- files -----------------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the state into `folder` (created; files replaced)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        b = self.blend
        arrays: dict[str, np.ndarray | sp.csr_matrix] = {
            "item_ids": self.item_ids,
            "user_ids": np.asarray(self.user_ids, dtype=object),
            "seen": self.seen,
            "ease_active": b.ease.active,
            "ease_weights": b.ease.weights,
            "lowpass_active": b.lowpass.active,
            "lowpass_components": b.lowpass.components,
            "lowpass_item_scale": b.lowpass.item_scale,
            "has_train_events": b.has_train_events,
            "sar_affinity": self.sar_affinity,
            "sar_similarity": self.sar.similarity,
            "itemknn_similarity": self.itemknn.similarity,
            "popular": self.popular,
            "genres": np.asarray(self.genres, dtype=object),
            "genre_shares": self.genre_shares,
            "genre_counts": self.genre_counts,
        }
        if self.seqnb is not None:
            arrays |= {
                "seqnb_adjacency": self.seqnb.adjacency,
                "seqnb_starts": self.seqnb.starts,
                "seqnb_sequence": self.seqnb.sequence,
            }
        if self.interests is not None:
            i = self.interests
            arrays |= {
                "interest_users": np.asarray(i.user_ids, dtype=object),
                "interest_profile": i.profile,
                "interest_negative": i.negative,
                "interest_recent": i.recent,
            }
        if self.item_indexes is not None:
            arrays |= self.item_indexes.to_arrays()
        save_arrays(folder / "arrays.npz", arrays)
        self.user_features.write_parquet(folder / "users.parquet")
        self.item_features.write_parquet(folder / "items.parquet")
        meta = {
            "format": STATE_FORMAT,
            "as_of": self.as_of.isoformat(),
            "blend": {"factors": b.factors, "weight": b.weight},
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "sequence_features": self.seqnb is not None,
            "interests": self.interests is not None,
            "item_indexes": self.item_indexes is not None,
            "inputs_key": self.inputs_key,
        }
        (folder / STATE_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path) -> RankingState:
        """Read a state written by `save`; refuses other format versions."""
        folder = Path(folder)
        meta = _saved_meta(folder)
        if meta is None:
            raise FileNotFoundError(f"{folder}: not a ranking state (no {STATE_FILE})")
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{folder}: ranking state format {meta.get('format')!r}, this code reads {STATE_FORMAT}")
        a = load_arrays(folder / "arrays.npz")

        def dense(name: str) -> np.ndarray:
            value = a[name]
            assert isinstance(value, np.ndarray), name
            return value

        def csr(name: str) -> sp.csr_matrix:
            value = a[name]
            assert sp.issparse(value), name
            return value

        item_ids = dense("item_ids").astype(object)
        blend = BlendParts(
            EaseWeights(dense("ease_active"), _weights(a["ease_weights"])),
            LowPassFactors(dense("lowpass_active"), dense("lowpass_components"), dense("lowpass_item_scale")),
            int(meta["blend"]["factors"]),
            float(meta["blend"]["weight"]),
            dense("has_train_events"),
        )
        seqnb = None
        if meta["sequence_features"]:
            seqnb = SequenceGraph(csr("seqnb_adjacency"), dense("seqnb_starts"), dense("seqnb_sequence"))
        interests = None
        if meta["interests"]:
            users = dense("interest_users").tolist()
            interests = UserInterests(
                users,
                dense("interest_profile"),
                dense("interest_negative"),
                dense("interest_recent"),
                {u: i for i, u in enumerate(users)},
            )
        return cls(
            as_of=datetime.fromisoformat(meta["as_of"]),
            item_ids=item_ids,
            user_ids=dense("user_ids").tolist(),
            seen=csr("seen"),
            blend=blend,
            sar_affinity=csr("sar_affinity"),
            sar=ItemSimilarity(csr("sar_similarity")),
            itemknn=ItemSimilarity(csr("itemknn_similarity")),
            seqnb=seqnb,
            popular=dense("popular"),
            user_features=pl.read_parquet(folder / "users.parquet"),
            item_features=pl.read_parquet(folder / "items.parquet"),
            genres=dense("genres").tolist(),
            genre_shares=dense("genre_shares"),
            genre_counts=dense("genre_counts"),
            interests=interests,
            item_indexes=ItemIndexes.from_arrays(a) if meta.get("item_indexes") else None,
            inputs_key=str(meta.get("inputs_key", "")),
        )

    @staticmethod
    def saved_inputs_key(folder: Path) -> str:
        """The `inputs_key` of the state saved in `folder`, read without loading it ("" if none is there)."""
        meta = _saved_meta(Path(folder))
        return str(meta.get("inputs_key", "")) if meta is not None and meta.get("format") == STATE_FORMAT else ""


def _saved_meta(folder: Path) -> dict | None:
    """The state.json of a saved state (None when `folder` holds none)."""
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _weights(value: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    """EASE's weights as stored: dense (C order, the exact fit) or sparse (the neighbour-constrained fit)."""
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    return sp.csr_matrix(value)


def check_alignment(state: RankingState) -> None:
    """The feature tables' rows follow the state's user and item order (what the feature path gathers by)."""
    if state.user_features[S.USER_ID].to_list() != state.user_ids:
        raise ValueError("user features are not in the state's user order")
    if state.item_features[S.ITEM_ID].to_list() != state.item_ids.tolist():
        raise ValueError("item features are not in the state's item order")


def _finite(v: np.ndarray) -> np.ndarray:
    """`np.nan_to_num(v, nan=0.0)`, without its copy and five passes when every value is already finite (the usual
    case: a users x items matrix per source and batch)."""
    return v if np.isfinite(v).all() else np.nan_to_num(v, nan=0.0)
