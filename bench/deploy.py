"""How long does `modelrepo.deploy()` take?  One command:  .venv/bin/python bench/deploy.py

For a scikit-learn model of about 1 MB and about 200 MB (a brute-force KNeighborsRegressor, whose
size is its training data), measures in the same run:
  baseline  cloudpickle.dump of the same model to a file + `git add` + `git commit` of that file
            (the least any "save the model in git" must do)
  deploy    modelrepo.deploy(fn) of a function using the model: capture, pickle, source.py,
            requirements, the load + doctest check in a fresh Python, commit (no push)
  check     the fresh-Python load + doctest step alone, re-run on the committed folder, to show
            how much of deploy() it is
Each into a fresh repository; `--repeat` runs per size, interleaved, median kept. Prints a
Markdown table with the ratio deploy / baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import numpy as np
from sklearn.neighbors import KNeighborsRegressor

import modelrepo
from modelrepo.doctest_gate import run_gate

FEATURES = 10
ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@modelrepo.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@modelrepo.invalid",
}


def make_model(megabytes: float) -> KNeighborsRegressor:
    rows = int(megabytes * 1e6 / ((FEATURES + 1) * 8))
    rng = np.random.default_rng(0)
    xs = rng.random((rows, FEATURES))
    return KNeighborsRegressor(n_neighbors=3, algorithm="brute").fit(xs, xs.sum(axis=1))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def new_repo(root: Path, name: str) -> Path:
    repo = root / name
    subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "init", str(repo)], check=True, capture_output=True
    )
    return repo


def baseline(model: KNeighborsRegressor, repo: Path) -> float:
    started = time.perf_counter()
    path = repo / "model.pkl"
    with open(path, "wb") as f:
        cloudpickle.dump(model, f)
    git(repo, "add", "model.pkl")
    git(repo, "commit", "-q", "-m", "model")
    return time.perf_counter() - started


def check(repo: Path) -> float:
    started = time.perf_counter()
    error, failures = run_gate(repo / "deployments" / "Knn_Model")
    assert error is None and not failures, (error, failures)
    return time.perf_counter() - started


def deploy(model: KNeighborsRegressor, repo: Path) -> float:
    def Knn_Model(x: list) -> float:
        """
        >>> Knn_Model([0.5] * 10) > 0
        True
        """
        return float(model.predict([x])[0])

    started = time.perf_counter()
    modelrepo.deploy(Knn_Model, repo=str(repo), push=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,200", help="model sizes in MB (default: 1,200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default: 3)")
    args = parser.parse_args()
    os.environ.update({k: v for k, v in ENV.items() if k not in os.environ})
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        root = Path(tmp)
        for size in (float(s) for s in args.sizes.split(",")):
            model = make_model(size)
            real_mb = len(cloudpickle.dumps(model)) / 1e6
            base_times, deploy_times, check_times = [], [], []
            for i in range(args.repeat):
                base_times.append(baseline(model, new_repo(root, f"base-{size}-{i}")))
                repo = new_repo(root, f"deploy-{size}-{i}")
                deploy_times.append(deploy(model, repo))
                check_times.append(check(repo))
            b, d = statistics.median(base_times), statistics.median(deploy_times)
            rows.append((real_mb, b, d, statistics.median(check_times)))
            del model
    print("\n| model (pickle) | baseline: cloudpickle.dump + git commit | modelrepo.deploy() "
          "| ratio | of which: check in a fresh Python |")
    print("|---|---|---|---|---|")
    for real_mb, b, d, c in rows:
        print(f"| {real_mb:.1f} MB | {b:.2f} s | {d:.2f} s | {d / b:.2f}x | {c:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
