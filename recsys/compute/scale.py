"""`[scale]`: when the collaborative models switch to their sparse forms (`recsys.baselines.scalable`). A plain
settings model here, so reading settings never imports the models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from recsys.compute.threads import resolve_threads

# settings that change how fast, never what is built: left out of content keys
NOT_SHAPING = {"batch_threads"}


class ScaleConfig(BaseModel, frozen=True, extra="forbid"):
    """When the collaborative models switch from their exact dense fits to the sparse ones, and how big those are."""

    dense_item_limit: int = Field(
        10_000,
        ge=0,
        description="above this many items with training events, EASE, the low-pass filter, SAR and item-kNN use "
        "their sparse forms (0 forces them; an items x items float matrix is 8 x items^2 bytes: 0.8 GB at 10k)",
    )
    label_users: int = Field(
        20_000,
        ge=1,
        description="the ranker's labels and every validation choice (the pipeline's and the baselines' grids) judge "
        "at most this many inner hold-out users: a seeded sample stratified by history length (all of them below it)",
    )
    eval_users: int = Field(
        50_000,
        ge=1,
        description="an evaluation (the night's, `recsys evaluate`) judges at most this many test users: a seeded "
        "sample stratified by history length, the same users for every model (all of them below it); the report "
        "records the sample",
    )
    neighbours: int = Field(
        100,
        ge=1,
        description="sparse forms: neighbours kept per item (EASE regresses on them; 100 kept the EASE + low-pass "
        "blend within 1.5% of the dense one on ML-100k and amazon-scientific)",
    )
    ease_fanout: int = Field(
        1000,
        ge=0,
        description="sparse EASE: each item's weights reach at most this many items (its largest by magnitude; 0 = "
        "no cap). A popular item is a neighbour of much of the catalog, so uncapped a user's score row grows with "
        "the catalog; capped, with the user's history. 1000 kept validation nDCG@10 and recall@100 within 0.05% of "
        "uncapped on ML-100k, amazon-scientific and synthetic 100k-item data (bench/ease_fanout.py)",
    )
    item_index: Literal["hnsw", "exact"] = Field(
        "hnsw",
        description="above the threshold, the text candidates come from this index over the item embeddings: an "
        "HNSW graph (faiss; sublinear, approximate) or an exact search (every item, as below the threshold)",
    )
    batch_threads: int = Field(
        0,
        ge=0,
        description="the published lists on the local engine: user batches scored side by side in threads (0 = "
        "this machine's cores); the same lists for any number",
    )
    hnsw_links: int = Field(16, ge=2, description="HNSW: links per item in the graph (faiss' M)")
    hnsw_ef_search: int = Field(
        256, ge=1, description="HNSW: candidates kept while searching (more: higher recall, slower searches)"
    )

    def threads(self) -> int:
        """`batch_threads` resolved (0: the machine's cores)."""
        return resolve_threads(self.batch_threads)

    def shaping(self) -> dict[str, object]:
        """The settings that shape what is built (every one but `batch_threads`, which changes only how fast): what
        content keys of states, heads and nights include."""
        return self.model_dump(mode="json", exclude=NOT_SHAPING)
