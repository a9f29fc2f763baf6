"""Conventions the codebase keeps (STYLE.md): every public function typed, no module over 400 lines without a reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "features", "pipelines")
# module -> why it may be longer than 400 lines
LONG_MODULES = {
    "recsys/encoder/finetune.py": "one training loop whose closures share the model, optimiser and device state; "
    "its configs and pair sets already live in recsys.encoder.config and recsys.encoder.pairs",
}


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_public_function_is_typed() -> None:
    untyped = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                args = [a for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                bare = [a.arg for a in args if a.annotation is None and a.arg not in ("self", "cls")]
                if bare or node.returns is None:
                    untyped.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert untyped == []


def test_no_module_over_400_lines_without_a_stated_reason() -> None:
    long = {str(p.relative_to(ROOT)) for p in _modules() if len(p.read_text().splitlines()) > 400}
    assert long <= set(LONG_MODULES), f"over 400 lines: {sorted(long - set(LONG_MODULES))}"


def _reads_a_variable(node: ast.AST) -> bool:
    """`os.environ.get("X")`, `os.getenv("X")` or `os.environ["X"]` read with a literal name: configuration read
    from the environment (saving and restoring variables by a loop's name is not)."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = node.func
        return ast.unparse(f) in ("os.environ.get", "os.getenv", "environ.get", "getenv")
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
        return ast.unparse(node.value) in ("os.environ", "environ")
    return False


def test_the_library_reads_no_environment_variables_outside_the_settings_edge() -> None:
    """Settings are assembled once at the edge (`recsys.config`, the CLI and flows in `pipelines/`); the stages get
    them as arguments."""
    readers = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _modules()
        if path.parts[len(ROOT.parts)] in ("recsys", "features") and path != ROOT / "recsys" / "config.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if _reads_a_variable(node)
    ]
    assert readers == []
