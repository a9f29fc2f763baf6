"""Hyper-parameter grids tried on inner validation splits (constants only: the ranking stage's config reads them
without importing the models they tune)."""

from __future__ import annotations

EASE_GRID: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
# EASELowPass: low-pass factors and blend weights tried on the validation split (weight 0 = EASE alone).
LOWPASS_FACTORS: tuple[int, ...] = (8, 16, 32)
LOWPASS_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
