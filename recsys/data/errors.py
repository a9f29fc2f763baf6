"""Errors and warnings raised on bad input."""

from __future__ import annotations


class DataValidationError(ValueError):
    """Data cannot be used as given. The message names the source, column, count and first bad row, then the fix."""


class DataWarning(UserWarning):
    """Data is suspect but usable (e.g. text decoded with replacement characters)."""
