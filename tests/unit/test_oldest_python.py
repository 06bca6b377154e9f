"""The project's code stays importable and correct on the oldest Python it supports (pyproject's
requires-python: 3.9, the Python of the bullseye runtime image), checked from this Python:

- ruff for that target: syntax newer than it (`match`, `except*`...) and FA102, an `X | Y`
  annotation in a module without `from __future__ import annotations`;
- vermin for standard-library features newer than it (`zip(strict=)`, `dataclass(slots=)`,
  `kw_only`, `itertools.pairwise`, `typing.TypeAlias`, `sys.stdlib_module_names`...);
- an ast walk for `X | Y` unions evaluated when the code runs (type aliases, isinstance), which
  neither tool sees without flagging every annotation;
- an ast walk for `except TimeoutError` alone, which on 3.9 catches neither socket.timeout
  nor asyncio.TimeoutError.

The cluster test on pythonVersion "3.9" runs the 3.9 image itself (tests/cluster/test_environments.py).
"""

from __future__ import annotations

import ast
import builtins
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelrepo import requirements

ROOT = Path(__file__).resolve().parents[2]
# What runs in runtime pods, in `serve`'s workers and in notebooks (the SDK); the operator too,
# since it is in the same distribution.
PACKAGES = ["modelrepo", "runtime", "operator"]
_TYPES = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)}


def oldest_python() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', text, re.M)
    assert found, "pyproject.toml has no requires-python"
    return int(found.group(1)), int(found.group(2))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_oldest_python_is_3_9_and_ruff_targets_it():
    assert oldest_python() == (3, 9)
    assert re.search(r'^target-version = "py39"', (ROOT / "pyproject.toml").read_text(), re.M)


def test_ruff_finds_no_syntax_newer_than_the_oldest_python():
    major, minor = oldest_python()
    out = _run("-m", "ruff", "check", "--no-cache", "--isolated", f"--target-version=py{major}{minor}",
               "--select=E9,FA102", "--output-format=concise", *PACKAGES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_vermin_finds_no_library_feature_newer_than_the_oldest_python():
    major, minor = oldest_python()
    out = _run("-c", "import sys, vermin; sys.exit(vermin.main())",
               f"-t={major}.{minor}-", "--violations", "--no-tips", "--no-make-paths-absolute",
               "-q", *PACKAGES)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def runtime_unions(source: str) -> list[str]:
    """`X | Y` expressions on types outside annotations (`Repo = str | Path`, `isinstance(x, A | B)`):
    Python 3.9 evaluates them and fails. Annotations are strings under `from __future__ import
    annotations` (ruff's FA102 checks that import)."""
    tree = ast.parse(source)
    annotations = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            annotations.add(id(node.annotation))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            annotations.add(id(node.returns))
        elif isinstance(node, ast.AnnAssign):
            annotations.add(id(node.annotation))
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if id(node) in annotations:
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (_typeish(node.left) or _typeish(node.right)):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _typeish(node: ast.AST) -> bool:
    """None, a builtin type, a CamelCase name, a subscript (`list[int]`) or a union of them."""
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in _TYPES or (node.id[0].isupper() and not node.id.isupper())
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _typeish(node.left) or _typeish(node.right)
    return isinstance(node, ast.Subscript)


def test_no_union_of_types_is_evaluated_at_run_time():
    found = {
        str(path.relative_to(ROOT)): unions
        for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
        if (unions := runtime_unions(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_union_check_sees_aliases_and_isinstance_but_not_annotations_or_flags():
    source = (
        "from __future__ import annotations\n"
        "Repo = str | os.PathLike[str]\n"
        "ok = isinstance(x, KeyError | None)\n"
        "def f(a: int | None) -> list[int] | None:\n"
        "    b: str | None = None\n"
        "    return re.I | re.M, FLAG_A | FLAG_B, left | right, {1} | {2}\n"
    )
    assert runtime_unions(source) == ["line 2: str | os.PathLike[str]", "line 3: KeyError | None"]


def bare_timeout_handlers(source: str) -> list[str]:
    """`except TimeoutError` (or `suppress(TimeoutError)`) without socket.timeout or
    asyncio.TimeoutError: on Python 3.9 these are other classes (aliases from 3.10 and 3.11)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("suppress"):
            caught = node.args
        else:
            continue
        names = {ast.unparse(n) for n in caught}
        if "TimeoutError" in names and not names & {"socket.timeout", "asyncio.TimeoutError"}:
            found.append(f"line {node.lineno}: {', '.join(sorted(names))}")
    return found


def test_timeouts_are_caught_by_their_python_3_9_classes_too():
    found = {
        str(path.relative_to(ROOT)): handlers
        for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
        if (handlers := bare_timeout_handlers(path.read_text(encoding="utf-8")))
    }
    assert found == {}
    assert bare_timeout_handlers(
        "try:\n    f()\nexcept TimeoutError:\n    pass\nwith contextlib.suppress(TimeoutError):\n    g()\n"
        "try:\n    f()\nexcept (TimeoutError, socket.timeout):\n    pass\n"
    ) == ["line 3: TimeoutError", "line 5: TimeoutError"]


@pytest.fixture
def without_stdlib_module_names(monkeypatch):
    """Python 3.9 as requirements.py sees it: no sys.stdlib_module_names."""
    monkeypatch.delattr(sys, "stdlib_module_names", raising=False)
    requirements._stdlib_names.cache_clear()
    yield
    requirements._stdlib_names.cache_clear()


def test_the_standard_library_is_known_without_sys_stdlib_module_names(without_stdlib_module_names):
    for name in ("json", "os.path", "sqlite3", "asyncio.tasks", "sys", "_ssl"):
        assert requirements.is_stdlib(name), name
    for name in ("numpy", "yaml", "modelrepo", "my_helpers"):
        assert not requirements.is_stdlib(name), name
    assert requirements.pinned_requirements(["json", "yaml.loader"]) == [f"PyYAML=={_version('PyYAML')}"]


def _version(dist: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(dist)
