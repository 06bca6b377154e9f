"""`modelrepo check --dir`: the pods' check container loads a folder as the runtime serves it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures.modelbit_repos import build_modelbit_repo


@pytest.mark.parametrize("name", ["Reads_File", "With_Package", "Linear_Model"])
def test_check_runs_the_folder_as_its_working_directory(tmp_path, name):
    """Relative open() and packages inside the folder work in the check as in the runtime
    (the cluster showed `FileNotFoundError` in the check container before)."""
    repo = build_modelbit_repo(tmp_path / "models")
    proc = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "check", "--dir", str(repo.path / "deployments" / name)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{name}: loads and its docstring tests pass" in proc.stdout


def test_check_names_a_stub_and_fails(tmp_path):
    repo = build_modelbit_repo(tmp_path / "models")
    proc = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "check", "--dir", str(repo.path / "deployments" / "Stubbed")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "a Modelbit file stub" in proc.stderr and "Traceback" not in proc.stderr
