"""deploy() for a team sharing one remote: fetch first, build on the remote's tip, refuse what
would lose work; `modelrepo clone`; the compare-and-swap under concurrent deploys.

Real git everywhere: a bare remote made with `git init --bare` (HEAD `master`, as on a fresh
server) and clones made by `modelrepo clone`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures.model_repos import init_repo, run_cli

import modelrepo
from modelrepo import deployer
from modelrepo.repository import versions_of


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


OFFSET = 10


def Add_Offset(x: int) -> int:
    """
    >>> Add_Offset(1) > 1
    True
    """
    return x + OFFSET


def Other(x: int) -> int:
    """
    >>> Other(1)
    2
    """
    return x * 2


def bare_remote(tmp_path: Path, seed: bool = True) -> Path:
    """`git init --bare` (HEAD master) holding one model repository on `main` when `seed`."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=master", str(bare))
    if seed:
        seeded = init_repo(tmp_path / "seed")
        git(seeded, "push", "-q", str(bare), "main:main")
    return bare


def clone(bare: Path, where: Path) -> Path:
    proc = run_cli("clone", str(bare), str(where))
    assert proc.returncode == 0, proc.stderr
    return where


@pytest.fixture
def team(tmp_path, git_identity, monkeypatch):
    monkeypatch.setattr(deployer, "_branch_override", None)
    bare = bare_remote(tmp_path)
    return bare, clone(bare, tmp_path / "ada"), clone(bare, tmp_path / "bob")


def test_clone_of_a_remote_whose_head_is_master_checks_out_main(tmp_path, git_identity):
    bare = bare_remote(tmp_path)
    assert git(bare, "symbolic-ref", "HEAD") == "refs/heads/master"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "clone", str(bare), str(tmp_path / "mine")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    mine = tmp_path / "mine"
    assert f"Cloned {bare} into {mine} on branch main" in proc.stdout
    assert "git had no identity: set user.name=" in proc.stdout
    assert git(mine, "branch", "--show-current") == "main"
    assert (mine / "deployments").is_dir()
    assert (mine / ".git" / "hooks" / "pre-commit").resolve() == (mine / "bin" / "pre-commit").resolve()
    assert git(mine, "config", "user.email")
    assert git(mine, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"


def test_init_in_an_empty_clone_uses_main_and_says_so(tmp_path, git_identity):
    bare = bare_remote(tmp_path, seed=False)
    proc = run_cli("clone", str(bare), str(tmp_path / "empty"))
    assert proc.returncode == 0, proc.stderr
    assert "Cloned an empty repository into" in proc.stdout
    assert f"`modelrepo init {tmp_path / 'empty'}` (branch main)" in proc.stdout
    made = run_cli("init", str(tmp_path / "empty"))
    assert made.returncode == 0, made.stderr
    assert " on branch main:" in made.stdout
    assert git(tmp_path / "empty", "branch", "--show-current") == "main"


def test_a_local_only_deploy_commit_is_rebased_onto_the_teammates_push(team):
    bare, ada, bob = team
    local = modelrepo.deploy(Other, repo=str(ada), push=False)
    theirs = modelrepo.deploy(Add_Offset, repo=str(bob))
    assert git(bare, "rev-parse", "main") == theirs.commit
    result = modelrepo.deploy(Add_Offset, repo=str(ada), name="Third")
    assert git(bare, "rev-parse", "main") == result.commit
    history = git(bare, "log", "--format=%s", "main").splitlines()
    assert history[:3] == ["Deploy Third", "Deploy Other", "Deploy Add_Offset"]
    assert git(bare, "rev-parse", "main~2") == theirs.commit
    assert local.commit not in git(bare, "rev-list", "main").split()  # replayed, not merged
    assert (ada / "deployments" / "Add_Offset" / "source.py").is_file()
    assert git(ada, "status", "--porcelain") == ""


def test_the_same_folder_changed_on_both_sides_is_refused_with_the_path_and_what_to_do(team, monkeypatch):
    bare, ada, bob = team
    this = sys.modules[__name__]
    local = modelrepo.deploy(Add_Offset, repo=str(ada), push=False)
    monkeypatch.setattr(this, "OFFSET", 20)
    modelrepo.deploy(Add_Offset, repo=str(bob))
    monkeypatch.setattr(this, "OFFSET", 30)
    before = git(ada, "rev-parse", "main"), git(ada, "status", "--porcelain")
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(ada))
    text = str(info.value)
    assert f"deployments/Add_Offset changed on origin/main and in your local commit {local.commit[:7]}" in text
    assert "nothing was committed" in text
    assert "`git reset --keep origin/main`, then deploy()" in text
    assert (git(ada, "rev-parse", "main"), git(ada, "status", "--porcelain")) == before


def test_switch_branch_starts_from_the_remote_default_branch_not_a_stale_head(team):
    bare, ada, bob = team
    theirs = modelrepo.deploy(Other, repo=str(bob))  # ada has not fetched this
    modelrepo.switch_branch("staging")
    assert modelrepo.current_branch(str(ada)) == "staging"
    result = modelrepo.deploy(Add_Offset, repo=str(ada))
    assert result.branch == "staging" and result.pushed_to == "origin"
    assert git(bare, "rev-parse", "staging") == result.commit
    assert git(ada, "rev-parse", "staging^") == theirs.commit


def test_current_branch_is_the_checked_out_one(model_repo, monkeypatch):
    monkeypatch.setattr(deployer, "_branch_override", None)
    assert modelrepo.current_branch(str(model_repo)) == "main"


def test_a_repository_that_is_not_a_model_repository_is_refused_unless_asked(tmp_path, git_identity):
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "notebook.ipynb").write_text("{}")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "a project")
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(project))
    text = str(info.value)
    assert f"{project} is not a model repository (no deployments/, not made by `modelrepo init`)" in text
    assert f"deploy() would write {project / 'deployments' / 'Add_Offset'}" in text
    assert "deploy(..., init=True)" in text
    assert not (project / "deployments").exists()
    result = modelrepo.deploy(Add_Offset, repo=str(project), init=True)
    assert (project / "deployments" / "Add_Offset" / "source.py").is_file() and result.version == 1


def test_names_ending_in_a_newline_or_too_long_for_the_filesystem(model_repo):
    with pytest.raises(modelrepo.DeployError, match=r"deployment name 'Add\\n' must match"):
        modelrepo.deploy(Add_Offset, repo=str(model_repo), name="Add\n")
    long = "A" * 300
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(model_repo), name=long)
    assert "is 300 bytes long; the filesystem of" in str(info.value)
    assert "allows at most 255" in str(info.value)


def test_an_unchanged_redeploy_does_not_run_the_fresh_python_check(model_repo, monkeypatch):
    first = modelrepo.deploy(Add_Offset, repo=str(model_repo))

    def no_gate(*args, **kwargs):
        raise AssertionError("the fresh-Python check ran for an unchanged folder")

    monkeypatch.setattr(deployer, "run_gate", no_gate)
    again = modelrepo.deploy(Add_Offset, repo=str(model_repo))
    assert not again.changed and again.commit == first.commit
    assert str(again).startswith("Add_Offset is unchanged: version 1")


def test_a_docstring_example_that_never_returns_fails_after_the_timeout(model_repo, monkeypatch):
    monkeypatch.setenv("MODELREPO_DOCTEST_TIMEOUT", "3")
    before = git(model_repo, "rev-parse", "HEAD")

    def Hang(x: int) -> int:
        """
        >>> Hang(0)
        0
        >>> Hang(1)
        1
        """
        import time

        while x:
            time.sleep(3600)
        return x

    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Hang, repo=str(model_repo))
    assert "the docstring example >>> Hang(1) did not finish within 3s (MODELREPO_DOCTEST_TIMEOUT)" in str(info.value)
    assert "nothing was committed" in str(info.value)
    assert git(model_repo, "rev-parse", "HEAD") == before


DEPLOY_ONE = textwrap.dedent('''
    import sys
    import modelrepo

    def make(n):
        def f(x: int) -> int:
            """
            >>> f(1) > 0
            True
            """
            return x + n
        return f

    n = int(sys.argv[2])
    try:
        r = modelrepo.deploy(make(n), repo=sys.argv[1], name=sys.argv[3] if len(sys.argv) > 3 else f"F{n}")
        print("LANDED", r.commit, r.version)
    except modelrepo.DeployError as exc:
        print("FAILED", exc)
''')


def test_four_concurrent_deploys_into_one_clone_all_land_on_the_remote(team, tmp_path):
    bare, ada, _bob = team
    script = tmp_path / "deploy_one.py"
    script.write_text(DEPLOY_ONE)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(ada), str(n)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    lines = [next(line for line in out.splitlines() if line.startswith(("LANDED", "FAILED"))) for out, _ in outputs]
    assert all(line.startswith("LANDED") for line in lines), lines
    landed = [line.split()[1] for line in lines]
    on_remote = git(bare, "rev-list", "main").split()
    assert set(landed) <= set(on_remote)  # no lost commit
    assert len(on_remote) == 1 + 4  # the initial commit and four deploys
    for n, line in enumerate(lines):
        assert versions_of(bare, f"F{n}", rev="main")[-1].commit == line.split()[1]
        assert line.split()[2] == "1"
    assert git(ada, "rev-parse", "main") == git(bare, "rev-parse", "main")
    assert git(ada, "status", "--porcelain") == ""  # nothing staged, nothing left behind


def test_concurrent_deploys_of_one_name_land_or_fail_clearly_leaving_nothing_staged(model_repo, tmp_path):
    script = tmp_path / "deploy_one.py"
    script.write_text(DEPLOY_ONE)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(model_repo), str(n), "Same"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for n in range(1, 5)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    lines = [next(line for line in out.splitlines() if line.startswith(("LANDED", "FAILED"))) for out, _ in outputs]
    landed = [line.split()[1] for line in lines if line.startswith("LANDED")]
    assert landed
    on_main = git(model_repo, "rev-list", "main").split()
    assert set(landed) <= set(on_main) and len(on_main) == 1 + len(set(landed))
    for line in lines:
        if line.startswith("FAILED"):
            assert line.startswith("FAILED Same: nothing was committed: main moved while this deploy ran "
                                   "(another deploy or commit landed first)"), line
            assert line.endswith("; run deploy() again"), line
    assert git(model_repo, "status", "--porcelain") == ""


def test_modelbit_deploy_arguments_are_written(model_repo, tmp_path):
    import pandas as pd
    import yaml

    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")

    def Scores(df):
        """
        >>> Scores(__import__("pandas").DataFrame({"a": [1], "b": [2]}))
        [3]
        """
        return (df["a"] + df["b"]).tolist()

    example = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    result = modelrepo.deploy(
        Scores, repo=str(model_repo), python_packages=["pandas>=1", "tiny-extra==0.1"],
        system_packages=["libgomp1"], extra_files={str(notes): "files/notes.txt"},
        dataframe_mode=True, example_dataframe=example,
    )
    folder = model_repo / "deployments" / "Scores"
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())["runtimeInfo"]
    assert meta["systemPackages"] == ["libgomp1"]
    assert meta["dataframeModeColumns"] == ["a", "b"]
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert "pandas>=1" in requirements and "tiny-extra==0.1" in requirements
    assert not any(line.startswith("pandas==") for line in requirements)  # the given line wins
    assert (folder / "files" / "notes.txt").read_text() == "hello\n"
    assert versions_of(model_repo, "Scores")[-1].commit == result.commit
    with pytest.raises(modelrepo.DeployError, match=r"dataframe_mode=True needs example_dataframe="):
        modelrepo.deploy(Scores, repo=str(model_repo), dataframe_mode=True)
    with pytest.raises(modelrepo.DeployError, match=r"extra_files: /nonexistent/x.bin: no such file"):
        modelrepo.deploy(Scores, repo=str(model_repo), extra_files=["/nonexistent/x.bin"])


def test_an_unreachable_remote_stops_the_deploy_before_anything_is_written(model_repo, tmp_path):
    git(model_repo, "remote", "add", "origin", str(tmp_path / "gone.git"))
    before = git(model_repo, "rev-parse", "HEAD")
    with pytest.raises(modelrepo.DeployError) as info:
        modelrepo.deploy(Add_Offset, repo=str(model_repo))
    text = str(info.value)
    assert text.startswith("reading origin failed: ")
    assert "nothing was written. deploy() builds on origin/main before committing; to commit " \
           "locally only, pass push=False" in text
    assert git(model_repo, "rev-parse", "HEAD") == before
    assert not (model_repo / "deployments" / "Add_Offset").exists()


def test_a_remote_that_never_answers_times_out(model_repo, monkeypatch):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    stop = threading.Event()

    def hold() -> None:  # accept and never answer
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        git(model_repo, "remote", "add", "origin", f"http://127.0.0.1:{server.getsockname()[1]}/models.git")
        monkeypatch.setenv("MODELREPO_GIT_TIMEOUT", "2")
        with pytest.raises(modelrepo.DeployError) as info:
            modelrepo.deploy(Add_Offset, repo=str(model_repo))
        assert "reading origin failed: git ls-remote --heads origin ... timed out after 2s" in str(info.value)
        assert "pass push=False" in str(info.value)
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()
