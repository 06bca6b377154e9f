"""Read, check and import a deployment folder (DESIGN §3).

One reader for everyone: `modelrepo validate`, the deploy-time doctest gate, the runtime server
and the operator all go through this module, so they agree on what a valid folder is.
`validate_folder` never runs user code; `load_deployment` does (source.py and its pickles), so
it must only be given folders from the configured repository.
"""

from __future__ import annotations

import ast
import doctest
import importlib.machinery
import importlib.util
import itertools
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

SCHEMA_VERSION = 2
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PYTHON_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_LATENCY_MS = 10
_module_counter = itertools.count(1)


class DeploymentError(Exception):
    """What is wrong with a deployment folder, and in which file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Metadata:
    """metadata.yaml, checked and with defaults filled in; `raw` is the file as parsed."""

    name: str
    main_function: str
    args: list[tuple[str, str | None]]
    python_version: str
    system_packages: list[str] = field(default_factory=list)
    batch: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: int = DEFAULT_MAX_LATENCY_MS
    replicas: int | None = None
    resources: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    dataframe_columns: list[str] | None = None
    return_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


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


def _parse_arg(spec: Any, where: Path) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise DeploymentError(where, f"runtimeInfo.mainFunctionArgs: {spec!r} is not a string like 'x:int'")
    name, sep, type_name = spec.partition(":")
    name, type_name = name.strip(), type_name.strip()
    if not name.isidentifier():
        raise DeploymentError(where, f"runtimeInfo.mainFunctionArgs: {spec!r} does not start with an argument name")
    return name, (type_name or None) if sep else None


def _int(section: dict[str, Any], key: str, where: Path, label: str, minimum: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeploymentError(where, f"{label}.{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _env(value: Any, where: Path) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value):
        return {str(i["name"]): str(i.get("value", "")) for i in value}
    raise DeploymentError(where, "deployment.env must be a mapping of NAME: value")


def read_metadata(folder: str | Path) -> Metadata:
    """Parse and check `<folder>/metadata.yaml`; raise DeploymentError naming the problem."""
    folder = Path(folder)
    where = folder / "metadata.yaml"
    if not where.is_file():
        raise DeploymentError(where, "missing (every deployment folder needs a metadata.yaml)")
    try:
        raw = yaml.safe_load(where.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DeploymentError(where, f"not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise DeploymentError(where, "must be a YAML mapping")
    if raw.get("schemaVersion") != SCHEMA_VERSION:
        raise DeploymentError(
            where, f"schemaVersion must be {SCHEMA_VERSION}, not {raw.get('schemaVersion')!r}"
        )
    info = raw.get("runtimeInfo")
    if not isinstance(info, dict):
        raise DeploymentError(where, "runtimeInfo is missing or not a mapping")
    main = info.get("mainFunction")
    if not isinstance(main, str) or not main.isidentifier():
        raise DeploymentError(where, f"runtimeInfo.mainFunction must be a Python name, not {main!r}")
    raw_args = info.get("mainFunctionArgs")
    raw_args = [] if raw_args is None else raw_args  # Modelbit omits it for a function without arguments
    if not isinstance(raw_args, list):
        raise DeploymentError(where, "runtimeInfo.mainFunctionArgs must be a list like ['x:int']")
    return_type = None
    if raw_args and isinstance(raw_args[-1], str) and raw_args[-1].partition(":")[0].strip() == "return":
        return_type = raw_args[-1].partition(":")[2].strip() or None  # Modelbit's last entry "return:<type>"
        raw_args = raw_args[:-1]
    args = [_parse_arg(a, where) for a in raw_args]
    dataframe_columns = info.get("dataframeModeColumns")
    if dataframe_columns is not None and (
        not isinstance(dataframe_columns, list) or not all(isinstance(c, str) for c in dataframe_columns)
    ):
        raise DeploymentError(where, "runtimeInfo.dataframeModeColumns must be a list of column names")
    python_version = str(info.get("pythonVersion", ""))
    if not _PYTHON_VERSION.match(python_version):
        raise DeploymentError(
            where, f"runtimeInfo.pythonVersion must look like \"3.11\", not {info.get('pythonVersion')!r}"
        )
    system_packages = info.get("systemPackages") or []
    if not isinstance(system_packages, list) or not all(isinstance(p, str) for p in system_packages):
        raise DeploymentError(where, "runtimeInfo.systemPackages must be a list of package names")
    batch = info.get("batch", False)
    if not isinstance(batch, bool):
        raise DeploymentError(where, f"runtimeInfo.batch must be true or false, not {batch!r}")
    deployment = raw.get("deployment") or {}
    if not isinstance(deployment, dict):
        raise DeploymentError(where, "deployment must be a mapping")
    resources = deployment.get("resources")
    if resources is not None and not isinstance(resources, dict):
        raise DeploymentError(where, "deployment.resources must be a mapping (requests/limits)")
    timeout = deployment.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise DeploymentError(where, f"deployment.timeoutSeconds must be a positive number, not {timeout!r}")
    max_latency_ms = _int(deployment, "maxLatencyMs", where, "deployment", 0)
    return Metadata(
        name=folder.resolve().name,
        main_function=main,
        args=args,
        python_version=python_version,
        system_packages=list(system_packages),
        batch=batch,
        max_batch_size=_int(deployment, "maxBatchSize", where, "deployment", 1) or DEFAULT_MAX_BATCH_SIZE,
        max_latency_ms=DEFAULT_MAX_LATENCY_MS if max_latency_ms is None else max_latency_ms,
        replicas=_int(deployment, "replicas", where, "deployment", 0),
        resources=resources,
        env=_env(deployment.get("env"), where),
        timeout_seconds=timeout,
        dataframe_columns=None if dataframe_columns is None else list(dataframe_columns),
        return_type=return_type,
        raw=raw,
    )


def _function_args(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    return [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _check_source(folder: Path, metadata: Metadata | None) -> list[DeploymentError]:
    """source.py parses, defines the main function with the declared args (when metadata.yaml
    could be read), and every data file it loads exists inside the folder."""
    where = folder / "source.py"
    if not where.is_file():
        return [DeploymentError(where, "missing (the main function lives in source.py)")]
    try:
        tree = ast.parse(where.read_text(encoding="utf-8"), filename=str(where))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", str(exc))
        return [DeploymentError(where, f"not valid Python{f' (line {line})' if line else ''}: {msg}")]
    errors: list[DeploymentError] = []
    defs = {
        n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    node = defs.get(metadata.main_function) if metadata else None
    if metadata is None:
        pass
    elif node is None:
        errors.append(DeploymentError(where, f"no top-level function {metadata.main_function}() (runtimeInfo.mainFunction)"))
    else:
        declared = [name for name, _ in metadata.args]
        actual = _function_args(node)
        if declared != actual:
            errors.append(DeploymentError(
                where,
                f"{metadata.main_function}() takes ({', '.join(actual)}) but metadata.yaml "
                f"mainFunctionArgs says ({', '.join(declared)})",
            ))
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
            if not target.is_relative_to(folder.resolve()):
                errors.append(DeploymentError(where, f"line {call.lineno}: load_value({data!r}) points outside the folder"))
            elif not target.is_file():
                errors.append(DeploymentError(folder / data, f"missing (source.py line {call.lineno} loads it)"))
    return errors


def _check_requirements(folder: Path) -> list[DeploymentError]:
    where = folder / "requirements.txt"
    if not where.exists():
        return []
    from packaging.requirements import InvalidRequirement, Requirement

    errors = []
    for number, line in enumerate(where.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-"):
            errors.append(DeploymentError(where, f"line {number}: pip options are not allowed ({text})"))
            continue
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "invalid"
            errors.append(DeploymentError(where, f"line {number}: {text!r} is not a requirement: {reason}"))
    return errors


def validate_folder(folder: str | Path) -> list[DeploymentError]:
    """Every static problem of one deployment folder (nothing is imported or unpickled)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [DeploymentError(folder, "not a directory")]
    errors: list[DeploymentError] = []
    if not NAME_PATTERN.match(folder.name):
        errors.append(DeploymentError(folder, f"deployment name {folder.name!r} must match [A-Za-z_][A-Za-z0-9_]*"))
    metadata: Metadata | None = None
    try:
        metadata = read_metadata(folder)
    except DeploymentError as exc:
        errors.append(exc)
    errors.extend(_check_source(folder, metadata))
    errors.extend(_check_requirements(folder))
    return errors


def check_python_version(metadata: Metadata, folder: Path) -> None:
    """Refuse a deployment made for another Python: its pickles may not load or may misbehave."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if metadata.python_version != here:
        raise DeploymentError(
            folder / "metadata.yaml",
            f"pythonVersion is {metadata.python_version} but this runtime runs Python {here}; "
            f"serve it with a Python {metadata.python_version} runtime image",
        )


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """Never writes __pycache__ into a deployment folder (a git work tree or a read-only mount)."""

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        return None


def load_deployment(folder: str | Path, *, check_python: bool = True) -> LoadedDeployment:
    """Import `<folder>/source.py` as a new module with a unique name and return its function.

    Each call makes a new module (`modelrepo_deployment_<Name>_<n>`), so several versions of
    one deployment can live in one process without sharing globals.
    """
    folder = Path(folder).resolve()
    metadata = read_metadata(folder)
    if check_python:
        check_python_version(metadata, folder)
    source = folder / "source.py"
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
        super().__init__(verbose=False)
        self.found: list[DoctestFailure] = []

    def report_failure(self, out, test, example, got):  # type: ignore[override]
        self.found.append(DoctestFailure(example.source.strip(), example.want.rstrip("\n"), got.rstrip("\n")))

    def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[override]
        got = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()
        self.found.append(DoctestFailure(example.source.strip(), example.want.rstrip("\n"), got))


def run_doctests(loaded: LoadedDeployment) -> list[DoctestFailure]:
    """Run the main function's docstring examples in the deployment's module namespace."""
    finder = doctest.DocTestFinder(recurse=False)
    module = loaded.module
    globs = dict(vars(module)) if module is not None else {}
    name = loaded.metadata.main_function
    runner = _Collector()
    for test in finder.find(loaded.function, name, module=False, globs=globs):
        runner.run(test, out=lambda _text: None)
    return runner.found
