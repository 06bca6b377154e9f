"""`modelrepo.get_secret(name)`: a secret value for deployment code, never from git.

Looked up, in this order:
1. the directories in MODELREPO_SECRETS_DIRS (os.pathsep-separated): one file per key, as
   Kubernetes mounts a Secret (the operator mounts each Secret `spec.secrets` grants a
   deployment, read-only, into the runtime container only);
2. the YAML mapping file MODELREPO_SECRETS_FILE (`modelrepo serve --secrets file.yaml`);
3. the environment variable MODELREPO_SECRET_<name>.
Values are never logged and never part of an error: a missing secret names itself and every
place that was looked at. Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

DIRS_ENV = "MODELREPO_SECRETS_DIRS"
FILE_ENV = "MODELREPO_SECRETS_FILE"
ENV_PREFIX = "MODELREPO_SECRET_"


class SecretNotFound(LookupError):
    """No secret of that name in any configured place (the message says where it looked)."""


class SecretConfigError(ValueError):
    """The secrets file cannot be read (the message names the file, never a value)."""


def get_secret(name: str) -> str:
    """The value of secret `name`; SecretNotFound naming every place looked in."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise SecretNotFound(f"{name!r} is not a secret name")
    looked: list[str] = []
    for directory in _dirs():
        path = Path(directory) / name
        looked.append(f"directory {directory}")
        if path.is_file():
            return path.read_text(encoding="utf-8").removesuffix("\n")
    file = os.environ.get(FILE_ENV)
    if file:
        looked.append(f"file {file} ({FILE_ENV})")
        value = _read_file(file).get(name)
        if value is not None:
            return value
    looked.append(f"environment variable {ENV_PREFIX}{name}")
    value = os.environ.get(ENV_PREFIX + name)
    if value is not None:
        return value
    raise SecretNotFound(f"no secret {name!r}: looked in " + ", ".join(looked))


def _dirs() -> list[str]:
    return [d for d in os.environ.get(DIRS_ENV, "").split(os.pathsep) if d]


def _read_file(file: str) -> dict[str, str]:
    """The secrets file: a YAML mapping of names to string values."""
    try:
        doc = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecretConfigError(f"cannot read secrets file {file}: {exc.strerror}") from None
    except yaml.YAMLError:
        # The parser's message may quote a line of the file, i.e. a value: say only where.
        raise SecretConfigError(f"secrets file {file} is not valid YAML") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise SecretConfigError(f"secrets file {file} must be a mapping of names to values")
    return {k: str(v) for k, v in doc.items() if v is not None}
