"""Deterministic synthetic data: the embedded default dataset for the demo and the tests.

SYNTHETIC, not real behaviour. Users have latent topic interests (Dirichlet); items have a primary and a secondary
topic, generated text (title, description, tags) drawn from their topics' vocabularies, a release time and a
Zipf-like popularity; each user's time-stamped interactions follow interest x popularity, only after an item's
release, so a temporal split has cold items. Ratings (1-5) rise with the user's interest in the item's topics.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset, validate_dataset

TOPICS: dict[str, tuple[str, ...]] = {
    "Space Opera": ("starship", "galaxy", "orbit", "alien", "nebula", "captain", "warp", "planet", "empire", "comet"),
    "Detective": ("detective", "murder", "clue", "alibi", "suspect", "inspector", "witness", "case", "motive", "fog"),
    "Romance": ("love", "wedding", "heart", "letter", "kiss", "summer", "promise", "bride", "dance", "reunion"),
    "Cooking": ("kitchen", "recipe", "chef", "spice", "bakery", "feast", "harvest", "noodle", "oven", "market"),
    "Horror": ("ghost", "curse", "haunted", "blood", "crypt", "shadow", "ritual", "scream", "asylum", "witch"),
    "Sports": ("stadium", "coach", "champion", "league", "marathon", "goal", "rookie", "trophy", "season", "rival"),
    "History": ("empire", "war", "dynasty", "revolution", "castle", "treaty", "monarch", "battle", "siege", "archive"),
    "Nature": ("forest", "ocean", "wolf", "glacier", "river", "migration", "coral", "desert", "eagle", "storm"),
}
ADJECTIVES = ("Silent", "Last", "Golden", "Hidden", "Broken", "Endless", "Secret", "Crimson", "Lost", "Wild")
TEMPLATES = (
    "A story of {a} and {b}, where a {c} changes everything.",
    "When the {a} meets the {b}, nobody expects the {c}.",
    "An unforgettable journey through {a}, {b} and {c}.",
    "Everything starts with a {a}; it ends with a {b} and a {c}.",
)


def generate_synthetic(
    *, n_users: int = 300, n_items: int = 500, mean_events: float = 40.0, days: int = 365, seed: int = 7
) -> Dataset:
    """Generate the synthetic dataset (validated like any other source). Same arguments, same data."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    n_topics = len(topics)
    start = datetime(2024, 1, 1)

    primary = rng.integers(0, n_topics, n_items)
    secondary = (primary + rng.integers(1, n_topics, n_items)) % n_topics
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rng.shuffle(popularity)
    # 80% of the catalog exists from the start; the rest is released during the year.
    release_day = np.where(rng.random(n_items) < 0.8, 0, rng.integers(1, days, n_items))

    item_rows = []
    for i in range(n_items):
        vocab_p, vocab_s = TOPICS[topics[primary[i]]], TOPICS[topics[secondary[i]]]
        words = rng.choice(vocab_p, 3, replace=False)
        title = f"The {ADJECTIVES[rng.integers(len(ADJECTIVES))]} {words[0].capitalize()}"
        desc = TEMPLATES[rng.integers(len(TEMPLATES))].format(a=words[1], b=words[2], c=vocab_s[rng.integers(10)])
        item_rows.append(
            {
                S.ITEM_ID: f"i{i:04d}",
                S.TITLE: f"{title} {i}",
                S.DESCRIPTION: desc,
                S.GENRES: [topics[primary[i]], topics[secondary[i]]],
                S.TAGS: [str(w) for w in rng.choice(vocab_p, 2, replace=False)],
                S.YEAR: int((start + timedelta(days=int(release_day[i]))).year),
            }
        )
    items = pl.DataFrame(item_rows, schema=S.ITEM_SCHEMA).with_row_index("_row", offset=1)

    interest = rng.dirichlet(np.full(n_topics, 0.3), n_users)  # users x topics
    affinity = 0.8 * interest[:, primary] + 0.2 * interest[:, secondary] + 0.01  # users x items
    n_events = np.clip(rng.lognormal(np.log(mean_events), 0.6, n_users).astype(int), 5, n_items // 3)
    users, item_ids, stamps, ratings = [], [], [], []
    for u in range(n_users):
        t0 = rng.uniform(0, days * 0.6)
        times = np.sort(rng.uniform(t0, days, n_events[u]))
        seen: set[int] = set()
        for t in times:
            available = release_day <= t
            w = affinity[u] * popularity**0.8 * available
            w[list(seen)] = 0.0
            if w.sum() <= 0:
                break
            i = int(rng.choice(n_items, p=w / w.sum()))
            seen.add(i)
            score = interest[u, primary[i]] * 4 + interest[u, secondary[i]] + rng.normal(0, 0.6)
            users.append(f"u{u:04d}")
            item_ids.append(f"i{i:04d}")
            stamps.append(start + timedelta(days=float(t)))
            ratings.append(float(np.clip(np.round(1.5 + 2.5 * score), 1, 5)))
    events = (
        pl.DataFrame(
            {S.USER_ID: users, S.ITEM_ID: item_ids, S.TIMESTAMP: stamps, S.RATING: ratings},
            schema=S.INTERACTION_SCHEMA,
        )
        .sort(S.TIMESTAMP)
        .with_row_index("_row", offset=1)
    )
    return validate_dataset(
        "synthetic", events, items, interactions_source="synthetic:interactions", items_source="synthetic:items"
    )


def write_synthetic_files(dataset: Dataset, interactions_path: str, items_path: str) -> None:
    """Write a dataset as CSV files (lists joined by '|', epoch seconds): a ready example for `load_files`."""
    dataset.interactions.with_columns(pl.col(S.TIMESTAMP).dt.epoch("s")).write_csv(interactions_path)
    dataset.items.with_columns(pl.col(S.GENRES).list.join("|"), pl.col(S.TAGS).list.join("|")).write_csv(items_path)
