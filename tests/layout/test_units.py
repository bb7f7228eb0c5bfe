"""Short units: no function over 60 lines of code outside Triton kernels (one launch each) and table data (ALLOWED
below, each with its reason). A line of code is a line on which a statement starts: the docstring, blank lines,
comments and the lines ruff format gives each argument of a long call are not counted, so the measure does not
change with formatting."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60
# (file relative to the repository, function) -> why it may be longer
ALLOWED = {
    ("python/pgc_fast/config/original_flags.py", "original_to_config"): "one table: original option → config field",
}


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    starts = {n.lineno for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.stmt)}
    return len(starts) + 1  # + the def line


def test_no_function_is_longer_than_a_screen():
    long = []
    for root in ("python/pgc_fast", "kernels/pgc_kernels"):
        for f in sorted((ROOT / root).rglob("*.py")):
            rel = str(f.relative_to(ROOT))
            for node in ast.walk(ast.parse(f.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if any("jit" in ast.unparse(d) for d in node.decorator_list) or (rel, node.name) in ALLOWED:
                    continue
                if _code_lines(node) > LIMIT:
                    long.append(f"{rel}:{node.lineno} {node.name}: {_code_lines(node)} lines")
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_every_pgc_kernels_function_but_the_triton_kernels_is_typed():
    """mypy cannot exempt decorated functions from disallow_untyped_defs, so this holds the rule for pgc_kernels."""
    untyped = []
    for f in sorted((ROOT / "kernels/pgc_kernels").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any("jit" in ast.unparse(d) for d in node.decorator_list):
                continue
            a = node.args
            params = [p for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls", "ctx")]
            params += [p for p in (a.vararg, a.kwarg) if p is not None]
            if node.returns is None or any(p.annotation is None for p in params):
                untyped.append(f"{f.name}:{node.lineno} {node.name}")
    assert not untyped, untyped
