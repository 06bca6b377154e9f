"""requirements.txt: pin the installed distributions that provide the modules a deployment uses."""

from __future__ import annotations

import functools
import importlib.metadata
import pkgutil
import re
import sys
import sysconfig
from collections.abc import Iterable

if sys.version_info >= (3, 10):
    from importlib.metadata import packages_distributions  # novermin
else:  # Python 3.9: the backport of the same function (a dependency there)
    from importlib_metadata import packages_distributions

# Always present in the runtime image; pinning them would fight the image's own versions.
_PROVIDED = {"modelrepo"}


def top_level(module_name: str) -> str:
    return module_name.split(".", 1)[0]


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    """Import name -> distribution names (scanning installed metadata once per process)."""
    return packages_distributions()


@functools.lru_cache(maxsize=1)
def _stdlib_names() -> frozenset[str]:
    """Top-level names of the standard library (Python 3.9 has no sys.stdlib_module_names:
    there, the modules of the standard library's own directories)."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:
        stdlib = sysconfig.get_paths()["stdlib"]
        names = {m.name for m in pkgutil.iter_modules([stdlib, f"{stdlib}/lib-dynload"])}
    return frozenset(names) | frozenset(sys.builtin_module_names)


def is_stdlib(module_name: str) -> bool:
    return top_level(module_name) in _stdlib_names()


def refresh() -> None:
    """Forget the installed-distribution scan (a deploy starts with this: pip may have run)."""
    _distributions.cache_clear()


def is_third_party(module_name: str) -> bool:
    """True when the module comes from an installed distribution (so pip can install it)."""
    return top_level(module_name) in _distributions()


def pinned_requirements(module_names: Iterable[str]) -> list[str]:
    """`name==version` lines, sorted, for the distributions providing `module_names`.

    Standard-library and local modules have no distribution and are left out.
    """
    dists = _distributions()
    pins: dict[str, str] = {}
    for module in module_names:
        top = top_level(module)
        if is_stdlib(top):
            continue
        for dist in dists.get(top, []):
            key = dist.lower().replace("_", "-")
            if key in _PROVIDED or key in pins:
                continue
            try:
                pins[key] = f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
    return sorted(pins.values(), key=str.lower)


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_key(line: str) -> str | None:
    """The normalised distribution name a requirement line is about (None for URLs and options)."""
    if line.lstrip().startswith("-") or "://" in line.split("#", 1)[0].split(" @ ", 1)[0]:
        return None
    match = _REQUIREMENT_NAME.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def merge_requirements(pins: list[str], given: list[str]) -> list[str]:
    """The automatic `pins`, minus those of packages `given` names, then `given` as written."""
    named = {requirement_key(line) for line in given} - {None}
    return [p for p in pins if requirement_key(p) not in named] + list(given)
