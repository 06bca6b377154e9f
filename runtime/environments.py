"""The interpreter each deployment's worker runs in `modelrepo serve`: its environment, locally.

A folder's environment (pythonVersion, requirements.txt, systemPackages, capabilities) is
named by `environment_hash`, as the operator names its images. When the serving Python
already satisfies it (same major.minor, every requirement met by the installed distributions:
the operator's no-build rule, `unmet_by_base`), the worker runs the serving Python: no
virtualenv, today's speed. Otherwise it runs a uv virtualenv `<root>/<hash>`, built once
(in a temporary directory renamed into place, under a file lock, so concurrent serves never
race and a failed build leaves nothing) and reused by every later version with that
environment. uv reads the machine's pip configuration (`pip config list`, PIP_*), never a
host named here, and never downloads a Python: a Python that is not installed refuses the
deployment, naming it and `--python-fallback nearest`. System packages cannot be installed
here: they are named in a warning.

The worker in a virtualenv imports modelrepo's own code from a directory holding nothing but
the `modelrepo` package (so none of the serving environment's packages leak in), and the few
packages that code needs (WORKER_PACKAGES) are resolved together with the deployment's
requirements, unpinned, so the deployment's pins win (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from modelrepo import format as _format
from modelrepo.format import REQUIREMENTS_FILE, DeploymentError, running_python
from modelrepo.format.environment import (
    Environment,
    environment_hash,
    environment_of_folder,
    unmet_by_base,
)
from modelrepo.format.layout import METADATA_FILE
from modelrepo.format.requirements import requirement_problems

FALLBACKS = ("never", "nearest")
# What modelrepo's worker imports besides the standard library (tests check this list).
WORKER_PACKAGES = ("orjson", "PyYAML", "packaging", "cloudpickle")
BUILD_TIMEOUT = 1800.0
FAILED_BUILD_MEMORY = 30.0  # seconds a failed build is answered from memory, not rebuilt
MARKER = "modelrepo-environment.json"  # written last, before the rename: a complete environment
# pip configuration keys and the uv environment variables that say the same.
_PIP_TO_UV = {
    "index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL", "find-links": "UV_FIND_LINKS",
    "trusted-host": "UV_INSECURE_HOST", "cert": "SSL_CERT_FILE", "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
}
_PIP_SCOPES = {"global": 0, "user": 1, "site": 2, ":env:": 3}  # pip's precedence, lowest first


@dataclass(frozen=True)
class Interpreter:
    """How to start a worker: its Python, whether that Python is the one asked for, and the
    PYTHONPATH giving it modelrepo's code (None: the serving process's, as before)."""

    python: str = sys.executable
    check_python: bool = True
    pythonpath: str | None = None


class BuildFailed(Exception):
    """uv could not make the virtualenv; the message holds uv's last lines."""


def installed_packages() -> dict[str, str]:
    """{canonical name: version} of the distributions the serving Python has (its `pip freeze`)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def uv_binary() -> str:
    """uv's executable: the one the `uv` distribution (a dependency of modelrepo) ships."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BuildFailed("uv is not installed (pip install uv)") from None
        return found


def pip_settings_for_uv(pip_config_list: str) -> dict[str, str]:
    """`pip config list` output as uv environment variables (index, extra indexes, find-links,
    trusted hosts, CA bundle, timeout), pip's precedence kept (environment > site > user > global)."""
    chosen: dict[str, tuple[int, str]] = {}
    for line in pip_config_list.splitlines():
        key, sep, value = line.partition("=")
        scope, _, option = key.strip().rpartition(".")
        if not sep or option not in _PIP_TO_UV:
            continue
        rank = _PIP_SCOPES.get(scope, 0)
        variable = _PIP_TO_UV[option]
        if variable not in chosen or rank >= chosen[variable][0]:
            chosen[variable] = (rank, value.strip().strip("'\""))
    return {variable: value for variable, (_, value) in chosen.items() if value}


def uv_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment uv runs with: this machine's pip settings unless uv's own are set, pip's
    way of choosing among several indexes, and no Python downloads."""
    env = dict(os.environ if base is None else base)
    env.pop("VIRTUAL_ENV", None)
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                text=True, timeout=60, env=env).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    for variable, value in pip_settings_for_uv(listed).items():
        if variable == "UV_INDEX_URL" and env.get("UV_DEFAULT_INDEX"):
            continue
        env.setdefault(variable, value)
    env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")  # pip's rule for --extra-index-url
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    return env


def nearest_python(wanted: str, installed: list[str]) -> str | None:
    """The installed `major.minor` closest to `wanted` (same major; the newer one on a tie)."""
    major, minor = (int(p) for p in wanted.split(".")[:2])
    same_major = [v for v in installed if int(v.split(".")[0]) == major]
    if not same_major:
        return None
    return min(same_major, key=lambda v: (abs(int(v.split(".")[1]) - minor), -int(v.split(".")[1])))


def describe(key: str, python: str, env: Environment) -> str:
    count = len([line for line in env.requirements if not line.startswith("-")])
    return f"environment {key[:7]} (python {python}, {count} requirement{'' if count == 1 else 's'})"


class Environments:
    """The virtualenvs of one serve process, under `root` (shared with other serve processes)."""

    def __init__(self, root: str | Path, fallback: str = "never", say: Callable[[str], None] | None = None) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"python fallback must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
        self.root = Path(root).absolute()
        self.fallback = fallback
        self.say = say or (lambda text: print(text, flush=True))
        self._said: set[str] = set()
        self._ready: set[str] = set()
        self._failed: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._uv_env: dict[str, str] | None = None
        self._packages: dict[str, str] | None = None

    def interpreter(self, folder: Path, name: str) -> Interpreter:
        """The interpreter for the worker of `folder` (deployment `name`); DeploymentError naming
        the file when the Python is missing or the virtualenv cannot be built."""
        env = environment_of_folder(folder)
        self._warn_system_packages(name, env)
        python, base = self._python(folder, name, env.python_version)
        exact = python == env.python_version
        local = dataclasses.replace(env, python_version=python)
        if python == running_python() and not unmet_by_base(
                dataclasses.replace(local, system_packages=()), python, self._installed()):
            return Interpreter(sys.executable, check_python=exact)
        problems = requirement_problems(_requirements_text(folder))
        if problems:
            raise DeploymentError(folder / REQUIREMENTS_FILE, problems[0])
        key = environment_hash(local)  # = environment_hash(env) unless another Python stands in
        venv = self._ensure(key, base, folder, local)
        return Interpreter(str(venv / "bin" / "python"), check_python=exact, pythonpath=str(self._code_path()))

    # -- the Python ---------------------------------------------------------------------------
    def _python(self, folder: Path, name: str, wanted: str) -> tuple[str, str]:
        """(major.minor, interpreter path) to build with: the one asked for, else the nearest."""
        if wanted == running_python():
            return wanted, sys.executable
        found = self._uv("python", "find", "--system", wanted, check=False)
        if found.returncode == 0 and found.stdout.strip():
            return wanted, found.stdout.strip().splitlines()[-1]
        installed = self._installed_pythons()
        nearest = nearest_python(wanted, list(installed))
        where = folder / METADATA_FILE
        if self.fallback != "nearest" or nearest is None:
            hint = f" ({nearest})" if nearest else ""
            raise DeploymentError(where, (
                f"Python {wanted} requested here is not installed on this machine; install it, or run "
                f"serve with --python-fallback nearest to use the nearest installed Python{hint}"))
        self._once(f"{name}: Python {wanted} is not installed; using Python {nearest} instead "
                   f"(--python-fallback nearest)")
        return nearest, installed[nearest]

    def _installed_pythons(self) -> dict[str, str]:
        """{major.minor: path} of the Pythons uv finds installed (this one always among them)."""
        found = {running_python(): sys.executable}
        listed = self._uv("python", "list", "--only-installed", "--output-format", "json", check=False)
        with contextlib.suppress(ValueError):
            for entry in json.loads(listed.stdout or "[]"):
                parts = entry.get("version_parts") or {}
                version = f"{parts.get('major')}.{parts.get('minor')}"
                if entry.get("implementation", "cpython") == "cpython" and entry.get("path"):
                    found.setdefault(version, entry["path"])
        return found

    def _warn_system_packages(self, name: str, env: Environment) -> None:
        if not env.system_packages:
            return
        on_path = [p for p in env.system_packages if shutil.which(p)]
        seen = f"; on this machine's PATH: {', '.join(on_path)}" if on_path else ""
        self._once(f"{name}: systemPackages {', '.join(env.system_packages)} are not installed by "
                   f"modelrepo serve; install them on this machine yourself{seen}")

    # -- the virtualenv -----------------------------------------------------------------------
    def _ensure(self, key: str, base: str, folder: Path, env: Environment) -> Path:
        """`<root>/<key>`, built now unless it exists; DeploymentError if the build fails."""
        final = self.root / key
        if key in self._ready:
            return final
        failed = self._failed.get(key)
        if failed and time.monotonic() - failed[0] < FAILED_BUILD_MEMORY:
            raise DeploymentError(folder / REQUIREMENTS_FILE, failed[1])
        what = describe(key, env.python_version, env)
        with self._locked(key, what):
            if _complete(final):
                self._ready.add(key)
                self._once(f"{what} reused")
                return final
            started = time.monotonic()
            try:
                self._build(final, base, _requirements_text(folder), env)
            except BuildFailed as exc:
                problem = f"{what} could not be built: {exc}"
                self._failed[key] = (time.monotonic(), problem)
                raise DeploymentError(folder / REQUIREMENTS_FILE, problem) from None
        self._ready.add(key)
        self._failed.pop(key, None)
        self._once(f"{what} built in {time.monotonic() - started:.1f}s")
        return final

    def _build(self, final: Path, base: str, requirements: str, env: Environment) -> None:
        """uv venv + uv pip install in a temporary directory, renamed to `final` when complete."""
        for stale in self.root.glob(f".build-{final.name}-*"):  # a build killed half-way
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # incomplete, or its Python is gone
        tmp = self.root / f".build-{final.name}-{os.getpid()}-{threading.get_ident()}"
        try:
            self._uv("venv", "--relocatable", "--quiet", "--python", base, str(tmp))
            (tmp / REQUIREMENTS_FILE).write_text(requirements, encoding="utf-8")
            # Bytecode now: workers never write it (sys.dont_write_bytecode), so every start would
            # compile the deployment's packages again.
            self._uv("pip", "install", "--quiet", "--compile-bytecode", "--python", str(tmp / "bin" / "python"),
                     "-r", str(tmp / REQUIREMENTS_FILE), *WORKER_PACKAGES)
            (tmp / MARKER).write_text(json.dumps(dataclasses.asdict(env), indent=1), encoding="utf-8")
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, key: str, what: str) -> Iterator[None]:
        """One builder per environment across threads and serve processes (flock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"{what} is being built by another process; waiting")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _uv(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._uv_env is None:
            self._uv_env = uv_environment()
        try:
            done = subprocess.run([uv_binary(), *args], capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT, env=self._uv_env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"uv {args[0]} did not finish within {BUILD_TIMEOUT:g}s") from None
        if check and done.returncode != 0:
            lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise BuildFailed(f"uv {' '.join(args[:2])} failed: " + " | ".join(lines[-4:]))
        return done

    def _code_path(self) -> Path:
        """A directory holding only a link to the `modelrepo` package this process runs."""
        package = Path(_format.__file__).resolve().parent.parent
        where = self.root / ".code" / hashlib.sha256(str(package).encode()).hexdigest()[:16]
        link = where / "modelrepo"
        if not link.is_dir():
            where.mkdir(parents=True, exist_ok=True)
            tmp = where / f".modelrepo-{os.getpid()}-{threading.get_ident()}"
            tmp.symlink_to(package, target_is_directory=True)
            os.replace(tmp, link)
        return where

    def _installed(self) -> dict[str, str]:
        if self._packages is None:
            self._packages = installed_packages()
        return self._packages

    def _once(self, text: str) -> None:
        with self._lock:
            if text in self._said:
                return
            self._said.add(text)
        self.say(text)


def _complete(venv: Path) -> bool:
    """A finished build whose Python still exists (a removed base Python breaks a virtualenv)."""
    return (venv / MARKER).is_file() and (venv / "bin" / "python").resolve().is_file()


def _requirements_text(folder: Path) -> str:
    path = folder / REQUIREMENTS_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else ""
