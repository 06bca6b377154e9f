"""The format package's own rules: names, paths, requirements lines, stubs, version refs."""

from __future__ import annotations

import pickle
import textwrap
from datetime import datetime, timezone

import pytest

from modelrepo.format import (
    DeploymentError,
    Version,
    deployment_of,
    describe_range,
    find_stubs,
    load_value,
    name_problem,
    names_version,
    read_metadata,
    resolve_version,
    validate_folder,
)
from modelrepo.format.requirements import requirement_problems

SHA_A = "a" * 40
SHA_B = "b1234567" + "0" * 32
WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
VERSIONS = [Version(1, SHA_A, WHEN, "one"), Version(2, SHA_B, WHEN, "two")]


@pytest.mark.parametrize("name", ["Linear_Model", "_x", "A1"])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["linear-model", "9lives", "", "A\n", "Ä"])
def test_invalid_names_say_the_rule(name):
    assert "must match [A-Za-z_][A-Za-z0-9_]*" in name_problem(name)


def test_deployment_of_paths():
    assert deployment_of("deployments/A/source.py") == "A"
    assert deployment_of("deployments/A/data/x.pkl") == "A"
    assert deployment_of("deployments/.gitkeep") is None
    assert deployment_of("common/utils.py") is None


@pytest.mark.parametrize("ref, number", [("latest", 2), ("1", 1), ("2", 2), ("b123456", 2), ("B1234567", 2)])
def test_resolve_version(ref, number):
    assert resolve_version(VERSIONS, ref).number == number


@pytest.mark.parametrize("ref", ["3", "0", "9" * 5000, "abc", "aaaaaa", "not-a-ref"])
def test_unknown_refs_name_no_version(ref):
    assert resolve_version(VERSIONS, ref) is None
    assert not names_version(ref, 2, SHA_B, is_latest=False)


def test_names_version_is_the_same_rule_for_one_served_version():
    assert names_version("latest", 2, SHA_B, is_latest=True)
    assert not names_version("latest", 1, SHA_A, is_latest=False)
    assert names_version("2", 2, SHA_B, is_latest=True)
    assert names_version("b123456", 2, SHA_B, is_latest=True)
    assert not names_version("1", 2, SHA_B, is_latest=True)


def test_describe_range_for_one_version_and_several():
    assert describe_range(VERSIONS[:1]) == "the only version is 1"
    assert describe_range(VERSIONS) == "versions are 1 to 2"


def test_requirements_accept_what_real_repositories_use():
    text = textwrap.dedent("""\
        # pins, URLs, git+https and index options (real Modelbit requirements)
        xgboost==2.0.3
        --extra-index-url=https://download.example/whl/cpu
        torch==2.2.0+cpu
        https://files.example/pkgs/some_pkg-1.0-py3-none-any.whl
        git+https://github.com/acme/tool.git@v1.2
        pkg @ https://files.example/pkg-1.0.tar.gz
        """)
    assert requirement_problems(text) == []


@pytest.mark.parametrize("line, problem", [
    ("-r other.txt", "pip option -r is not allowed"),
    ("--target /usr/lib", "pip option --target is not allowed"),
    ("numpy==", "line 1: 'numpy==' is not a requirement"),
    ("numpy===", "line 1: 'numpy===' is not a requirement"),  # accepted by packaging < 26.4 (Python 3.9)
])
def test_requirements_refuse_lines_pip_must_not_get(line, problem):
    problems = requirement_problems(line + "\n")
    assert len(problems) == 1 and problem in problems[0]


MB_STUB = "_: MBFileStub\ncontentHash: sha1:0123456789abcdef\nmetadata:\n  fileSize: 52428800\nschemaVersion: 1\n"
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n"


def write_folder(tmp_path, data: bytes):
    folder = tmp_path / "deployments" / "M"
    (folder / "data").mkdir(parents=True)
    (folder / "metadata.yaml").write_text(
        "schemaVersion: 2\nruntimeInfo: {mainFunction: M, pythonVersion: '3.11'}\n")
    (folder / "source.py").write_text(
        'import modelrepo\nmodel = modelrepo.load_value("data/model.pkl")\n\ndef M():\n    return model\n')
    (folder / "data" / "model.pkl").write_bytes(data)
    return folder


@pytest.mark.parametrize("content, says", [
    (MB_STUB, "a Modelbit file stub (sha1:0123456789abcdef, 52428800 bytes)"),
    (LFS_POINTER, "a Git LFS pointer (sha256:4d7a, 12345 bytes) whose object was not fetched"),
])
def test_stubs_are_named_by_validate_and_never_unpickled(tmp_path, content, says):
    folder = write_folder(tmp_path, content.encode())
    errors = validate_folder(folder)
    assert [(e.path, says in e.problem) for e in errors] == [(str(folder / "data" / "model.pkl"), True)]
    assert [p.name for p, _ in find_stubs(folder)] == ["model.pkl"]
    namespace = {"__file__": str(folder / "source.py"), "load_value": load_value}
    with pytest.raises(ValueError, match="model.pkl is " + says.split(" (")[0]):
        exec('load_value("data/model.pkl")', namespace)


def test_a_real_pickle_is_no_stub(tmp_path):
    folder = write_folder(tmp_path, pickle.dumps({"weights": [1, 2]}))
    assert find_stubs(folder) == [] and validate_folder(folder) == []


@pytest.mark.parametrize("info, problem", [
    ("pythonVersion: 3.10", "quote it: YAML reads 3.10 as the number 3.1"),
    ("pythonVersion: '3.11', capabilities: [tpu]", "'tpu' is not 'gpu' or 'gpu=<type>'"),
    ("pythonVersion: '3.11', systemPackages: libgomp1", "systemPackages must be a list"),
    ("pythonVersion: '3.11', dataframeModeColumns: [1]", "dataframeModeColumns must be a list of column names"),
])
def test_metadata_problems_name_the_key(tmp_path, info, problem):
    folder = tmp_path / "M"
    folder.mkdir()
    (folder / "metadata.yaml").write_text(f"schemaVersion: 2\nruntimeInfo: {{mainFunction: M, {info}}}\n")
    with pytest.raises(DeploymentError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_metadata(folder)


def test_modelbit_metadata_reads_unchanged(tmp_path):
    folder = tmp_path / "M"
    folder.mkdir()
    (folder / "metadata.yaml").write_text(textwrap.dedent("""\
        owner: someone@example.com
        runtimeInfo:
          capabilities: [gpu=T4]
          mainFunction: M
          mainFunctionArgs: ["input_x:Any", "return:float"]
          pythonVersion: "3.10"
          systemPackages: [libgomp1, git]
        schemaVersion: 2
        """))
    meta = read_metadata(folder)
    assert (meta.args, meta.return_type, meta.capabilities, meta.system_packages, meta.python_version) == (
        [("input_x", "Any")], "float", ["gpu=T4"], ["libgomp1", "git"], "3.10")
