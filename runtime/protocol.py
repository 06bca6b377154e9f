"""The REST contract of DESIGN §4 as pure functions: routes, request bodies, answers.

The batch rule (one rule, documented in docs/runtime.md):

* `?batch=true` : the body is a batch, `{"data": [[id, arg1, ..., argN], ...]}`.
* `?batch=false`: the body is one call, `{"data": X}`.
* no `batch` parameter: the body is a batch exactly when `data` is a non-empty list of lists
  AND every argument of the function is declared (metadata.yaml `mainFunctionArgs`) with a
  scalar type (int, float, str, bool). A single call of such a function is a scalar (one
  argument) or a list of scalars (several), never a list of lists, so a single request can
  never be read as a batch. Functions taking lists, arrays or undeclared types need
  `?batch=true` for batches.

One call: for a function of one argument `data` is that argument; of several, `data` is the
list of arguments (or an object of them by name); of none, `data` may be omitted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from modelrepo.runtime import jsonify

SCALAR_TYPES = frozenset({"int", "float", "str", "bool"})
_ROUTE = re.compile(r"^/v1/([A-Za-z_][A-Za-z0-9_]*)/([A-Za-z0-9_.-]+)/?$")


class BadRequest(Exception):
    """The request is malformed (400); the message says what and where."""


@dataclass(frozen=True)
class Call:
    """A parsed request: `calls[i]` are the positional arguments of the i-th function call.

    `ids` is None for a single request, else the row ids of the batch in request order.
    """

    calls: list[tuple[Any, ...]]
    ids: list[Any] | None = None

    @property
    def is_batch(self) -> bool:
        return self.ids is not None


def parse_route(path: str) -> tuple[str, str] | None:
    """`/v1/<Name>/<version>` -> (Name, version ref), or None when the path is not a model route."""
    match = _ROUTE.match(path)
    return (match.group(1), match.group(2)) if match else None


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
    body: bytes, arg_names: list[str], arg_types: list[str | None], batch: bool | None
) -> Call:
    """Read a request body by the batch rule above; raise BadRequest naming the problem."""
    try:
        document = jsonify.loads(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest('request body must be a JSON object like {"data": ...}')
    arity = len(arg_names)
    if "data" not in document:
        if arity == 0 and not batch:
            return Call([()])
        raise BadRequest('request body has no "data" field')
    data = document["data"]
    if batch is None:
        batch = is_implicit_batch(data, arg_types)
    if batch:
        return _batch(data, arg_names)
    return Call([single_args(data, arg_names)])


def is_implicit_batch(data: Any, arg_types: list[str | None]) -> bool:
    """The rule without `?batch`: a list of lists, and only scalar-typed arguments."""
    return (
        type(data) is list
        and bool(data)
        and set(map(type, data)) == {list}  # C-speed scan: batches have thousands of rows
        and all(t is not None and t.strip() in SCALAR_TYPES for t in arg_types)
    )


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


def _batch(data: Any, arg_names: list[str]) -> Call:
    if not isinstance(data, list):
        raise BadRequest('a batch is {"data": [[id, arguments...], ...]}; "data" is not a list')
    arity = len(arg_names)
    width = arity + 1
    # Whole-list checks first (fast path for 1,000s of rows); find the culprit only on failure.
    if data and (set(map(type, data)) != {list} or set(map(len, data)) != {width}):
        index = next(i for i, row in enumerate(data) if type(row) is not list or len(row) != width)
        raise BadRequest(
            f'"data"[{index}]: a batch row is [id, {", ".join(arg_names) or "(no arguments)"}] '
            f"({width} items)"
        )
    ids = [row[0] for row in data]
    if not set(map(type, ids)) <= {int, str}:
        index = next(i for i, row_id in enumerate(ids) if type(row_id) is not int and type(row_id) is not str)
        raise BadRequest(f'"data"[{index}][0]: a row id must be an integer or a string')
    calls = [(row[1],) for row in data] if arity == 1 else [tuple(row[1:]) for row in data]
    return Call(calls, ids)


def describe_exception(exc: BaseException) -> str:
    """`<ExceptionType>: <message>` as the 500 answer says it (no traceback)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
