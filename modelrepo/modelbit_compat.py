"""`import modelbit` inside deployment code: the calls real Modelbit folders make, done by modelrepo.

Folders synced from Modelbit start with `import modelbit` and call `modelbit.load_value(...)`,
`modelbit.get_secret(...)`, `modelbit.get_dataset(...)`, `modelbit.log_image(...)` and, in a
commented footer, `modelbit.parseArg(...)`. `install()` makes that import work in every process
that runs repository code, without shadowing a real `modelbit` package: its finder is appended
at the END of `sys.meta_path`, so it answers only when no installed `modelbit` was found.

The entry points that run repository code call `install()` once: `modelrepo runtime`, the
deploy-time doctest gate, `modelrepo check` (the pods' check container) and `modelrepo serve`'s workers.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from modelrepo.format.layout import SOURCE_FILE
from modelrepo.format.values import load_value

MODULE_NAME = "modelbit"

__all__ = [
    "get_dataset", "get_secret", "install", "load_value", "log_image", "parseArg",
]


def _caller_deployment(depth: int = 2) -> str:
    """The deployment whose code called us: the folder of the calling source.py, else '?'."""
    frame = sys._getframe(depth)
    while frame is not None:
        file = frame.f_globals.get("__file__")
        if file and Path(file).name == SOURCE_FILE:
            return Path(file).resolve().parent.name
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


def get_secret(name: str, *args: Any, **kwargs: Any) -> Any:
    """`modelbit.get_secret("NAME")`: modelrepo's secret of that name (docs/data.md)."""
    from modelrepo.secrets import get_secret as real

    return real(name, *args, **kwargs)


def get_dataset(name: str, *args: Any, **kwargs: Any) -> Any:
    """`modelbit.get_dataset("name", filters=...)`: modelrepo's dataset as a DataFrame (docs/data.md)."""
    from modelrepo.datasets import get_dataset as real

    return real(name, *args, **kwargs)


def _describe(value: Any) -> str:
    """A short text for a logged object: images and arrays by type and size, not by bytes."""
    size = getattr(value, "size", None)
    shape = getattr(value, "shape", None)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if shape is not None:
        return f"{kind} shape={tuple(shape)}"
    if isinstance(size, tuple):
        return f"{kind} size={size}"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _log_to_deployment(kind: str, value: Any, **details: Any) -> None:
    extra = "".join(f" {k}={v!r}" for k, v in details.items() if v is not None)
    # stderr is the deployment's log (the pod's container log, `modelrepo serve`'s output), and
    # unlike stdout it is not what a docstring example compares
    print(f"{_caller_deployment(3)}: {kind} {_describe(value)}{extra}", file=sys.stderr, flush=True)


def log_image(image: Any, *args: Any, **kwargs: Any) -> None:
    """`modelbit.log_image(img)`: a line in the deployment's log naming the deployment and the image."""
    _log_to_deployment("log_image", image, **kwargs)


def parseArg(value: str) -> Any:  # noqa: N802 - Modelbit's spelling
    """`modelbit.parseArg(v)` of the footer `print(f(*(modelbit.parseArg(v) for v in sys.argv[1:])))`:
    a JSON value when the text is JSON (`5`, `[1, 2]`, `{"a": 1}`), else the text itself."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def __getattr__(name: str) -> Any:
    """Any other `modelbit.<name>` is refused by name (not an AttributeError deep in a traceback)."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"modelbit.{name} is not available when modelrepo serves this deployment: modelrepo's "
        f"`modelbit` compatibility module offers {', '.join(sorted(set(__all__) - {'install'}))}"
    )


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a plain new module named `modelbit`

    def exec_module(self, module: ModuleType) -> None:
        this = sys.modules[__name__]
        for name in __all__:
            if name != "install":
                setattr(module, name, getattr(this, name))
        module.__getattr__ = __getattr__  # type: ignore[attr-defined]
        module.__doc__ = "modelrepo's stand-in for the `modelbit` package inside deployment code."


class ModelbitFinder(importlib.abc.MetaPathFinder):
    """Finds `modelbit` only when nothing before it on sys.meta_path did (a real one always wins)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODULE_NAME:
            return None
        return importlib.machinery.ModuleSpec(MODULE_NAME, _Loader(), origin="modelrepo.modelbit_compat")


def install() -> None:
    """Let deployment code `import modelbit` (idempotent; appended last, so it never shadows)."""
    if not any(isinstance(f, ModelbitFinder) for f in sys.meta_path):
        sys.meta_path.append(ModelbitFinder())


def is_installed() -> bool:
    return any(isinstance(f, ModelbitFinder) for f in sys.meta_path)

