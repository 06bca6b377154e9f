"""The versions pod's two processes on one machine: `modelrepo fetcher` (git only, with the
credentials) and `modelrepo runtime --fetcher` (no git, no credentials), against a real git
server with basic auth, over real HTTP (docs/operator.md, "Old versions").
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fixtures.git_servers import WorkRepo
from fixtures.runtime_server import wait_for

from modelrepo.git import Credentials
from modelrepo.operator.fetcher import Fetcher, Refused, folder_key, parse_fetch

SHA = "a" * 40


# ---------------------------------------------------------------- the fetcher's request rules


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "must be JSON"),
    (b"[]", "JSON object"),
    (b'{"name": "../etc", "commit": "' + SHA.encode() + b'"}', "name must be a deployment name"),
    (b'{"name": "Linear_Model", "commit": "abc1234"}', "full commit SHA"),
    (b'{"name": "Linear_Model", "commit": "' + SHA.upper().encode() + b'"}', "full commit SHA"),
    (b'{"name": "Linear_Model", "commit": "' + SHA.encode() + b'", "keep": [["x/y", "' + SHA.encode() + b'"]]}',
     "keep: name must be"),
    (b'{"name": "Linear_Model", "commit": "' + SHA.encode() + b'", "keep": "all"}', "keep must be a list"),
])
def test_a_fetch_request_names_a_deployment_and_a_full_sha_or_is_refused(body, says):
    with pytest.raises(Refused) as caught:
        parse_fetch(body)
    assert caught.value.status == 400
    assert says in str(caught.value)


def test_a_valid_fetch_request():
    body = b'{"name": "Linear_Model", "commit": "' + SHA.encode() + b'", "keep": [["Other", "' + SHA.encode() + b'"]]}'
    assert parse_fetch(body) == ("Linear_Model", SHA, {("Other", SHA)})
    assert folder_key("Linear_Model", SHA) == f"Linear_Model-{SHA}"


# ---------------------------------------------------------------- a repository with three versions

MODEL = '''
def Linear_Model(x: int):
    """
    >>> Linear_Model(1)
    FACTOR
    """
    return FACTOR * x
'''


def push_versions(repo: WorkRepo) -> list[str]:
    """v1, v2, v3 of Linear_Model (x1, x2, x3), an unrelated commit, and v1..v2 of Other."""
    shas = []
    for factor in (1, 2, 3):
        repo.write_deployment("Linear_Model")
        repo.write("deployments/Linear_Model/source.py", MODEL.replace("FACTOR", str(factor)))
        if factor == 2:
            repo.write_deployment("Other", body="return x + 1", doc="5")
        shas.append(repo.commit_push(f"v{factor}"))
    repo.write("README.md", "unrelated\n")
    repo.commit_push("readme")
    return shas


@pytest.fixture
def three_versions(git_servers, tmp_path) -> tuple[WorkRepo, list[str]]:
    bare = git_servers.create_repo(f"versions-{time.monotonic_ns()}")
    repo = WorkRepo.create(bare, tmp_path / "work")
    return repo, push_versions(repo)


def test_the_fetcher_lists_versions_and_fetches_only_versions(git_servers, three_versions, tmp_path):
    repo, shas = three_versions
    creds = Credentials.from_mapping(git_servers.basic_auth_secret())
    fetcher = Fetcher(url=git_servers.http_url(repo.name), ref="main", dest=tmp_path / "dest",
                      cache=tmp_path / "cache", creds=creds)
    fetcher.clear_partial()
    listed = fetcher.versions()
    assert listed["commit"] == repo.head()
    assert listed["deployments"]["Linear_Model"] == [(1, shas[0]), (2, shas[1]), (3, shas[2])]
    assert listed["deployments"]["Other"] == [(1, shas[1])]

    key = fetcher.fetch("Linear_Model", shas[0], set())
    root = tmp_path / "dest" / key
    assert "return 1 * x" in (root / "deployments/Linear_Model/source.py").read_text()
    assert not (root / ".git").exists()  # nothing that names the remote or holds a credential
    assert sorted(p.name for p in root.iterdir()) == ["deployments"]

    with pytest.raises(Refused) as caught:  # the readme commit did not change the folder
        fetcher.fetch("Linear_Model", repo.head(), set())
    assert caught.value.status == 404 and "is not a version of Linear_Model on main" in str(caught.value)

    fetcher.prune({key})
    assert (tmp_path / "dest" / key).is_dir()
    fetcher._asked.clear()  # long ago: only `keep` protects it now
    fetcher.prune(set())
    assert not (tmp_path / "dest" / key).exists()


def test_the_fetcher_says_why_it_cannot_read_the_branch(git_servers, three_versions, tmp_path):
    repo, _ = three_versions
    fetcher = Fetcher(url=git_servers.http_url(repo.name), ref="main", dest=tmp_path / "dest",
                      cache=tmp_path / "cache", creds=Credentials.from_mapping({"username": b"modelrepo", "password": b"wrong-pw"}))
    with pytest.raises(Refused) as caught:
        fetcher.versions()
    assert caught.value.status == 502
    assert "reading main of http://" in str(caught.value)
    assert "wrong-pw" not in str(caught.value)


# ---------------------------------------------------------------- the two processes over HTTP


@pytest.fixture
def versions_pod(git_servers, three_versions, servers, tmp_path):
    """The fetcher (credentials in a directory, like the mounted Secret) and the runtime beside it."""
    repo, shas = three_versions
    secret = tmp_path / "secret"
    secret.mkdir()
    for key, value in git_servers.basic_auth_secret().items():
        (secret / key).write_bytes(value)
    dest = tmp_path / "versions"
    dest.mkdir()
    fetcher = servers.start("fetcher", "--url", git_servers.http_url(repo.name), "--ref", "main",
                            "--dest", str(dest), "--cache-dir", str(tmp_path / "fetcher-cache"),
                            "--credentials", str(secret))
    fetcher.wait_listening()
    runtime = servers.start("runtime", "--fetcher", fetcher.url, "--versions-dir", str(dest),
                            "--branch", "main", "--max-cached", "2")
    runtime.wait_ready()
    return repo, shas, fetcher, runtime, dest


def test_every_version_answers_with_its_own_headers(versions_pod):
    repo, shas, _fetcher, runtime, _dest = versions_pod
    for number, sha in enumerate(shas, start=1):
        for ref in (str(number), sha[:7], f"main/{number}"):
            r = runtime.post(f"/v1/Linear_Model/{ref}", {"data": 10})
            assert r.status_code == 200, r.text
            assert r.json() == {"data": 10 * number}
            assert r.headers["x-modelrepo-version"] == str(number)
            assert r.headers["x-modelrepo-commit"] == sha
    r = runtime.post("/v1/Other/1", {"data": 4})
    assert (r.status_code, r.json(), r.headers["x-modelrepo-commit"]) == (200, {"data": 5}, shas[1])


def test_unknown_versions_and_names_are_404_saying_what_exists(versions_pod):
    _repo, _shas, _fetcher, runtime, _dest = versions_pod
    r = runtime.post("/v1/Linear_Model/9", {"data": 1})
    assert r.status_code == 404
    assert r.json()["error"] == "Linear_Model has no version 9 on branch main (versions are 1 to 3, or a commit SHA prefix)"
    r = runtime.post("/v1/Nope/1", {"data": 1})
    assert r.status_code == 404 and "no deployment Nope on branch main (deployments: Linear_Model, Other)" in r.text
    r = runtime.post("/v1/Linear_Model/staging/1", {"data": 1})
    assert r.status_code == 404 and "not staging" in r.text


def test_a_new_push_is_callable_by_number_and_the_cache_stays_bounded(versions_pod):
    repo, shas, _fetcher, runtime, dest = versions_pod
    repo.write("deployments/Linear_Model/source.py", MODEL.replace("FACTOR", "4"))
    sha4 = repo.commit_push("v4")
    r = wait_for(lambda: (r := runtime.post("/v1/Linear_Model/4", {"data": 10})).status_code == 200 and r,
                 "version 4 answering", timeout=60, interval=0.5)
    assert r.json() == {"data": 40} and r.headers["x-modelrepo-commit"] == sha4
    for ref in ("1", "2", "3"):
        assert runtime.post(f"/v1/Linear_Model/{ref}", {"data": 1}).status_code == 200
    loaded = runtime.client.get("/readyz").json()["loaded"]
    assert len(loaded) == 2  # --max-cached 2: the least recently called versions were retired
    assert {entry["version"] for entry in loaded} == {2, 3}
    assert "Linear_Model v1 (" in runtime.output() and "loaded on demand" in runtime.output()


def test_a_refused_version_and_a_failed_fetch_are_503_saying_why_and_harm_no_other(versions_pod, git_servers):
    repo, shas, _fetcher, runtime, _dest = versions_pod
    repo.write("deployments/Linear_Model/source.py", MODEL.replace("FACTOR", "5").replace("return 5 * x", "return 6 * x"))
    repo.commit_push("v4: its docstring test fails")
    r = wait_for(lambda: (r := runtime.post("/v1/Linear_Model/4", {"data": 1})).status_code != 404 and r,
                 "version 4 known", timeout=60, interval=0.5)
    assert r.status_code == 503
    assert "Linear_Model v4" in r.json()["error"] and "cannot be served" in r.json()["error"]
    assert "expected" in r.json()["error"]  # the docstring test's own words
    assert runtime.post("/v1/Linear_Model/1", {"data": 10}).json() == {"data": 10}

    bare = git_servers.root / f"{repo.name}.git"
    shutil.move(bare, bare.with_suffix(".gone"))  # the git server loses the repository
    try:
        r = runtime.post("/v1/Linear_Model/3", {"data": 1})
        assert r.status_code == 503
        assert f"Linear_Model v3 ({shas[2][:7]}) could not be fetched: fetching deployments/Linear_Model" in r.json()["error"]
        assert "s3cret" not in r.text
        assert runtime.post("/v1/Linear_Model/1", {"data": 10}).json() == {"data": 10}  # loaded: unharmed
    finally:
        shutil.move(bare.with_suffix(".gone"), bare)
    r = runtime.post("/v1/Linear_Model/3", {"data": 1})  # a failed fetch is not remembered
    assert (r.status_code, r.json()) == (200, {"data": 3})


def test_the_runtime_is_not_ready_without_a_version_list(servers, tmp_path):
    runtime = servers.start("runtime", "--fetcher", "http://127.0.0.1:9", "--versions-dir", str(tmp_path),
                            "--branch", "main")
    runtime.wait_listening()
    r = runtime.client.get("/readyz")
    assert r.status_code == 503 and "not answering" in r.text
    r = runtime.post("/v1/Linear_Model/1", {"data": 1})
    assert r.status_code == 503 and "version list of main is not available" in r.json()["error"]


def test_the_fetcher_listens_on_the_loopback_address_only(versions_pod):
    _repo, _shas, fetcher, _runtime, _dest = versions_pod
    listening = Path("/proc/net/tcp").read_text()
    port_hex = f"{fetcher.port:04X}"
    lines = [line.split() for line in listening.splitlines()[1:]]
    local = [f[1] for f in lines if f[1].endswith(":" + port_hex) and f[3] == "0A"]  # 0A: LISTEN
    assert local == ["0100007F:" + port_hex]  # 127.0.0.1 only


def test_a_version_that_crashes_harms_no_other(versions_pod):
    repo, _shas, _fetcher, runtime, _dest = versions_pod
    assert runtime.post("/v1/Linear_Model/1", {"data": 10}).json() == {"data": 10}
    repo.write_deployment("Crash", body="import os\n    if x == 0:\n        os._exit(3)\n    return x * 2")
    repo.commit_push("Crash v1")
    r = wait_for(lambda: (r := runtime.post("/v1/Crash/1", {"data": 4})).status_code == 200 and r,
                 "Crash v1 answering", timeout=60, interval=0.5)
    assert r.json() == {"data": 8}
    r = runtime.post("/v1/Crash/1", {"data": 0})
    assert r.status_code == 503 and "Crash v1" in r.json()["error"] and "exit code 3" in r.json()["error"]
    assert runtime.post("/v1/Linear_Model/1", {"data": 10}).json() == {"data": 10}  # its worker is untouched
