"""The gateway over real HTTP in front of real `modelrepo runtime` processes on loopback."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fixtures.runtime_server import Servers, wait_for, write_deployment

pytestmark = pytest.mark.slow

OLD, NEW = "1" * 40, "2" * 40
KEY = "mk_test_0123456789abcdef"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, module_servers: Servers) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("gateway")
    seen = tmp / "mirror-calls.log"
    runtimes = {}
    for label, version, commit, source in [
        ("old", 1, OLD, "def M(x):\n    return f'v1:{x}'\n"),
        ("new", 2, NEW, "def M(x):\n    return f'v2:{x}'\n"),
        ("shadow", 1, "3" * 40,
         f"def Shadow(x):\n    with open({str(seen)!r}, 'a') as f:\n        f.write(f'{{x}}\\n')\n    return 'shadow'\n"),
    ]:
        name = "Shadow" if label == "shadow" else "M"
        folder = write_deployment(tmp / label, name, source, ["x:int", "return:str"])
        runtimes[label] = module_servers.start(
            "runtime", "--dir", str(folder), "--name", name, "--version", str(version), "--commit", commit,
            env={"MODELREPO_BRANCH": "main"})
    config = tmp / "gateway.json"
    write_config(config, runtimes, alias="1")
    keys = tmp / "keys.txt"
    keys.write_text(f"{KEY}\nmk_only_m M\n")
    gateway = module_servers.start("gateway", "--config", str(config), "--api-keys", str(keys),
                                   "--host", "127.0.0.1", "--reload-interval", "0.2")
    for server in [*runtimes.values(), gateway]:
        server.wait_ready()
    gateway.client.headers["Authorization"] = f"Bearer {KEY}"
    return {"gateway": gateway, "runtimes": runtimes, "config": config, "seen": seen}


def write_config(path: Path, runtimes: dict, alias: str) -> None:
    upstream = lambda label, name, version, commit, latest: {  # noqa: E731
        "name": name, "branch": "main", "url": runtimes[label].url, "version": version, "commit": commit, "latest": latest}
    document = {
        "branches": ["main"],
        "upstreams": [upstream("new", "M", 2, NEW, True), upstream("old", "M", 1, OLD, False),
                      upstream("shadow", "Shadow", 1, "3" * 40, True)],
        "definitions": {"main": {
            "endpoints": {"split": {
                "backends": {"stable": {"deployment": {"name": "M", "version": 1}, "weight": 90},
                             "canary": {"deployment": {"name": "M", "version": "latest"}, "weight": 10}},
                "mirrors": {"shadow": {"deployment": {"name": "Shadow", "version": "latest"}}}}},
            "aliases": {"M": {"official": alias}}}},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)  # atomic, as Kubernetes swaps a mounted ConfigMap


def test_versions_branches_and_aliases_answer_with_their_headers(setup):
    gateway = setup["gateway"]
    for path, data, version in [("/v1/M/latest", "v2:5", "2"), ("/v1/M/1", "v1:5", "1"),
                                (f"/v1/M/{OLD[:8]}", "v1:5", "1"), ("/v1/M/main/2", "v2:5", "2"),
                                ("/v1/M/official", "v1:5", "1")]:
        answer = gateway.post(path, {"data": 5})
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"data": data} and answer.headers["x-modelrepo-version"] == version, path
    missing = gateway.post("/v1/M/9", {"data": 5})
    assert missing.status_code == 404
    assert missing.json() == {"error": "M has no version or alias 9 on branch main (running: 1, 2)"}
    # the runtime's own errors come through unchanged
    assert gateway.post("/v1/M/latest", content=b"{").status_code == 400


def test_a_90_10_split_over_1000_requests(setup):
    gateway = setup["gateway"]
    versions = Counter()
    for i in range(1000):
        answer = gateway.post("/v1/split/latest", {"data": i})
        assert answer.status_code == 200
        versions[answer.headers["x-modelrepo-version"]] += 1
        assert answer.headers["x-modelrepo-backend"] == {"1": "stable", "2": "canary"}[answer.headers["x-modelrepo-version"]]
    # Binomial(1000, 0.1): mean 100, standard deviation 9.5; 5 deviations either side
    assert 52 <= versions["2"] <= 148 and versions["1"] + versions["2"] == 1000, versions


def test_the_mirror_gets_copies_and_the_caller_only_the_primarys_answers(setup):
    gateway, seen = setup["gateway"], setup["seen"]
    answers = {gateway.post("/v1/split/latest", {"data": 100000 + i}).json()["data"][:3] for i in range(20)}
    assert answers <= {"v1:", "v2:"}  # never the mirror's "shadow"
    wanted = {str(100000 + i) for i in range(20)}
    wait_for(lambda: wanted <= set(seen.read_text().split()) if seen.exists() else False,
             "the mirror to receive all 20 copies", timeout=30)


def test_api_keys_401_without_or_with_a_wrong_key_200_with_one(setup):
    url = setup["gateway"].url
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        missing = anonymous.post("/v1/M/latest", json={"data": 1})
        assert missing.status_code == 401 and missing.json() == {"error": "missing API key: send it as the Authorization header"}
        wrong = anonymous.post("/v1/M/latest", json={"data": 1}, headers={"Authorization": "mk_nope"})
        assert wrong.status_code == 401 and "mk_nope" not in wrong.text
        assert anonymous.post("/v1/M/latest", json={"data": 1}, headers={"Authorization": KEY}).json() == {"data": "v2:1"}
        scoped = {"Authorization": "mk_only_m"}
        assert anonymous.post("/v1/M/latest", json={"data": 1}, headers=scoped).status_code == 200
        assert anonymous.post("/v1/split/latest", json={"data": 1}, headers=scoped).json() == {
            "error": "this API key may not call split"}
    log = setup["gateway"].output()
    assert "mk_nope" not in log and KEY not in log and "ERROR" not in log


def test_moving_an_alias_changes_routing_without_a_restart(setup):
    gateway, runtimes, config = setup["gateway"], setup["runtimes"], setup["config"]
    assert gateway.post("/v1/M/official", {"data": 1}).json() == {"data": "v1:1"}
    write_config(config, runtimes, alias="2")
    wait_for(lambda: gateway.post("/v1/M/official", {"data": 1}).json() == {"data": "v2:1"},
             "the alias to move to version 2", timeout=30)
    config.write_text("{ not json")  # a broken table keeps the last good one serving
    wait_for(lambda: "routing table not reloaded" in gateway.output(), "the reload error in the log", timeout=30)
    assert gateway.post("/v1/M/official", {"data": 1}).json() == {"data": "v2:1"}
    write_config(config, runtimes, alias="1")
    wait_for(lambda: gateway.post("/v1/M/official", {"data": 1}).json() == {"data": "v1:1"},
             "the alias to move back", timeout=30)
