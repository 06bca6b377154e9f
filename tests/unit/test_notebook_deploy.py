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
