"""MLflow "model from code" for a registered recsys version (no cloudpickle: MLflow runs this file to load it).

`predict` takes a table of (user_id, item_id) candidate rows and returns them with the version's `score`, computed
from the state of the bundle's own training window as the night saved it (nothing is fitted when loading). Product
traffic goes through `recsys serve`; this makes every registered version loadable and checkable with plain
`mlflow.pyfunc.load_model`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel
from mlflow.pyfunc.model import PythonModelContext

import mlflow


class RecsysVersion(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from recsys.registry.bundle import load_bundle

        self.model = load_bundle(context.artifacts["bundle"]).model()

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """`model_input`: user_id, item_id columns; returns them with score and rank (see RankingModel)."""
        import polars as pl

        frame = pl.from_pandas(pd.DataFrame(model_input)).select(
            pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)
        )
        scored = self.model.rank_candidates(frame)
        return scored.to_pandas()


mlflow.models.set_model(RecsysVersion())
