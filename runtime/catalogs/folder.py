"""The catalog of `modelrepo runtime --dir`: one deployment folder, one version (the pod case).

The folder is loaded and its docstring tests run in a background thread, so /livez answers
at once while /readyz says "loading" and then either ready or why not.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from modelrepo.format import (
    DeploymentError,
    enter_folder,
    find_stubs,
    first_failure_message,
    load_deployment,
    names_version,
    run_doctests,
)
from modelrepo.runtime.app import NotFound, NotReady
from modelrepo.runtime.served import Served, answer_headers

log = logging.getLogger("modelrepo.runtime")


def load_served(
    folder: Path, name: str, number: int | None, commit: str, default_timeout: float | None = None,
    *, may_inline: bool = False,
) -> Served:
    """Import the folder and run its docstring tests; raise DeploymentError saying why not.

    The datasets its source.py reads run first: a failing query keeps the version from serving.
    """
    from modelrepo.datasets import DatasetError, datasets_used, prepare

    for path, problem in find_stubs(folder):  # a stub is named, never unpickled
        raise DeploymentError(path, problem)
    try:
        prepare(datasets_used(folder))
    except DatasetError as exc:
        raise DeploymentError(folder / "source.py", str(exc)) from None
    loaded = load_deployment(folder)
    failures = run_doctests(loaded)
    if failures:
        raise DeploymentError(folder / "source.py", first_failure_message(failures))
    kwargs: dict[str, Any] = {} if default_timeout is None else {"default_timeout": default_timeout}
    return Served(name=name, number=number, commit=commit, loaded=loaded, may_inline=may_inline, **kwargs)


class FolderCatalog:
    """Serves exactly one folder as `<name>`, version `number` at `commit`."""

    def __init__(
        self, folder: str | Path, name: str, number: int | None, commit: str,
        default_timeout: float | None = None, branch: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.branch = branch or None  # None: the branch is not known, any branch in a route is accepted
        self.name = name
        self.number = number
        self.commit = commit
        self.default_timeout = default_timeout
        self.headers = answer_headers(commit, number)
        self._served: Served | None = None
        self._problem = "loading"
        self._thread = threading.Thread(target=self._load, name="modelrepo-load", daemon=True)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.number if self.number is not None else '?'} ({self.commit[:7] or 'no commit'})"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Nothing to stop: loading is a daemon thread."""

    def wait_loaded(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _load(self) -> None:
        started = time.monotonic()
        try:
            # One deployment per process: its folder is the working directory and on sys.path,
            # and inlining a proven-fast function can only delay itself.
            enter_folder(self.folder)
            self._served = load_served(
                self.folder, self.name, self.number, self.commit, self.default_timeout, may_inline=True
            )
        except DeploymentError as exc:
            self._problem = str(exc)
            log.error("%s refused: %s", self.label, exc)
            return
        except Exception as exc:  # loader bug or unexpected error: report, never crash the server
            self._problem = f"loading failed: {type(exc).__name__}: {exc}"
            log.exception("%s refused", self.label)
            return
        print(f"{self.label} ready in {time.monotonic() - started:.1f}s", flush=True)

    async def resolve(self, name: str, ref: str, branch: str | None = None) -> Served:
        if name != self.name:
            raise NotFound(f"no deployment {name} here (this runtime serves {self.name})")
        if branch is not None and self.branch is not None and branch != self.branch:
            raise NotFound(f"{name} is served here from branch {self.branch}, not {branch}")
        if not names_version(ref, self.number, self.commit, is_latest=True):
            raise NotFound(f"{self.name} has no version {ref} here (this runtime serves {self.label})")
        if self._served is None:
            raise NotReady(f"{self.label} is not ready: {self._problem}")
        return self._served

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = self._served is not None
        state = {"name": self.name, "version": self.number, "commit": self.commit, "ready": ready}
        if ready:
            return True, {"deployments": [state]}
        return False, {"error": f"{self.label}: {self._problem}", "deployments": [{**state, "reason": self._problem}]}
