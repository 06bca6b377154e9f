"""The deploy-time doctest gate, run in a fresh interpreter: `python -m modelrepo.doctest_gate DIR`.

A fresh process proves the folder works without the notebook's state: it loads the files about
to be committed exactly as the runtime will (modelrepo.format) and runs the main function's
docstring examples. Prints one marked JSON line: {"error": str|null, "failures": [...]}.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from modelrepo.format import (
    DeploymentError,
    DoctestFailure,
    enter_folder,
    load_deployment,
    run_doctests,
)
from modelrepo.modelbit_compat import install as install_modelbit

# The result line is marked, so output of the user's code on stdout cannot be mistaken for it.
_MARKER = "modelrepo-doctest-gate:"
# Seconds the whole gate (import + every docstring example) may take; MODELREPO_DOCTEST_TIMEOUT.
DEFAULT_TIMEOUT = 120.0
# The parent's own deadline comes this much later: the child's watchdog names the example first.
_GRACE = 10.0
# Starts the gate with the same modelrepo package as the caller's (also an uninstalled checkout),
# without putting the checkout's other top-level directories on sys.path.
_BOOTSTRAP = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('modelrepo', sys.argv[1], "
    "submodule_search_locations=[sys.argv[1].rpartition('/')[0]]); "
    "module = importlib.util.module_from_spec(spec); sys.modules['modelrepo'] = module; "
    "spec.loader.exec_module(module); "
    "from modelrepo.doctest_gate import main; sys.exit(main(sys.argv[2:]))"
)


def default_timeout() -> float:
    try:
        return float(os.environ.get("MODELREPO_DOCTEST_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _running_example(frame: FrameType | None) -> str | None:
    """The docstring example the main thread is running (doctest's runner has it in `example`)."""
    while frame is not None:
        example = frame.f_locals.get("example") if frame.f_code.co_name == "__run" else None
        if example is not None and hasattr(example, "source"):
            return str(example.source).strip()
        frame = frame.f_back
    return None


def _watchdog(seconds: float) -> None:
    """After `seconds`, report the example that has not returned and end this process."""
    def expire() -> None:
        main_id = threading.main_thread().ident
        example = _running_example(sys._current_frames().get(main_id or 0))
        what = f"the docstring example >>> {example}" if example else "importing the deployment"
        result = {"error": f"{what} did not finish within {seconds:g}s "
                           f"(MODELREPO_DOCTEST_TIMEOUT)", "failures": []}
        # doctest swaps sys.stdout while an example runs: write to the real one
        os.write(1, f"\n{_MARKER}{json.dumps(result)}\n".encode())
        os._exit(0)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main(argv: list[str]) -> int:
    install_modelbit()  # `import modelbit` in source.py, as the runtime allows it
    folder, check_python = argv[0], "--no-python-check" not in argv
    if "--timeout" in argv:
        _watchdog(float(argv[argv.index("--timeout") + 1]))
    result: dict[str, object] = {"error": None, "failures": []}
    try:
        enter_folder(folder)  # as when served: relative paths and packages of the folder resolve
        loaded = load_deployment(folder, check_python=check_python)
        result["failures"] = [asdict(f) for f in run_doctests(loaded)]
    except DeploymentError as exc:
        result["error"] = exc.problem
    print(f"\n{_MARKER}{json.dumps(result)}", flush=True)
    return 0


def run_gate(
    folder: Path, check_python: bool = True, timeout: float | None = None
) -> tuple[str | None, list[DoctestFailure]]:
    """Run the gate on `folder` in a new interpreter; (load error or None, doctest failures).

    A gate that runs longer than `timeout` seconds (default: MODELREPO_DOCTEST_TIMEOUT, else
    120) is an error naming the example that did not return; its whole process group is killed.
    """
    timeout = default_timeout() if timeout is None else timeout
    package = Path(__file__).resolve().parent / "__init__.py"
    cmd = [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, str(package), str(folder), "--timeout", f"{timeout:g}"]
    if not check_python:
        cmd.append("--no-python-check")
    proc = subprocess.Popen(
        cmd, cwd=folder.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout + _GRACE)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return (f"the check in a fresh Python did not finish within {timeout:g}s "
                f"(MODELREPO_DOCTEST_TIMEOUT) and was stopped"), []
    finally:
        _kill_group(proc)  # whatever the user's code started
    lines = [line for line in stdout.splitlines() if line.startswith(_MARKER)]
    try:
        result = json.loads(lines[-1][len(_MARKER):])
    except (IndexError, json.JSONDecodeError):
        detail = (stderr.strip().splitlines() or ["no output"])[-1]
        return f"the check in a fresh Python failed (exit {proc.returncode}): {detail}", []
    failures = [DoctestFailure(**f) for f in result["failures"]]
    return result["error"], failures


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
