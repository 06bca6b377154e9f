"""metadata.yaml: its schema, parsed and checked into a `Metadata` (docs/repo-format.md).

Modelbit's keys are accepted as Modelbit writes them (`owner`, `runtimeInfo.capabilities`,
`systemPackages`, `mainFunctionArgs` with a last `return:<type>` entry or none at all,
`dataframeModeColumns`); keys we do not know are ignored, so a folder synced from Modelbit
reads unchanged. The `deployment:` section is ours and optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import METADATA_FILE, SCHEMA_VERSION

DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_LATENCY_MS = 10
_PYTHON_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
_CAPABILITY = re.compile(r"^gpu(=[A-Za-z0-9_.-]+)?$")
RETURN_PREFIX = "return"


@dataclass
class Metadata:
    """metadata.yaml, checked and with defaults filled in; `raw` is the file as parsed."""

    name: str
    main_function: str
    args: list[tuple[str, str | None]]
    python_version: str
    system_packages: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    return_type: str | None = None
    dataframe_columns: list[str] | None = None
    batch: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: int = DEFAULT_MAX_LATENCY_MS
    replicas: int | None = None
    resources: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def arg_names(self) -> list[str]:
        return [name for name, _ in self.args]


def read_metadata(folder: str | Path) -> Metadata:
    """Parse and check `<folder>/metadata.yaml`; raise DeploymentError naming the problem."""
    folder = Path(folder)
    where = folder / METADATA_FILE
    raw = _read_yaml(where)
    info = raw.get("runtimeInfo")
    if not isinstance(info, dict):
        raise DeploymentError(where, "runtimeInfo is missing or not a mapping")
    metadata = Metadata(
        name=folder.resolve().name, main_function="", args=[], python_version="", raw=raw
    )
    _read_runtime_info(info, where, metadata)
    _read_deployment_section(raw.get("deployment") or {}, where, metadata)
    return metadata


def _read_yaml(where: Path) -> dict[str, Any]:
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
    return raw


def _read_runtime_info(info: dict[str, Any], where: Path, metadata: Metadata) -> None:
    main = info.get("mainFunction")
    if not isinstance(main, str) or not main.isidentifier():
        raise DeploymentError(where, f"runtimeInfo.mainFunction must be a Python name, not {main!r}")
    metadata.main_function = main
    raw_args = info.get("mainFunctionArgs")
    if raw_args is None:
        raw_args = []  # Modelbit writes no mainFunctionArgs for a function without arguments
    if not isinstance(raw_args, list):
        raise DeploymentError(where, "runtimeInfo.mainFunctionArgs must be a list like ['x:int']")
    for spec in raw_args:
        name, type_name = _parse_arg(spec, where)
        if name == RETURN_PREFIX:
            metadata.return_type = type_name
        else:
            metadata.args.append((name, type_name))
    metadata.python_version = _python_version(info.get("pythonVersion"), where)
    metadata.system_packages = _strings(info, "systemPackages", where, "a list of package names")
    metadata.capabilities = _strings(info, "capabilities", where, 'a list like ["gpu"] or ["gpu=T4"]')
    for capability in metadata.capabilities:
        if not _CAPABILITY.match(capability):
            raise DeploymentError(
                where, f"runtimeInfo.capabilities: {capability!r} is not 'gpu' or 'gpu=<type>'"
            )
    columns = info.get("dataframeModeColumns")
    if columns is not None:
        metadata.dataframe_columns = _strings(
            info, "dataframeModeColumns", where, "a list of column names"
        )
    batch = info.get("batch", False)
    if not isinstance(batch, bool):
        raise DeploymentError(where, f"runtimeInfo.batch must be true or false, not {batch!r}")
    metadata.batch = batch


def _parse_arg(spec: Any, where: Path) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise DeploymentError(where, f"runtimeInfo.mainFunctionArgs: {spec!r} is not a string like 'x:int'")
    name, sep, type_name = spec.partition(":")
    name, type_name = name.strip(), type_name.strip()
    if not name.isidentifier():
        raise DeploymentError(where, f"runtimeInfo.mainFunctionArgs: {spec!r} does not start with an argument name")
    return name, (type_name or None) if sep else None


def _python_version(value: Any, where: Path) -> str:
    text = str(value if value is not None else "")
    hint = " (quote it: YAML reads 3.10 as the number 3.1)" if isinstance(value, float) else ""
    if isinstance(value, float) or not _PYTHON_VERSION.match(text):
        raise DeploymentError(
            where, f"runtimeInfo.pythonVersion must look like \"3.11\", not {value!r}{hint}"
        )
    return text


def _strings(section: dict[str, Any], key: str, where: Path, what: str) -> list[str]:
    value = section.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DeploymentError(where, f"runtimeInfo.{key} must be {what}")
    return list(value)


def _read_deployment_section(section: Any, where: Path, metadata: Metadata) -> None:
    if not isinstance(section, dict):
        raise DeploymentError(where, "deployment must be a mapping")
    resources = section.get("resources")
    if resources is not None and not isinstance(resources, dict):
        raise DeploymentError(where, "deployment.resources must be a mapping (requests/limits)")
    timeout = section.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise DeploymentError(where, f"deployment.timeoutSeconds must be a positive number, not {timeout!r}")
    max_batch_size = _int(section, "maxBatchSize", where, 1)
    max_latency_ms = _int(section, "maxLatencyMs", where, 0)
    metadata.resources = resources
    metadata.timeout_seconds = timeout
    metadata.max_batch_size = max_batch_size or DEFAULT_MAX_BATCH_SIZE
    metadata.max_latency_ms = DEFAULT_MAX_LATENCY_MS if max_latency_ms is None else max_latency_ms
    metadata.replicas = _int(section, "replicas", where, 0)
    metadata.env = _env(section.get("env"), where)


def _int(section: dict[str, Any], key: str, where: Path, minimum: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeploymentError(where, f"deployment.{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _env(value: Any, where: Path) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value):
        return {str(i["name"]): str(i.get("value", "")) for i in value}
    raise DeploymentError(where, "deployment.env must be a mapping of NAME: value")
