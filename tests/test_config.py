"""The run context: one root seed with per-stage overrides, and keys that moved out of stage sections say where."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recsys.config import RunContext, load_settings


def test_every_stage_seed_derives_from_the_root_unless_overridden() -> None:
    run = RunContext(seed=7, seeds={"ranker": 3})
    assert [run.seed_for(s) for s in ("split", "encoder", "head", "ranker", "gate")] == [7, 7, 7, 3, 7]
    assert load_settings(run={"seed": 5}).run.seed_for("gate") == 5
    with pytest.raises(ValidationError):
        RunContext(seeds={"nonsense": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("evaluation", "seed", "moved to \\[run\\] seed"),
        ("encoder", "cache_dir", "moved to \\[run\\]"),
        ("encoder", "time_budget_s", "moved to \\[run\\]"),
    ],
)
def test_moved_keys_name_their_new_place(section: str, key: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(**{section: {key: 1}})


def test_mlflows_tracking_variable_is_read_at_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.registry.tracking import TrackingConfig

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_settings().tracking.uri == "http://127.0.0.1:5999"
    assert load_settings(tracking={"uri": "sqlite:///x.db"}).tracking.uri == "sqlite:///x.db"  # settings win
    assert TrackingConfig().resolved_uri().startswith("sqlite:///")  # the library itself reads no environment
