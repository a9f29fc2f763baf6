"""Synthetic data at scale, streamed to Parquet: the benchmark's users x items x events grids (`bench/scale.py`).

The same generative story as `recsys.data.synthetic` (users with Dirichlet topic interests; items with a primary and
a secondary topic, topic-vocabulary text, a Zipf-like popularity and a release day; ratings rising with the user's
interest), sampled without any users x items structure, in user chunks, so memory stays O(chunk + catalog):

* an event's item: a topic drawn from the user's interests, then an item of that topic (primary topic with
  probability 0.8, secondary otherwise) in proportion to popularity^0.8 (per-topic cumulative tables), or with
  probability 0.05 any item by popularity^0.8;
* an event's time: uniform between the user's start and the end of the year, moved after the item's release when it
  falls before it (so a temporal split still has new items);
* a user's event count: log-normal with the requested mean; repeated (user, item) pairs are dropped.

The embedded `synthetic` dataset keeps its exact per-event generator (its numbers are in the docs and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recsys.data import schema as S
from recsys.data.synthetic import ADJECTIVES, TEMPLATES, TOPICS

START = datetime(2024, 1, 1)
DAY_US = 86_400_000_000
SPEC = "spec.toml"


@dataclass(frozen=True)
class ScaleData:
    """What `write_synthetic_scale` wrote: the spec (a `--dataset` argument) and the counts."""

    spec: Path
    n_users: int
    n_items: int
    n_events: int


def _items(rng: np.random.Generator, n_items: int, days: int) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    topics = list(TOPICS)
    n_topics = len(topics)
    primary = rng.integers(0, n_topics, n_items)
    secondary = (primary + rng.integers(1, n_topics, n_items)) % n_topics
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rng.shuffle(popularity)
    release = np.where(rng.random(n_items) < 0.8, 0.0, rng.uniform(1, days, n_items))
    words = rng.integers(0, 10, (n_items, 6))
    adj = rng.integers(0, len(ADJECTIVES), n_items)
    template = rng.integers(0, len(TEMPLATES), n_items)
    titles, descriptions, genres, tags = [], [], [], []
    for i in range(n_items):
        vp, vs = TOPICS[topics[primary[i]]], TOPICS[topics[secondary[i]]]
        w = words[i]
        titles.append(f"The {ADJECTIVES[adj[i]]} {vp[w[0]].capitalize()} {i}")
        descriptions.append(TEMPLATES[template[i]].format(a=vp[w[1]], b=vp[w[2]], c=vs[w[3]]))
        genres.append([topics[primary[i]], topics[secondary[i]]])
        tags.append([vp[w[4]], vp[w[5]]])
    years = np.full(n_items, START.year, dtype=np.int32) + (release >= 366).astype(np.int32)
    items = pl.DataFrame(
        {
            S.ITEM_ID: [f"i{i:07d}" for i in range(n_items)],
            S.TITLE: titles,
            S.DESCRIPTION: descriptions,
            S.GENRES: genres,
            S.TAGS: tags,
            S.YEAR: years,
        },
        schema=S.ITEM_SCHEMA,
    )
    weight = popularity**0.8
    tables = {"primary": primary, "secondary": secondary, "weight": weight, "release": release}
    return items, tables


def _topic_tables(topic_of: np.ndarray, weight: np.ndarray, n_topics: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per topic: (its items, their cumulative normalised weights) for inverse-CDF sampling."""
    out = []
    for t in range(n_topics):
        members = np.flatnonzero(topic_of == t)
        cum = np.cumsum(weight[members])
        out.append((members, cum / cum[-1] if len(cum) else cum))
    return out


def _draw(rng: np.random.Generator, tables: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    members, cum = tables
    idx = np.minimum(np.searchsorted(cum, rng.random(n)), len(members) - 1)
    return members[idx]


def write_synthetic_scale(
    out: Path,
    *,
    n_users: int,
    n_items: int,
    n_events: int,
    days: int = 365,
    seed: int = 7,
    chunk_users: int = 100_000,
) -> ScaleData:
    """Write `events.parquet`, `items.parquet` and a dataset `spec.toml` into `out` (about `n_events` events after
    repeated pairs are dropped). Same arguments, same files. Memory: O(chunk_users x mean events + n_items)."""
    if min(n_users, n_items, n_events) < 1:
        raise ValueError("n_users, n_items and n_events must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_topics = len(TOPICS)
    items, t = _items(rng, n_items, days)
    items.write_parquet(out / "items.parquet")
    by_primary = _topic_tables(t["primary"], t["weight"], n_topics)
    by_secondary = _topic_tables(t["secondary"], t["weight"], n_topics)
    overall = (np.arange(n_items), np.cumsum(t["weight"]) / t["weight"].sum())
    mean = n_events / n_users
    writer: pq.ParquetWriter | None = None
    written = 0
    try:
        for lo in range(0, n_users, chunk_users):
            users = np.arange(lo, min(n_users, lo + chunk_users))
            interest = rng.dirichlet(np.full(n_topics, 0.3), len(users))
            counts = np.clip(
                np.round(rng.lognormal(np.log(mean) - 0.18, 0.6, len(users))), 1, max(1, n_items // 3)
            ).astype(np.int64)
            owner = np.repeat(np.arange(len(users)), counts)
            n = len(owner)
            # topic per event from the user's interests (inverse CDF over the cumulative interest row)
            cum = np.cumsum(interest, axis=1)
            topic = np.minimum((rng.random(n)[:, None] > cum[owner]).sum(axis=1), n_topics - 1)
            kind = rng.random(n)
            item = np.empty(n, dtype=np.int64)
            for tp in range(n_topics):
                prim = (topic == tp) & (kind < 0.8 * 0.95)
                sec = (topic == tp) & (kind >= 0.8 * 0.95) & (kind < 0.95)
                if prim.any() and len(by_primary[tp][0]):
                    item[prim] = _draw(rng, by_primary[tp], int(prim.sum()))
                else:
                    sec |= prim
                if sec.any():
                    pool = by_secondary[tp] if len(by_secondary[tp][0]) else overall
                    item[sec] = _draw(rng, pool, int(sec.sum()))
            explore = kind >= 0.95
            item[explore] = _draw(rng, overall, int(explore.sum()))
            start = rng.uniform(0, days * 0.6, len(users))[owner]
            when = start + rng.random(n) * (days - start)
            release = t["release"][item]
            late = when < release
            when[late] = release[late] + rng.random(int(late.sum())) * (days - release[late])
            score = interest[owner, t["primary"][item]] * 4 + interest[owner, t["secondary"][item]]
            rating = np.clip(np.round(1.5 + 2.5 * (score + rng.normal(0, 0.6, n))), 1, 5)
            frame = (
                pl.DataFrame(
                    {
                        "_u": (users[owner]).astype(np.int64),
                        "_i": item,
                        S.TIMESTAMP: (when * DAY_US).astype(np.int64),
                        S.RATING: rating,
                    }
                )
                .unique(["_u", "_i"], keep="first", maintain_order=True)
                .select(
                    pl.format("u{}", pl.col("_u").cast(pl.String).str.zfill(7)).alias(S.USER_ID),
                    pl.format("i{}", pl.col("_i").cast(pl.String).str.zfill(7)).alias(S.ITEM_ID),
                    (pl.lit(START).cast(pl.Datetime("us")) + pl.duration(microseconds=pl.col(S.TIMESTAMP))).alias(
                        S.TIMESTAMP
                    ),
                    pl.col(S.RATING),
                )
            )
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(out / "events.parquet", table.schema)
            writer.write_table(table)
            written += frame.height
    finally:
        if writer is not None:
            writer.close()
    spec = out / SPEC
    spec.write_text(
        f'name = "synthetic-{n_users}x{n_items}"\ninteractions = "events.parquet"\nitems = "items.parquet"\n'
        'timestamp_unit = "iso"\n'
    )
    return ScaleData(spec, n_users, n_items, written)
