"""Write a captured function as a deployment folder: source.py, data/*.pkl, metadata.yaml,
requirements.txt (docs/repo-format.md). Only writes into the folder it is given (a staging directory)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cloudpickle
import yaml

from modelrepo.capture import Captured, CaptureError
from modelrepo.format.values import source_global
from modelrepo.requirements import merge_requirements, pinned_requirements

GENERATED = ("source.py", "metadata.yaml", "requirements.txt")
_PLAIN_TYPES = {int, float, str, bytes, bool, type(None), list, tuple, dict, set, frozenset}


class _TrackingPickler(cloudpickle.Pickler):
    """A cloudpickle Pickler that notes the module of every object it saves.

    Those modules are what loading the pickle will import, hence what requirements.txt pins.
    """

    def __init__(
        self, file: Any, modules: set[str], defined: dict[int, str], used: set[str]
    ) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._modules = modules
        self._defined = defined
        self._used = used

    def reducer_override(self, obj: Any) -> Any:
        """Classes/functions that source.py defines are referred to by name, not copied."""
        name = self._defined.get(id(obj))
        if name is not None:
            self._used.add(name)
            return source_global, (name,)
        return super().reducer_override(obj)

    def persistent_id(self, obj: Any) -> None:  # called by pickle for every object
        kind = type(obj)
        if kind in _PLAIN_TYPES:
            return None
        module = getattr(kind, "__module__", None)
        if isinstance(module, str):
            self._modules.add(module)
        if isinstance(obj, type) or callable(obj):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                self._modules.add(module)
        return None


@contextmanager
def _by_value(modules: set[str]) -> Iterator[None]:
    """Pickle the user's own modules by value: the runtime cannot import them."""
    import sys

    registered = []
    try:
        for name in sorted(modules):
            if name != "__main__" and name in sys.modules:
                try:
                    cloudpickle.register_pickle_by_value(sys.modules[name])
                    registered.append(sys.modules[name])
                except ValueError:
                    pass
        yield
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def write_values(captured: Captured, folder: Path) -> tuple[set[str], dict[str, set[str]]]:
    """Pickle each captured value to data/<name>.pkl.

    Returns the modules the pickles import and, per value, the source.py definitions it
    refers to (they must be defined before it is loaded).
    """
    modules: set[str] = set()
    needs: dict[str, set[str]] = {}
    if not captured.values:
        return modules, needs
    defined = {id(d.obj): d.name for d in captured.definitions}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    with _by_value(captured.user_modules):
        for name, value in captured.values.items():
            path = folder / "data" / f"{name}.pkl"
            needs[name] = set()
            try:
                with open(path, "wb") as f:
                    _TrackingPickler(f, modules, defined, needs[name]).dump(value)
            except Exception as exc:
                path.unlink(missing_ok=True)
                raise CaptureError(
                    f"cannot capture `{name}` ({type(value).__name__}): {type(exc).__name__}: {exc}"
                ) from None
    return modules, needs


def _ordered(captured: Captured, value_needs: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Values and definitions in an order where everything a statement evaluates when it runs
    comes before it: ("value", name) or ("def", name), values first when free to choose."""
    deps: dict[tuple[str, str], set[tuple[str, str]]] = {}
    defs = {d.name for d in captured.definitions}
    for name in captured.values:
        deps[("value", name)] = {("def", n) for n in value_needs.get(name, ())}
    for d in captured.definitions:
        deps[("def", d.name)] = {("def", n) for n in d.needs & defs if n != d.name} | {
            ("value", n) for n in d.needs if n in captured.values
        }
    order: list[tuple[str, str]] = []
    state: dict[tuple[str, str], int] = {}

    def visit(node: tuple[str, str], chain: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise CaptureError(
                "cannot write source.py: these names need each other when they are defined: "
                + " -> ".join([*chain, node[1]])
            )
        state[node] = 1
        for dep in sorted(deps[node], key=list(deps).index):
            visit(dep, [*chain, node[1]])
        state[node] = 2
        order.append(node)

    for node in deps:
        visit(node, [])
    return order


def render_source(
    captured: Captured, deployment_name: str, value_needs: dict[str, set[str]] | None = None
) -> str:
    """The readable source.py: imports, captured values, helpers, then the main function."""
    lines = [
        f"# Deployment {deployment_name}, written by modelrepo.deploy().",
        "# Edit it freely: every commit that changes this folder is a new version.",
    ]
    if captured.future_annotations:
        lines.append("from __future__ import annotations")
    imports = sorted(
        set(captured.imports.values()),
        key=lambda line: (not line.startswith("import "), " = " in line, line),
    )
    if captured.values:
        imports = sorted({*imports, "import modelrepo"}, key=lambda line: (
            not line.startswith("import "), " = " in line, line))
    lines += imports
    literals = [f"{name} = {text}" for name, text in captured.literals.items()]
    if literals:
        lines += ["", *literals]
    body = "\n".join(lines) + "\n"
    sources = {d.name: d.source for d in captured.definitions}
    previous = "imports"
    for kind, name in _ordered(captured, value_needs or {}):
        if kind == "value":
            line = f'{name} = modelrepo.load_value("data/{name}.pkl")\n'
            body += ("\n" if previous == "imports" else "\n\n" if previous == "def" else "") + line
        else:
            body += "\n\n" + sources[name]
        previous = kind
    return body


def render_metadata(
    captured: Captured,
    python_version: str,
    batch: bool,
    previous: dict[str, Any] | None,
    system_packages: list[str] | None = None,
    dataframe_columns: list[str] | None = None,
) -> str:
    """metadata.yaml; a hand-written `deployment:` section of the previous version is kept, and so
    are its systemPackages unless new ones are given."""
    if system_packages is None:
        system_packages = list(((previous or {}).get("runtimeInfo") or {}).get("systemPackages") or [])
    runtime_info: dict[str, Any] = {
        "mainFunction": captured.main,
        "mainFunctionArgs": list(captured.args),
        "pythonVersion": python_version,
        "systemPackages": list(system_packages),
    }
    if batch:
        runtime_info["batch"] = True
    if dataframe_columns is not None:
        runtime_info["dataframeModeColumns"] = list(dataframe_columns)
    data: dict[str, Any] = {"schemaVersion": 2, "runtimeInfo": runtime_info}
    if previous and isinstance(previous.get("deployment"), dict):
        data["deployment"] = previous["deployment"]
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=10_000)


def write_folder(
    captured: Captured,
    folder: Path,
    *,
    name: str,
    python_version: str,
    batch: bool,
    previous_metadata: dict[str, Any] | None,
    python_packages: list[str] | None = None,
    system_packages: list[str] | None = None,
    dataframe_columns: list[str] | None = None,
) -> None:
    """Write every generated file of deployment `name` into `folder`.

    requirements.txt pins what the function imports; `python_packages` lines are added and
    replace the pin of the same package.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pickled_modules, value_needs = write_values(captured, folder)
    (folder / "source.py").write_text(
        render_source(captured, name, value_needs), encoding="utf-8"
    )
    (folder / "metadata.yaml").write_text(
        render_metadata(
            captured, python_version, batch, previous_metadata, system_packages, dataframe_columns
        ),
        encoding="utf-8",
    )
    requirements = merge_requirements(
        pinned_requirements(captured.modules | pickled_modules), python_packages or []
    )
    (folder / "requirements.txt").write_text(
        "".join(f"{line}\n" for line in requirements), encoding="utf-8"
    )
