"""`make demo`: train a small scikit-learn model, deploy it into ./demo-repo, show what was made.

Rerunnable: `modelrepo init` completes an existing repository and deploying an unchanged model
makes no new commit. Each step is a function of main(); serving is the last step.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import modelrepo

REPO = Path("demo-repo")


def step_init(repo: Path) -> None:
    """Create the model repository (idempotent) with a git identity if the machine has none."""
    subprocess.run([sys.executable, "-m", "modelrepo.cli", "init", str(repo)], check=True)
    for key, value in (("user.name", "modelrepo demo"), ("user.email", "demo@modelrepo.invalid")):
        if subprocess.run(["git", "config", key], cwd=repo, capture_output=True).returncode != 0:
            subprocess.run(["git", "config", key, value], cwd=repo, check=True)


def train():
    """A logistic regression on the iris data set (bundled with scikit-learn, no download)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    return model, [str(name) for name in iris.target_names]


def step_deploy(repo: Path) -> modelrepo.DeployResult:
    model, species = train()

    def Iris_Classifier(
        sepal_length: float, sepal_width: float, petal_length: float, petal_width: float
    ) -> str:
        """The iris species for four flower measurements in cm.

        >>> Iris_Classifier(5.1, 3.5, 1.4, 0.2)
        'setosa'
        >>> Iris_Classifier(6.7, 3.0, 5.2, 2.3)
        'virginica'
        """
        row = [[sepal_length, sepal_width, petal_length, petal_width]]
        return species[int(model.predict(row)[0])]

    return modelrepo.deploy(Iris_Classifier, repo=str(repo))


def step_show(repo: Path, result: modelrepo.DeployResult) -> None:
    folder = repo / "deployments" / result.name
    print(f"\n== {folder}/")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        print(f"   {path.relative_to(folder)}  ({path.stat().st_size} bytes)")
    for name in ("source.py", "metadata.yaml", "requirements.txt"):
        print(f"\n== {name}\n{(folder / name).read_text().rstrip()}")
    print(f"\n== modelrepo versions {repo} {result.name}")
    subprocess.run([sys.executable, "-m", "modelrepo.cli", "versions", str(repo), result.name], check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="port of `modelrepo serve`")
    parser.add_argument("--once", action="store_true",
                        help="stop serving after the example requests (default: serve until Ctrl-C)")
    args = parser.parse_args(argv)
    step_init(REPO)
    result = step_deploy(REPO)
    step_show(REPO, result)
    # ---- last step: serve the repository ----
    return step_serve(REPO, result, args.port, args.once)


def step_serve(repo: Path, result: modelrepo.DeployResult, port: int, once: bool) -> int:
    """`modelrepo serve ./demo-repo` in the foreground, with curl commands that work against it."""
    from tryout import serve_and_show  # examples/tryout.py, beside this script

    one = [5.1, 3.5, 1.4, 0.2]  # several arguments: the list of them
    batch = [[1, 5.1, 3.5, 1.4, 0.2], [2, 6.7, 3.0, 5.2, 2.3]]  # [id, arguments...] per row
    return serve_and_show(str(repo), [(result.name, one), (result.name, batch)], port=port, once=once)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
