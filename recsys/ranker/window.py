"""Building a window's `RankingState`: fit the collaborative sources and compute the point-in-time features on the
window's events (training-time code; the serving process loads saved states instead)."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import polars as pl
import scipy.sparse as sp

from features import (
    item_catalog_features,
    item_genre_counts,
    item_popularity,
    user_activity,
    user_genre_shares,
    user_share_matrix,
)
from recsys.baselines import SAR, EASELowPass, ItemKNN, ScaleConfig, SequenceNeighbours
from recsys.data import schema as S
from recsys.data.dataset import after_last_event
from recsys.encoder.cache import ItemEmbeddings
from recsys.encoder.interest import user_interests
from recsys.ranker.config import PipelineConfig
from recsys.ranker.state import RankingState, check_alignment
from recsys.scoring import BlendParts
from recsys.scoring.vector_index import ItemIndexes, VectorIndex

# Count features: their scale grows with the window, so the inner split's ranker would read the full window's
# counts as ~4/3 larger than anything it was trained on (ms-stratified keeps 75% of the events in each split).
ITEM_COUNTS = re.compile(r"^item_(pop_.*|users_all|rating_count)$")
USER_COUNTS = re.compile(r"^user_n_events.*$")


def _relative(frame: pl.DataFrame, pattern: re.Pattern[str]) -> pl.DataFrame:
    """Columns of `frame` matching `pattern` divided by their mean over the frame's rows (0 where the mean is 0)."""
    cols = [c for c in frame.columns if pattern.match(c)]
    return frame.with_columns(
        pl.when(pl.col(c).mean() > 0).then(pl.col(c) / pl.col(c).mean()).otherwise(0.0).alias(c) for c in cols
    )


def build_state(
    train: pl.DataFrame,
    items: pl.DataFrame,
    item_ids: list[str],
    cfg: PipelineConfig,
    *,
    ease_l2: float,
    blend: tuple[int, float],
    embeddings: ItemEmbeddings | None,
    scale: ScaleConfig | None = None,
    inputs_key: str | None = None,
) -> RankingState:
    """The state of the window `train` over the candidate `item_ids` (catalog `items` with genres): EASE + low-pass
    with `ease_l2` and `blend` = (factors, weight), SAR, item-kNN (and sequence neighbours when configured), the
    interest vectors when `embeddings` are given, popularity, user and item features as of the window's end.
    `scale`: when the collaborative sources switch to their sparse forms. The state records `window_key` of these
    inputs (`inputs_key`: that key when the caller has it already)."""
    if inputs_key is None:
        inputs_key = window_key(
            train, items, item_ids, cfg, ease_l2=ease_l2, blend=blend, embeddings=embeddings, scale=scale
        )
    as_of = after_last_event(train)
    source = EASELowPass(l2=ease_l2, factors=blend[0], weight=blend[1], item_norm=cfg.blend.item_norm, scale=scale)
    source.fit(train, candidates=item_ids)
    sar = SAR(scale=scale).fit(train, candidates=item_ids)
    knn = ItemKNN(scale=scale).fit(train, candidates=item_ids)
    seqnb = SequenceNeighbours().fit(train, candidates=item_ids) if cfg.sequence_features else None
    users = list(source.user_index_)
    if list(sar.user_index_) != users or list(knn.user_index_) != users:
        raise AssertionError("the sources index the window's users differently")
    interests = user_interests(train, embeddings, as_of=as_of, cfg=cfg.interest) if embeddings else None

    indexes = None
    if sp.issparse(source.parts.ease.weights):  # the scalable sources: the indexed candidate path
        indexes = item_indexes(
            source.seen_, item_ids, source.parts, embeddings, cfg.candidates.tail_users, scale or ScaleConfig()
        )

    frame_ids = pl.DataFrame({S.ITEM_ID: item_ids})
    windows = tuple(sorted({*cfg.popularity_windows, cfg.candidates.popular_window_days}))
    pop = item_popularity(train, as_of=as_of, windows=windows)
    item_features = (
        frame_ids.join(pop, on=S.ITEM_ID, how="left", maintain_order="left")
        .join(item_catalog_features(items, as_of=as_of), on=S.ITEM_ID, how="left", maintain_order="left")
        .with_columns(pl.col("item_pop_all").is_null().alias("is_cold_item"))
        .with_columns(pl.col(c).fill_null(0) for c in pop.columns if c.startswith("item_pop_") or c == "item_users_all")
    )
    window = item_features[f"item_pop_{cfg.candidates.popular_window_days}d"].to_numpy().astype(float)
    popular = window + 1e-6 * item_features["item_pop_all"].to_numpy().astype(float)
    user_features = user_activity(train, as_of=as_of)
    if cfg.relative_counts:
        item_features, user_features = _relative(item_features, ITEM_COUNTS), _relative(user_features, USER_COUNTS)
    user_features = pl.DataFrame({S.USER_ID: users}).join(
        user_features, on=S.USER_ID, how="left", maintain_order="left"
    )
    genres, counts = item_genre_counts(items, item_ids)
    shares = user_share_matrix(user_genre_shares(train, items, as_of=as_of), users, genres)
    state = RankingState(
        as_of=as_of,
        item_ids=np.asarray(item_ids, dtype=object),
        user_ids=users,
        seen=source.seen_,
        blend=source.parts,
        sar_affinity=sar.affinity_,
        sar=sar.arrays,
        itemknn=knn.arrays,
        seqnb=seqnb.arrays if seqnb is not None else None,
        popular=popular,
        user_features=user_features,
        item_features=item_features,
        genres=genres,
        genre_shares=shares,
        genre_counts=counts,
        interests=interests,
        item_indexes=indexes,
        inputs_key=inputs_key,
    )
    check_alignment(state)
    return state


def window_key(
    train: pl.DataFrame,
    items: pl.DataFrame,
    item_ids: list[str],
    cfg: PipelineConfig,
    *,
    ease_l2: float,
    blend: tuple[int, float],
    embeddings: ItemEmbeddings | None,
    scale: ScaleConfig | None = None,
) -> str:
    """A digest of everything `build_state` reads: the window's events and the catalog (row by row, in order), the
    candidate items, the config and choices, the embeddings and the scale settings. The build is deterministic, so a
    saved state with the same key is the state a rebuild would make (the night's evaluation loads the candidate's
    instead of building it again). The rows are hashed by polars (`hash_rows`, not stable across polars versions):
    a key is only ever compared with one written by the same installation, and a mismatch only costs a rebuild."""
    h = hashlib.blake2b(digest_size=20)
    for frame in (train, items):
        h.update(json.dumps([frame.height, frame.columns, [str(t) for t in frame.dtypes]]).encode())
        if frame.height:
            h.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    h.update("\x1f".join(item_ids).encode())
    # the config with its choices blanked: they enter as `ease_l2` and `blend` (a bundle stores them filled in)
    blank = cfg.model_copy(
        update={
            "ease_l2": None,
            "text_weight": None,
            "blend": cfg.blend.model_copy(update={"factors": None, "weight": None}),
        }
    )
    settings = {
        "cfg": blank.model_dump(mode="json"),
        "ease_l2": ease_l2,
        "blend": list(blend),
        "scale": (scale or ScaleConfig()).shaping(),
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    if embeddings is not None:
        h.update(embeddings.model_version.encode())
        h.update("\x1f".join(embeddings.item_ids).encode())
        h.update(np.ascontiguousarray(embeddings.vectors).tobytes())
    return h.hexdigest()


def item_indexes(
    seen: sp.csr_matrix,
    item_ids: list[str],
    blend: BlendParts,
    embeddings: ItemEmbeddings | None,
    tail_users: int,
    scale: ScaleConfig,
) -> ItemIndexes:
    """The indexes of a scalable state (`[scale] item_index`): the low-pass filter's item factors (V_j scale_j, so
    that a user's low-pass score is an inner product with q = x D^-a V) over the items with training events, and,
    with `embeddings`, every candidate item with text and those of them with at most `tail_users` users in the
    window (`seen`: users x items)."""
    opts = {"kind": scale.item_index, "m": scale.hnsw_links, "ef_search": scale.hnsw_ef_search}
    lp = blend.lowpass
    factors = lp.components[:, : blend.factors] * lp.item_scale[:, None]
    lowpass = VectorIndex.build(lp.active, factors, **opts)  # type: ignore[arg-type]
    if embeddings is None:
        return ItemIndexes(lowpass, None, None, tail_users)
    row = embeddings.row_of
    rows = np.fromiter((row.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
    cols = np.flatnonzero(rows >= 0)
    tail = cols[np.asarray(seen.getnnz(axis=0)).ravel()[cols] <= tail_users]
    return ItemIndexes(
        lowpass,
        VectorIndex.build(cols, embeddings.vectors[rows[cols]], **opts),  # type: ignore[arg-type]
        VectorIndex.build(tail, embeddings.vectors[rows[tail]], **opts),  # type: ignore[arg-type]
        tail_users,
    )
