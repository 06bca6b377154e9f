"""Every capture case: deployed from a script's `__main__` and from an importable module of the
user, then loaded and called in a fresh interpreter that never saw the function."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures.model_repos import init_repo, run_cli

# The user's code: one script with a function per capture case. Each function's name is the
# deployment name; CASES below gives the call and what it must return.
USER_CODE = '''
import functools
import math
import os.path
from dataclasses import dataclass
from math import sqrt as root

import numpy as np
import pandas as pd
import sklearn.linear_model
from sklearn.tree import DecisionTreeClassifier

import modelrepo

THRESHOLD = 0.5
LABELS = {"low": 0, "high": 1}


class Scaler:
    """A notebook class; instances and the class itself are used."""

    def __init__(self, factor):
        self.factor = factor

    def apply(self, value):
        return value * self.factor


@dataclass
class Point:
    x: float
    y: float

    def norm(self) -> float:
        return root(self.x ** 2 + self.y ** 2)


def _square(v):
    return v * v


def helper(v):
    """Calls another helper: both must be copied."""
    return _square(v) + 1


@functools.lru_cache(maxsize=None)
def cached_double(v):
    return 2 * v


def make_counter(start):
    step = 3

    def Closure(x: int) -> int:
        return start + step * x

    return Closure


def make_accumulator():
    total = 0

    def Accumulate(x: int) -> int:
        nonlocal total
        total += x
        return total

    return Accumulate


def make_defaults():
    secret = 7

    def Defaults(x: int, k=secret, flag=THRESHOLD, names=("a", "b")) -> list:
        return [x + k, flag, list(names)]

    return Defaults


scaler = Scaler(10)


def Instance(x: float) -> float:
    if not isinstance(scaler, Scaler):  # the instance's class is the one in source.py
        return -1.0
    return scaler.apply(x) + Scaler(1).apply(x)


def Dataclass_Case(x: float, y: float) -> float:
    return Point(x, y).norm()


arr = np.array([1.0, 2.0, 3.0])
frame = pd.DataFrame({"name": ["a", "b"], "score": [0.25, 0.75]})
xs = np.array([[0.0], [1.0], [2.0], [3.0]])
tree = DecisionTreeClassifier(random_state=0).fit(xs, [0, 0, 1, 1])
ridge = sklearn.linear_model.Ridge(alpha=0.0).fit(xs, [1.0, 3.0, 5.0, 7.0])


def Numpy_Pandas(name: str) -> float:
    score = frame.loc[frame["name"] == name, "score"].iloc[0]
    return float(np.sum(arr) * score)


def Sklearn(x: float) -> list:
    return [int(tree.predict([[x]])[0]), round(float(ridge.predict([[x]])[0]), 6)]


def Helpers(x: int) -> int:
    return helper(x) + cached_double(x)


def Modules(path: str) -> list:
    return [os.path.basename(path), root(16.0), math.floor(2.5), sklearn.linear_model.__name__]


def Literals(key: str) -> int:
    return LABELS[key] + (1 if THRESHOLD > 0.1 else 0)


offset = lambda v: v + 100  # noqa: E731 - a lambda value is pickled


def Lambda_Value(x: int) -> int:
    return offset(x)


def deploy_all(repo):
    for fn in (make_counter(5), make_accumulator(), make_defaults(), Instance, Dataclass_Case, Numpy_Pandas,
               Sklearn, Helpers, Modules, Literals, Lambda_Value):
        modelrepo.deploy(fn, repo=repo)
'''

CASES = {
    "Closure": ([2], 11),
    "Accumulate": ([2], 2),
    "Defaults": ([1], [8, 0.5, ["a", "b"]]),
    "Instance": ([2.0], 22.0),
    "Dataclass_Case": ([3.0, 4.0], 5.0),
    "Numpy_Pandas": (["b"], 4.5),
    "Sklearn": ([2.6], [1, 6.2]),
    "Helpers": ([3], 16),
    "Modules": (["/a/b.txt"], ["b.txt", 4.0, 2, "sklearn.linear_model"]),
    "Literals": (["high"], 2),
    "Lambda_Value": ([1], 101),
}

LOAD_AND_CALL = """
import json, sys
from modelrepo.format import load_deployment
root, cases = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, args in cases.items():
    out[name] = load_deployment(f"{root}/deployments/{name}").function(*args)
print(json.dumps(out))
"""


def _fresh_call(repo: Path) -> dict:
    cases = {name: args for name, (args, _) in CASES.items()}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_AND_CALL, str(repo), json.dumps(cases)],
        capture_output=True, text=True, cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def script_repo(tmp_path_factory, git_identity) -> tuple[Path, dict]:
    """The user's code run as a script (`python user.py <repo>`): functions live in __main__."""
    base = tmp_path_factory.mktemp("script")
    repo = init_repo(base / "models")
    script = base / "user.py"
    script.write_text(USER_CODE + "\nif __name__ == '__main__':\n    import sys\n    deploy_all(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, str(script), str(repo)], capture_output=True, text=True, cwd=base)
    assert proc.returncode == 0, proc.stderr
    return repo, _fresh_call(repo)


@pytest.fixture(scope="module")
def module_repo(tmp_path_factory, git_identity) -> tuple[Path, dict]:
    """The same code as an importable module of the user's (`import usercode`), not installed."""
    base = tmp_path_factory.mktemp("module")
    repo = init_repo(base / "models")
    (base / "usercode.py").write_text(USER_CODE)
    driver = "import sys, usercode\nusercode.deploy_all(sys.argv[1])\n"
    proc = subprocess.run([sys.executable, "-c", driver, str(repo)], capture_output=True, text=True, cwd=base)
    assert proc.returncode == 0, proc.stderr
    return repo, _fresh_call(repo)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_from_a_script(script_repo, name):
    _, results = script_repo
    assert results[name] == pytest.approx(CASES[name][1]) if isinstance(results[name], float) else results[name] == CASES[name][1]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_from_an_importable_module(module_repo, name):
    _, results = module_repo
    assert results[name] == pytest.approx(CASES[name][1]) if isinstance(results[name], float) else results[name] == CASES[name][1]


def test_source_is_readable_python(script_repo):
    repo, _ = script_repo
    source = (repo / "deployments" / "Helpers" / "source.py").read_text()
    assert "import functools\n" in source
    assert textwrap.dedent('''
        def _square(v):
            return v * v
    ''') in source
    assert "@functools.lru_cache(maxsize=None)\ndef cached_double(v):" in source
    assert source.rstrip().endswith("return helper(x) + cached_double(x)")
    modules = (repo / "deployments" / "Modules" / "source.py").read_text()
    for line in ("import os.path", "import math", "from math import sqrt as root",
                 "import sklearn.linear_model"):
        assert f"\n{line}\n" in modules
    closure = (repo / "deployments" / "Closure" / "source.py").read_text()
    assert "start = 5\n" in closure and "step = 3\n" in closure
    assert "def Closure(x: int) -> int:" in closure
    defaults = (repo / "deployments" / "Defaults" / "source.py").read_text()
    assert "k=_Defaults_k_default" in defaults and "_Defaults_k_default = 7" in defaults
    assert "flag=THRESHOLD" in defaults and "THRESHOLD = 0.5" in defaults
    sk = (repo / "deployments" / "Sklearn" / "source.py").read_text()
    assert 'tree = modelrepo.load_value("data/tree.pkl")' in sk


def test_requirements_pin_what_is_used(script_repo):
    repo, _ = script_repo
    import numpy
    import pandas
    import sklearn

    def reqs(name):
        return (repo / "deployments" / name / "requirements.txt").read_text().splitlines()

    assert f"numpy=={numpy.__version__}" in reqs("Numpy_Pandas")
    assert f"pandas=={pandas.__version__}" in reqs("Numpy_Pandas")
    assert f"scikit-learn=={sklearn.__version__}" in reqs("Sklearn")
    assert reqs("Literals") == []
    assert not any(line.startswith("modelrepo") for line in reqs("Sklearn"))


def test_every_deployed_folder_validates(script_repo, module_repo):
    for repo, _ in (script_repo, module_repo):
        proc = run_cli("validate", str(repo))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{len(CASES)} deployment(s) valid" in proc.stdout


def test_a_local_module_import_is_refused_with_the_name(tmp_path, git_identity):
    repo = init_repo(tmp_path / "models")
    (tmp_path / "mylocal.py").write_text("VALUE = 1\n")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent('''
        import sys
        import mylocal
        import modelrepo

        def Uses_Local(x):
            return mylocal.VALUE + x

        try:
            modelrepo.deploy(Uses_Local, repo=sys.argv[1])
        except modelrepo.DeployError as exc:
            print(exc)
    '''))
    proc = subprocess.run([sys.executable, str(script), str(repo)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cannot capture `mylocal`: it is the local module mylocal" in proc.stdout
