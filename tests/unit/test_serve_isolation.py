"""`modelrepo serve` isolates deployments: real git repositories, real serve processes on loopback.

A neighbour that segfaults, calls os._exit, hangs, crashes at import, or an old version that
crashes at import: the healthy deployment answers every request meanwhile, the bad ones answer
503/504 naming the cause, and a revert fixes things. Also: several branches, the folder as the
working directory, sys.exit() in a function, a port already in use.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fixtures.git_servers import free_port
from fixtures.runtime_server import (
    Server,
    Servers,
    commit_all,
    git,
    init_repo,
    wait_for,
    write_deployment,
)

HEALTHY = '''
def Healthy(x):
    """
    >>> Healthy(1)
    2
    """
    return 2 * x
'''
SEGFAULT = '''
import ctypes


def Segv(x):
    if x == 0:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return x
'''
EXITS = '''
import os


def Exits(x):
    if x == 0:
        os._exit(3)
    return x
'''
HANGS = '''
import time


def Hangs(x):
    if x == 0:
        time.sleep(3600)
    return x
'''
NEIGHBOUR = '''
def Neighbour(x):
    return VALUE
'''
NEIGHBOUR_CRASHES_AT_IMPORT = '''
import ctypes

ctypes.string_at(0)


def Neighbour(x):
    return 0
'''
OLD_CRASHES_AT_IMPORT = '''
import os

with open(MARKER, "a") as f:
    f.write("imported\\n")
os._exit(7)


def Old(x):
    return x
'''
OLD_FIXED = '''
def Old(x):
    return -x
'''


def start_serve(servers: Servers, repo: Path, *extra: str) -> Server:
    server = servers.start("serve", str(repo), "--interval", "200ms", "--cache-dir", str(servers.tmp / "cache"),
                           *extra)
    server.wait_ready()
    return server


class Load(threading.Thread):
    """POSTs to Healthy from a pool of 8 until stopped and at least `minimum` were sent."""

    def __init__(self, url: str, minimum: int = 200) -> None:
        super().__init__(daemon=True)
        self.url, self.minimum = url, minimum
        self.outcomes: list[tuple[int, object]] = []
        self.stop = threading.Event()

    def one(self, client: httpx.Client, i: int) -> tuple[int, object]:
        try:
            r = client.post("/v1/Healthy/latest", json={"data": i})
            return r.status_code, r.json()
        except httpx.HTTPError as exc:
            return 0, repr(exc)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            i = 0
            while not self.stop.is_set() or len(self.outcomes) < self.minimum:
                self.outcomes.extend(pool.map(lambda k: self.one(client, k), range(i, i + 8)))
                i += 8

    def failures(self) -> list[tuple[int, object]]:
        return [(s, body) for s, body in self.outcomes if s != 200]


def test_crashing_hanging_and_exiting_neighbours_harm_no_other(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    marker = tmp_path / "old-imports"
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    write_deployment(repo, "Segv", SEGFAULT, ["x:int"])
    write_deployment(repo, "Exits", EXITS, ["x:int"])
    write_deployment(repo, "Hangs", HANGS, ["x:int"])
    write_deployment(repo, "Neighbour", NEIGHBOUR.replace("VALUE", "1"), ["x:int"])
    write_deployment(repo, "Old", OLD_CRASHES_AT_IMPORT.replace("MARKER", repr(str(marker))), ["x:int"])
    old_v1 = commit_all(repo, "v1 of everything; Old v1 crashes at import")
    write_deployment(repo, "Old", OLD_FIXED, ["x:int"])
    commit_all(repo, "Old v2 fixed")
    server = start_serve(servers, repo)
    segv = git(repo, "log", "-1", "--format=%H", "--", "deployments/Segv")[:7]
    exits = git(repo, "log", "-1", "--format=%H", "--", "deployments/Exits")[:7]
    hangs = git(repo, "log", "-1", "--format=%H", "--", "deployments/Hangs")[:7]

    load = Load(server.url)
    load.start()
    wait_for(lambda: len(load.outcomes) >= 16, "the load on Healthy to get answers")

    # a function that segfaults, one that calls os._exit: 503 naming the version and the cause
    r = server.post("/v1/Segv/latest", {"data": 0})
    assert r.status_code == 503
    assert r.json()["error"].startswith(f"Segv v1 ({segv}) crashed: exit code -11 (SIGSEGV) while answering")
    r = server.post("/v1/Exits/latest", {"data": 0})
    assert r.status_code == 503
    assert r.json()["error"].startswith(f"Exits v1 ({exits}) crashed: exit code 3 while answering")
    # a function that hangs: 504, its worker killed and restarted
    r = server.post("/v1/Hangs/latest", {"data": 0, "timeout_seconds": 1})
    assert r.status_code == 504 and "did not answer within 1s" in r.json()["error"]
    # an old version that crashes at import: 503, remembered (not loaded again on the next request)
    for _ in range(2):
        r = server.post("/v1/Old/1", {"data": 5})
        assert r.status_code == 503
        assert f"Old v1 ({old_v1[:7]}) cannot be served" in r.json()["error"]
        assert "crashed at import: exit code 7" in r.json()["error"]
    assert marker.read_text() == "imported\n"
    assert server.post("/v1/Old/latest", {"data": 5}).json() == {"data": -5}
    # a new version that crashes at import: refused, the old one keeps serving
    write_deployment(repo, "Neighbour", NEIGHBOUR_CRASHES_AT_IMPORT, ["x:int"])
    bad = commit_all(repo, "Neighbour v2 segfaults at import")
    refusal = f"Neighbour v2 ({bad[:7]}) refused: deployments/Neighbour/source.py: crashed at import: " \
              "exit code -11 (SIGSEGV)"
    wait_for(lambda: refusal in server.output(), "the refusal naming the crash")
    assert server.post("/v1/Neighbour/latest", {"data": 0}).json() == {"data": 1}
    reasons = {d["name"]: d.get("reason", "") for d in server.client.get("/readyz").json()["deployments"]}
    assert "crashed at import" in reasons["Neighbour"]

    # the crashed and the hung ones come back on their own
    wait_for(lambda: f"Segv v1 ({segv}) restarted" in server.output(), "Segv's worker to restart")
    wait_for(lambda: server.post("/v1/Segv/latest", {"data": 4}).status_code == 200, "Segv to answer again")
    wait_for(lambda: server.post("/v1/Exits/latest", {"data": 4}).status_code == 200, "Exits to answer again")
    wait_for(lambda: server.post("/v1/Hangs/latest", {"data": 4}).status_code == 200, "Hangs to answer again")
    assert f"Hangs v1 ({hangs}) did not answer within 1s; its worker was killed" in server.output()
    assert f"Segv v1 ({segv}) crashed: exit code -11 (SIGSEGV) while answering" in server.output()

    git(repo, "revert", "--no-edit", "HEAD")  # the revert fixes the neighbour
    wait_for(lambda: server.post("/v1/Neighbour/latest", {"data": 0}).json() == {"data": 1}
             and "Neighbour v3" in server.output(), "the revert to be served")

    load.stop.set()
    load.join(120)
    assert len(load.outcomes) >= 200
    assert load.failures() == [], f"{len(load.failures())} failed requests on Healthy: {load.failures()[:3]}"
    assert {body["data"] for _, body in load.outcomes} <= {2 * i for i in range(len(load.outcomes) + 8)}


def test_a_version_that_hangs_at_import_is_refused_in_bounded_time_and_a_revert_is_picked_up(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "v1")
    server = start_serve(servers, repo, "--load-timeout", "3s")
    source = repo / "deployments" / "Healthy" / "source.py"
    source.write_text("import time\ntime.sleep(3600)\n" + source.read_text())
    hung = commit_all(repo, "v2 hangs at import")
    line = f"Healthy v2 ({hung[:7]}) refused: deployments/Healthy/source.py: loading did not finish within 3s"
    wait_for(lambda: line in server.output(), "the hanging version to be refused")
    assert server.post("/v1/Healthy/latest", {"data": 5}).json() == {"data": 10}
    assert "did not finish" in server.client.get("/readyz").json()["deployments"][0]["reason"]
    git(repo, "revert", "--no-edit", "HEAD")
    wait_for(lambda: "Healthy v3 (" in server.output() and
             server.post("/v1/Healthy/latest", {"data": 5}).headers["x-modelrepo-version"] == "3",
             "the revert to be served after the hang")


APP_SOURCE = '''
from app.db import Query


def NAME(x):
    """
    >>> NAME("?")
    'WHO:MODEL?'
    """
    with open("model.txt") as f:
        return Query().who + ":" + f.read().strip() + x
'''


def write_app_deployment(repo: Path, name: str, who: str, model: str) -> Path:
    folder = write_deployment(repo, name, APP_SOURCE.replace("NAME", name).replace("WHO", who)
                              .replace("MODEL", model), ["x:str"])
    (folder / "app").mkdir()
    (folder / "app" / "__init__.py").write_text("")
    (folder / "app" / "db.py").write_text(f"class Query:\n    who = {who!r}\n")
    (folder / "model.txt").write_text(model + "\n")
    return folder


def test_the_folder_is_the_working_directory_and_on_sys_path_per_deployment(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    first = write_app_deployment(repo, "First", "alpha", "m1")
    write_app_deployment(repo, "Second", "beta", "m2")
    commit_all(repo, "two deployments with their own app/ package and model.txt")
    server = start_serve(servers, repo)
    for _ in range(3):  # interleaved: neither sees the other's modules or files
        assert server.post("/v1/First/latest", {"data": "!"}).json() == {"data": "alpha:m1!"}
        assert server.post("/v1/Second/latest", {"data": "!"}).json() == {"data": "beta:m2!"}
    pod = servers.start("runtime", "--dir", str(first), "--name", "First")
    pod.wait_ready()
    assert pod.post("/v1/First/latest", {"data": "!"}).json() == {"data": "alpha:m1!"}
    gate = subprocess.run([sys.executable, "-m", "modelrepo.doctest_gate", str(first)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert 'modelrepo-doctest-gate:{"error": null, "failures": []}' in gate.stdout, gate.stdout + gate.stderr


def test_several_branches_with_branch_routes_and_shas_across_branches(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "main")
    for branch, factor in (("staging", 3), ("feature/x", 4)):
        git(repo, "checkout", "-q", "-b", branch, "main")
        write_deployment(repo, "Healthy", HEALTHY.replace("2 * x", f"{factor} * x").replace("    2\n", f"    {factor}\n"),
                         ["x:int"])
        commit_all(repo, branch)
    staging = git(repo, "rev-parse", "staging")
    git(repo, "checkout", "-q", "main")
    server = start_serve(servers, repo, "--branch", "main", "--branch", "staging", "--branch", "feature/x")
    assert server.post("/v1/Healthy/latest", {"data": 10}).json() == {"data": 20}
    assert server.post("/v1/Healthy/main/latest", {"data": 10}).json() == {"data": 20}
    assert server.post("/v1/Healthy/staging/latest", {"data": 10}).json() == {"data": 30}
    assert server.post("/v1/Healthy/feature~x/latest", {"data": 10}).json() == {"data": 40}
    by_sha = server.post(f"/v1/Healthy/{staging[:8]}", {"data": 10})  # a staging SHA on the default route
    assert by_sha.json() == {"data": 30} and by_sha.headers["x-modelrepo-commit"] == staging
    unknown = server.post("/v1/Healthy/dev/latest", {"data": 10})
    assert unknown.status_code == 404 and "served: main, staging, feature/x" in unknown.json()["error"]
    ready = server.client.get("/readyz").json()
    assert [b["branch"] for b in ready["branches"]] == ["main", "staging", "feature/x"]
    assert all(b["ready"] for b in ready["branches"])

    every = start_serve(servers, repo, "--all-branches")  # main first (the default route), then the rest
    assert [b["branch"] for b in every.client.get("/readyz").json()["branches"]] == ["main", "feature/x", "staging"]
    assert every.post("/v1/Healthy/latest", {"data": 10}).json() == {"data": 20}
    assert every.post("/v1/Healthy/feature~x/latest", {"data": 10}).json() == {"data": 40}


def test_a_missing_branch_lists_the_branches_found(tmp_path):
    repo = init_repo(tmp_path / "models")
    git(repo, "checkout", "-q", "-b", "master")
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "v1")
    git(repo, "branch", "dev")
    proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "serve", str(repo)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"no branch 'main' in {repo}; branches: dev, master" in proc.stderr
    assert "Traceback" not in proc.stderr


QUITS = '''
import sys


def Quits(x):
    sys.exit(3)
'''


def test_sys_exit_in_a_function_is_a_json_500(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    folder = write_deployment(repo, "Quits", QUITS, ["x:int"])
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "v1")
    pod = servers.start("runtime", "--dir", str(folder), "--name", "Quits")
    serve = start_serve(servers, repo)
    pod.wait_ready()
    for server in (pod, serve):
        for _ in range(2):
            r = server.post("/v1/Quits/latest", {"data": 1})
            assert (r.status_code, r.json()) == (500, {"error": "SystemExit: 3"})
    assert serve.post("/v1/Healthy/latest", {"data": 1}).json() == {"data": 2}


def test_a_port_in_use_is_a_one_line_error(tmp_path):
    repo = init_repo(tmp_path / "models")
    folder = write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "v1")
    port = free_port("127.0.0.1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        for args in (["runtime", "--dir", str(folder), "--host", "127.0.0.1"], ["serve", str(repo)]):
            proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", *args, "--port", str(port)],
                                  capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.strip() == f"modelrepo: cannot listen on 127.0.0.1:{port}: already in use " \
                                          "(choose another with --port)"


HOG = '''
def Hog(x):
    if x == 0:
        kept = [bytearray(100 * 1024 * 1024) for _ in range(30)]  # 3 GiB, over the 1 GiB limit
        return len(kept)
    return x
'''


def test_a_memory_blow_up_stays_in_its_worker(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Hog", HOG, ["x:int"])
    write_deployment(repo, "Healthy", HEALTHY, ["x:int"])
    commit_all(repo, "v1")
    server = start_serve(servers, repo, "--memory-limit", "1G")
    r = server.post("/v1/Hog/latest", {"data": 0})
    assert (r.status_code, r.json()) == (500, {"error": "MemoryError"})
    assert server.post("/v1/Hog/latest", {"data": 7}).json() == {"data": 7}
    assert server.post("/v1/Healthy/latest", {"data": 1}).json() == {"data": 2}


SCORE = '''
import pandas as pd


def Score(df):
    """
    >>> Score(pd.DataFrame({"a": [1.0], "b": [2.0]})).tolist()
    [5.0]
    """
    return df["a"] + 2 * df["b"].fillna(0)
'''
WAITS = '''
import asyncio


async def Waits(x):
    await asyncio.sleep(0)
    return [x, "done"]
'''


def test_dataframe_and_async_functions_answer_through_their_worker(tmp_path, servers):
    repo = init_repo(tmp_path / "models")
    score = write_deployment(repo, "Score", SCORE, ["df:DataFrame", "return:list"])
    meta = (score / "metadata.yaml").read_text()
    (score / "metadata.yaml").write_text(meta.replace("runtimeInfo:\n", "runtimeInfo:\n  dataframeModeColumns: [a, b]\n"))
    write_deployment(repo, "Waits", WAITS, ["x:int"])
    commit_all(repo, "v1")
    server = start_serve(servers, repo)
    rows = server.post("/v1/Score/latest", {"data": [["x", {"a": 1, "b": 2}], [7, {"b": 1, "a": 0}], [8, {"a": 4}]]})
    assert rows.status_code == 200 and rows.json() == {"data": [["x", 5.0], [7, 2.0], [8, 4.0]]}
    assert server.post("/v1/Waits/latest", {"data": 3}).json() == {"data": [3, "done"]}
