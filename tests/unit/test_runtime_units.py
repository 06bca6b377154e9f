"""Pure functions of the runtime: JSON conversion, the batching dispatcher, inlining (the
request protocol is in test_protocol.py)."""

from __future__ import annotations

import asyncio
import datetime
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from modelrepo.runtime import jsonify
from modelrepo.runtime.batching import BatchDispatcher


def test_numpy_pandas_and_friends_become_json():
    value = {
        "arr": np.array([[1, 2], [3, 4]]), "f": np.array([1.5, np.nan]), "i": np.int32(3), "b": np.bool_(True),
        "df": pd.DataFrame({"a": [1, 2], "b": [None, "x"]}), "s": pd.Series([1.0, np.nan]),
        "t": pd.Timestamp("2024-05-01"), "nat": pd.NaT, "d": datetime.date(2024, 1, 2), "inf": float("inf"),
        np.int64(5): "key", "dt64": np.array(["2024-01-01"], dtype="datetime64[ns]"),
    }
    assert json.loads(jsonify.dumps(value)) == {
        "arr": [[1, 2], [3, 4]], "f": [1.5, None], "i": 3, "b": True,
        "df": [{"a": 1, "b": None}, {"a": 2, "b": "x"}], "s": [1.0, None],
        "t": "2024-05-01T00:00:00", "nat": None, "d": "2024-01-02", "inf": None, "5": "key",
        "dt64": ["2024-01-01T00:00:00"],
    }
    with pytest.raises(jsonify.NotRepresentable, match="object"):
        jsonify.dumps(object())


def test_dispatcher_batches_concurrent_requests_and_isolates_failures():
    sizes: list[int] = []

    def twice(xs):
        sizes.append(len(xs))
        if -1 in xs:
            raise ValueError("negative")
        return [2 * x for x in xs]

    async def run():
        with ThreadPoolExecutor(2) as pool:
            d = BatchDispatcher(twice, 1, 100, pool, "Twice")
            results = await asyncio.gather(*(d.submit([(i,)]) for i in range(50)))
            mixed = await d.submit([(1,), (-1,), (3,)])
            big = await d.submit([(i,) for i in range(250)])
            return results, mixed, big

    results, mixed, big = asyncio.run(run())
    assert [r[0] for r in results] == [(True, 2 * i) for i in range(50)]
    assert len(sizes) < 50  # concurrent single requests shared calls
    assert mixed == [(True, 2), (False, "ValueError: negative"), (True, 6)]
    assert [v for _, v in big] == [2 * i for i in range(250)]
    assert max(sizes) == 100  # never more than maxBatchSize rows in one call


def test_fast_function_is_called_inline_until_a_slow_call(tmp_path, monkeypatch):
    """The switch follows measured call times; the threshold is moved, not the clock, so the
    test never depends on how busy the machine is."""
    from modelrepo.format import LoadedDeployment, Metadata
    from modelrepo.runtime import served as served_module
    from modelrepo.runtime.protocol import Call
    from modelrepo.runtime.served import Served

    meta = Metadata(name="F", main_function="f", args=[("x", "int")], python_version="3.11")
    served = Served("F", 1, "c" * 40, LoadedDeployment(tmp_path, meta, lambda x: x + 1), may_inline=True)

    async def calls(n):
        return [await served.answer(Call([(i,)])) for i in range(n)]

    monkeypatch.setattr(served_module, "INLINE", True)  # whatever MODELREPO_INLINE says here
    monkeypatch.setattr(served_module, "INLINE_MAX_SECONDS", 3600.0)  # every call counts as fast
    answers = asyncio.run(calls(served_module.INLINE_AFTER + 5))
    assert answers[-1] == (200, b'{"data":%d}' % (served_module.INLINE_AFTER + 5))
    assert served.inline is True
    monkeypatch.setattr(served_module, "INLINE_MAX_SECONDS", 0.0)  # the next call counts as slow
    assert asyncio.run(calls(1)) == [(200, b'{"data":1}')]
    assert served.inline is False
    assert served._inline_after == 2 * served_module.INLINE_AFTER


def test_modelrepo_inline_0_never_calls_inline(tmp_path, monkeypatch):
    """MODELREPO_INLINE=0 turns the fast path off: a slow call can then never hold up the loop."""
    from modelrepo.format import LoadedDeployment, Metadata
    from modelrepo.runtime import served as served_module
    from modelrepo.runtime.protocol import Call
    from modelrepo.runtime.served import Served

    meta = Metadata(name="F", main_function="f", args=[("x", "int")], python_version="3.11")
    served = Served("F", 1, "c" * 40, LoadedDeployment(tmp_path, meta, lambda x: x + 1), may_inline=True)
    monkeypatch.setattr(served_module, "INLINE", False)
    monkeypatch.setattr(served_module, "INLINE_MAX_SECONDS", 3600.0)

    async def calls(n):
        return [await served.answer(Call([(i,)])) for i in range(n)]

    assert asyncio.run(calls(served_module.INLINE_AFTER + 5))[-1] == (200, b'{"data":%d}' % (served_module.INLINE_AFTER + 5))
    assert served.inline is False


def test_a_multi_model_process_never_calls_inline(tmp_path, monkeypatch):
    """In `modelrepo serve` one model's slow call must never hold up the other models."""
    from modelrepo.format import LoadedDeployment, Metadata
    from modelrepo.runtime import served as served_module
    from modelrepo.runtime.protocol import Call
    from modelrepo.runtime.served import Served

    meta = Metadata(name="F", main_function="f", args=[("x", "int")], python_version="3.11")
    served = Served("F", 1, "c" * 40, LoadedDeployment(tmp_path, meta, lambda x: x + 1))

    async def calls(n):
        return [await served.answer(Call([(i,)])) for i in range(n)]

    monkeypatch.setattr(served_module, "INLINE_MAX_SECONDS", 3600.0)  # every call counts as fast
    answers = asyncio.run(calls(served_module.INLINE_AFTER + 5))
    assert answers[-1] == (200, b'{"data":%d}' % (served_module.INLINE_AFTER + 5))
    assert served.inline is False
