"""The deploy-time doctest gate, run in a fresh interpreter: `python -m modelrepo.doctest_gate DIR`.

A fresh process proves the folder works without the notebook's state: it loads the files about
to be committed exactly as the runtime will (modelrepo.format) and runs the main function's
docstring examples. Prints one marked JSON line: {"error": str|null, "failures": [...]}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from modelrepo.format import (
    DeploymentError,
    DoctestFailure,
    enter_folder,
    load_deployment,
    run_doctests,
)

# The result line is marked, so output of the user's code on stdout cannot be mistaken for it.
_MARKER = "modelrepo-doctest-gate:"


def main(argv: list[str]) -> int:
    folder, check_python = argv[0], "--no-python-check" not in argv
    result: dict[str, object] = {"error": None, "failures": []}
    try:
        enter_folder(folder)  # as when served: relative paths and packages of the folder resolve
        loaded = load_deployment(folder, check_python=check_python)
        result["failures"] = [asdict(f) for f in run_doctests(loaded)]
    except DeploymentError as exc:
        result["error"] = exc.problem
    print(f"\n{_MARKER}{json.dumps(result)}", flush=True)
    return 0


def run_gate(folder: Path, check_python: bool = True) -> tuple[str | None, list[DoctestFailure]]:
    """Run the gate on `folder` in a new interpreter; (load error or None, doctest failures)."""
    cmd = [sys.executable, "-I", "-B", "-m", "modelrepo.doctest_gate", str(folder)]
    if not check_python:
        cmd.append("--no-python-check")
    proc = subprocess.run(cmd, cwd=folder.parent, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARKER)]
    try:
        result = json.loads(lines[-1][len(_MARKER):])
    except (IndexError, json.JSONDecodeError):
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the check in a fresh Python failed (exit {proc.returncode}): {detail}", []
    failures = [DoctestFailure(**f) for f in result["failures"]]
    return result["error"], failures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
