"""One night: validate, fine-tune, embed, train, evaluate against the champion, register, gate, publish.

`steps` holds each step as a plain function; `night.run_night` runs them in order and owns the night's MLflow run
and the registry's aliases. The Prefect flow (`pipelines/nightly.py`) only decides how each step runs (as a task).
The night's own settings are `recsys.config.NightlyConfig`.
"""

from __future__ import annotations
