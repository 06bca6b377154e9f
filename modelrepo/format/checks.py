"""Static checks of a deployment folder: everything that can be known without running its code.

`validate_folder` never imports or unpickles anything, so `modelrepo validate`, the pre-commit
hook and the operator can run it on any commit, trusted or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import NAME_RULE, REQUIREMENTS_FILE, SOURCE_FILE, is_valid_name
from modelrepo.format.links import link_problems
from modelrepo.format.metadata import Metadata, read_metadata
from modelrepo.format.requirements import requirement_problems
from modelrepo.format.stubs import find_stubs
from modelrepo.format.values import loadable


def validate_folder(folder: str | Path, *, lfs_pointers: bool = False) -> list[DeploymentError]:
    """Every static problem of one deployment folder (nothing is imported or unpickled).

    `lfs_pointers=True` accepts Git LFS pointers (find_stubs: their objects are fetched later)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [DeploymentError(folder, "not a directory")]
    errors: list[DeploymentError] = []
    if not is_valid_name(folder.name):
        errors.append(DeploymentError(folder, f"deployment name {folder.name!r} must match {NAME_RULE}"))
    metadata: Metadata | None = None
    try:
        metadata = read_metadata(folder)
    except DeploymentError as exc:
        errors.append(exc)
    errors.extend(_check_source(folder, metadata))
    requirements = folder / REQUIREMENTS_FILE
    if requirements.is_file():
        errors.extend(
            DeploymentError(requirements, problem)
            for problem in requirement_problems(requirements.read_text(encoding="utf-8"))
        )
    links = link_problems(folder)
    errors.extend(DeploymentError(path, problem) for path, problem in links)
    broken = {path for path, _ in links}
    errors.extend(DeploymentError(path, problem) for path, problem in find_stubs(folder, lfs_pointers=lfs_pointers)
                  if path not in broken)
    return errors


def _function_args(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    return [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _check_source(folder: Path, metadata: Metadata | None) -> list[DeploymentError]:
    """source.py parses, defines the main function with the declared args (when metadata.yaml
    could be read), and every data file it loads exists inside the folder."""
    where = folder / SOURCE_FILE
    if not where.is_file():
        return [DeploymentError(where, "missing (the main function lives in source.py)")]
    try:
        tree = ast.parse(where.read_text(encoding="utf-8"), filename=str(where))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", str(exc))
        return [DeploymentError(where, f"not valid Python{f' (line {line})' if line else ''}: {msg}")]
    errors: list[DeploymentError] = []
    if metadata is not None:
        errors.extend(_check_main_function(tree, where, metadata))
    errors.extend(_check_loaded_values(tree, folder, where))
    return errors


def _check_main_function(tree: ast.Module, where: Path, metadata: Metadata) -> list[DeploymentError]:
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    node = defs.get(metadata.main_function)
    if node is None:
        return [DeploymentError(where, f"no top-level function {metadata.main_function}() (runtimeInfo.mainFunction)")]
    declared, actual = metadata.arg_names, _function_args(node)
    if declared != actual:
        return [DeploymentError(
            where,
            f"{metadata.main_function}() takes ({', '.join(actual)}) but metadata.yaml "
            f"mainFunctionArgs says ({', '.join(declared)})",
        )]
    return []


def _check_loaded_values(tree: ast.Module, folder: Path, where: Path) -> list[DeploymentError]:
    """Each `load_value("<literal>")` names a file inside the folder that exists."""
    errors = []
    for call in ast.walk(tree):
        if (
            isinstance(call, ast.Call)
            and (getattr(call.func, "attr", None) == "load_value" or getattr(call.func, "id", None) == "load_value")
            and call.args
            and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str)
        ):
            data = call.args[0].value
            target = (folder / data).resolve()
            if not loadable(target, folder.resolve()):
                errors.append(DeploymentError(where, f"line {call.lineno}: load_value({data!r}) points outside the folder (and common/)"))
            elif not target.is_file():
                errors.append(DeploymentError(folder / data, f"missing (source.py line {call.lineno} loads it)"))
    return errors
