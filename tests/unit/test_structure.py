"""The structure of imports: who may depend on whom (docs/architecture.md).

Read from the source with `ast`, so a forbidden import anywhere in a module (also inside a
function) fails here, naming the module and the import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def project_imports(folder: Path) -> dict[str, list[str]]:
    return {
        str(path.relative_to(ROOT)): [name for name in imports_of(path) if name.startswith("modelrepo")]
        for path in sorted(folder.rglob("*.py"))
    }


def test_the_format_package_imports_nothing_else_of_the_project():
    offenders = {
        module: [name for name in names if not name.startswith("modelrepo.format")]
        for module, names in project_imports(ROOT / "modelrepo" / "format").items()
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_the_git_wrapper_imports_nothing_of_the_project():
    assert imports_of(ROOT / "modelrepo" / "git.py") == [
        name for name in imports_of(ROOT / "modelrepo" / "git.py") if not name.startswith("modelrepo")
    ]


def test_the_sdk_uses_no_runtime_or_operator_internals():
    """modelrepo/*.py (the SDK) reaches the runtime and operator only through the format package,
    the git wrapper and the repository reader; CLI commands may start them (entry points)."""
    sdk = [p for p in (ROOT / "modelrepo").glob("*.py")]
    offenders = {
        str(path.relative_to(ROOT)): [
            name for name in imports_of(path)
            if name.startswith(("modelrepo.runtime", "modelrepo.operator"))
        ]
        for path in sdk
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_the_runtime_does_not_import_the_operator_or_the_sdk():
    # modelbit_compat is part of the API deployment code imports (`import modelbit`), like load_value.
    allowed = (
        "modelrepo.format", "modelrepo.git", "modelrepo.repository", "modelrepo.runtime",
        "modelrepo.duration", "modelrepo.modelbit_compat",
    )
    offenders = {
        module: [name for name in names if not name.startswith(allowed)]
        for module, names in project_imports(ROOT / "runtime").items()
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_only_the_git_wrapper_starts_git():
    """Every git command goes through modelrepo.git.run (timeouts, credentials, redaction)."""
    offenders = []
    for folder in ("modelrepo", "operator", "runtime"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "git.py" and path.parent.name == "modelrepo":
                continue
            text = path.read_text(encoding="utf-8")
            if '["git"' in text or "['git'" in text or re.search(r"^import git$", text, re.MULTILINE):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_every_package_is_in_the_distribution():
    """The image installs the project with `pip install` (not editable): a package missing from
    pyproject's list imports in a checkout and fails in every pod."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {"modelrepo": ROOT / "modelrepo", "modelrepo.operator": ROOT / "operator", "modelrepo.runtime": ROOT / "runtime"}
    found = set()
    for prefix, folder in mapping.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            if "operator" in rel or "runtime" in rel and prefix == "modelrepo":
                continue  # the symlinks modelrepo/operator and modelrepo/runtime
            found.add(".".join((prefix, *rel)))
    if (ROOT / "operator").is_dir():
        found.add("modelrepo.operator")  # operator/ has no __init__.py on purpose
    assert sorted(found - listed) == []
