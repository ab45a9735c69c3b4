"""Every hook is documented under its exact signature and has a ``test_hook_<name>``."""

import ast
import functools
import inspect
from pathlib import Path

import pytest

from decodekit import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [
    (name, func)
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(func, "decodekit_spec")
]


def test_there_are_hooks():
    assert len(HOOKS) >= 8


@pytest.mark.parametrize(("name", "func"), HOOKS, ids=[h[0] for h in HOOKS])
def test_plugin_hooks_are_documented(name, func):
    signature = f"{name}({', '.join(inspect.signature(func).parameters)})"
    page = (ROOT / "docs" / "hooks.md").read_text()
    assert f"## `{signature}`" in page, f"docs/hooks.md has no section titled `{signature}`"
    assert func.__doc__ and ":param" in func.__doc__, f"{name} spec docstring lacks :param"


@functools.cache
def _test_function_names():
    """Test function names in the project's own test folders (not in environments)."""
    names = set()
    for pattern in ("tests/**/*.py", "plugins/*/tests/**/*.py", "kernels/tests/**/*.py"):
        for path in ROOT.glob(pattern):
            tree = ast.parse(path.read_text())
            names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return names


@pytest.mark.parametrize(("name", "func"), HOOKS, ids=[h[0] for h in HOOKS])
def test_plugin_hooks_have_tests(name, func):
    assert f"test_hook_{name}" in _test_function_names(), f"no test_hook_{name} in the tests"
