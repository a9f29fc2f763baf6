"""Matrix factorisation baselines from `implicit` (a well-kept, compiled library): ALS and BPR."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.baselines._base import Recommender


class _Factorisation(Recommender):
    """Fits an `implicit` model on the binary user x item matrix; scores are user . item factors."""

    seeded: ClassVar[bool] = True

    @abstractmethod
    def _model(self) -> Any: ...

    def _fit(self, events: pl.DataFrame, seen: sp.csr_matrix, items: pl.DataFrame | None) -> None:
        # implicit parallelises over users itself; a threaded BLAS underneath only oversubscribes the cores.
        with threadpool_limits(1, "blas"):
            model = self._model()
            model.fit(seen.astype(np.float32), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T


class ALS(_Factorisation):
    """Implicit-feedback ALS (Hu, Koren, Volinsky, ICDM 2008) via `implicit`; confidence 1 + alpha * binary events."""

    name: ClassVar[str] = "als"

    def __init__(self, *, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0, iterations: int = 15,
                 seed: int = 42) -> None:  # fmt: skip
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, random_state=self.seed,
                                       calculate_training_loss=False)  # fmt: skip


class BPR(_Factorisation):
    """Bayesian Personalized Ranking (Rendle et al., UAI 2009) via `implicit`, single-threaded for determinism."""

    name: ClassVar[str] = "bpr"

    def __init__(self, *, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, seed: int = 42) -> None:  # fmt: skip
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.seed = iterations, seed

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                           regularization=self.regularization, iterations=self.iterations,
                                           random_state=self.seed, num_threads=1)  # fmt: skip
