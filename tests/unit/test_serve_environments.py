"""`modelrepo serve` gives each environment its own uv virtualenv: real uv, the machine's package
index (its pip configuration), real git repositories, real serve processes on loopback.

Two deployments pinning different versions of `six` answer each their own version from one
serve; a source-only change builds nothing; a requirement that does not exist refuses only its
deployment, naming it; a Python that is not installed is refused by name, and
`--python-fallback nearest` runs the nearest one with a warning.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from fixtures.runtime_server import (
    PYTHON_VERSION,
    Servers,
    commit_all,
    init_repo,
    wait_for,
    write_deployment,
)

from modelrepo.runtime.environments import (
    WORKER_PACKAGES,
    Environments,
    nearest_python,
    pip_settings_for_uv,
    uv_binary,
    uv_environment,
)

pytestmark = pytest.mark.slow

SIX = '''
import importlib.util
import sys

import six


def NAME(x):
    return [six.__version__, sys.prefix, x, importlib.util.find_spec("bentoml") is not None]
'''
PLAIN = '''
import sys


def Plain(x):
    """
    >>> Plain(1)[1]
    1
    """
    return [sys.prefix, x]
'''
WHICH_PYTHON = '''
import sys


def Old_Py(x):
    return list(sys.version_info[:2])
'''
NO_SUCH = "modelrepo-test-no-such-package-7f3a"


def six_deployment(repo: Path, name: str, version: str, source: str = SIX) -> None:
    folder = write_deployment(repo, name, source.replace("NAME", name), ["x:int"])
    (folder / "requirements.txt").write_text(f"six=={version}\n")


def set_runtime(folder: Path, **info: object) -> None:
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    meta["runtimeInfo"].update(info)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def start_serve(servers: Servers, repo: Path, cache: Path, *extra: str):
    return servers.start("serve", str(repo), "--interval", "200ms", "--cache-dir", str(cache), *extra)


def environments_in(cache: Path) -> list[Path]:
    """The finished virtualenvs (hidden entries are locks, builds, the code link)."""
    root = cache / "envs"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def test_pinned_versions_side_by_side_built_once_and_reused(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    cache = tmp_path / "cache"
    six_deployment(repo, "Six_Old", "1.15.0")
    six_deployment(repo, "Six_New", "1.16.0")
    plain = write_deployment(repo, "Plain", PLAIN, ["x:int"])
    (plain / "requirements.txt").write_text("PyYAML\n")  # the serving Python has it: no virtualenv
    set_runtime(plain, systemPackages=["git", "libmodelrepo-nothing0"])
    commit_all(repo, "v1")
    server = start_serve(servers, repo, cache)
    server.wait_ready(300)

    old, new = (server.post(f"/v1/{n}/latest", {"data": 1}).json()["data"] for n in ("Six_Old", "Six_New"))
    envs = environments_in(cache)
    assert old[0] == "1.15.0" and new[0] == "1.16.0" and old[3] is new[3] is False  # none of serve's packages
    assert {Path(old[1]), Path(new[1])} == set(envs) and len(envs) == 2
    assert server.post("/v1/Plain/latest", {"data": 1}).json()["data"] == [sys.prefix, 1]
    out = server.output()
    assert len(re.findall(r"environment [0-9a-f]{7} \(python 3\.\d+, 1 requirement\) built in", out)) == 2, out
    assert ("Plain: systemPackages git, libmodelrepo-nothing0 are not installed by modelrepo serve; install "
            "them on this machine yourself; on this machine's PATH: git") in out
    stamp = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in envs}

    six_deployment(repo, "Six_Old", "1.15.0", SIX.replace("x, imp", "x * 10, imp"))  # source.py only
    commit_all(repo, "Six_Old v2: source only")
    wait_for(lambda: server.post("/v1/Six_Old/latest", {"data": 1}).json()["data"][2] == 10, "Six_Old v2")
    assert re.search(r"Six_Old v2 \([0-9a-f]{7}\) ready in", server.output())
    assert server.output().count("built in") == 2
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in environments_in(cache)} == stamp
    server.stop()

    again = start_serve(servers, repo, cache)  # a new serve finds them built
    again.wait_ready(300)
    assert again.post("/v1/Six_New/latest", {"data": 2}).json()["data"] == ["1.16.0", new[1], 2, False]
    out = again.output()
    assert "built in" not in out and len(re.findall(r"environment [0-9a-f]{7} \(.*\) reused", out)) == 2, out


def test_a_requirement_that_does_not_exist_refuses_only_its_deployment(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    cache = tmp_path / "cache"
    write_deployment(repo, "Plain", PLAIN, ["x:int"])
    broken = write_deployment(repo, "Broken", SIX.replace("NAME", "Broken"), ["x:int"])
    (broken / "requirements.txt").write_text(f"{NO_SUCH}==1.0\n")
    commit_all(repo, "Broken asks for a package nobody published")
    server = start_serve(servers, repo, cache)
    line = wait_for(lambda: re.search(r"Broken v1 \([0-9a-f]{7}\) refused: .*", server.output()), "the refusal")[0]
    assert line.startswith("Broken v1") and "deployments/Broken/requirements.txt: environment " in line
    assert "could not be built: uv pip install failed:" in line and NO_SUCH in line, line
    wait_for(lambda: server.post("/v1/Plain/latest", {"data": 3}).status_code == 200, "Plain served")
    assert server.post("/v1/Plain/latest", {"data": 3}).json()["data"] == [sys.prefix, 3]
    assert server.post("/v1/Broken/latest", {"data": 3}).status_code == 503
    assert environments_in(cache) == [] and not list((cache / "envs").glob(".build-*"))  # nothing half-made

    (broken / "requirements.txt").write_text("six==1.16.0\n")
    commit_all(repo, "Broken v2 asks for a real package")
    wait_for(lambda: server.post("/v1/Broken/latest", {"data": 3}).status_code == 200, "Broken v2 served")
    assert server.post("/v1/Broken/latest", {"data": 3}).json()["data"][0] == "1.16.0"


def _python_installed(version: str) -> bool:
    found = subprocess.run([uv_binary(), "python", "find", "--system", version], capture_output=True,
                           env=uv_environment())
    return found.returncode == 0


def test_a_python_not_installed_is_refused_by_name_and_the_fallback_runs_the_nearest(tmp_path, servers):
    if _python_installed("3.7"):
        pytest.skip("this machine has Python 3.7: nothing is missing")
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Plain", PLAIN, ["x:int"])
    set_runtime(write_deployment(repo, "Old_Py", WHICH_PYTHON, ["x:int"]), pythonVersion="3.7")
    commit_all(repo, "Old_Py wants Python 3.7")
    strict = start_serve(servers, repo, tmp_path / "cache")
    line = wait_for(lambda: re.search(r"Old_Py v1 \([0-9a-f]{7}\) refused: .*", strict.output()), "the refusal")[0]
    assert line.endswith(
        "refused: deployments/Old_Py/metadata.yaml: Python 3.7 requested here is not installed on this "
        "machine; install it, or run serve with --python-fallback nearest to use the nearest installed "
        f"Python ({PYTHON_VERSION})"), line
    wait_for(lambda: strict.post("/v1/Plain/latest", {"data": 1}).status_code == 200, "Plain served")
    strict.stop()

    lenient = start_serve(servers, repo, tmp_path / "cache", "--python-fallback", "nearest")
    line = wait_for(lambda: re.search(r"Old_Py v1 \([0-9a-f]{7}\) (ready|refused).*", lenient.output()), "Old_Py")[0]
    assert " ready in " in line, line
    wait_for(lambda: lenient.post("/v1/Old_Py/latest", {"data": 1}).status_code == 200, "Old_Py served")
    assert lenient.post("/v1/Old_Py/latest", {"data": 1}).json()["data"] == list(sys.version_info[:2])
    assert (f"Old_Py: Python 3.7 is not installed; using Python {PYTHON_VERSION} instead "
            "(--python-fallback nearest)") in lenient.output()


def test_two_serves_building_one_environment_build_it_once(tmp_path):
    """Two Environments over one directory (as two serve processes) at once: one builds, the
    other waits for it and reuses what it built."""
    repo = init_repo(tmp_path / "models")
    folder = write_deployment(repo, "Six_New", SIX.replace("NAME", "Six_New"), ["x:int"])
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    said: list[str] = []
    results: list[str] = []
    pair = [Environments(tmp_path / "envs", say=said.append) for _ in range(2)]
    threads = [threading.Thread(target=lambda e=e: results.append(e.interpreter(folder, "Six_New").python))
               for e in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 2 and results[0] == results[1], said
    assert len([s for s in said if " built in " in s]) == 1 and len([s for s in said if s.endswith(" reused")]) == 1
    version = subprocess.run([results[0], "-c", "import six; print(six.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version == "1.16.0"


def test_the_worker_imports_only_the_packages_installed_for_it():
    """A virtualenv gets WORKER_PACKAGES beside the deployment's requirements: the worker must not
    import any other distribution, or every virtualenv worker would fail to start."""
    code = ("import importlib.metadata as m, sys\nbefore = set(sys.modules)\nimport modelrepo.runtime.worker\n"
            "top = {n.split('.')[0] for n in set(sys.modules) - before} - set(sys.stdlib_module_names) - {'modelrepo'}\n"
            "dists = m.packages_distributions()\n"
            "print(__import__('json').dumps(sorted({d for t in top for d in dists.get(t, [])})))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}).stdout
    used = {d.lower() for d in json.loads(out)}
    assert used <= {p.lower() for p in WORKER_PACKAGES}, used


def test_pip_configuration_becomes_uv_settings_with_pip_precedence():
    listed = ("global.index-url='https://global.example/simple'\n"
              "site.index-url='https://site.example/simple'\n"
              ":env:.extra-index-url='https://extra.example/simple'\n"
              "global.cert='/etc/ssl/ca.pem'\n:env:.find-links='/opt/wheels'\n"
              "global.trusted-host='mirror.example'\n:env:.disable-pip-version-check='1'\n")
    assert pip_settings_for_uv(listed) == {
        "UV_INDEX_URL": "https://site.example/simple", "UV_EXTRA_INDEX_URL": "https://extra.example/simple",
        "SSL_CERT_FILE": "/etc/ssl/ca.pem", "UV_FIND_LINKS": "/opt/wheels", "UV_INSECURE_HOST": "mirror.example",
    }


def test_uv_keeps_its_own_index_settings_and_never_downloads_a_python():
    env = uv_environment({"UV_INDEX_URL": "https://mine.example/simple", "PATH": "/usr/bin:/bin",
                          "PIP_INDEX_URL": "https://pip.example/simple", "UV_PYTHON_DOWNLOADS": "automatic"})
    assert env["UV_INDEX_URL"] == "https://mine.example/simple" and env["UV_PYTHON_DOWNLOADS"] == "never"
    env = uv_environment({"PATH": "/usr/bin:/bin", "PIP_INDEX_URL": "https://pip.example/simple"})
    assert env["UV_INDEX_URL"] == "https://pip.example/simple"


@pytest.mark.parametrize(("wanted", "installed", "nearest"), [
    ("3.7", ["3.11"], "3.11"),
    ("3.10", ["3.9", "3.11", "3.13"], "3.11"),
    ("3.12", ["3.9", "3.13"], "3.13"),
    ("3.9", ["3.8", "3.12"], "3.8"),
    ("2.7", ["3.11"], None),
])
def test_nearest_python(wanted, installed, nearest):
    assert nearest_python(wanted, installed) == nearest


def _another_python() -> tuple[str, dict[str, str]] | None:
    """A Python of another major.minor that uv finds (on PATH as is, or in a pyenv version
    directory put on PATH), with the environment in which it is found; None if the machine has none."""
    candidates = [f"3.{m}" for m in range(8, 15) if f"3.{m}" != PYTHON_VERSION]
    extra = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.*/bin"))
    for path in ["", *extra]:
        env = {**os.environ, "PATH": os.pathsep.join(filter(None, (path, os.environ.get("PATH"))))}
        for version in candidates:
            found = subprocess.run([uv_binary(), "python", "find", "--system", version], capture_output=True,
                                   env=uv_environment(env))
            if found.returncode == 0:
                return version, env
    return None


def test_the_python_asked_for_runs_when_the_machine_has_it(tmp_path, servers):
    other = _another_python()
    if other is None:
        pytest.skip(f"no Python but {PYTHON_VERSION} on this machine")
    version, env = other
    repo = init_repo(tmp_path / "models")
    set_runtime(write_deployment(repo, "Old_Py", WHICH_PYTHON, ["x:int"]), pythonVersion=version)
    commit_all(repo, f"Old_Py on Python {version}")
    server = servers.start("serve", str(repo), "--interval", "200ms", "--cache-dir", str(tmp_path / "cache"),
                           env=env)
    server.wait_ready(300)
    assert server.post("/v1/Old_Py/latest", {"data": 1}).json()["data"] == [int(p) for p in version.split(".")]
    assert re.search(rf"environment [0-9a-f]{{7}} \(python {re.escape(version)}, 0 requirements\) built in",
                     server.output())
