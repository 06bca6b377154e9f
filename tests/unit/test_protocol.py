"""The request protocol as pure functions: Modelbit's batch rule, DataFrame rows, branch routes,
refused request keys, timeout_seconds; and how a Served answers them (its function called for real)."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pandas as pd
import pytest

from modelrepo.format import LoadedDeployment, Metadata
from modelrepo.runtime.protocol import (
    BadRequest,
    Call,
    batch_flag,
    frame_call,
    parse_request,
    parse_route,
)
from modelrepo.runtime.served import Served


def parse(data, names=("x",), batch=None, columns=None, **keys):
    return parse_request(json.dumps({"data": data, **keys}).encode(), list(names), batch, columns)


# -- the batch rule ----------------------------------------------------------------------------

def test_the_articles_untyped_body_is_a_batch():
    call = parse([[1, 5], [2, 6]])
    assert call.ids == [1, 2] and call.calls == [(5,), (6,)]


@pytest.mark.parametrize("data", [[["a", [1, 2]], ["b", [3]]], [[1.5, {"k": 1}]], [["id", None]]])
def test_any_argument_type_in_rows_of_id_and_argument_is_a_batch(data):
    call = parse(data)
    assert call.ids == [row[0] for row in data]
    assert call.calls == [(row[1],) for row in data]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (4, "not a list"),
        ([], "empty"),
        ([[1, 5], [2, 6, 7]], "a row of the wrong width"),
        ([[1, 2, 3]], "a row of the wrong width"),
        ([[True, 5]], "a boolean is not an id"),
        ([[None, 5]], "null is not an id"),
        ([[[1], 5]], "a list is not an id"),
        ([[1, 5], 3], "an item that is not a list"),
    ],
)
def test_anything_else_is_one_call(data, why):
    call = parse(data)
    assert call.ids is None and call.calls == [(data,)], why


def test_several_arguments_single_and_batch():
    two = ("a", "b")
    assert parse([1, 2], names=two).calls == [(1, 2)]
    assert parse({"b": 2, "a": 1}, names=two).calls == [(1, 2)]
    batch = parse([[7, 1, 2], ["x", [3], {"k": 4}]], names=two)
    assert batch.ids == [7, "x"] and batch.calls == [(1, 2), ([3], {"k": 4})]
    assert parse([[1, 2], [3, 4]], names=two).calls == [([1, 2], [3, 4])]  # width 2 != 3: one call
    with pytest.raises(BadRequest, match="takes 2 arguments"):
        parse([1], names=two)


def test_no_arguments():
    assert parse_request(b'{}', [], None).calls == [()]
    assert parse([[1], [2]], names=()).ids == [1, 2]


def test_batch_flag_forces_either_way():
    assert parse([[1, 5], [2, 6]], batch=False).calls == [([[1, 5], [2, 6]],)]
    assert parse([[1, [4]]], batch=True).calls == [([4],)]
    with pytest.raises(BadRequest, match=r'"data"\[1\]: a batch row is \[id, x\]'):
        parse([[1, 2], [2, 3, 4]], batch=True)
    with pytest.raises(BadRequest, match=r'"data"\[0\]\[0\]: a row id must be a string or a number, not True'):
        parse([[True, 1]], batch=True)
    with pytest.raises(BadRequest, match='"data" is not a list'):
        parse(5, batch=True)
    assert batch_flag(b"batch=true") is True and batch_flag(b"batch=0") is False and batch_flag(b"x=1") is None
    with pytest.raises(BadRequest, match="batch=true or batch=false"):
        batch_flag(b"batch=perhaps")


def test_bad_bodies_say_what_is_wrong():
    for body, says in [(b"{nope", "not valid JSON"), (b"[1]", '{"data"'), (b'{"x": 1}', 'no "data"')]:
        with pytest.raises(BadRequest, match=says):
            parse_request(body, ["x"], None)


# -- routes ------------------------------------------------------------------------------------

def test_routes_with_and_without_branch():
    assert parse_route("/v1/Linear_Model/latest") == ("Linear_Model", None, "latest")
    assert parse_route("/v1/Linear_Model/abc1234/") == ("Linear_Model", None, "abc1234")
    assert parse_route("/v1/Linear_Model/main/latest") == ("Linear_Model", "main", "latest")
    assert parse_route("/v1/Linear_Model/main/3/") == ("Linear_Model", "main", "3")
    assert parse_route("/v1/Linear_Model/feature~x/latest") == ("Linear_Model", "feature/x", "latest")
    assert parse_route("/v1/M/team~a~b/abc1234") == ("M", "team/a/b", "abc1234")
    for path in ("/v1/1bad/latest", "/v1/M", "/v1/M/a/b/c", "/v2/M/latest"):
        assert parse_route(path) is None, path


# -- request keys ------------------------------------------------------------------------------

def test_unsupported_modelbit_keys_are_refused_by_name():
    with pytest.raises(BadRequest, match='"response_format" .*links.* not supported'):
        parse(1, response_format="links")
    with pytest.raises(BadRequest, match='"response_webhook" .* not supported'):
        parse(1, response_webhook="http://127.0.0.1:9/hook")
    assert parse(1, response_format=None).calls == [(1,)]
    with pytest.raises(BadRequest, match='"response_format"'):  # also without "data" (no arguments)
        parse_request(b'{"response_format": "links"}', [], None)
    assert parse_request(b'{"timeout_seconds": 3}', [], None).timeout == 3.0


def test_timeout_seconds_is_read_and_checked():
    assert parse(1, timeout_seconds=2).timeout == 2.0
    assert parse([[1, 2]], timeout_seconds=0.5).timeout == 0.5
    assert parse(1).timeout is None
    for bad in (0, -1, "5", True, [1]):
        with pytest.raises(BadRequest, match="timeout_seconds"):
            parse(1, timeout_seconds=bad)


# -- DataFrame mode ----------------------------------------------------------------------------

COLUMNS = ["a", "b", "c"]


def test_dataframe_rows_become_one_frame_in_column_order():
    call = parse([[10, {"b": 2, "a": 1, "c": "x"}], ["k", {"a": 3}]], columns=COLUMNS)
    assert call.frame and call.ids == [10, "k"] and len(call.calls) == 1
    (frame,) = call.calls[0]
    assert list(frame.columns) == COLUMNS and list(frame.index) == [10, "k"]
    assert frame.loc[10].tolist() == [1, 2, "x"]
    assert frame.loc["k", "a"] == 3 and math.isnan(frame.loc["k", "b"]) and pd.isna(frame.loc["k", "c"])


def test_dataframe_single_row_and_errors():
    single = parse({"a": 1, "b": 2}, columns=COLUMNS)
    assert single.frame and single.ids is None and single.calls[0][0].shape == (1, 3)
    with pytest.raises(BadRequest, match="unknown column d; this deployment's columns are a, b, c"):
        parse([[1, {"a": 1, "d": 2}]], columns=COLUMNS)
    with pytest.raises(BadRequest, match=r'"data"\[1\]\[1\]: a DataFrame row is an object'):
        parse([[1, {"a": 1}], [2, [1, 2]]], columns=COLUMNS)
    with pytest.raises(BadRequest, match="takes a DataFrame"):
        parse(5, columns=COLUMNS)
    with pytest.raises(BadRequest, match=r"batch=false was given"):
        parse([[1, {"a": 1}]], columns=COLUMNS, batch=False)
    with pytest.raises(BadRequest, match=r'"data"\[0\]\[0\]: a row id'):
        frame_call([[None, {"a": 1}]], COLUMNS, None)


# -- answers of a Served (real function calls, no server) ---------------------------------------

def served(function, args=("x",), columns=None, timeout=None):
    meta = Metadata(name="F", main_function="f", args=[(a, None) for a in args], python_version="3",
                    dataframe_columns=columns, timeout_seconds=timeout)
    return Served("F", 1, "c" * 40, LoadedDeployment(None, meta, function))  # type: ignore[arg-type]


def answer(s: Served, call: Call):
    status, body = asyncio.run(s.answer(call))
    return status, json.loads(body)


def test_the_articles_function_answers_the_batch():
    def linear_model(input_x):
        return np.float64(2 * input_x + 1)

    s = served(linear_model)
    assert answer(s, parse([[1, 5], [2, 6]])) == (200, {"data": [[1, 11.0], [2, 13.0]]})
    assert answer(s, parse(5)) == (200, {"data": 11.0})


@pytest.mark.parametrize(
    "result",
    [
        lambda df: df["a"] * 2,
        lambda df: (df["a"] * 2).to_numpy(),
        lambda df: [float(v) * 2 for v in df["a"]],
        lambda df: pd.DataFrame({"y": df["a"] * 2}),
    ],
)
def test_dataframe_function_answers_one_value_per_row_in_request_order(result):
    calls = []

    def f(df):
        calls.append(len(df))
        return result(df)

    s = served(f, columns=COLUMNS)
    status, body = answer(s, parse([["z", {"a": 3}], [1, {"a": 1.5}], [2, {"a": 0}]], columns=COLUMNS))
    assert status == 200 and calls == [3]
    values = [row[1]["y"] if isinstance(row[1], dict) else row[1] for row in body["data"]]
    assert [row[0] for row in body["data"]] == ["z", 1, 2] and values == [6.0, 3.0, 0.0]
    assert answer(s, parse({"a": 2}, columns=COLUMNS))[1]["data"] in (4.0, {"y": 4.0})


def test_dataframe_function_of_the_wrong_length_is_500_saying_so():
    s = served(lambda df: [1], columns=COLUMNS)
    status, body = answer(s, parse([[1, {"a": 1}], [2, {"a": 2}]], columns=COLUMNS))
    assert status == 500
    assert body["error"] == "ValueError: a DataFrame function must return one result per row: 2 rows, got 1 results"
    status, body = answer(served(lambda df: 7, columns=COLUMNS), parse({"a": 1}, columns=COLUMNS))
    assert status == 500 and "got int" in body["error"]


def test_timeout_seconds_shortens_the_deployments_timeout_but_never_lengthens_it():
    import threading

    release = threading.Event()
    s = served(lambda x: release.wait(30) and x, timeout=20)
    try:
        status, body = answer(s, parse(1, timeout_seconds=0.2))
        assert status == 504
        assert body["error"] == "F did not answer within 0.2s (the request's timeout_seconds)"
    finally:
        release.set()
    quick = served(lambda x: x + 1, timeout=5)
    assert answer(quick, parse(1, timeout_seconds=1000)) == (200, {"data": 2})
    assert quick.timeout == 5.0


# -- catalogs and branches -----------------------------------------------------------------------

def test_folder_catalog_serves_its_own_branch_or_any_when_it_does_not_know_it(tmp_path):
    from modelrepo.runtime.app import NotFound, NotReady
    from modelrepo.runtime.catalogs.folder import FolderCatalog

    on_main = FolderCatalog(tmp_path, "M", 1, "c" * 40, branch="main")
    with pytest.raises(NotFound, match="^M is served here from branch main, not feature/x$"):
        asyncio.run(on_main.resolve("M", "latest", "feature/x"))
    for catalog, branch in ((on_main, "main"), (on_main, None), (FolderCatalog(tmp_path, "M", 1, "c" * 40), "any")):
        with pytest.raises(NotReady):  # the branch is fine: what is missing is the loaded version
            asyncio.run(catalog.resolve("M", "latest", branch))


def test_repo_catalog_names_the_branch_it_serves(tmp_path):
    from modelrepo.runtime.app import NotFound
    from modelrepo.runtime.catalogs.repository import RepoCatalog

    catalog = RepoCatalog(tmp_path, branch="main", cache_dir=tmp_path / "cache")
    with pytest.raises(NotFound, match="^M is served here from branch main, not staging$"):
        asyncio.run(catalog.resolve("M", "latest", "staging"))
