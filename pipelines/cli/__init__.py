"""The `recsys` command line: a typer shell over library calls and flows, rendered with rich.

It lives beside the flows (`pipelines/`), the one place that may import both the library and the flows; the library
(`recsys`) never imports `pipelines`. Commands register on `app` when their module is imported below.
"""

from __future__ import annotations

from pipelines.cli import data, flows, serve
from pipelines.cli._common import app

__all__ = ["app", "data", "flows", "serve"]
