"""A deployment's environment: what it runs in, apart from its own files (docs/operator.md).

The environment of a folder is (pythonVersion, requirements.txt, systemPackages,
capabilities). Two folders with the same environment share one built image (in the cluster)
or one virtual environment (`modelrepo serve`); both sides name it by `environment_hash`, so
a change of source.py alone never builds anything. A folder whose environment a base image
already satisfies (same Python, every requirement met by the image's pinned packages, no
system packages) needs no build at all.

Pure functions over data; reading a folder is the one exception (`environment_of_folder`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelrepo.format.layout import REQUIREMENTS_FILE
from modelrepo.format.metadata import read_metadata
from modelrepo.format.requirements import requirement_lines

# Bump when the way an environment is turned into an image changes: every image is rebuilt.
ENVIRONMENT_FORMAT = "1"


@dataclass(frozen=True)
class Environment:
    """The inputs of a deployment's image/virtualenv, normalised: comments, blank lines,
    order and duplicates of system packages/capabilities never change it."""

    python_version: str
    requirements: tuple[str, ...]  # requirement lines as pip reads them, in file order
    system_packages: tuple[str, ...]  # sorted, unique
    capabilities: tuple[str, ...]  # sorted, unique

    @classmethod
    def of(
        cls, python_version: str, requirements_text: str = "",
        system_packages: tuple[str, ...] | list[str] = (), capabilities: tuple[str, ...] | list[str] = (),
    ) -> Environment:
        return cls(
            python_version=python_version,
            requirements=tuple(line for _, line in requirement_lines(requirements_text)),
            system_packages=tuple(sorted({p.strip() for p in system_packages if p.strip()})),
            capabilities=tuple(sorted({c.strip() for c in capabilities if c.strip()})),
        )

    @property
    def gpu(self) -> str | None:
        """None without a GPU; "" for any GPU; the type for `gpu=<type>`."""
        for capability in self.capabilities:
            if capability == "gpu":
                return ""
            if capability.startswith("gpu="):
                return capability.split("=", 1)[1]
        return None


def environment_hash(env: Environment) -> str:
    """The identity of an environment: image tag in the cluster, virtualenv name locally."""
    data = [ENVIRONMENT_FORMAT, env.python_version, list(env.requirements), list(env.system_packages),
            list(env.capabilities)]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:20]


def environment_of_folder(folder: str | Path) -> Environment:
    """The environment of a deployment folder (metadata.yaml + requirements.txt).

    Raises DeploymentError as `read_metadata` does."""
    folder = Path(folder)
    metadata = read_metadata(folder)
    req = folder / REQUIREMENTS_FILE
    text = req.read_text(encoding="utf-8") if req.is_file() else ""
    return Environment.of(metadata.python_version, text, metadata.system_packages, metadata.capabilities)


def parse_package_list(text: str) -> dict[str, str]:
    """`pip freeze` output (name==version per line) as {canonical name: version}.

    Lines that are not plain pins (editable installs, `name @ url`) are skipped: such a
    package never satisfies a requirement here, so the folder is built."""
    packages: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and version and " " not in name:
            packages[canonicalize_name(name)] = version.strip()
    return packages


def unmet_by_base(env: Environment, python_version: str, packages: Mapping[str, str]) -> list[str]:
    """Why a base image (its Python, its pinned packages) does not satisfy `env`; [] = no build.

    Conservative: anything the packages cannot prove (URLs, pip options, extras, unknown
    names) needs a build."""
    reasons: list[str] = []
    if env.python_version != python_version:
        reasons.append(f"pythonVersion {env.python_version} (base image has {python_version})")
    if env.system_packages:
        reasons.append(f"systemPackages {', '.join(env.system_packages)}")
    marker_env = {"python_version": env.python_version, "python_full_version": f"{env.python_version}.0"}
    for line in env.requirements:
        if line.startswith("-"):
            reasons.append(f"pip option {line.split()[0]}")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            reasons.append(f"{line} (not a plain requirement)")
            continue
        if req.marker is not None and not req.marker.evaluate(marker_env):
            continue  # pip would skip this line for this Python as well
        have = packages.get(canonicalize_name(req.name))
        if req.url or req.extras or have is None:
            reasons.append(f"{line} (not in the base image)" if have is None else f"{line} (URL or extras)")
            continue
        try:
            ok = req.specifier.contains(Version(have), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            reasons.append(f"{line} (base image has {have})")
    return reasons
