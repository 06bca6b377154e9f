"""Turn what a model function returns into JSON bytes.

numpy arrays become lists, DataFrames lists of records, numpy scalars numbers, NaN/NaT/NA
null, dates ISO strings. The common case (plain Python values) takes one `json.dumps` call;
only values json refuses are walked. numpy/pandas are never imported here: a value is
recognised by its type's module, so a runtime serving plain functions stays light.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from pathlib import PurePath
from typing import Any

import orjson

_encode = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode
# orjson writes numpy arrays and scalars natively and NaN/inf as null (our rule), several times
# faster than json for the 1,000-row batches; anything it refuses goes through to_jsonable.
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MAX_DEPTH = 200


class NotRepresentable(TypeError):
    """The value has no JSON form (the message names its type)."""


def dumps(value: Any) -> bytes:
    """JSON bytes for `value`; raise NotRepresentable if no conversion applies."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return _encode(to_jsonable(value)).encode("utf-8")


def loads(data: bytes) -> Any:
    """Parse a request body (orjson; raises ValueError on bad JSON)."""
    return orjson.loads(data)


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A structure of dict/list/str/int/float/bool/None equal in meaning to `value`."""
    if _depth > _MAX_DEPTH:
        raise NotRepresentable("result nests too deeply (or refers to itself)")
    depth = _depth + 1
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): to_jsonable(v, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, depth) for v in value]
    module = type(value).__module__.partition(".")[0]
    if module == "numpy":
        return _from_numpy(value, depth)
    if module == "pandas":
        return _from_pandas(value, depth)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return to_jsonable(float(value), depth)
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, depth)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), depth)
    for method in ("tolist", "to_dict", "item"):  # torch tensors, polars/arrow objects, ...
        if callable(getattr(value, method, None)):
            return to_jsonable(getattr(value, method)(), depth)
    raise NotRepresentable(f"a result of type {type(value).__name__} cannot be turned into JSON")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = to_jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


def _from_numpy(value: Any, depth: int) -> Any:
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if kind in ("M", "m"):  # datetime64/timedelta64: via microseconds to datetime/timedelta
        value = value.astype("datetime64[us]" if kind == "M" else "timedelta64[us]")
    if hasattr(value, "tolist"):
        plain = value.tolist()
        if kind and kind in "iub":  # integers and booleans: already plain, no NaN possible
            return plain
        return to_jsonable(plain, depth)
    raise NotRepresentable(f"a result of type {type(value).__name__} cannot be turned into JSON")


def _from_pandas(value: Any, depth: int) -> Any:
    name = type(value).__name__
    if name == "DataFrame":
        return to_jsonable(value.to_dict(orient="records"), depth)
    if name in ("Series", "Index", "Categorical") or hasattr(value, "tolist"):
        return to_jsonable(value.tolist(), depth)
    if name in ("NaTType", "NAType"):
        return None
    if name == "Timestamp":
        return value.isoformat()
    if name == "Timedelta":
        return value.total_seconds()
    if name == "Interval":
        return [to_jsonable(value.left, depth), to_jsonable(value.right, depth)]
    raise NotRepresentable(f"a result of type {name} cannot be turned into JSON")
