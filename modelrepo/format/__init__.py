"""The deployment folder format: the one place that knows what a model repository contains.

Layout and names (`layout`), metadata.yaml (`metadata`), static checks (`checks`,
`requirements`, `stubs`), common/ links and archived folders (`links`), importing a folder and its docstring tests (`loading`), captured
values (`values`) and version numbers (`versions`). The SDK, the runtime, the operator and the
CLI depend on this package; it depends on none of them (it imports nothing else of modelrepo),
and it runs no git: callers read git through `modelrepo.git` and hand the output here.
"""

from modelrepo.format.checks import validate_folder
from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import (
    ARCHIVED_MARKER,
    COMMON_DIR,
    DATASETS_DIR,
    DEPLOYMENTS_DIR,
    ENDPOINTS_DIR,
    METADATA_FILE,
    NAME_PATTERN,
    NAME_RULE,
    REQUIREMENTS_FILE,
    SCHEMA_VERSION,
    SOURCE_FILE,
    TOP_LEVEL_DIRS,
    deployment_of,
    deployment_path,
    folder_path,
    is_valid_name,
    name_problem,
)
from modelrepo.format.links import (
    SYMLINK_MODE,
    archived_marker_path,
    common_targets,
    is_archived,
    link_problems,
    link_target,
)
from modelrepo.format.loading import (
    DoctestFailure,
    LoadedDeployment,
    check_python_version,
    enter_folder,
    first_failure_message,
    load_deployment,
    run_doctests,
    running_python,
    unload,
)
from modelrepo.format.metadata import Metadata, read_metadata
from modelrepo.format.stubs import find_stubs, stub_problem
from modelrepo.format.values import load_value
from modelrepo.format.versions import (
    LATEST,
    LOG_ARGS,
    Version,
    describe_range,
    names_version,
    parse_log,
    resolve_version,
)

__all__ = [
    "ARCHIVED_MARKER", "COMMON_DIR", "DATASETS_DIR", "DEPLOYMENTS_DIR", "ENDPOINTS_DIR",
    "LATEST", "LOG_ARGS", "METADATA_FILE", "NAME_PATTERN", "NAME_RULE", "REQUIREMENTS_FILE",
    "SCHEMA_VERSION", "SOURCE_FILE", "SYMLINK_MODE", "archived_marker_path", "common_targets",
    "is_archived", "link_problems", "link_target", "TOP_LEVEL_DIRS", "DeploymentError", "DoctestFailure",
    "LoadedDeployment", "Metadata", "Version", "check_python_version", "deployment_of", "enter_folder",
    "deployment_path", "describe_range", "find_stubs", "first_failure_message", "folder_path",
    "is_valid_name", "load_deployment", "load_value", "name_problem", "names_version",
    "parse_log", "read_metadata", "resolve_version", "run_doctests", "running_python",
    "stub_problem", "unload", "validate_folder",
]
