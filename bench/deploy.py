"""How long does `modelrepo.deploy()` take?  .venv/bin/python bench/deploy.py [--lfs]

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

`--lfs` compares, for a numpy array of each size (default 50 and 500 MB), deploy() into a
repository made by `modelrepo init` (the pickle stored as a Git LFS object, git keeps a
pointer) against the same deploy into a repository without the LFS attributes (the pickle
committed into git), in the same run. Each deploy runs in a child process, which reports its
time and peak resident memory (its own, and the largest of the processes it started: git,
git-lfs, the check in a fresh Python); the parent measures how much the git object store and
the LFS store grew (`git count-objects -v`).
"""

from __future__ import annotations

import argparse
import json
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
import modelrepo.lfs
from modelrepo.doctest_gate import run_gate

ROOT = Path(__file__).resolve().parents[1]
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


ARRAY_DEPLOY = '''
import json, resource, sys, time
import numpy as np
import modelrepo

WEIGHTS = np.random.default_rng(0).random(int(float(sys.argv[2]) * 1e6 / 8))


def Big_Sum(n: int) -> float:
    """
    >>> Big_Sum(0)
    0.0
    """
    return float(WEIGHTS[:n].sum())


before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
modelrepo.deploy(Big_Sum, repo=sys.argv[1], push=False)
print(json.dumps({"seconds": time.perf_counter() - started, "before_kb": before,
                  "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
'''


def git_store_kib(repo: Path) -> tuple[int, int]:
    """(KiB of git's objects, loose and packed; KiB of the Git LFS objects)."""
    out = subprocess.run(["git", "count-objects", "-v"], cwd=repo, check=True, capture_output=True, text=True).stdout
    counts = dict(line.split(": ") for line in out.splitlines())
    lfs_dir = repo / ".git" / "lfs" / "objects"
    lfs_bytes = sum(p.stat().st_size for p in lfs_dir.rglob("*") if p.is_file()) if lfs_dir.is_dir() else 0
    return int(counts["size"]) + int(counts["size-pack"]), lfs_bytes // 1024


def deploy_array(repo: Path, megabytes: float) -> dict[str, float]:
    """One deploy of a `megabytes` array in a child process: its report plus the stores' growth."""
    git_before, lfs_before = git_store_kib(repo)
    script = repo.parent / "deploy_array.py"  # deploy() reads the function's source from a file
    script.write_text(ARRAY_DEPLOY)
    proc = subprocess.run([sys.executable, str(script), str(repo), str(megabytes)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"deploy of {megabytes} MB into {repo} failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    git_after, lfs_after = git_store_kib(repo)
    return {**report, "git_kib": git_after - git_before, "lfs_kib": lfs_after - lfs_before}


def in_git_repo(root: Path, name: str) -> Path:
    """A model repository without the LFS attributes: deploy() commits the pickle into git."""
    repo = new_repo(root, name)
    if (repo / ".gitattributes").exists():
        git(repo, "rm", "-q", ".gitattributes")
        git(repo, "commit", "-q", "-m", "no LFS")
    return repo


def lfs_main(sizes: list[float], repeat: int) -> int:
    if not modelrepo.lfs.available():
        raise SystemExit("--lfs needs git-lfs (e.g. Debian's git-lfs package)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-lfs-") as tmp:
        root = Path(tmp)
        for size in sizes:
            runs: dict[str, list[dict[str, float]]] = {"git": [], "lfs": []}
            for i in range(repeat):
                runs["git"].append(deploy_array(in_git_repo(root, f"git-{size}-{i}"), size))
                runs["lfs"].append(deploy_array(new_repo(root, f"lfs-{size}-{i}"), size))
            rows.append((size, {k: _median_run(v) for k, v in runs.items()}))
    print("\n| array | store | deploy() | ratio LFS / git | deploying process: peak RSS "
          "| of it added by deploy() | largest child process: peak RSS | git objects grew | LFS objects grew |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, by in rows:
        array_kib = size * 1e6 / 1024
        for kind in ("git", "lfs"):
            r = by[kind]
            ratio = f"{r['seconds'] / by['git']['seconds']:.2f}x" if kind == "lfs" else ""
            added = r["self_kb"] - r["before_kb"]
            print(f"| {size:g} MB | {'in git' if kind == 'git' else 'Git LFS'} | {r['seconds']:.2f} s | {ratio} "
                  f"| {_mib(r['self_kb'])} | {_mib(added)} = {added / array_kib:.2f}x the array "
                  f"| {_mib(r['children_kb'])} = {r['children_kb'] / array_kib:.2f}x the array "
                  f"| {_mib(r['git_kib'])} | {_mib(r['lfs_kib'])} |")
    return 0


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median time (its memory and sizes belong to it)."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB" if kib >= 1024 else f"{kib:.0f} KiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="model sizes in MB (default: 1,200; with --lfs 50,500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default: 3)")
    parser.add_argument("--lfs", action="store_true", help="a numpy array deployed with Git LFS against in git")
    args = parser.parse_args()
    os.environ.update({k: v for k, v in ENV.items() if k not in os.environ})
    if args.lfs:
        return lfs_main([float(s) for s in (args.sizes or "50,500").split(",")], args.repeat)
    args.sizes = args.sizes or "1,200"
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
