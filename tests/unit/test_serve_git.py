"""`modelrepo serve` over real HTTP against real git repositories: push, revert, broken commits.

Each test commits to a real repository while a real `modelrepo serve` process polls it, and
waits (with a deadline) for what a user would see: the answer changing, lines in the output.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from fixtures.runtime_server import (
    Server,
    Servers,
    commit_all,
    git,
    init_repo,
    wait_for,
    write_deployment,
)

MODEL = '''
def Linear_Model(x):
    """y = FACTOR * x

    >>> Linear_Model(1)
    FACTOR
    """
    return FACTOR * x
'''


def write_model(repo: Path, factor: int) -> None:
    write_deployment(repo, "Linear_Model", MODEL.replace("FACTOR", str(factor)), ["x:int"])


def answer(server: Server, ref: str = "latest", x: int = 10) -> int:
    r = server.post(f"/v1/Linear_Model/{ref}", {"data": x})
    assert r.status_code == 200, r.text
    return r.json()["data"]


class Caller(threading.Thread):
    """Calls /v1/Linear_Model/latest in a loop, recording every answer, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[int, object]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v1/Linear_Model/latest", json={"data": 10})
                    self.answers.append((r.status_code, r.json().get("data")))
                except httpx.HTTPError as exc:
                    self.answers.append((0, repr(exc)))

    def seen(self, value: object) -> bool:
        return any(data == value for _, data in self.answers[-5:])


def start_serve(servers: Servers, source: str, *extra: str) -> Server:
    server = servers.start("serve", source, "--interval", "200ms", "--cache-dir", str(servers.tmp / "cache"), *extra)
    server.wait_ready()
    return server


def test_push_swaps_in_without_a_failed_request_and_revert_rolls_back(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_model(repo, 2)
    v1 = commit_all(repo, "v1: twice")
    server = start_serve(servers, str(repo))
    assert answer(server) == 20
    assert f"Linear_Model v1 ({v1[:7]}) ready in" in server.output()

    caller = Caller(server.url)
    caller.start()
    wait_for(lambda: len(caller.answers) > 5, "the caller to get answers")
    write_model(repo, 3)
    v2 = commit_all(repo, "v2: three times")
    wait_for(lambda: caller.seen(30), "v2's answer through the calling loop")
    caller.stop.set()
    caller.join(30)
    failed = [a for a in caller.answers if a[0] != 200]
    assert failed == [], f"requests failed during the swap: {failed[:5]}"
    values = [data for _, data in caller.answers]
    assert set(values) == {20, 30}
    assert values.index(30) > 0 and 20 not in values[values.index(30):]  # swapped once, no flapping
    assert f"Linear_Model v2 ({v2[:7]}) ready in" in server.output()

    git(repo, "revert", "--no-edit", "HEAD")
    v3 = git(repo, "rev-parse", "HEAD")
    wait_for(lambda: answer(server) == 20, "the revert to serve v1's answer again")
    r = server.post("/v1/Linear_Model/latest", {"data": 10})
    assert r.headers["x-modelrepo-version"] == "3" and r.headers["x-modelrepo-commit"] == v3
    # older versions still answer, by number and by SHA prefix
    assert answer(server, "1") == 20
    assert answer(server, "2") == 30
    assert answer(server, v2[:7]) == 30
    old = server.post("/v1/Linear_Model/2", {"data": 1})
    assert old.headers["x-modelrepo-version"] == "2" and old.headers["x-modelrepo-commit"] == v2
    assert server.post("/v1/Linear_Model/4", {"data": 1}).status_code == 404


def test_broken_commit_leaves_the_old_version_serving_and_says_why(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_model(repo, 2)
    v1 = commit_all(repo, "v1")
    server = start_serve(servers, str(repo))
    source = repo / "deployments" / "Linear_Model" / "source.py"
    source.write_text(source.read_text() + "\ndef broken(:\n")
    v2 = commit_all(repo, "v2: syntax error")
    line = f"Linear_Model v2 ({v2[:7]}) refused: deployments/Linear_Model/source.py"
    wait_for(lambda: line in server.output(), "the refusal in the output")
    assert f"still serving v1 ({v1[:7]})" in server.output()
    assert "SyntaxError" in server.output()
    r = server.post("/v1/Linear_Model/latest", {"data": 10})
    assert r.status_code == 200 and r.json() == {"data": 20}
    assert r.headers["x-modelrepo-version"] == "1"
    ready = server.client.get("/readyz")
    assert ready.status_code == 200
    assert "SyntaxError" in ready.json()["deployments"][0]["reason"]
    explicit = server.post("/v1/Linear_Model/2", {"data": 10})
    assert explicit.status_code == 503 and "SyntaxError" in explicit.json()["error"]

    write_model(repo, 5)  # the fix is a new version and rolls out
    v3 = commit_all(repo, "v3: fixed")
    wait_for(lambda: answer(server) == 50, "the fixed version")
    assert f"Linear_Model v3 ({v3[:7]}) ready in" in server.output()


def test_serves_a_git_url_cloned_into_the_cache(tmp_path, servers):
    work = init_repo(tmp_path / "work")
    write_model(work, 2)
    commit_all(work, "v1")
    bare = tmp_path / "models.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    server = start_serve(servers, f"file://{bare}")
    assert answer(server) == 20
    assert "cloning file://" in server.output()
    write_model(work, 4)
    commit_all(work, "v2")
    git(work, "push", "-q", str(bare), "main")
    wait_for(lambda: answer(server) == 40, "the pushed commit to be served")
    assert list((servers.tmp / "cache" / "serve").glob("*/repo.git/HEAD")), "clone is in the cache directory"


def test_serves_committed_state_not_the_work_tree(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_model(repo, 2)
    commit_all(repo, "v1")
    write_model(repo, 9)  # edited, not committed
    server = start_serve(servers, str(repo))
    assert answer(server) == 20


def test_bad_source_or_branch_is_a_clear_usage_error(tmp_path):
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelrepo.cli", "serve", *args],
                              capture_output=True, text=True, timeout=60)

    not_repo = serve(str(tmp_path))
    assert not_repo.returncode == 2 and "not a git repository" in not_repo.stderr
    repo = init_repo(tmp_path / "models")
    write_model(repo, 2)
    commit_all(repo, "v1")
    no_branch = serve(str(repo), "--branch", "nope")
    assert no_branch.returncode == 2 and "no branch 'nope'" in no_branch.stderr
    bad_interval = serve(str(repo), "--interval", "soon")
    assert bad_interval.returncode == 2 and "--interval" in bad_interval.stderr
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    bad_cache = serve(str(repo), "--cache-dir", str(blocked / "cache"))
    assert bad_cache.returncode == 2, bad_cache.stderr
    assert f"cache directory {blocked / 'cache'}" in bad_cache.stderr and "--cache-dir" in bad_cache.stderr
    for proc in (not_repo, no_branch, bad_interval, bad_cache):
        assert "Traceback" not in proc.stderr


def test_broken_head_at_start_serves_the_newest_version_that_works(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_model(repo, 2)
    v1 = commit_all(repo, "v1")
    source = repo / "deployments" / "Linear_Model" / "source.py"
    source.write_text(source.read_text().replace("return 2 * x", "return 7 * x"))  # docstring test fails
    commit_all(repo, "v2: breaks its own docstring test")
    server = start_serve(servers, str(repo))
    assert answer(server) == 20
    assert f"serving v1 ({v1[:7]}) instead" in server.output()
    assert "docstring test failed" in server.output()


def test_serves_a_repository_made_by_deploy(sample_repo, servers):
    """The SDK's output, served: plain, scikit-learn, versions by number and SHA, batch function."""
    server = start_serve(servers, str(sample_repo.path))
    assert server.post("/v1/Double/latest", {"data": 4}).json() == {"data": 8}
    assert server.post("/v1/Double/latest", {"data": [[1, 4], [2, 5]]}).json() == {"data": [[1, 8], [2, 10]]}
    assert server.post("/v1/Linear_Model/latest", {"data": 2}).json()["data"] == pytest.approx(5.0)
    assert server.post("/v1/Greet/latest", {"data": "Ada"}).json() == {"data": "Hi, Ada!"}
    assert server.post("/v1/Greet/1", {"data": "Ada"}).json() == {"data": "Hello, Ada!"}
    first = sample_repo.commits["Greet"][0]
    assert server.post(f"/v1/Greet/{first[:8]}", {"data": "Ada"}).json() == {"data": "Hello, Ada!"}
    assert server.post("/v1/Batch_Double/latest", {"data": 21}).json() == {"data": 42}
    rows = server.post("/v1/Batch_Double/latest?batch=true", {"data": [[i, i] for i in range(100)]})
    assert rows.json() == {"data": [[i, 2 * i] for i in range(100)]}
