"""A trained ranking model: a window's state, the LambdaRank ranker and the choices it was trained with. Scores the
nightly lists and re-ranks candidate lists online through the one feature path (`recsys.ranker.candidates`).

Saved as a folder (npz, Parquet, LightGBM text, JSON; no pickles) that the serving process loads without fitting:

    model.json           format, the resolved pipeline config, text weight, whether text is used
    state/               the window's `RankingState`
    ranker/              the LightGBM model + features.json
    embeddings.parquet   the item embeddings the ranker's text features come from (absent without text)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from recsys.compute.threads import map_batches
from recsys.data import schema as S
from recsys.encoder.cache import ItemEmbeddings
from recsys.ranker._common import TEXT_FEATURES
from recsys.ranker.candidates import Candidates
from recsys.ranker.config import PipelineConfig, saved_pipeline_config
from recsys.ranker.model import LambdaRanker
from recsys.ranker.state import RankingState

MODEL_FORMAT = 1
MODEL_FILE = "model.json"


class RankingModel:
    """`ranker` over the candidates of `state`; `cfg` is the resolved pipeline config (fixed l2, blend, weight)."""

    def __init__(
        self,
        state: RankingState,
        ranker: LambdaRanker,
        cfg: PipelineConfig,
        *,
        embeddings: ItemEmbeddings | None,
        use_text: bool = True,
    ) -> None:
        if embeddings is None and any(f in TEXT_FEATURES for f in ranker.features):
            raise ValueError("this ranker uses interest-match features: pass the item embeddings it was trained with")
        self.state, self.ranker, self.cfg, self.use_text = state, ranker, cfg, use_text
        self.candidates = Candidates(
            state, cfg.candidates, embeddings=embeddings, text_weight=cfg.text_weight or 0.0, use_text=use_text
        )

    def prepare(self) -> None:
        """Make the candidates' per-state tables now (the serving process does, before it serves the model)."""
        self.candidates.prepare()

    @property
    def embeddings(self) -> ItemEmbeddings | None:
        return self.candidates.embeddings

    @property
    def item_ids(self) -> np.ndarray:
        return self.state.item_ids

    def knows(self, user: str) -> bool:
        return user in self.state.user_index

    # -- scoring -----------------------------------------------------------------------------------------------------
    def frame(self, users: list[str], *, include: dict[str, list[int]] | None = None) -> pl.DataFrame:
        """The candidate rows of `users` with features (see `Candidates.frame`)."""
        return self.candidates.frame(users, include=include)

    def top_k(self, users: list[str], *, k: int, batch_size: int = 1024, threads: int = 1) -> pl.DataFrame:
        """Each known user's k best candidates by the ranker (user_id, item_id, rank, score): the published lists,
        ties broken by the candidate items' order, exactly as `RankingPipeline.recommend` lists them. Users are
        scored `batch_size` at a time, so memory stays bounded whatever the number of users; `threads` batches side
        by side (`recsys.compute.map_batches`: the same lists for any number)."""
        batches = [users[start : start + batch_size] for start in range(0, len(users), batch_size)]
        if threads > 1 and len(batches) > 1:
            self.prepare()  # the per-state tables, before any two batches could build them at once
        parts = [p for p in map_batches(lambda b: self._top_of(b, k), batches, threads=threads) if p is not None]
        if not parts:
            return pl.DataFrame(schema=S.RECOMMENDATION_SCHEMA)
        return pl.concat(parts)

    def _top_of(self, users: list[str], k: int) -> pl.DataFrame | None:
        frame = self.frame(users)
        return self.ranked(frame, k=k) if frame.height else None

    def ranked(self, frame: pl.DataFrame, *, k: int) -> pl.DataFrame:
        """Each user's k best rows of a candidate `frame` by the ranker (user_id, item_id, rank, score), ties by the
        items' catalog order."""
        col = pl.col(S.ITEM_ID).replace_strict(self.state.item_index, return_dtype=pl.Int64)
        scored = frame.select(S.USER_ID, S.ITEM_ID, col.alias("_col")).with_columns(
            pl.Series(S.SCORE, self.ranker.predict(frame), dtype=pl.Float64)
        )
        return (
            scored.sort([S.USER_ID, S.SCORE, "_col"], descending=[False, True, False])
            .with_columns(pl.int_range(1, pl.len() + 1).over(S.USER_ID).cast(pl.Int32).alias(S.RANK))
            .filter(pl.col(S.RANK) <= k)
            .select(S.USER_ID, S.ITEM_ID, S.RANK, S.SCORE)
        )

    def rank_candidates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """Score given (user_id, item_id) rows with the ranker: on-demand re-ranking of candidate lists.

        Features are those of the nightly lists (ranks within the user's candidate union plus the given items).
        Returns user_id, item_id, score (null for unknown users or items), rank (1 = best, per user; null with the
        score), in the order given."""
        pairs = pairs.select(pl.col(S.USER_ID).cast(pl.String), pl.col(S.ITEM_ID).cast(pl.String))
        index = self.state.item_index
        include: dict[str, list[int]] = {}
        for user, item in pairs.iter_rows():
            col = index.get(item)
            if col is not None and user in self.state.user_index:
                include.setdefault(user, []).append(col)
        scores: dict[tuple[str, str], float] = {}
        if include:
            frame = self.candidates.frame(list(include), include=include)
            wanted = pl.DataFrame(
                {
                    S.USER_ID: [u for u, cols in include.items() for _ in cols],
                    S.ITEM_ID: [self.state.item_ids[c] for cols in include.values() for c in cols],
                }
            ).unique()
            frame = frame.join(wanted, on=[S.USER_ID, S.ITEM_ID], how="semi", maintain_order="left")
            predicted = self.ranker.predict(frame)
            keys = zip(frame[S.USER_ID].to_list(), frame[S.ITEM_ID].to_list(), strict=True)
            scores.update(zip(keys, predicted.tolist(), strict=True))
        users, items = pairs[S.USER_ID].to_list(), pairs[S.ITEM_ID].to_list()
        values = [scores.get(key) for key in zip(users, items, strict=True)]
        ranks: list[int | None] = [None] * len(values)
        by_user: dict[str, list[int]] = {}
        for pos, (user, value) in enumerate(zip(users, values, strict=True)):
            if value is not None:
                by_user.setdefault(user, []).append(pos)
        for positions in by_user.values():
            for r, pos in enumerate(sorted(positions, key=lambda p: -values[p]), start=1):  # type: ignore[operator]
                ranks[pos] = r
        return pl.DataFrame(
            {S.USER_ID: users, S.ITEM_ID: items, S.SCORE: values, S.RANK: ranks},
            schema={S.USER_ID: pl.String, S.ITEM_ID: pl.String, S.SCORE: pl.Float64, S.RANK: pl.Int32},
        )

    # -- files -------------------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model into `folder` (replaced; written to a sibling temp folder first, then renamed)."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.state.save(tmp / "state")
        self.ranker.save(tmp / "ranker")
        if self.embeddings is not None:
            self.embeddings.save(tmp / "embeddings.parquet")
        meta = {"format": MODEL_FORMAT, "pipeline": self.cfg.model_dump(mode="json"), "use_text": self.use_text}
        (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        return folder

    @classmethod
    def load(cls, folder: Path) -> RankingModel:
        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{folder}: not a ranking model (no {MODEL_FILE}); models come from save")
        meta = json.loads((folder / MODEL_FILE).read_text())
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"{folder}: ranking model format {meta.get('format')!r}, this code reads {MODEL_FORMAT}")
        emb_path = folder / "embeddings.parquet"
        return cls(
            RankingState.load(folder / "state"),
            LambdaRanker.load(folder / "ranker"),
            saved_pipeline_config(meta["pipeline"]),
            embeddings=ItemEmbeddings.load(emb_path) if emb_path.is_file() else None,
            use_text=bool(meta["use_text"]),
        )


_LOADED: dict[str, RankingModel] = {}


def lists_of(folder: str, users: list[str], *, k: int, threads: int = 1) -> pl.DataFrame:
    """`RankingModel.load(folder).top_k(users, k=k, threads=threads)`, the model loaded once per process (the last
    one kept): what a compute engine maps over user partitions, on this process or on a cluster's workers."""
    model = _LOADED.get(folder)
    if model is None:
        _LOADED.clear()
        model = _LOADED[folder] = RankingModel.load(Path(folder))
    return model.top_k(users, k=k, threads=threads)


def forget_loaded() -> None:
    """Drop the model `lists_of` keeps in this process (once its lists are made: a night goes on without it)."""
    _LOADED.clear()


def write_lists(folder: str, out: str, job: tuple[int, list[str]], *, k: int, threads: int = 1) -> tuple[str, int]:
    """One user partition's lists (`lists_of`) written as `out/part-NNNNN.parquet`; returns (path, rows). What a
    compute engine maps when the lists go to files (a cluster's workers write them: `out` must be shared)."""
    index, users = job
    lists = lists_of(folder, users, k=k, threads=threads)
    path = Path(out) / f"part-{index:05d}.parquet"
    lists.write_parquet(path)
    return str(path), lists.height
