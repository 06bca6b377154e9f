"""deploy() from a real Jupyter notebook: nbclient runs it on an IPython kernel of this venv."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from fixtures.model_repos import init_repo
from nbclient import NotebookClient

KERNEL = "modelrepo-test"

CELLS = [
    """
import numpy as np
from sklearn.linear_model import LogisticRegression
import modelrepo

xs = np.array([[0.0], [1.0], [2.0], [3.0]])
model = LogisticRegression().fit(xs, [0, 0, 1, 1])
""",
    """
class Threshold:
    def __init__(self, cut):
        self.cut = cut

    def label(self, p):
        return "yes" if p >= self.cut else "no"

rule = Threshold(0.5)

def probability(x):
    return float(model.predict_proba([[x]])[0, 1])
""",
    '''
def Predict(x: float) -> str:
    """
    >>> Predict(3.0)
    'yes'
    """
    return rule.label(probability(x)) + ("" if isinstance(rule, Threshold) else "?")
''',
    "result = modelrepo.deploy(Predict, repo=REPO)",
    """
def Broken(x: float) -> str:
    \"\"\"
    >>> Broken(0.0)
    'yes'
    \"\"\"
    return Predict(x)

try:
    modelrepo.deploy(Broken, repo=REPO)
except modelrepo.DeployError as exc:
    print(exc)
""",
]


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec for this venv's Python, in a private Jupyter data dir."""
    prefix = tmp_path / "jupyter"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return KERNEL


def test_deploy_from_a_notebook_cell(tmp_path, kernel, git_identity):
    repo = init_repo(tmp_path / "models")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"REPO = {str(repo)!r}")]
    nb.cells += [nbformat.v4.new_code_cell(text.strip()) for text in CELLS]
    NotebookClient(
        nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def output(index: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[index].outputs)

    assert output(4).startswith("Deployed Predict version 1 (commit ")
    assert "example:  >>> Broken(0.0)" in output(5)
    assert "expected: 'yes'" in output(5) and "got:      'no'" in output(5)

    folder = repo / "deployments" / "Predict"
    source = (folder / "source.py").read_text()
    assert "class Threshold:" in source
    assert "def probability(x):" in source
    assert 'model = modelrepo.load_value("data/model.pkl")' in source
    assert not (repo / "deployments" / "Broken").exists()

    code = (
        "import json, sys\n"
        "from modelrepo.format import load_deployment\n"
        "f = load_deployment(sys.argv[1]).function\n"
        "print(json.dumps([f(0.0), f(3.0)]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(folder)], capture_output=True, text=True, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == ["no", "yes"]


TEAM_CELLS = [
    "import json, modelrepo",
    '''
def make(offset):
    def Team_Model(x: int) -> int:
        """
        >>> Team_Model(0) >= 0
        True
        """
        return x + offset
    return Team_Model
''',
    '''
try:
    r = modelrepo.deploy(make(OFFSET), repo=REPO, name=NAME)
    print(json.dumps({"commit": r.commit, "version": r.version}))
except modelrepo.DeployError as exc:
    print(json.dumps({"error": str(exc)}))
''',
]


def run_team_notebook(tmp_path, kernel: str, repo, name: str, offset: int) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"REPO, NAME, OFFSET = {str(repo)!r}, {name!r}, {offset}")]
    nb.cells += [nbformat.v4.new_code_cell(text.strip()) for text in TEAM_CELLS]
    NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    return json.loads(text.strip().splitlines()[-1])


def remote_version(bare, name: str, sha: str) -> int:
    from modelrepo.repository import versions_of

    return versions_of(bare, name, rev="main")[[v.commit for v in versions_of(bare, name, rev="main")].index(sha)].number


def test_two_clones_deploy_from_notebooks_in_turn_and_at_the_same_time(tmp_path, kernel, git_identity):
    import threading

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=master", str(bare)], check=True)
    seed = init_repo(tmp_path / "seed")
    subprocess.run(["git", "push", "-q", str(bare), "main:main"], cwd=seed, check=True)
    clones = {}
    for who in ("ada", "bob"):
        proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "clone", str(bare), str(tmp_path / who)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        clones[who] = tmp_path / who

    def remote_tip() -> str:
        return subprocess.run(["git", "rev-parse", "main"], cwd=bare, capture_output=True, text=True).stdout.strip()

    # in turn: bob's clone is stale when he deploys; both report what the remote has
    first = run_team_notebook(tmp_path, kernel, clones["ada"], "Shared", 1)
    assert first["version"] == 1 and first["commit"] == remote_tip()
    second = run_team_notebook(tmp_path, kernel, clones["bob"], "Shared", 2)
    assert second == {"commit": remote_tip(), "version": 2}
    assert remote_version(bare, "Shared", second["commit"]) == 2

    # at the same time: each lands with the remote's version and SHA, or fails saying how to retry
    results: dict[str, dict] = {}

    def go(who: str, offset: int) -> None:
        results[who] = run_team_notebook(tmp_path, kernel, clones[who], f"{who.title()}_Model", offset)

    threads = [threading.Thread(target=go, args=(who, n)) for n, who in enumerate(clones, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    on_remote = subprocess.run(["git", "rev-list", "main"], cwd=bare, capture_output=True, text=True).stdout.split()
    for who, result in results.items():
        if "error" in result:  # the other push won the race: the retry the message names works
            assert "The local commit is kept. To retry, run deploy() again" in result["error"]
            result = run_team_notebook(tmp_path, kernel, clones[who], f"{who.title()}_Model", 99)
            on_remote = subprocess.run(["git", "rev-list", "main"], cwd=bare, capture_output=True,
                                       text=True).stdout.split()
        assert result["commit"] in on_remote
        assert remote_version(bare, f"{who.title()}_Model", result["commit"]) == result["version"]
    assert len(results) == 2
