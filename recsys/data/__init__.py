"""Data layer: canonical schema, loaders, validation with explicit policies, synthetic default data."""

from __future__ import annotations

from recsys.data.dataset import Dataset, after_last_event, fingerprint_frames, validate_dataset
from recsys.data.errors import DataValidationError, DataWarning
from recsys.data.feedback import Feedback, infer_feedback
from recsys.data.loaders import (
    default_data_dir,
    load_amazon_scientific,
    load_files,
    load_movielens_100k,
    load_movielens_latest,
)
from recsys.data.registry import DATASETS, DatasetSpec, load_dataset, load_spec
from recsys.data.report import ValidationReport
from recsys.data.synthetic import generate_synthetic, write_synthetic_files
from recsys.data.validation import ValidationPolicy

__all__ = [
    "DATASETS",
    "DataValidationError",
    "DataWarning",
    "Dataset",
    "DatasetSpec",
    "Feedback",
    "ValidationPolicy",
    "ValidationReport",
    "after_last_event",
    "default_data_dir",
    "fingerprint_frames",
    "generate_synthetic",
    "infer_feedback",
    "load_amazon_scientific",
    "load_dataset",
    "load_files",
    "load_movielens_100k",
    "load_movielens_latest",
    "load_spec",
    "validate_dataset",
    "write_synthetic_files",
]
