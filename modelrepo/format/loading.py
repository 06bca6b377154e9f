"""Importing a deployment folder and running its docstring examples.

This runs repository code (source.py and its pickles): only give it folders from the
configured repository, and only in a process that holds no credentials.
"""

from __future__ import annotations

import doctest
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelrepo.format.doctests import NumericOutputChecker
from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import METADATA_FILE, SOURCE_FILE
from modelrepo.format.metadata import Metadata, read_metadata

_module_counter = itertools.count(1)


@dataclass
class LoadedDeployment:
    """A deployment imported into its own module: call `function`."""

    folder: Path
    metadata: Metadata
    function: Callable[..., Any]
    module: ModuleType | None = None


@dataclass(frozen=True)
class DoctestFailure:
    """One docstring example that did not give what it promised."""

    example: str
    expected: str
    got: str


def running_python() -> str:
    """`major.minor` of this interpreter, as metadata.yaml writes pythonVersion."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_python_version(metadata: Metadata, folder: Path) -> None:
    """Refuse a deployment made for another Python: its pickles may not load or may misbehave."""
    here = running_python()
    if metadata.python_version != here:
        raise DeploymentError(
            folder / METADATA_FILE,
            f"pythonVersion is {metadata.python_version} but this runtime runs Python {here}; "
            f"serve it with a Python {metadata.python_version} runtime image",
        )


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """Never writes __pycache__ into a deployment folder (a git work tree or a read-only mount)."""

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        return None


def enter_folder(folder: str | Path) -> None:
    """Make `folder` the working directory and the first entry of sys.path, as Modelbit does.

    Deployment code opens files by relative path (`open("model.txt")`) and imports packages that
    sit in its folder (`from app.db import Query`). This changes the whole process, so call it
    only in a process that serves one deployment version (a worker, a pod, the doctest gate).
    """
    folder = str(Path(folder).resolve())
    os.chdir(folder)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)


def load_deployment(folder: str | Path, *, check_python: bool = True) -> LoadedDeployment:
    """Import `<folder>/source.py` as a new module with a unique name and return its function.

    Each call makes a new module (`modelrepo_deployment_<Name>_<n>`), so several versions of
    one deployment can live in one process without sharing globals.
    """
    folder = Path(folder).resolve()
    metadata = read_metadata(folder)
    if check_python:
        check_python_version(metadata, folder)
    source = folder / SOURCE_FILE
    if not source.is_file():
        raise DeploymentError(source, "missing (the main function lives in source.py)")
    module_name = f"modelrepo_deployment_{metadata.name}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(
        module_name, source, loader=_NoBytecodeLoader(module_name, str(source))
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pickles and dataclasses look classes up by module name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise DeploymentError(source, f"loading failed: {_last_frame(exc, source)}{type(exc).__name__}: {exc}") from exc
    function = getattr(module, metadata.main_function, None)
    if not callable(function):
        sys.modules.pop(module_name, None)
        raise DeploymentError(source, f"defines no function {metadata.main_function}() (runtimeInfo.mainFunction)")
    return LoadedDeployment(folder=folder, metadata=metadata, function=function, module=module)


def unload(loaded: LoadedDeployment) -> None:
    """Forget the module of a deployment version (its objects go once nothing else holds them)."""
    if loaded.module is not None:
        sys.modules.pop(loaded.module.__name__, None)


def _last_frame(exc: BaseException, source: Path) -> str:
    """'line N: ' of the deepest frame inside source.py, to point the user at their code."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == source:
            line = frame.lineno
    return f"line {line}: " if line else ""


class _Collector(doctest.DocTestRunner):
    """A DocTestRunner that records failures as data instead of printing them."""

    def __init__(self) -> None:
        super().__init__(checker=NumericOutputChecker(), verbose=False)
        self.found: list[DoctestFailure] = []

    def report_failure(self, out, test, example, got):  # type: ignore[override]
        self.found.append(DoctestFailure(example.source.strip(), example.want.rstrip("\n"), got.rstrip("\n")))

    def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[override]
        got = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()
        self.found.append(DoctestFailure(example.source.strip(), example.want.rstrip("\n"), got))


def run_doctests(loaded: LoadedDeployment) -> list[DoctestFailure]:
    """Run the main function's docstring examples in the deployment's module namespace.

    Numbers compare by value (`11.0` matches numpy 2's `np.float64(11.0)`); all else as doctest.
    """
    finder = doctest.DocTestFinder(recurse=False)
    module = loaded.module
    globs = dict(vars(module)) if module is not None else {}
    name = loaded.metadata.main_function
    runner = _Collector()
    for test in finder.find(loaded.function, name, module=False, globs=globs):
        runner.run(test, out=lambda _text: None)
    return runner.found


def first_failure_message(failures: list[DoctestFailure]) -> str:
    """One line naming the first failing example (and how many more), for logs and status."""
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"docstring test failed: >>> {first.example} expected {first.expected!r}, got {first.got!r}{more}"
