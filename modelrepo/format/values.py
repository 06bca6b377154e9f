"""`load_value`: how a deployment's source.py gets its captured values back (pickles in data/)."""

from __future__ import annotations

import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Any

from modelrepo.format.layout import COMMON_DIR, DEPLOYMENTS_DIR
from modelrepo.format.stubs import stub_problem

_loading = threading.local()


def load_value(path: str | os.PathLike[str]) -> Any:
    """Unpickle `path`, relative to the folder of the source.py that calls this.

    The folder is found from the caller's `__file__`, so it does not matter what the working
    directory is. Pickles are code: only files inside that folder (or linked from the
    repository's common/ folder) are loaded, never a path that leaves them (absolute, `..`, or a
    symlink pointing anywhere else).
    """
    caller_file = sys._getframe(1).f_globals.get("__file__")
    folder = Path(caller_file).resolve().parent if caller_file else Path.cwd().resolve()
    target = (folder / path).resolve()
    if Path(path).is_absolute() or not loadable(target, folder):
        raise ValueError(f"load_value({str(path)!r}): only files inside {folder} can be loaded")
    if not target.is_file():
        raise FileNotFoundError(f"load_value({str(path)!r}): no file {target}")
    stub = stub_problem(target)
    if stub:  # never unpickle a placeholder: say what it is and what to do
        raise ValueError(f"load_value({str(path)!r}): {target.name} is {stub}")
    previous = getattr(_loading, "namespace", None)
    _loading.namespace = sys._getframe(1).f_globals
    try:
        with open(target, "rb") as f:
            return pickle.load(f)
    finally:
        _loading.namespace = previous


def loadable(target: Path, folder: Path) -> bool:
    """Inside the folder, or (through a link) in the repository's common/ folder."""
    if target.is_relative_to(folder):
        return True
    return folder.parent.name == DEPLOYMENTS_DIR and target.is_relative_to(folder.parent.parent / COMMON_DIR)


def source_global(name: str) -> Any:
    """A class or function defined in the source.py being loaded (used inside pickles).

    deploy() pickles instances of the user's classes so that they refer to the class written in
    source.py, not to a copy: `isinstance(value, TheClass)` then holds in the deployment.
    """
    namespace = getattr(_loading, "namespace", None)
    if namespace is None or name not in namespace:
        raise pickle.UnpicklingError(
            f"{name} must be defined in source.py before the value that uses it is loaded"
        )
    return namespace[name]
