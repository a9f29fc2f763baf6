"""One night: validate, fine-tune, embed, train, evaluate against the champion, register, gate, publish.

`steps` holds each step as a plain function; `config` the night's own settings. The Prefect flow
(`pipelines/nightly.py`) only wires the steps into tasks. Submodules are imported on use: `recsys.config` reads
`NightlyConfig` without loading the training code the steps need.
"""

from __future__ import annotations
