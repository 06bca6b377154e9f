"""`datasets/<name>.yaml`: a named SQL query against a named warehouse (Modelbit's format).

    query: select id, name, segment from customers
    warehouse: crm            # a connection name (its SQLAlchemy URL is configured, never in git)
    schemaVersion: 2
    refresh: 1h               # optional: re-run the query this often (or refreshSeconds: 3600)

Parsing and checking only: running the query is modelrepo.datasets' job (docs/data.md). Like
the rest of the format package this imports nothing else of modelrepo, so callers pass the
duration parser (modelrepo.duration.parse_duration) that reads `refresh:`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import DATASETS_DIR

DATASET_SUFFIX = ".yaml"
DATASET_SCHEMA_VERSION = 2
# A dataset name is the file's stem: what `get_dataset("<name>")` says.
DATASET_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
WAREHOUSE_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z")
KNOWN_KEYS = {"query", "warehouse", "schemaVersion", "refresh", "refreshSeconds"}
# `get_dataset("customers"` / `modelbit.get_dataset(dsName='customers'`: what a source reads.
_CALL = r"get_dataset\s*\("
LITERAL_READ = re.compile(_CALL + r"""\s*(?:dsName\s*=\s*)?["']([A-Za-z0-9_][A-Za-z0-9_.-]*)["']""")


@dataclass(frozen=True)
class Dataset:
    """One parsed dataset file; `blob` is its git blob id (changes exactly when its content does)."""

    name: str
    query: str
    warehouse: str
    refresh_seconds: float | None
    blob: str


def blob_id(data: bytes) -> str:
    """The git blob id of `data` (what `git hash-object` prints), without running git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def datasets_read(source: str) -> frozenset[str] | None:
    """The datasets `source` reads with a literal `get_dataset("<name>"...)`; None when it also
    calls get_dataset another way (a name in a variable: it may read any dataset)."""
    names = LITERAL_READ.findall(source)
    if len(re.findall(_CALL, source)) > len(names):
        return None
    return frozenset(names)


def dataset_of(path: str) -> str | None:
    """The dataset a repository path is the file of (`datasets/<name>.yaml`), else None."""
    folder, _, filename = path.partition("/")
    stem, dot, suffix = filename.rpartition(".")
    if folder != DATASETS_DIR or "/" in filename or not dot or f".{suffix}" not in (".yaml", ".yml"):
        return None
    return stem if DATASET_NAME.match(stem) else None


def newest_change(reads: frozenset[str] | None, changes: list[tuple[str, frozenset[str]]]) -> str:
    """The newest commit of `changes` ((commit, datasets it changed), newest first) that changed
    a dataset in `reads` (any, when `reads` is None); "" when none did or nothing is read."""
    if reads is not None and not reads:
        return ""
    for commit, changed in changes:
        if reads is None or reads & changed:
            return commit
    return ""


def dataset_file(root: str | Path, name: str) -> Path:
    """Where dataset `name` lives in a work tree whose top is `root`."""
    return Path(root) / DATASETS_DIR / f"{name}{DATASET_SUFFIX}"


def parse_dataset(
    name: str, data: bytes, where: str | Path = "", parse_duration: Callable[[str], float] | None = None,
) -> Dataset:
    """The dataset in `data`; DeploymentError(where, problem) naming the first thing wrong."""
    where = where or f"{DATASETS_DIR}/{name}{DATASET_SUFFIX}"
    if not DATASET_NAME.match(name):
        raise DeploymentError(where, f"dataset name {name!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DeploymentError(where, f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise DeploymentError(where, "must be a mapping with query:, warehouse: and schemaVersion: 2")
    query, warehouse = doc.get("query"), doc.get("warehouse")
    if not isinstance(query, str) or not query.strip():
        raise DeploymentError(where, "query: must be a non-empty SQL string")
    if not isinstance(warehouse, str) or not WAREHOUSE_NAME.match(warehouse):
        raise DeploymentError(where, f"warehouse: must be a connection name matching {WAREHOUSE_NAME.pattern[2:-2]}, got {warehouse!r}")
    if doc.get("schemaVersion") != DATASET_SCHEMA_VERSION:
        raise DeploymentError(where, f"schemaVersion: must be {DATASET_SCHEMA_VERSION}, got {doc.get('schemaVersion')!r}")
    refresh: float | None = None
    if "refresh" in doc and "refreshSeconds" in doc:
        raise DeploymentError(where, "give refresh: or refreshSeconds:, not both")
    if "refreshSeconds" in doc:
        value = doc["refreshSeconds"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise DeploymentError(where, f"refreshSeconds: must be a number of seconds above 0, got {value!r}")
        refresh = float(value)
    elif "refresh" in doc:
        value = doc["refresh"]
        try:
            refresh = _seconds(value, parse_duration)
        except ValueError as exc:
            raise DeploymentError(where, f"refresh: {exc}") from None
        if refresh <= 0:
            raise DeploymentError(where, f"refresh: must be more than 0, got {value!r}")
    return Dataset(name=name, query=query, warehouse=warehouse, refresh_seconds=refresh, blob=blob_id(data))


def _seconds(value: object, parse_duration: Callable[[str], float] | None) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    if parse_duration is None:
        raise ValueError("a duration needs modelrepo.duration.parse_duration")
    return parse_duration(str(value))


def validate_datasets(root: str | Path, parse_duration: Callable[[str], float] | None = None) -> list[DeploymentError]:
    """Every problem of the files under `<root>/datasets/` (no database is contacted)."""
    base = Path(root) / DATASETS_DIR
    if not base.is_dir():
        return []
    problems: list[DeploymentError] = []
    for path in sorted(base.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix not in (".yaml", ".yml"):
            problems.append(DeploymentError(path, "a dataset file must be <name>.yaml"))
            continue
        try:
            parse_dataset(path.stem, path.read_bytes(), path, parse_duration)
        except DeploymentError as exc:
            problems.append(exc)
    return problems
