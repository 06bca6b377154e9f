"""`modelrepo.get_dataset(name, filters=...)`: the result of a repository's SQL dataset, as a DataFrame.

A dataset is `datasets/<name>.yaml` (modelrepo.format.datasets): a query and a warehouse name.
Where things come from (docs/data.md):
- the active dataset files: the directory MODELREPO_DATASETS_DIR (default `./datasets`); the
  pod's init container fetches `datasets/` of the served commit there, `modelrepo serve`
  keeps it at the branch head with `sync_repository`;
- warehouse URLs (SQLAlchemy URLs, credentials included, never in git): MODELREPO_WAREHOUSES_DIR
  (a mounted Secret: one file per warehouse), MODELREPO_WAREHOUSES_FILE (YAML mapping) or
  MODELREPO_WAREHOUSE_<NAME>.
The query runs in a read-only transaction; its result is cached per version of the dataset
file (its git blob id) in memory and, with MODELREPO_DATASETS_CACHE, on disk for other
processes, and re-run after the file's `refresh:` interval.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelrepo import git
from modelrepo.duration import parse_duration
from modelrepo.format import DATASETS_DIR, SOURCE_FILE, DeploymentError
from modelrepo.format.datasets import DATASET_SUFFIX, LITERAL_READ, Dataset, blob_id, parse_dataset

log = logging.getLogger("modelrepo.datasets")

DIR_ENV = "MODELREPO_DATASETS_DIR"
CACHE_ENV = "MODELREPO_DATASETS_CACHE"
WAREHOUSES_DIR_ENV = "MODELREPO_WAREHOUSES_DIR"
WAREHOUSES_FILE_ENV = "MODELREPO_WAREHOUSES_FILE"
WAREHOUSE_ENV_PREFIX = "MODELREPO_WAREHOUSE_"

_lock = threading.Lock()
_results: dict[tuple[str, str], tuple[Any, float]] = {}  # (name, blob) -> (DataFrame, fetched at)


class DatasetError(Exception):
    """A dataset cannot be read: names the dataset and says why (the database's own message)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"dataset {name!r}: {problem}")


# -- configuration ---------------------------------------------------------------------------
def datasets_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DATASETS_DIR)


def read_definition(name: str, directory: str | Path | None = None) -> Dataset:
    """The dataset file `name` of the active directory, parsed; DatasetError if absent or wrong."""
    base = Path(directory) if directory is not None else datasets_dir()
    path = base / f"{name}{DATASET_SUFFIX}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(name, f"no file {DATASETS_DIR}/{name}{DATASET_SUFFIX} (looked in {base})") from None
    try:
        return parse_dataset(name, data, f"{DATASETS_DIR}/{name}{DATASET_SUFFIX}", parse_duration)
    except DeploymentError as exc:
        raise DatasetError(name, str(exc)) from None


def warehouse_url(warehouse: str) -> str:
    """The SQLAlchemy URL of a named warehouse; KeyError naming every place it looked in."""
    looked = []
    directory = os.environ.get(WAREHOUSES_DIR_ENV)
    if directory:
        looked.append(f"directory {directory}")
        path = Path(directory) / warehouse
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    file = os.environ.get(WAREHOUSES_FILE_ENV)
    if file:
        looked.append(f"file {file}")
        url = _warehouses_file(file).get(warehouse)
        if url:
            return url
    looked.append(f"environment variable {WAREHOUSE_ENV_PREFIX}{warehouse.upper()}")
    url = os.environ.get(WAREHOUSE_ENV_PREFIX + warehouse.upper())
    if url:
        return url
    raise KeyError(f"no warehouse {warehouse!r} configured: looked in " + ", ".join(looked))


def _warehouses_file(file: str) -> dict[str, str]:
    try:
        doc = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyError(f"cannot read warehouses file {file}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise KeyError(f"warehouses file {file} is not valid YAML") from None  # may quote a URL
    if not isinstance(doc, dict):
        raise KeyError(f"warehouses file {file} must map warehouse names to SQLAlchemy URLs")
    return {str(k): str(v) for k, v in doc.items() if v}


# -- running a query -------------------------------------------------------------------------
def run_query(dataset: Dataset) -> Any:
    """Run the dataset's query read-only on its warehouse; a DataFrame, or DatasetError."""
    import pandas as pd
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        url = warehouse_url(dataset.warehouse)
    except KeyError as exc:
        raise DatasetError(dataset.name, exc.args[0]) from None
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    except Exception as exc:  # bad URL, unknown dialect, driver not installed
        raise DatasetError(dataset.name, f"warehouse {dataset.warehouse!r}: {_clean(exc)}") from None
    try:
        with engine.connect() as conn, conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = conn.execute(sqlalchemy.text(dataset.query))
            if not result.returns_rows:
                raise DatasetError(dataset.name, "the query returns no rows (a dataset is a SELECT)")
            return pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()), coerce_float=True)
    except sqlalchemy.exc.DBAPIError as exc:
        raise DatasetError(dataset.name, f"query failed on warehouse {dataset.warehouse!r}: {_clean(exc.orig)}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DatasetError(dataset.name, f"query failed on warehouse {dataset.warehouse!r}: {_clean(exc)}") from None
    finally:
        engine.dispose()


def _clean(exc: BaseException) -> str:
    """The database's message, first lines only, with any URL credentials removed."""
    text = str(exc).strip()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line.strip("^ ") and not line.startswith("(Background")]
    return git.redact_urls("; ".join(lines[:3])) or type(exc).__name__


# -- the cache ---------------------------------------------------------------------------------
def _disk_path(dataset: Dataset) -> Path | None:
    cache = os.environ.get(CACHE_ENV)
    return Path(cache) / f"{dataset.name}-{dataset.blob}.pkl" if cache else None


def _fresh(dataset: Dataset, fetched: float) -> bool:
    return dataset.refresh_seconds is None or time.time() - fetched < dataset.refresh_seconds


def load(dataset: Dataset) -> Any:
    """The full result of `dataset`: cached (memory, then disk) while fresh, else the query again.

    A failed refresh of a result we already have keeps the old result (and logs the error);
    a failed first run raises DatasetError.
    """
    import pandas as pd

    key = (dataset.name, dataset.blob)
    with _lock:
        cached = _results.get(key)
    if cached is not None and _fresh(dataset, cached[1]):
        return cached[0]
    disk = _disk_path(dataset)
    if disk is not None and disk.exists():
        fetched = disk.stat().st_mtime
        if _fresh(dataset, fetched) and (cached is None or fetched > cached[1]):
            frame = pd.read_pickle(disk)
            with _lock:
                _results[key] = (frame, fetched)
            return frame
    try:
        frame = run_query(dataset)
    except DatasetError as exc:
        if cached is not None:
            log.warning("refreshing %s failed, still using the result of %s: %s",
                        dataset.name, time.ctime(cached[1]), exc)
            return cached[0]
        raise
    fetched = time.time()
    with _lock:
        _results[key] = (frame, fetched)
    if disk is not None:
        disk.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=disk.parent, suffix=".tmp")
        os.close(fd)
        frame.to_pickle(tmp)
        os.replace(tmp, disk)
    return frame


def get_dataset(name: str, filters: Mapping[str, Sequence[Any]] | None = None) -> Any:
    """Dataset `name` as a pandas DataFrame, rows kept where each column's value is in `filters[col]`."""
    frame = load(read_definition(name))
    if filters:
        if not isinstance(filters, Mapping):
            raise TypeError("filters must be a mapping of column name to a list of values")
        mask = None
        for column, values in filters.items():
            if column not in frame.columns:
                raise DatasetError(name, f"no column {column!r} to filter on (columns: {', '.join(map(str, frame.columns))})")
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                values = [values]
            hit = frame[column].isin(list(values))
            mask = hit if mask is None else mask & hit
        frame = frame[mask].reset_index(drop=True)
    return frame.copy()


# -- what a deployment needs, and keeping serve's directory current -------------------------
def datasets_used(folder: str | Path) -> list[str]:
    """The dataset names a deployment's source.py reads with a literal `get_dataset("<name>"...)`."""
    try:
        text = (Path(folder) / SOURCE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return sorted(set(LITERAL_READ.findall(text)))


def reads_runtime_data(folder: str | Path) -> bool:
    """True when source.py calls get_dataset or get_secret: it can only be run where those are set up."""
    try:
        text = (Path(folder) / SOURCE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\bget_(dataset|secret)\s*\(", text))


def prepare(names: Iterable[str], directory: str | Path | None = None) -> None:
    """Run (or take from the cache) every named dataset; DatasetError for the first that fails.

    Called before a deployment is declared ready, so a broken query keeps it from getting ready.
    """
    for name in names:
        load(read_definition(name, directory))


def sync_repository(repo: str | Path, commit: str, directory: str | Path) -> dict[str, str]:
    """Make `directory` hold `datasets/*.yaml` of `commit`, one file at a time, each only once it works.

    A changed file is parsed and its query run first; only then does it replace the active one,
    so a broken query leaves the previous definition (and its cached result) in use. Returns
    {dataset name: problem} for the files that were kept out. Files gone at `commit` are removed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    listing = git.run(["ls-tree", "-z", commit, f"{DATASETS_DIR}/"], cwd=repo)
    wanted: dict[str, str] = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        _mode, kind, oid = meta.split()
        name = Path(path).name
        if kind == "blob" and name.endswith(DATASET_SUFFIX) and not name.startswith("."):
            wanted[name[: -len(DATASET_SUFFIX)]] = oid
    problems: dict[str, str] = {}
    for name, oid in sorted(wanted.items()):
        target = directory / f"{name}{DATASET_SUFFIX}"
        if target.exists() and blob_id(target.read_bytes()) == oid:
            continue
        data: bytes = git.run(["cat-file", "blob", oid], cwd=repo, binary=True)  # type: ignore[assignment]
        try:
            dataset = parse_dataset(name, data, f"{DATASETS_DIR}/{name}{DATASET_SUFFIX}", parse_duration)
            load(dataset)
        except DeploymentError as exc:
            problems[name] = str(DatasetError(name, str(exc)))
            continue
        except DatasetError as exc:
            problems[name] = str(exc)
            continue
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    for stale in directory.glob(f"*{DATASET_SUFFIX}"):
        if stale.name[: -len(DATASET_SUFFIX)] not in wanted:
            stale.unlink()
    return problems
