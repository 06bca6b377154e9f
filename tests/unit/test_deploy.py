"""modelrepo.deploy() end to end on real git repositories (no cluster).

Functions here live in an importable module (this test file); scripts run as `__main__` and a
separate module are covered in test_capture_cases.py, notebooks in test_notebook_deploy.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from fixtures.model_repos import run_cli

import modelrepo
from modelrepo import deployer
from modelrepo.repository import versions_of


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def call_in_fresh_python(folder: Path, *args):
    """Load a deployment folder in a new interpreter (that never saw the function) and call it."""
    code = (
        "import json, sys\n"
        "from modelrepo.format import load_deployment\n"
        "f = load_deployment(sys.argv[1]).function\n"
        "print(json.dumps(f(*json.loads(sys.argv[2]))))\n"
    )
    import json

    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(folder), json.dumps(list(args))],
        capture_output=True, text=True, cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def repo_state(repo: Path) -> tuple[str, str, list[str]]:
    """HEAD, porcelain status and the list of every file: 'exactly as it was' in one value."""
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".git" not in p.parts)
    return git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"), files


OFFSET = 10


def Add_Offset(x: int) -> int:
    """
    >>> Add_Offset(1)
    11
    """
    return x + OFFSET


def Wrong_Doc(x: int) -> int:
    """
    >>> Wrong_Doc(2)
    5
    >>> Wrong_Doc(3)
    6
    """
    return x * 2


def test_sample_repo_has_each_deployment_with_its_versions(sample_repo):
    versions = {
        name: [v.commit for v in versions_of(sample_repo.path, name)]
        for name in sample_repo.commits
    }
    assert versions == sample_repo.commits
    assert len(sample_repo.commits["Greet"]) == 2
    root = sample_repo.path / "deployments"
    assert call_in_fresh_python(root / "Double", 4) == 8
    assert call_in_fresh_python(root / "Greet", "Ada") == "Hi, Ada!"
    assert call_in_fresh_python(root / "Linear_Model", 3.0) == pytest.approx(7.0)
    assert call_in_fresh_python(root / "Batch_Double", [1, 2, 3]) == [2, 4, 6]
    meta = yaml.safe_load((root / "Batch_Double" / "metadata.yaml").read_text())
    assert meta["runtimeInfo"]["batch"] is True
    assert git(sample_repo.path, "status", "--porcelain") == ""


def test_deploy_writes_the_design_format(model_repo):
    result = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    folder = model_repo / "deployments" / "Add_Offset"
    assert (result.name, result.version, result.branch) == ("Add_Offset", 1, "main")
    assert result.commit == git(model_repo, "rev-parse", "HEAD")
    assert git(model_repo, "log", "-1", "--format=%s") == "Deploy Add_Offset"
    changed = git(model_repo, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert changed == [
        "deployments/Add_Offset/metadata.yaml",
        "deployments/Add_Offset/requirements.txt",
        "deployments/Add_Offset/source.py",
    ]
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta == {
        "schemaVersion": 2,
        "runtimeInfo": {
            "mainFunction": "Add_Offset",
            "mainFunctionArgs": ["x:int"],
            "pythonVersion": f"{sys.version_info.major}.{sys.version_info.minor}",
            "systemPackages": [],
        },
    }
    source = (folder / "source.py").read_text()
    assert "OFFSET = 10\n" in source
    assert source.rstrip().endswith("return x + OFFSET")
    assert call_in_fresh_python(folder, 5) == 15
    assert run_cli("validate", str(model_repo)).returncode == 0


def test_doctest_failure_prints_example_expected_got_and_leaves_repo_as_it_was(model_repo):
    modelrepo.deploy(Add_Offset, repo=str(model_repo))
    (model_repo / "notes.txt").write_text("work in progress\n")  # an untracked file of the user
    before = repo_state(model_repo)
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Wrong_Doc, repo=str(model_repo))
    message = str(info.value)
    assert "example:  >>> Wrong_Doc(2)" in message
    assert "expected: 5" in message
    assert "got:      4" in message
    assert "Wrong_Doc(3)" not in message  # the passing example is not reported
    assert "nothing was committed" in message
    assert repo_state(model_repo) == before


def test_failing_redeploy_leaves_the_previous_version(model_repo, monkeypatch):
    modelrepo.deploy(Add_Offset, repo=str(model_repo))
    before = repo_state(model_repo)
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", 11)  # now the docstring is wrong
    with pytest.raises(modelrepo.DeployError, match="expected: 11"):
        modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert repo_state(model_repo) == before


def _open_file(tmp: Path):
    handle = open(tmp / "f.txt", "w")  # noqa: SIM115 - the point is an open file

    def Uses_File(x):
        handle.write(x)

    return Uses_File, handle.close


def _socket(tmp: Path):
    conn = socket.socket()

    def Uses_Socket(x):
        return conn.fileno() + x

    return Uses_Socket, conn.close


def _generator(tmp: Path):
    numbers = (i for i in range(3))

    def Uses_Generator(x):
        return next(numbers) + x

    return Uses_Generator, lambda: None


def _lock(tmp: Path):
    guard = threading.Lock()

    def Uses_Lock(x):
        with guard:
            return x

    return Uses_Lock, lambda: None


@pytest.mark.parametrize(
    ("make", "variable", "why"),
    [
        (_open_file, "handle", "open TextIOWrapper"),
        (_socket, "conn", "open socket"),
        (_generator, "numbers", "generator"),
        (_lock, "guard", "cannot pickle '_thread.lock' object"),
    ],
    ids=["open-file", "socket", "generator", "lock"],
)
def test_uncapturable_value_fails_before_anything_is_written(model_repo, tmp_path, make, variable, why):
    fn, close = make(tmp_path)
    before = repo_state(model_repo)
    try:
        with pytest.raises(modelrepo.DeployError) as info:
            modelrepo.deploy(fn, repo=str(model_repo))
    finally:
        close()
    assert f"cannot capture `{variable}`" in str(info.value)
    assert why in str(info.value)
    assert repo_state(model_repo) == before


def test_push_to_a_bare_remote(model_repo, tmp_path):
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(model_repo, "remote", "add", "origin", str(bare))
    result = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert result.pushed_to == "origin"
    assert git(bare, "rev-parse", "refs/heads/main") == result.commit
    local_only = modelrepo.deploy(Add_Offset, repo=str(model_repo), name="Other", push=False)
    assert local_only.pushed_to is None
    assert git(bare, "rev-parse", "refs/heads/main") == result.commit


def test_deploy_after_a_teammates_push_builds_on_the_remote_tip(model_repo, tmp_path):
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(model_repo), str(bare))
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    (other / "x.txt").write_text("someone else's commit\n")
    git(other, "add", "x.txt")
    git(other, "commit", "-q", "-m", "other")
    git(other, "push", "-q", "origin", "main")
    theirs = git(other, "rev-parse", "HEAD")
    git(model_repo, "remote", "add", "origin", str(bare))
    result = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert result.pushed_to == "origin"
    assert git(bare, "rev-parse", "refs/heads/main") == result.commit
    assert git(model_repo, "rev-parse", f"{result.commit}^") == theirs
    assert (model_repo / "x.txt").read_text() == "someone else's commit\n"
    assert git(model_repo, "status", "--porcelain") == ""


def test_rejected_push_raises_with_the_remotes_message_and_keeps_the_commit(model_repo, tmp_path):
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(model_repo), str(bare))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected: ask an admin' >&2\nexit 1\n")
    hook.chmod(0o755)
    git(model_repo, "remote", "add", "origin", str(bare))
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(model_repo))
    local = git(model_repo, "rev-parse", "main")
    text = str(info.value)
    assert f"Add_Offset: committed {local[:7]} (version 1) on main locally, but pushing main to origin failed" in text
    assert "main is protected: ask an admin" in text
    assert "The local commit is kept. To retry, run deploy() again" in text
    assert f"`git -C {model_repo} push origin main`" in text
    assert git(bare, "rev-parse", "main") != local
    assert git(model_repo, "status", "--porcelain") == ""


def test_switch_branch_sends_later_deploys_to_a_new_branch(model_repo, monkeypatch):
    monkeypatch.setattr(deployer, "_branch_override", None)
    main_before = git(model_repo, "rev-parse", "main")
    modelrepo.switch_branch("staging")
    result = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert result.branch == "staging"
    assert git(model_repo, "rev-parse", "staging") == result.commit
    assert git(model_repo, "rev-parse", "staging^") == main_before
    assert git(model_repo, "rev-parse", "main") == main_before
    assert git(model_repo, "branch", "--show-current") == "main"  # work tree not switched
    assert not (model_repo / "deployments" / "Add_Offset").exists()
    assert git(model_repo, "status", "--porcelain") == ""
    again = modelrepo.deploy(Add_Offset, repo=str(model_repo), name="Second")
    assert again.branch == "staging" and again.version == 1
    explicit = modelrepo.deploy(Add_Offset, repo=str(model_repo), branch="main")
    assert explicit.branch == "main"
    assert (model_repo / "deployments" / "Add_Offset" / "source.py").exists()


def test_version_numbers_over_several_deploys_and_a_revert(model_repo, monkeypatch):
    this = sys.modules[__name__]
    results = []
    for offset in (10, 10, 10):
        monkeypatch.setattr(this, "OFFSET", offset)
        results.append(modelrepo.deploy(Add_Offset, repo=str(model_repo), message=f"offset {offset}"))
    # the same function again changes nothing: no new commit, same version
    assert [r.version for r in results] == [1, 1, 1]
    assert [r.changed for r in results] == [True, False, False]
    (model_repo / "deployments" / "Add_Offset" / "source.py").open("a").write("# hand edit\n")
    git(model_repo, "commit", "-q", "-am", "hand edit")
    git(model_repo, "revert", "--no-edit", "HEAD")
    proc = run_cli("versions", str(model_repo), "Add_Offset")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "COMMIT", "DATE", "MESSAGE"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert lines[1].split(None, 3)[3].startswith('Revert "hand edit"')
    assert lines[3].split(None, 3)[3] == "offset 10"
    nxt = modelrepo.deploy(Add_Offset, repo=str(model_repo), name="Add_Offset", message="again")
    assert nxt.version == 3 and not nxt.changed  # the revert restored what deploy writes


def test_deploy_commits_only_its_folder(model_repo):
    (model_repo / "README.md").write_text("changed by the user\n")
    (model_repo / "staged.txt").write_text("staged by the user\n")
    git(model_repo, "add", "staged.txt")
    result = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    files = git(model_repo, "show", "--name-only", "--format=", result.commit).splitlines()
    assert all(f.startswith("deployments/Add_Offset/") for f in files)
    status = subprocess.run(
        ["git", "status", "--porcelain", "-z"], cwd=model_repo, capture_output=True, text=True
    ).stdout.split("\0")
    assert set(filter(None, status)) == {" M README.md", "A  staged.txt"}


def test_redeploy_keeps_hand_added_files_and_deployment_section(model_repo):
    modelrepo.deploy(sys.modules[__name__].Add_Offset, repo=str(model_repo))
    folder = model_repo / "deployments" / "Add_Offset"
    (folder / "notes.md").write_text("kept\n")
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    meta["deployment"] = {"replicas": 2}
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-q", "-m", "hand edits")
    def Add_Offset(x: int) -> int:  # a new definition under the same name
        return x + 100

    again = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert again.version == 3
    assert (folder / "notes.md").read_text() == "kept\n"
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["deployment"] == {"replicas": 2}
    assert call_in_fresh_python(folder, 1) == 101
    assert git(model_repo, "status", "--porcelain") == ""


def test_stale_data_files_are_removed_on_redeploy(model_repo):
    import numpy as np

    table = np.array([1, 2, 3])

    def Lookup(i: int) -> int:
        return int(table[i])

    modelrepo.deploy(Lookup, repo=str(model_repo))
    folder = model_repo / "deployments" / "Lookup"
    assert (folder / "data" / "table.pkl").exists()
    assert "numpy==" in (folder / "requirements.txt").read_text()

    def Lookup(i: int) -> int:  # noqa: F811 - redefined, as in a notebook
        return i

    modelrepo.deploy(Lookup, repo=str(model_repo))
    assert not (folder / "data" / "table.pkl").exists()
    assert git(model_repo, "ls-files", "deployments/Lookup").splitlines() == [
        "deployments/Lookup/metadata.yaml",
        "deployments/Lookup/requirements.txt",
        "deployments/Lookup/source.py",
    ]
    assert git(model_repo, "status", "--porcelain") == ""


def test_bad_name_and_non_repository_are_clear_errors(model_repo, tmp_path):
    with pytest.raises(modelrepo.DeployError, match=r"deployment name 'bad-name' must match"):
        modelrepo.deploy(Add_Offset, repo=str(model_repo), name="bad-name")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(modelrepo.DeployError, match="is not inside a git repository"):
        modelrepo.deploy(Add_Offset, repo=str(plain))
    with pytest.raises(modelrepo.DeployError, match="not a lambda"):
        modelrepo.deploy(lambda x: x, repo=str(model_repo), name="Lam")


def test_python_version_is_written_and_a_mismatch_refused_by_the_loader(model_repo):
    from modelrepo.format import DeploymentError, load_deployment

    modelrepo.deploy(Add_Offset, repo=str(model_repo), python_version="3.99")
    folder = model_repo / "deployments" / "Add_Offset"
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["runtimeInfo"]["pythonVersion"] == "3.99"
    with pytest.raises(DeploymentError, match="pythonVersion is 3.99 but this runtime runs Python"):
        load_deployment(folder)


def Noisy(x: int) -> int:
    """Prints while it runs, without a final newline.

    >>> Noisy(1)
    partial2
    """
    print("partial", end="")
    return x + 1


def test_output_of_the_users_code_does_not_confuse_the_check(model_repo):
    result = modelrepo.deploy(Noisy, repo=str(model_repo))
    assert result.version == 1


def test_lazy_annotations_of_the_users_module_are_kept(model_repo, tmp_path, monkeypatch):
    (tmp_path / "typed_user_code.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import pandas as pd\n"
        "def Typed(frame: pd.DataFrame) -> int:\n"
        "    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import typed_user_code

    modelrepo.deploy(typed_user_code.Typed, repo=str(model_repo))
    folder = model_repo / "deployments" / "Typed"
    assert "\nfrom __future__ import annotations\n" in (folder / "source.py").read_text()
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["runtimeInfo"]["mainFunctionArgs"] == ["frame:pd.DataFrame"]
    assert call_in_fresh_python(folder, None) == 1


def test_uncommitted_hand_edits_in_the_folder_are_not_overwritten(model_repo):
    modelrepo.deploy(Add_Offset, repo=str(model_repo))
    source = model_repo / "deployments" / "Add_Offset" / "source.py"
    source.write_text(source.read_text() + "# my edit, not committed yet\n")
    before = repo_state(model_repo)
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert str(info.value) == (
        "Add_Offset: uncommitted changes in deployments/Add_Offset/source.py would be "
        "overwritten; commit or discard them first, nothing was written"
    )
    assert repo_state(model_repo) == before


def _article_model():
    import numpy as np
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(np.array([[1.0], [2.0], [3.0]]), np.array([3.0, 5.0, 7.0]))


ARTICLE_MODEL = _article_model()


def Linear_Model(input_x):
    """Modelbit's article: no type hints, a numpy.float64 answer, the natural docstring.

    >>> Linear_Model(5)
    11.0
    """
    return ARTICLE_MODEL.predict([[input_x]])[0]


def test_the_articles_function_deploys_under_numpy_2(model_repo):
    """`11.0` in the docstring matches numpy 2's `np.float64(11.0)`: no refusal at deploy."""
    import numpy as np

    assert repr(Linear_Model(5)).startswith(("np.float64(", "11.0"))  # numpy 2 prints np.float64(11.0)
    assert isinstance(Linear_Model(5), np.floating)
    result = modelrepo.deploy(Linear_Model, repo=str(model_repo), push=False)
    assert result.version == 1
    folder = model_repo / "deployments" / "Linear_Model"
    assert call_in_fresh_python(folder, 5) == 11.0
