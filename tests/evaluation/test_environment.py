"""The environment record that travels with every evaluation report: enough to tell why two runs differ."""

import importlib.metadata
import subprocess
from pathlib import Path

from recsys.evaluation.runner import environment_info


def test_environment_records_the_encoder_stack_cpu_and_revision():
    info = environment_info()
    # bf16 fine-tuning is repeatable on one machine and library set, not across them: both must be on record
    for dist in ("torch", "transformers", "peft", "tokenizers", "lightgbm", "polars"):
        assert info[dist] == importlib.metadata.version(dist), dist
    assert info["cpu"] and info["cpu"] != "unknown"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, check=False
    ).stdout.strip()
    if head:  # a source checkout: the report names the exact revision
        assert info["git_sha"] == head
