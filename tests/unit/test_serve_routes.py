"""Endpoints, aliases and API keys in `modelrepo serve`: a real git repository, a real serve on loopback.

One repository and one server for the module (the tests run in file order; the last moves an
alias with a commit): Scorer v1 answers 1, v2 answers 2; endpoint `split` sends 9 of 10 calls to
v1 and mirrors every call to Shadow, which appends its argument to a file; alias Scorer/official.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fixtures.runtime_server import Server, commit_all, init_repo, wait_for, write_deployment

KEY = "mk_test_9f2c41d07be3a5"
SCOPED_KEY = "mk_scoped_31aa07c2e9"
SCORER = '''
def Scorer(x):
    return {version}
'''
SHADOW = '''
import os


def Shadow(x):
    if x == 0:
        raise ValueError("the mirror fails on 0")
    with open(os.environ["MODELREPO_TEST_MIRROR_LOG"], "a") as log:
        log.write(f"{x}\\n")
    return "shadow"
'''
SPLIT = """
backends:
  stable: {deployment: {name: Scorer, version: 1}, weight: 9}
  canary: {deployment: {name: Scorer, version: 2}, weight: 1}
mirrors:
  shadow: {deployment: {name: Shadow, version: latest}}
schemaVersion: 1
"""
ALIASES = """
aliases:
  Scorer: {{official: {version}}}
schemaVersion: 1
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_servers) -> tuple[Server, Path, Path]:
    tmp = tmp_path_factory.mktemp("routes")
    repo = init_repo(tmp / "models")
    write_deployment(repo, "Scorer", SCORER.format(version=1), ["x"])
    write_deployment(repo, "Shadow", SHADOW, ["x"])
    commit_all(repo, "Scorer v1, Shadow v1")
    write_deployment(repo, "Scorer", SCORER.format(version=2), ["x"])
    commit_all(repo, "Scorer v2")
    (repo / "endpoints").mkdir()
    (repo / "endpoints" / "split.yaml").write_text(SPLIT)
    (repo / "endpoints" / "aliases.yaml").write_text(ALIASES.format(version=1))
    commit_all(repo, "endpoint split 90/10 with a mirror; Scorer/official is v1")
    keys = tmp / "keys.txt"
    keys.write_text(f"# who may call\n{KEY}\n{SCOPED_KEY}  Shadow\n")
    mirror_log = tmp / "mirror.log"
    server = module_servers.start(
        "serve", str(repo), "--interval", "200ms", "--cache-dir", str(tmp / "cache"),
        env={"MODELREPO_API_KEYS_FILE": str(keys), "MODELREPO_TEST_MIRROR_LOG": str(mirror_log)},
    )
    server.wait_ready()
    return server, repo, mirror_log


def test_v1_routes_need_a_key_which_is_never_printed(served):
    server, _, _ = served
    missing = server.post("/v1/Scorer/latest", {"data": 1})
    assert missing.status_code == 401 and "missing API key" in missing.json()["error"]
    assert server.post("/v1/split/latest", {"data": 1}, headers={"Authorization": "mk_wrong"}).status_code == 401
    scoped = server.post("/v1/Scorer/latest", {"data": 1}, headers={"Authorization": SCOPED_KEY})
    assert scoped.status_code == 401 and "may not call Scorer" in scoped.json()["error"]
    for header in (KEY, f"Bearer {KEY}"):
        answer = server.post("/v1/Scorer/latest", {"data": 1}, headers={"Authorization": header})
        assert answer.status_code == 200 and answer.json() == {"data": 2}
    assert server.post("/v1/Shadow/latest", {"data": 5}, headers={"Authorization": SCOPED_KEY}).json() == {"data": "shadow"}
    assert server.client.get("/readyz").status_code == 200  # not a /v1/ route: no key
    output = server.output()
    assert "1 key(s)" not in output and "2 key(s)" in output
    assert KEY not in output and SCOPED_KEY not in output


def test_an_endpoint_splits_by_weight_and_mirrors_every_call_in_the_background(served):
    server, _, mirror_log = served
    mirror_log.unlink(missing_ok=True)
    auth = {"Authorization": f"Bearer {KEY}"}
    versions: Counter[str] = Counter()
    backends: Counter[str] = Counter()
    calls = 300
    for i in range(1, calls + 1):
        answer = server.post("/v1/split/latest", {"data": i}, headers=auth)
        assert answer.status_code == 200, answer.text
        version = answer.headers["x-modelrepo-version"]
        assert answer.json() == {"data": int(version)}  # the primary's answer, never the mirror's
        versions[version] += 1
        backends[answer.headers["x-modelrepo-backend"]] += 1
    # 90/10 over 300 calls: 270 expected, standard deviation 5.2; bounds at about 6 deviations.
    assert 235 <= versions["1"] <= 298 and versions["1"] + versions["2"] == calls, versions
    assert backends == Counter({"stable": versions["1"], "canary": versions["2"]})
    wait_for(lambda: mirror_log.exists() and len(mirror_log.read_text().splitlines()) == calls,
             f"{calls} mirror copies in {mirror_log}", timeout=60)
    assert sorted(int(x) for x in mirror_log.read_text().split()) == list(range(1, calls + 1))
    # A mirror that fails does not fail the caller; an endpoint answers only at latest.
    assert server.post("/v1/split/latest", {"data": 0}, headers=auth).status_code == 200
    wrong = server.post("/v1/split/1", {"data": 1}, headers=auth)
    assert wrong.status_code == 404 and "/v1/split/latest" in wrong.json()["error"]
    assert "endpoint split -> Scorer/1 90%, Scorer/2 10%, mirror Shadow/latest" in server.output()


def test_an_alias_follows_a_commit_that_moves_it(served):
    server, repo, _ = served
    auth = {"Authorization": KEY}
    first = server.post("/v1/Scorer/official", {"data": 1}, headers=auth)
    assert first.status_code == 200 and first.json() == {"data": 1}
    assert first.headers["x-modelrepo-version"] == "1"
    assert server.post("/v1/Scorer/main/official", {"data": 1}, headers=auth).json() == {"data": 1}
    (repo / "endpoints" / "aliases.yaml").write_text(ALIASES.format(version=2))
    commit_all(repo, "Scorer/official is v2")
    wait_for(lambda: server.post("/v1/Scorer/official", {"data": 1}, headers=auth).json() == {"data": 2},
             "Scorer/official to answer v2 after the commit")
    assert "alias Scorer/official -> 2" in server.output()
    unknown = server.post("/v1/Scorer/unofficial", {"data": 1}, headers=auth)
    assert unknown.status_code == 404
    assert KEY not in server.output()


def test_a_keys_file_that_cannot_be_read_or_holds_no_key_stops_serve_with_a_clear_message(tmp_path):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Scorer", SCORER.format(version=1), ["x"])
    commit_all(repo, "v1")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n")

    def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelrepo.cli", "serve", str(repo), *args],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})

    missing = serve("--api-keys", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "nope.txt" in missing.stderr
    no_key = serve(env={"MODELREPO_API_KEYS_FILE": str(empty)})
    assert no_key.returncode == 2 and "holds no key" in no_key.stderr
    assert "Traceback" not in missing.stderr + no_key.stderr


def test_routes_leave_plain_names_alone_and_resolve_endpoints_and_aliases_per_branch():
    from modelrepo.format.endpoints import parse_files
    from modelrepo.runtime.catalogs.routes import Routes

    routes = Routes(["main", "staging"])
    assert routes.decide("Scorer", None, "official", 0.5) is None  # nothing defined yet
    found, problems = parse_files({"split.yaml": SPLIT, "aliases.yaml": ALIASES.format(version=1)})
    assert problems == []
    routes.update("staging", found)
    assert routes.decide("Scorer", None, "official", 0.5) is None  # main has no aliases
    plain = routes.decide("Scorer", "staging", "3", 0.5).primary  # a name with aliases, a plain ref
    assert (plain.name, plain.branch, plain.ref) == ("Scorer", "staging", "3")
    hop = routes.decide("Scorer", "staging", "official", 0.5).primary
    assert (hop.name, hop.branch, hop.ref) == ("Scorer", "staging", "1")
    low, high = routes.decide("split", "staging", "latest", 0.0), routes.decide("split", "staging", "latest", 0.95)
    assert (low.primary.ref, low.primary.backend, high.primary.ref, high.primary.backend) == ("1", "stable", "2", "canary")
    assert [(m.name, m.ref) for m in low.mirrors] == [("Shadow", "latest")]
