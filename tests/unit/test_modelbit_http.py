"""Modelbit's request shapes over real HTTP, against real `modelrepo runtime` processes on loopback:
the article's untyped function in batch, DataFrame rows, the branch URL of Modelbit's client,
refused keys, and our own client (`modelrepo.get_inference`, `modelrepo call`) replaying what
Modelbit's client sends (its URL, its batch chunks, its DataFrame rows, its `{"error": ...}`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures.runtime_server import Servers, commit_all, init_repo, write_deployment

import modelrepo
from modelrepo.client import InferenceError, get_inference

# The article's function, untyped, with the Modelbit metadata shape (`return:` entry).
LINEAR = '''
def Linear_Model(input_x):
    """
    >>> Linear_Model(5)
    11.0
    """
    return 2 * float(input_x) + 1
'''

SCORE = '''
import pandas as pd


def Score(df):
    """One score per row of a DataFrame with columns a and b.

    >>> Score(pd.DataFrame({"a": [1.0], "b": [2.0]})).tolist()
    [5.0]
    """
    return df["a"] + 2 * df["b"].fillna(0)
'''


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, module_servers: Servers) -> dict[str, object]:
    root = init_repo(tmp_path_factory.mktemp("modelbit") / "models")
    write_deployment(root, "Linear_Model", LINEAR, ["input_x:Any", "return:float"])
    score = write_deployment(root, "Score", SCORE, ["df:DataFrame", "return:list"])
    meta = yaml.safe_load((score / "metadata.yaml").read_text())
    meta["runtimeInfo"]["dataframeModeColumns"] = ["a", "b"]
    (score / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    commit_all(root, "the article's function and a DataFrame deployment")
    deployments = root / "deployments"
    started = {
        "linear": module_servers.start("runtime", "--dir", str(deployments / "Linear_Model"),
                                       "--branch", "feature/x", "--max-body-bytes", "2000"),
        "score": module_servers.start("runtime", "--dir", str(deployments / "Score"), env={"MODELREPO_BRANCH": ""}),
    }
    for server in started.values():
        server.wait_ready()
    return started


def test_the_articles_untyped_function_answers_a_batch(servers):
    linear = servers["linear"]
    r = linear.post("/v1/Linear_Model/latest", {"data": [[1, 5], [2, 6]]})
    assert r.status_code == 200 and r.json() == {"data": [[1, 11.0], [2, 13.0]]}
    assert linear.post("/v1/Linear_Model/latest", {"data": 5}).json() == {"data": 11.0}
    forced = linear.post("/v1/Linear_Model/latest?batch=false", {"data": [[1, 5]]})
    assert forced.status_code == 500 and forced.json()["error"].startswith("TypeError")


def test_modelbit_client_url_with_branch(servers):
    linear = servers["linear"]
    assert linear.post("/v1/Linear_Model/feature~x/latest", {"data": 1}).json() == {"data": 3.0}
    assert linear.post("/v1/Linear_Model/feature~x/1", {"data": 1}).json() == {"data": 3.0}
    other = linear.post("/v1/Linear_Model/main/latest", {"data": 1})
    assert other.status_code == 404
    assert other.json() == {"error": "Linear_Model is served here from branch feature/x, not main"}
    # a runtime that does not know its branch accepts any branch in the URL
    assert servers["score"].post("/v1/Score/main/latest", {"data": {"a": 1, "b": 1}}).json() == {"data": 3.0}


def test_dataframe_rows_are_one_call_answered_per_id(servers):
    score = servers["score"]
    r = score.post("/v1/Score/latest", {"data": [["x", {"a": 1, "b": 2}], [7, {"b": 1, "a": 0}], [8, {"a": 4}]]})
    assert r.status_code == 200 and r.json() == {"data": [["x", 5.0], [7, 2.0], [8, 4.0]]}
    unknown = score.post("/v1/Score/latest", {"data": [[1, {"a": 1, "c": 2}]]})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unknown column c; this deployment's columns are a, b"


def test_unsupported_keys_are_400_and_timeout_seconds_is_checked(servers):
    linear = servers["linear"]
    links = linear.post("/v1/Linear_Model/latest", {"data": 1, "response_format": "links"})
    assert links.status_code == 400 and '"response_format"' in links.json()["error"]
    hook = linear.post("/v1/Linear_Model/latest", {"data": 1, "response_webhook": "http://127.0.0.1:9/"})
    assert hook.status_code == 400 and '"response_webhook"' in hook.json()["error"]
    bad = linear.post("/v1/Linear_Model/latest", {"data": 1, "timeout_seconds": -1})
    assert bad.status_code == 400 and "timeout_seconds" in bad.json()["error"]
    assert linear.post("/v1/Linear_Model/latest", {"data": 1, "timeout_seconds": 5}).json() == {"data": 3.0}


def test_client_single_batch_branch_and_errors(servers):
    url = servers["linear"].url
    assert modelrepo.get_inference(url, "Linear_Model", 5) == {"data": 11.0}
    assert get_inference(url, "Linear_Model", [[1, 5], [2, 6]], branch="feature/x") == {"data": [[1, 11.0], [2, 13.0]]}
    with pytest.raises(modelrepo.InferenceError) as raised:
        get_inference(url, "Linear_Model", "abc")
    assert raised.value.status == 500
    assert raised.value.message == "ValueError: could not convert string to float: 'abc'"
    with pytest.raises(InferenceError, match="served here from branch feature/x, not main") as other:
        get_inference(url, "Linear_Model", 1, branch="main")
    assert other.value.status == 404
    with pytest.raises(InferenceError, match="no version 9"):
        get_inference(url, "Linear_Model", 1, version=9)


def test_client_sends_large_batches_in_chunks_and_reassembles_them_in_order(servers):
    linear = servers["linear"]  # its body limit is 2000 bytes
    rows = [[f"row-{i}", i] for i in range(200)]  # about 3,000 bytes as one body
    whole = linear.post("/v1/Linear_Model/latest", {"data": rows})
    assert whole.status_code == 413  # so one request cannot carry it
    answer = get_inference(linear.url, "Linear_Model", rows, batch_bytes=1500)
    assert answer == {"data": [[f"row-{i}", 2.0 * i + 1] for i in range(200)]}
    by_count = get_inference(linear.url, "Linear_Model", rows[:10], batch_size=3)
    assert by_count == {"data": [[f"row-{i}", 2.0 * i + 1] for i in range(10)]}
    # failing rows of any chunk come back as "errors", rows in place
    mixed = get_inference(linear.url, "Linear_Model", [[1, 1], [2, "x"], [3, 3]], batch_size=2)
    assert mixed["data"] == [[1, 3.0], [2, None], [3, 7.0]]
    assert mixed["errors"] == [{"id": 2, "error": "ValueError: could not convert string to float: 'x'"}]


def test_client_sends_a_dataframe_as_modelbit_rows(servers):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, None, 0.5]}, index=[10, 11, 12])
    assert get_inference(servers["score"].url, "Score", frame) == {"data": [[10, 3.0], [11, 2.0], [12, 4.0]]}
    chunked = get_inference(servers["score"].url, "Score", frame, batch_size=2)
    assert chunked == {"data": [[10, 3.0], [11, 2.0], [12, 4.0]]}


def call(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelrepo.cli", "call", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120)


def test_modelrepo_call_prints_data_and_fails_with_the_servers_message(servers):
    url = servers["linear"].url
    ok = call(url, "Linear_Model", "[[1, 5], [2, 6]]", "--branch", "feature/x")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == [[1, 11.0], [2, 13.0]]
    failed = call(url, "Linear_Model", '"abc"')
    assert failed.returncode == 1 and failed.stdout == ""
    assert "ValueError: could not convert string to float: 'abc' (HTTP 500)" in failed.stderr
    bad = call(url, "Linear_Model", "{not json")
    assert bad.returncode == 2 and "<json> is not valid JSON" in bad.stderr
    wrong_name = call(url, "no-such-name", "1")
    assert wrong_name.returncode == 2 and "must match" in wrong_name.stderr


def test_plain_http_replay_of_modelbit_client_requests(servers, tmp_path: Path):
    """What Modelbit's client puts on the wire, sent by hand: its URL, a chunk, DataFrame rows."""
    score, linear = servers["score"], servers["linear"]
    chunk = linear.post("/v1/Linear_Model/feature~x/latest?batch=true", {"data": [[0, 0], [1, 1]]})
    assert chunk.json() == {"data": [[0, 1.0], [1, 3.0]]}
    rows = score.post("/v1/Score/main/latest", {"data": [[0, {"a": 1.0, "b": None}], [1, {"a": 2.0, "b": 1.0}]]})
    assert rows.json() == {"data": [[0, 1.0], [1, 4.0]]}
    error = linear.post("/v1/Linear_Model/feature~x/latest", {"data": "abc"})
    assert error.status_code == 500 and set(error.json()) == {"error"}
