"""The REST contract (docs/runtime.md) as pure functions: routes, request bodies, answers.

Routes: `/v1/<Name>/<ref>` and Modelbit's client URL `/v1/<Name>/<branch>/<ref>`, where `~`
in the branch stands for `/` (`feature~x` is branch `feature/x`; git forbids `~` in branch
names, so the mapping is unambiguous).

The batch rule is Modelbit's (one rule, documented in docs/runtime.md):

* `?batch=true` : the body is a batch, `{"data": [[id, arg1, ..., argN], ...]}`.
* `?batch=false`: the body is one call, `{"data": X}`.
* no `batch` parameter: the body is a batch exactly when `data` is a non-empty list whose
  every item is a list of `1 + number of arguments` elements starting with an id (a string
  or a number, not a boolean), whatever the argument types. So for `def f(x)`,
  `{"data": [[1, 5], [2, 6]]}` is two calls; a single call whose argument looks like that
  needs `?batch=false`.

One call: for a function of one argument `data` is that argument; of several, `data` is the
list of arguments (or an object of them by name); of none, `data` may be omitted.

DataFrame mode (metadata `runtimeInfo.dataframeModeColumns`): rows `[[id, {col: value}], ...]`
(or one `{col: value}`) become one pandas DataFrame with those columns, and the function is
called once with it (see `Call.frame`).

Other request keys: `timeout_seconds` (a positive number) shortens the request's timeout;
Modelbit's asynchronous answers (`response_format: "links"`, `response_webhook`) are refused
with a 400 rather than answered synchronously as if they had been honoured.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qs

from modelrepo.runtime import jsonify

_ROUTE = re.compile(r"^/v1/([A-Za-z_][A-Za-z0-9_]*)/([A-Za-z0-9_.-]+)/?$")
_BRANCH_ROUTE = re.compile(r"^/v1/([A-Za-z_][A-Za-z0-9_]*)/([^/\s]+)/([A-Za-z0-9_.-]+)/?$")
_ID_TYPES = frozenset({int, float, str})  # bool is not among them: type(True) is bool
_first = itemgetter(0)
_second = itemgetter(1)
_rest = itemgetter(slice(1, None))
# Request keys of Modelbit's API that ask for something this server does not do.
_REFUSED_KEYS = {
    "response_format": "answers are always JSON in the response; asynchronous result links are not supported",
    "response_webhook": "answers are always sent in the response; webhooks are not supported",
}


class BadRequest(Exception):
    """The request is malformed (400); the message says what and where."""


@dataclass  # not frozen: a frozen dataclass's __init__ costs more per request
class Call:
    """A parsed request: `calls[i]` are the positional arguments of the i-th function call.

    `ids` is None for a single request, else the row ids of the batch in request order.
    `frame` (DataFrame mode): `calls` is one call with one DataFrame of all rows; its result
    has one entry per row. `timeout` is the body's `timeout_seconds`, if any.
    """

    calls: list[tuple[Any, ...]]
    ids: list[Any] | None = None
    frame: bool = False
    timeout: float | None = None

    @property
    def is_batch(self) -> bool:
        return self.ids is not None


def parse_route(path: str) -> tuple[str, str | None, str] | None:
    """`/v1/<Name>[/<branch>]/<ref>` -> (Name, branch or None, ref), or None if not a model route."""
    match = _ROUTE.match(path)  # the common route first: one match per request
    if match is not None:
        return match.group(1), None, match.group(2)
    match = _BRANCH_ROUTE.match(path)
    if match is None:
        return None
    name, branch, ref = match.groups()
    return name, branch.replace("~", "/"), ref


def batch_flag(query_string: bytes | str) -> bool | None:
    """The explicit `?batch=true|false`, or None when absent."""
    if not query_string:
        return None
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get("batch")
    if not values:
        return None
    value = values[-1].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter batch={values[-1]!r}: use batch=true or batch=false")


def parse_request(
    body: bytes, arg_names: list[str], batch: bool | None, dataframe_columns: list[str] | None = None
) -> Call:
    """Read a request body by the rules above; raise BadRequest naming the problem."""
    try:
        document = jsonify.loads(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if type(document) is not dict:
        raise BadRequest('request body must be a JSON object like {"data": ...}')
    timeout = _options(document) if len(document) > 1 or "data" not in document else None
    if dataframe_columns is not None:
        if "data" not in document:
            raise BadRequest('request body has no "data" field')
        return frame_call(document["data"], dataframe_columns, batch, timeout)
    arity = len(arg_names)
    if "data" not in document:
        if arity == 0 and not batch:
            return Call([()], timeout=timeout)
        raise BadRequest('request body has no "data" field')
    data = document["data"]
    if batch is None:
        ids = implicit_batch_ids(data, arity)
        if ids is None:
            return Call([single_args(data, arg_names)], timeout=timeout)
        return Call(_rows_calls(data, arity), ids, timeout=timeout)
    if batch:
        return _batch(data, arg_names, timeout)
    return Call([single_args(data, arg_names)], timeout=timeout)


def _options(document: dict[str, Any]) -> float | None:
    """Check the keys beside "data": refuse what is not supported, read `timeout_seconds`."""
    for key, why in _REFUSED_KEYS.items():
        if document.get(key) is not None:
            raise BadRequest(f'request key "{key}" ({document[key]!r}) is not supported: {why}')
    timeout = document.get("timeout_seconds")
    if timeout is None:
        return None
    if type(timeout) not in (int, float) or not timeout > 0:
        raise BadRequest(f'"timeout_seconds" must be a positive number of seconds, not {timeout!r}')
    return float(timeout)


def implicit_batch_ids(data: Any, arity: int) -> list[Any] | None:
    """Modelbit's rule: the ids when `data` is rows of [id, *args], else None (one call).

    Whole-list C-speed scans only: batches have thousands of rows."""
    if type(data) is not list or not data or set(map(type, data)) != {list} or set(map(len, data)) != {arity + 1}:
        return None
    ids = list(map(_first, data))
    return ids if set(map(type, ids)) <= _ID_TYPES else None


def is_implicit_batch(data: Any, arity: int) -> bool:
    """Is `data` a batch by the rule (without `?batch`)?"""
    return implicit_batch_ids(data, arity) is not None


def _rows_calls(rows: list[list[Any]], arity: int) -> list[tuple[Any, ...]]:
    """Argument tuples of checked batch rows [id, *args] (C-speed for one argument)."""
    if arity == 1:
        return list(zip(map(_second, rows)))
    return list(map(tuple, map(_rest, rows)))


def single_args(data: Any, arg_names: list[str], where: str = '"data"') -> tuple[Any, ...]:
    """Positional arguments of one call from its `data`."""
    arity = len(arg_names)
    if arity == 1:
        return (data,)
    if arity == 0:
        if data not in (None, [], {}):
            raise BadRequest(f"{where}: the function takes no arguments")
        return ()
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(arg_names))
        missing = [n for n in arg_names if n not in data]
        if unknown or missing:
            parts = [f"unknown {', '.join(unknown)}" if unknown else "", f"missing {', '.join(missing)}" if missing else ""]
            raise BadRequest(f"{where}: arguments are ({', '.join(arg_names)}); " + "; ".join(p for p in parts if p))
        return tuple(data[n] for n in arg_names)
    if not isinstance(data, list) or len(data) != arity:
        raise BadRequest(
            f"{where}: the function takes {arity} arguments ({', '.join(arg_names)}); "
            f"send them as a list of {arity} values"
        )
    return tuple(data)


def _batch_ids(data: Any, width: int, row_shape: str) -> list[Any]:
    """The ids of batch rows `[id, ...]` of `width` items; BadRequest naming the first bad row."""
    if not isinstance(data, list):
        raise BadRequest(f'a batch is {{"data": [{row_shape}, ...]}}; "data" is not a list')
    # Whole-list checks first (fast path for 1,000s of rows); find the culprit only on failure.
    if data and (set(map(type, data)) != {list} or set(map(len, data)) != {width}):
        index = next(i for i, row in enumerate(data) if type(row) is not list or len(row) != width)
        raise BadRequest(f'"data"[{index}]: a batch row is {row_shape} ({width} items)')
    ids = list(map(_first, data))
    if not set(map(type, ids)) <= _ID_TYPES:
        index = next(i for i, row_id in enumerate(ids) if type(row_id) not in _ID_TYPES)
        raise BadRequest(f'"data"[{index}][0]: a row id must be a string or a number, not {ids[index]!r}')
    return ids


def _batch(data: Any, arg_names: list[str], timeout: float | None) -> Call:
    arity = len(arg_names)
    ids = _batch_ids(data, arity + 1, f"[id, {', '.join(arg_names) or '(no arguments)'}]")
    return Call(_rows_calls(data, arity), ids, timeout=timeout)


def frame_call(data: Any, columns: list[str], batch: bool | None, timeout: float | None = None) -> Call:
    """DataFrame mode: rows `[[id, {col: value}], ...]` or one `{col: value}` as one DataFrame.

    Columns come in `columns` order; a column a row lacks is missing (NaN/None); a column
    not in `columns` is a BadRequest naming it. pandas is imported only here.
    """
    if type(data) is dict and batch is not True:
        records, ids = [data], None
    elif type(data) is list and batch is not False:
        ids = _batch_ids(data, 2, "[id, {column: value, ...}]")
        records = [row[1] for row in data]
        if records and set(map(type, records)) != {dict}:
            index = next(i for i, record in enumerate(records) if type(record) is not dict)
            raise BadRequest(f'"data"[{index}][1]: a DataFrame row is an object {{column: value, ...}}')
    else:
        given = "" if batch is None else f" (batch={'true' if batch else 'false'} was given)"
        raise BadRequest(
            'this deployment takes a DataFrame: send {"data": {column: value, ...}} for one row or '
            '{"data": [[id, {column: value, ...}], ...]} for several' + given
        )
    known = set(columns)
    unknown = set().union(*map(dict.keys, records)) - known
    if unknown:
        raise BadRequest(
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))}; "
            f"this deployment's columns are {', '.join(columns)}"
        )
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=columns)
    if ids is not None:
        frame.index = pd.Index(ids)
    return Call([(frame,)], ids, frame=True, timeout=timeout)


def frame_results(result: Any, rows: int) -> list[Any]:
    """One value per row from what a DataFrame function returned; ValueError if not `rows` long."""
    kind = type(result).__name__
    if kind == "DataFrame":
        values = result.to_dict(orient="records")
    elif hasattr(result, "tolist") and not isinstance(result, (list, tuple)):
        values = result.tolist()  # Series, ndarray, Index
    elif isinstance(result, (list, tuple)):
        values = list(result)
    else:
        raise ValueError(
            f"a DataFrame function must return one result per row (a DataFrame, Series, array or "
            f"list of {rows}), got {kind}"
        )
    if not isinstance(values, list) or len(values) != rows:
        got = len(values) if isinstance(values, list) else f"a {kind} without rows"
        raise ValueError(f"a DataFrame function must return one result per row: {rows} rows, got {got} results")
    return values


def describe_exception(exc: BaseException) -> str:
    """`<ExceptionType>: <message>` as the 500 answer says it (no traceback)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
