"""The one error type of the folder format: what is wrong, and in which file."""

from __future__ import annotations

from pathlib import Path


class DeploymentError(Exception):
    """What is wrong with a deployment folder, and in which file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"
