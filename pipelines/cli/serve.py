"""`recsys serve`: the HTTP service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import (
    _settings,
    _user_errors,
    app,
    err,
)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="Settings TOML ([serving] section)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default [serving] host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default [serving] port, 8000)")] = None,
) -> None:
    """The HTTP service: published lists, on-demand re-ranking, health, metrics (OpenAPI at /docs)."""
    import uvicorn

    from recsys.serving import RankingService, open_store
    from recsys.serving.app import create_app

    settings = _settings(config)
    cfg = settings.serving.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    with _user_errors():
        store = open_store(cfg, default_path=settings.nightly.store_path, retention=settings.nightly.retention)
    service = RankingService(store, cfg)
    app_ = create_app(service)
    err.print(f"serving {store} on http://{cfg.host}:{cfg.port} (OpenAPI: /docs, /openapi.json)")
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
