"""The published documents stay honest: results.md is what the benchmark JSON gives, the README stays short."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_md_is_generated_from_the_benchmark_json() -> None:
    spec = importlib.util.spec_from_file_location("results_md", ROOT / "bench" / "results_md.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert "amazon-scientific" in expected  # the quality JSON is there and rendered
    assert (ROOT / "docs" / "results.md").read_text() == expected, "run: python bench/results_md.py"


def test_readme_is_for_users() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 10 * 1024
    assert "make demo" in text and "make test" in text and "docs/results.md" in text


def test_the_example_settings_file_is_the_defaults() -> None:
    from recsys.config import Settings, load_settings

    assert load_settings(ROOT / "recsys.example.toml").model_dump() == load_settings().model_dump()
    assert load_settings().model_dump(exclude={"data": {"data_dir"}}) == Settings().model_dump(
        exclude={"data": {"data_dir"}}
    )  # load_settings only adds the datasets' folder (from $RECSYS_DATA_DIR or the default)


def test_every_registered_model_is_documented_and_offered_by_the_cli() -> None:
    """The baselines registry is the one list: the guide's model table and `recsys evaluate --models` name each."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from recsys.baselines import BASELINES
    from recsys.ranker import PIPELINE_MODELS, TEXT_MODELS

    guide = (ROOT / "docs" / "guide.md").read_text()
    help_text = " ".join(CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=400).output.split())
    for name in (*BASELINES, *TEXT_MODELS, *PIPELINE_MODELS):
        assert f"`{name}`" in guide, f"docs/guide.md: no row for model {name!r}"
        assert name in help_text, f"recsys evaluate --help does not offer {name!r}"
