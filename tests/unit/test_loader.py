"""The deployment reader: metadata, static validation, loading, doctests, load_value."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from modelrepo.format import (
    DeploymentError,
    load_deployment,
    read_metadata,
    run_doctests,
    validate_folder,
)

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


def make_folder(
    root: Path,
    name: str = "Double",
    source: str | None = None,
    metadata: str | None = None,
    requirements: str = "",
    data: dict[str, object] | None = None,
) -> Path:
    folder = root / "deployments" / name
    (folder / "data").mkdir(parents=True)
    (folder / "source.py").write_text(textwrap.dedent(source or '''
        import modelrepo

        factor = modelrepo.load_value("data/factor.pkl")


        def Double(x: int) -> int:
            """
            >>> Double(4)
            8
            """
            return x * factor
    '''))
    (folder / "metadata.yaml").write_text(textwrap.dedent(metadata or f'''
        schemaVersion: 2
        runtimeInfo:
          mainFunction: Double
          mainFunctionArgs: ["x:int"]
          pythonVersion: "{HERE}"
          systemPackages: []
    '''))
    (folder / "requirements.txt").write_text(requirements)
    for key, value in (data if data is not None else {"factor": 2}).items():
        (folder / "data" / f"{key}.pkl").write_bytes(pickle.dumps(value))
    return folder


def test_read_metadata_fills_defaults(tmp_path):
    meta = read_metadata(make_folder(tmp_path))
    assert meta.name == "Double"
    assert meta.main_function == "Double"
    assert meta.args == [("x", "int")]
    assert meta.python_version == HERE
    assert (meta.batch, meta.max_batch_size, meta.max_latency_ms) == (False, 1000, 10)
    assert meta.raw["schemaVersion"] == 2


def test_read_metadata_batch_and_deployment_section(tmp_path):
    folder = make_folder(tmp_path, metadata=f'''
schemaVersion: 2
runtimeInfo: {{mainFunction: Double, mainFunctionArgs: [x], pythonVersion: "{HERE}", batch: true}}
deployment: {{replicas: 2, maxBatchSize: 50, maxLatencyMs: 0, env: {{A: 1}}, timeoutSeconds: 5}}
''')
    meta = read_metadata(folder)
    assert meta.args == [("x", None)]
    assert (meta.batch, meta.max_batch_size, meta.max_latency_ms) == (True, 50, 0)
    assert (meta.replicas, meta.env, meta.timeout_seconds) == (2, {"A": "1"}, 5)


def test_valid_folder_has_no_problems(tmp_path):
    assert validate_folder(make_folder(tmp_path, requirements="numpy==2.0.1\nscikit-learn>=1\n")) == []


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (lambda f: (f / "metadata.yaml").unlink(), "metadata.yaml", "missing"),
        (lambda f: (f / "metadata.yaml").write_text("a: [b"), "metadata.yaml", "not valid YAML"),
        (lambda f: (f / "metadata.yaml").write_text("schemaVersion: 1\n"), "metadata.yaml", "schemaVersion must be 2"),
        (lambda f: (f / "metadata.yaml").write_text("schemaVersion: 2\nruntimeInfo: {mainFunction: Double, pythonVersion: '3'}\n"), "metadata.yaml", "pythonVersion"),
        (lambda f: (f / "metadata.yaml").write_text("schemaVersion: 2\nruntimeInfo: {pythonVersion: '3.11'}\n"), "metadata.yaml", "mainFunction"),
        (lambda f: (f / "source.py").unlink(), "source.py", "missing"),
        (lambda f: (f / "source.py").write_text("def Double(x:\n"), "source.py", "not valid Python"),
        (lambda f: (f / "source.py").write_text("def Other(x):\n    return x\n"), "source.py", "no top-level function Double()"),
        (lambda f: (f / "source.py").write_text("def Double(x, y):\n    return x\n"), "source.py", "takes (x, y) but metadata.yaml"),
        (lambda f: (f / "data" / "factor.pkl").unlink(), "data/factor.pkl", "missing (source.py line"),
        (lambda f: (f / "requirements.txt").write_text("numpy==\n"), "requirements.txt", "line 1"),
        (lambda f: (f / "requirements.txt").write_text("-r other.txt\n"), "requirements.txt", "pip option -r is not allowed"),
    ],
    ids=["no-metadata", "bad-yaml", "schema", "python-version", "no-main", "no-source",
         "syntax", "main-missing", "args-mismatch", "data-missing", "bad-requirement", "pip-option"],
)
def test_each_kind_of_broken_folder_is_reported_with_its_file(tmp_path, change, where, problem):
    folder = make_folder(tmp_path)
    change(folder)
    errors = validate_folder(folder)
    assert errors, "expected a problem"
    assert any(e.path == str(folder / where) and problem in e.problem for e in errors), [str(e) for e in errors]
    assert all(str(e) == f"{e.path}: {e.problem}" for e in errors)


def test_bad_folder_name_is_reported(tmp_path):
    folder = make_folder(tmp_path, name="not-valid")
    assert any("must match" in e.problem for e in validate_folder(folder))


def test_load_and_call_in_fresh_namespaces(tmp_path):
    folder = make_folder(tmp_path)
    first = load_deployment(folder)
    assert first.function(4) == 8
    (folder / "data" / "factor.pkl").write_bytes(pickle.dumps(3))
    second = load_deployment(folder)
    assert second.function(4) == 12
    assert first.function(4) == 8  # the older version keeps its own globals
    assert first.module.__name__ != second.module.__name__


def test_load_value_is_relative_to_the_folder_not_the_cwd(tmp_path, monkeypatch):
    folder = make_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_deployment(folder).function(1) == 2


def test_load_value_refuses_paths_outside_the_folder(tmp_path):
    folder = make_folder(tmp_path, source='''
        import modelrepo
        secret = modelrepo.load_value("../outside.pkl")
        def Double(x: int) -> int:
            return x
    ''')
    (folder.parent / "outside.pkl").write_bytes(pickle.dumps(1))
    with pytest.raises(DeploymentError) as info:
        load_deployment(folder)
    assert "only files inside" in info.value.problem
    assert "line 3" in info.value.problem


def test_python_version_mismatch_is_refused(tmp_path):
    folder = make_folder(tmp_path, metadata='''
schemaVersion: 2
runtimeInfo: {mainFunction: Double, mainFunctionArgs: ["x:int"], pythonVersion: "2.7"}
''')
    with pytest.raises(DeploymentError) as info:
        load_deployment(folder)
    assert info.value.path.endswith("metadata.yaml")
    assert f"pythonVersion is 2.7 but this runtime runs Python {HERE}" in info.value.problem


def test_import_error_names_the_file_and_line(tmp_path):
    folder = make_folder(tmp_path, source='''
        import no_such_module_here
        def Double(x):
            return x
    ''')
    with pytest.raises(DeploymentError) as info:
        load_deployment(folder)
    assert info.value.path == str(folder.resolve() / "source.py")
    assert "ModuleNotFoundError" in info.value.problem and "line 2" in info.value.problem


def test_doctests_pass_and_fail(tmp_path):
    good = load_deployment(make_folder(tmp_path / "a"))
    assert run_doctests(good) == []
    bad = load_deployment(make_folder(tmp_path / "b", data={"factor": 3}))
    [failure] = run_doctests(bad)
    assert (failure.example, failure.expected, failure.got) == ("Double(4)", "8", "12")


def test_doctest_exception_is_a_failure(tmp_path):
    folder = make_folder(tmp_path, source='''
        def Double(x):
            """
            >>> Double(0)
            0
            """
            return 1 / x
    ''', data={})
    [failure] = run_doctests(load_deployment(folder))
    assert failure.got == "ZeroDivisionError: division by zero"
