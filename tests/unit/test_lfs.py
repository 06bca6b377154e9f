"""Git LFS end to end with a real LFS server (git-lfs's lfs-test-server) and real git over http.

A repository made by `modelrepo init` tracks pickles with LFS; deploy() stores the model as an
LFS object (git's history holds a pointer) and uploads it with the branch; `serve` and the
pods' fetch put the real bytes back; a pointer whose object is missing is named.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.git_servers import HTTP_PASSWORD, HTTP_USER
from fixtures.lfs_server import lfs_model_repo
from fixtures.model_repos import run_cli
from fixtures.runtime_server import wait_for
from unit.test_operator_sync import api, body_for  # noqa: F401 - the in-memory API fixture

from modelrepo import lfs
from modelrepo.operator import sync
from modelrepo.operator.sync import RepoState

ROOT = Path(__file__).resolve().parents[2]
ASKPASS = f"""#!/bin/sh
case "$1" in
  Username*) echo {HTTP_USER} ;;
  *) echo {HTTP_PASSWORD} ;;
esac
"""

DEPLOY_SCRIPT = '''
import json, resource, sys
import numpy as np
import modelrepo

WEIGHTS = np.arange({n}, dtype=np.float64)


def Big_Model(i: int) -> float:
    """
    >>> Big_Model(3)
    3.0
    """
    return float(WEIGHTS[i])


before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
modelrepo.deploy(Big_Model, repo=sys.argv[1], name=sys.argv[2])
print(json.dumps({{"before_kb": before,
                  "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
'''


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def credentials_env(tmp_path: Path, git_identity: dict[str, str]) -> dict[str, str]:
    """The environment of a user whose git asks for the http password through askpass."""
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(ASKPASS)
    askpass.chmod(0o700)
    return {**os.environ, "GIT_ASKPASS": str(askpass), "GIT_TERMINAL_PROMPT": "0"}


@pytest.fixture
def lfs_repo(tmp_path, git_servers, lfs_server, credentials_env):
    """`modelrepo init` in a clone of an http git remote whose LFS server is `lfs_server`."""
    name = tmp_path.name[-40:].replace("[", "-").replace("]", "")
    git_servers.create_repo(name)
    work = lfs_model_repo(tmp_path / "models", git_servers.http_url(name), lfs_server.url(name), credentials_env)
    return work, git_servers.http_url(name)


def deploy_big(work: Path, tmp_path: Path, env: dict[str, str], n: int, name: str = "Big_Model") -> dict[str, int]:
    script = tmp_path / "deploy_big.py"
    script.write_text(DEPLOY_SCRIPT.format(n=n))
    proc = subprocess.run(
        [sys.executable, str(script), str(work), name], capture_output=True, text=True, timeout=600,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_init_tracks_pickles_with_lfs(tmp_path, git_identity):
    work = tmp_path / "models"
    proc = run_cli("init", str(work))
    assert proc.returncode == 0, proc.stderr
    assert ".gitattributes" in proc.stdout and "git lfs install --local" in proc.stdout
    attrs = git(work, "check-attr", "filter", "deployments/Any/data/model.pkl", "deployments/Any/source.py")
    assert attrs.splitlines() == [
        "deployments/Any/data/model.pkl: filter: lfs", "deployments/Any/source.py: filter: unspecified",
    ]
    assert ".gitattributes" in git(work, "ls-files")
    assert (work / ".git" / "hooks" / "pre-push").exists()  # a plain `git push` uploads objects too


def test_deploy_stores_the_model_in_lfs_and_pushes_it(lfs_repo, lfs_server, tmp_path, credentials_env):
    work, url = lfs_repo
    pack_before = int(git(work, "count-objects", "-v").split("size-pack: ")[1].split()[0])
    size = 5_000_000
    deploy_big(work, tmp_path, credentials_env, size // 8)
    pkl = "deployments/Big_Model/data/WEIGHTS.pkl"
    blob = git(work, "rev-parse", f"HEAD:{pkl}")
    pointer = git(work, "cat-file", "-p", blob)
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")
    oid = pointer.split("oid sha256:")[1].split()[0]
    assert int(git(work, "cat-file", "-s", blob)) < 200  # history grows by the pointer only
    loose = git(work, "count-objects", "-v")
    grown_kb = int(loose.split("size: ")[1].split()[0]) + int(loose.split("size-pack: ")[1].split()[0]) - pack_before
    assert grown_kb < 100, loose
    assert oid in lfs_server.oids()  # uploaded with the branch
    assert git(work, "ls-remote", url, "refs/heads/main", env=credentials_env).split()[0] == git(work, "rev-parse", "HEAD")
    assert (work / pkl).stat().st_size > size  # the work tree shows the real file


def test_serve_and_fetch_download_the_folders_objects(lfs_repo, lfs_server, tmp_path, credentials_env, servers):
    work, url = lfs_repo
    deploy_big(work, tmp_path, credentials_env, 50_000, name="Other_Model")
    deploy_big(work, tmp_path, credentials_env, 100_000)
    head = git(work, "rev-parse", "HEAD")
    other = git(work, "cat-file", "-p", "HEAD:deployments/Other_Model/data/WEIGHTS.pkl").split("sha256:")[1].split()[0]
    mine = git(work, "cat-file", "-p", "HEAD:deployments/Big_Model/data/WEIGHTS.pkl").split("sha256:")[1].split()[0]
    assert {mine, other} <= lfs_server.oids()
    # a teammate's clone that has no LFS object yet: serve downloads it from the LFS server
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", url, str(clone), env={**credentials_env, "GIT_LFS_SKIP_SMUDGE": "1"})
    pkl = clone / "deployments/Big_Model/data/WEIGHTS.pkl"
    assert lfs.pointer_oid(pkl)
    server = servers.start("serve", str(clone), "--interval", "200ms", "--cache-dir", str(tmp_path / "cache"),
                           env={"GIT_ASKPASS": credentials_env["GIT_ASKPASS"]})
    server.wait_ready()
    r = server.post("/v1/Big_Model/latest", {"data": 99_999})
    assert r.status_code == 200, r.text + server.output()
    assert r.json()["data"] == 99_999.0

    # the pods' fetch: only the folder, its LFS objects, credentials from the Secret directory
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "username").write_text(HTTP_USER)
    (secret / "password").write_text(HTTP_PASSWORD)
    dest = tmp_path / "fetched"
    dest.mkdir()
    if os.geteuid() == 0:  # as in a pod: the volume belongs to another uid than git's (dubious ownership)
        os.chown(dest, 10001, 10001)
    downloaded = len(lfs_server.downloads())
    proc = run_cli("fetch", "--url", url, "--commit", head, "--path", "deployments/Big_Model",
                   "--dest", str(dest), "--credentials", str(secret))
    assert proc.returncode == 0, proc.stderr
    fetched = dest / "deployments/Big_Model/data/WEIGHTS.pkl"
    assert lfs.pointer_oid(fetched) is None
    assert fetched.read_bytes() == (work / "deployments/Big_Model/data/WEIGHTS.pkl").read_bytes()
    assert not (dest / ".git").exists()
    assert lfs_server.downloads()[downloaded:] == [mine]  # only its own folder's object
    assert HTTP_PASSWORD not in proc.stdout + proc.stderr


def test_a_pointer_whose_object_is_missing_is_named(lfs_repo, lfs_server, tmp_path, credentials_env, servers):
    work, url = lfs_repo
    deploy_big(work, tmp_path, credentials_env, 1000)
    blob = git(work, "rev-parse", "HEAD:deployments/Big_Model/data/WEIGHTS.pkl")
    oid = git(work, "cat-file", "-p", blob).split("oid sha256:")[1].split()[0]
    lfs_server.remove_object(oid)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", url, str(clone), env={**credentials_env, "GIT_LFS_SKIP_SMUDGE": "1"})
    proc = run_cli("validate", str(clone))
    assert proc.returncode == 1
    line = next(line for line in proc.stdout.splitlines() if "WEIGHTS.pkl" in line)
    assert line.startswith("deployments/Big_Model/data/WEIGHTS.pkl: ")
    assert f"a Git LFS pointer (sha256:{oid}" in line and "was not fetched" in line
    assert "Traceback" not in proc.stdout + proc.stderr
    server = servers.start("serve", str(clone), "--interval", "200ms", "--cache-dir", str(tmp_path / "cache"),
                           env={"GIT_ASKPASS": credentials_env["GIT_ASKPASS"]})
    wait_for(lambda: f"a Git LFS pointer (sha256:{oid}" in server.output(), "serve to name the missing object")
    r = server.post("/v1/Big_Model/latest", {"data": 1})
    assert r.status_code >= 400 and "Git LFS pointer" in r.text, r.text


def test_deploy_of_a_large_model_streams_it(lfs_repo, lfs_server, tmp_path, credentials_env):
    """deploy() of a 200 MB value: the deploying process and every process it starts (git,
    git-lfs, the doctest gate) peak at about 1.5x the model at most; the history holds a pointer."""
    work, _ = lfs_repo
    model_kb = 200_000_000 // 1024
    rss = deploy_big(work, tmp_path, credentials_env, 200_000_000 // 8)
    print(f"model {model_kb} KiB, peak rss {rss}")
    assert rss["self_kb"] - rss["before_kb"] <= model_kb // 2, rss  # the model itself is the 1x
    assert rss["children_kb"] <= model_kb * 3 // 2, rss
    blob = git(work, "rev-parse", "HEAD:deployments/Big_Model/data/WEIGHTS.pkl")
    assert int(git(work, "cat-file", "-s", blob)) < 200


def test_the_operator_serves_a_folder_whose_model_is_an_lfs_pointer(api, lfs_repo, tmp_path, credentials_env):  # noqa: F811
    """The operator checks the folder without the LFS object (its pods download it): a pointer
    is no reason to refuse the folder there, and the operator downloads no object itself."""
    work, url = lfs_repo
    deploy_big(work, tmp_path, credentials_env, 1000)
    api.secrets["git-http"] = {k: base64.b64encode(v).decode() for k, v in
                               {"username": HTTP_USER.encode(), "password": HTTP_PASSWORD.encode()}.items()}
    result = sync.sync(body_for(url, secretRef={"name": "git-http"}), RepoState(), tmp_path / "cache")
    assert result.invalid == {} and result.applied == ["Big_Model"]
    assert not any((tmp_path / "cache").rglob("lfs/objects/*/*/*"))
