"""`modelrepo runtime --dir` over real HTTP: every row of the docs/runtime.md table, batches, headers.

Each server is a real `modelrepo runtime` process (BentoML underneath) on loopback, serving a
deployment folder written by hand in the docs/repo-format.md format inside a real git repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.runtime_server import Servers, commit_all, git, init_repo, wait_for, write_deployment

LINEAR = '''
def Linear_Model(x):
    """y = 2x.

    >>> Linear_Model(4)
    8.0
    """
    if x < 0:
        raise ValueError("x must be >= 0")
    return 2.0 * x
'''

ADD = '''
import time


def Add(a, b):
    """a + b; sleeps when a is 999 (to show the timeout).

    >>> Add(1, 2)
    3
    """
    if a == 999:
        time.sleep(30)
    return a + b
'''

STATS = '''
import numpy as np
import pandas as pd


def Stats(rows):
    """Numbers about a table given as a list of rows.

    >>> int(Stats([[1, 2]])["count"])
    1
    """
    arr = np.array(rows, dtype=float)
    return {
        "count": np.int64(len(arr)),
        "mean": arr.mean(axis=0),
        "first": pd.DataFrame(arr[:1], columns=[f"c{i}" for i in range(arr.shape[1])]),
        "missing": float("nan"),
        "scale": np.float32(0.5),
    }
'''

BAD_DOCTEST = '''
def Bad(x):
    """
    >>> Bad(2)
    5
    """
    return x + 1
'''

BATCH = '''
CALLS = []


def Twice(xs):
    """Takes a list, returns a list (runtimeInfo.batch).

    >>> Twice([1, 2])
    [2, 4]
    """
    CALLS.append(len(xs))
    if any(x < 0 for x in xs):
        raise ValueError("negative input")
    return [2 * x for x in xs]


def calls():
    return CALLS
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A git repo: Linear_Model at v2, and the other folders at v1."""
    root = init_repo(tmp_path_factory.mktemp("runtime") / "models")
    write_deployment(root, "Linear_Model", LINEAR.replace("2.0 * x", "2 * x"), ["x:float"])
    v1 = commit_all(root, "Linear_Model v1")
    write_deployment(root, "Linear_Model", LINEAR, ["x:float"])
    write_deployment(root, "Add", ADD, ["a:int", "b:int"], deployment={"timeoutSeconds": 1})
    write_deployment(root, "Stats", STATS, ["rows:list"])
    write_deployment(root, "Bad", BAD_DOCTEST, ["x:int"])
    write_deployment(root, "Twice", BATCH, ["x:float"], batch=True)
    v2 = commit_all(root, "Linear_Model v2 and friends")
    return {"root": root, "v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def started(repo: dict[str, object], module_servers: Servers) -> dict[str, object]:
    """All servers start together (startup is the slow part), then each test waits for its own."""
    root: Path = repo["root"]  # type: ignore[assignment]
    names = ["Linear_Model", "Add", "Stats", "Bad", "Twice"]
    extra = {"Linear_Model": ["--max-body-bytes", "2000"]}
    return {
        name: module_servers.start("runtime", "--dir", str(root / "deployments" / name), *extra.get(name, []))
        for name in names
    }


@pytest.fixture(scope="module")
def linear(started):
    started["Linear_Model"].wait_ready()
    return started["Linear_Model"]


def test_single_request_answers_data_with_both_headers(linear, repo):
    r = linear.post("/v1/Linear_Model/latest", {"data": 4})
    assert r.status_code == 200
    assert r.json() == {"data": 8.0}
    assert r.headers["x-modelrepo-commit"] == repo["v2"]
    assert r.headers["x-modelrepo-version"] == "2"


def test_version_routes_by_number_and_sha_prefix(linear, repo):
    assert linear.post("/v1/Linear_Model/2", {"data": 1}).json() == {"data": 2.0}
    assert linear.post(f"/v1/Linear_Model/{repo['v2'][:7]}", {"data": 1}).json() == {"data": 2.0}
    assert linear.post(f"/v1/Linear_Model/{repo['v2']}", {"data": 1}).status_code == 200
    # this pod serves v2 only: v1, by number or SHA, is not here
    for ref in ("1", repo["v1"][:7]):
        r = linear.post(f"/v1/Linear_Model/{ref}", {"data": 1})
        assert r.status_code == 404
        assert "no version" in r.json()["error"]


def test_batch_answers_in_request_order_and_isolates_a_failing_row(linear):
    r = linear.post("/v1/Linear_Model/latest", {"data": [[3, 1], [1, -5], [2, 2.5], ["x", 0]]})
    assert r.status_code == 200
    assert r.json() == {
        "data": [[3, 2.0], [1, None], [2, 5.0], ["x", 0.0]],
        "errors": [{"id": 1, "error": "ValueError: x must be >= 0"}],
    }


def test_explicit_batch_flag(linear):
    assert linear.post("/v1/Linear_Model/latest?batch=true", {"data": [[1, 1]]}).json() == {"data": [[1, 2.0]]}
    r = linear.post("/v1/Linear_Model/latest?batch=false", {"data": [[1, 1]]})
    assert r.status_code == 500  # one call with a list: the function itself fails
    assert r.json()["error"].startswith("TypeError")
    bad = linear.post("/v1/Linear_Model/latest?batch=maybe", {"data": 1})
    assert bad.status_code == 400 and "batch" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", '{"data"'),
        (b'{"input": 1}', 'no "data"'),
        (b'{"data": [[1]]}?', "not valid JSON"),
    ],
)
def test_bad_json_or_shape_is_400(linear, body, says):
    r = linear.post("/v1/Linear_Model/latest", content=body)
    assert r.status_code == 400
    assert says in r.json()["error"]
    assert "Traceback" not in r.text
    assert r.headers["x-modelrepo-version"] == "2"


def test_batch_row_of_wrong_shape_is_400_naming_the_row(linear):
    r = linear.post("/v1/Linear_Model/latest?batch=true", {"data": [[1, 2], [2, 3, 4]]})
    assert r.status_code == 400
    assert '"data"[1]' in r.json()["error"]


def test_unknown_deployment_and_route_are_404(linear):
    for path in ("/v1/Nope/latest", "/v1/Linear_Model/99", "/v2/whatever"):
        r = linear.post(path, {"data": 1})
        assert r.status_code == 404, path
        assert r.json()["error"]
        assert "x-modelrepo-commit" in r.headers


def test_body_over_the_limit_is_413(linear):
    r = linear.post("/v1/Linear_Model/latest", {"data": [[i, 1] for i in range(500)]})
    assert r.status_code == 413
    assert "limit of 2000 bytes" in r.json()["error"]
    assert linear.post("/v1/Linear_Model/latest", {"data": 1}).status_code == 200  # still serving


def test_function_raising_is_500_with_type_and_message_and_no_traceback(linear):
    r = linear.post("/v1/Linear_Model/latest", {"data": -1})
    assert r.status_code == 500
    assert r.json() == {"error": "ValueError: x must be >= 0"}
    wait_for(lambda: "Traceback" in linear.output(), "the traceback in the server log")


def test_livez_readyz_metrics_and_openapi(linear):
    live = linear.client.get("/livez")
    assert live.status_code == 200 and live.headers["x-modelrepo-version"] == "2"
    ready = linear.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = linear.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'modelrepo_requests_total{deployment="Linear_Model",status="200",version="2"}' in metrics.text
    spec = linear.client.get("/docs.json").json()
    assert "/v1/{name}/{version}" in spec["paths"] and "/v1/{name}/{branch}/{version}" in spec["paths"]
    assert linear.client.get("/").status_code == 200


def test_method_other_than_post_is_405(linear):
    r = linear.client.get("/v1/Linear_Model/latest")
    assert r.status_code == 405 and r.json()["error"]


def test_several_arguments_as_list_or_by_name_and_in_batch(started):
    add = started["Add"]
    add.wait_ready()
    assert add.post("/v1/Add/latest", {"data": [2, 3]}).json() == {"data": 5}
    assert add.post("/v1/Add/latest", {"data": {"b": 3, "a": 10}}).json() == {"data": 13}
    assert add.post("/v1/Add/latest", {"data": [[1, 1, 2], [2, 10, 20]]}).json() == {"data": [[1, 3], [2, 30]]}
    wrong = add.post("/v1/Add/latest", {"data": [1, 2, 3]})
    assert wrong.status_code == 400 and "takes 2 arguments (a, b)" in wrong.json()["error"]


def test_request_over_timeout_seconds_is_504_and_server_keeps_serving(started):
    add = started["Add"]
    add.wait_ready()
    r = add.post("/v1/Add/latest", {"data": [999, 1]})
    assert r.status_code == 504
    assert "within 1s" in r.json()["error"]
    assert add.post("/v1/Add/latest", {"data": [1, 1]}).json() == {"data": 2}


def test_numpy_and_pandas_results_become_json(started):
    stats = started["Stats"]
    stats.wait_ready()
    # Rows of two items would be a batch by Modelbit's rule: ?batch=false makes it one call.
    r = stats.post("/v1/Stats/latest?batch=false", {"data": [[1, 2], [3, 4]]})
    assert r.status_code == 200
    assert r.json() == {"data": {"count": 2, "mean": [2.0, 3.0], "first": [{"c0": 1.0, "c1": 2.0}],
                                 "missing": None, "scale": 0.5}}
    batch = stats.post("/v1/Stats/latest?batch=true", {"data": [[7, [[1, 1]]], [8, [[2, 2], [4, 4]]]]})
    assert [row[1]["count"] for row in batch.json()["data"]] == [1, 2]


def test_failing_docstring_test_holds_readiness_back_with_the_reason(started):
    bad = started["Bad"]
    bad.wait_listening()
    ready = wait_for(lambda: (r := bad.client.get("/readyz")).status_code == 503 and "docstring" in r.text and r,
                     "/readyz to give the doctest failure")
    assert ready.json()["ready"] is False
    assert "Bad(2)" in ready.json()["error"] and "expected '5', got '3'" in ready.json()["error"]
    r = bad.post("/v1/Bad/latest", {"data": 2})
    assert r.status_code == 503 and "docstring test failed" in r.json()["error"]
    assert "docstring test failed" in bad.output()


def test_batch_function_gets_whole_batches_and_isolates_failing_rows(started):
    twice = started["Twice"]
    twice.wait_ready()
    assert twice.post("/v1/Twice/latest", {"data": 21}).json() == {"data": 42}
    rows = [[i, float(i)] for i in range(1000)]
    r = twice.post("/v1/Twice/latest", {"data": rows})
    assert r.json() == {"data": [[i, 2.0 * i] for i in range(1000)]}
    mixed = twice.post("/v1/Twice/latest", {"data": [[1, 1], [2, -1], [3, 3]]}).json()
    assert mixed["data"] == [[1, 2], [2, None], [3, 6]]
    assert mixed["errors"] == [{"id": 2, "error": "ValueError: negative input"}]


def test_commit_and_version_come_from_environment(repo, servers):
    root: Path = repo["root"]  # type: ignore[assignment]
    server = servers.start("runtime", "--dir", str(root / "deployments" / "Linear_Model"), "--name", "Renamed",
                           env={"MODELREPO_COMMIT": "0123456789abcdef0123456789abcdef01234567",
                                "MODELREPO_VERSION": "7"})
    server.wait_ready()
    r = server.post("/v1/Renamed/7", {"data": 1})
    assert r.status_code == 200
    assert r.headers["x-modelrepo-commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert r.headers["x-modelrepo-version"] == "7"
    assert server.post("/v1/Renamed/0123456", {"data": 1}).status_code == 200
    assert git(root, "rev-parse", "HEAD") == repo["v2"]
