"""Docstring examples compare numbers by value, so numpy 2's reprs do not fail natural examples.

Under numpy 2, `repr(np.float64(11.0))` is `np.float64(11.0)`, so an example written as
`>>> Linear_Model(5)` / `11.0` fails with plain doctest although the value is right.
`NumericOutputChecker` accepts, beyond what `doctest.OutputChecker` accepts:

* numpy scalar reprs (`np.float64(11.0)`, `np.int64(3)`, `np.True_`) and 0-d array reprs
  (`array(5.)`) as the plain number or boolean they hold, also inside lists, tuples and dicts;
* floats equal within a relative 1e-9 (`0.30000000000000004` for `0.3`), integers equal by value.

An integer never matches a float (`3` is not `3.0`), and everything else is compared as
Python's doctest does, with its option flags (ELLIPSIS, NORMALIZE_WHITESPACE, ...).
Pure: imports nothing of the project.
"""

from __future__ import annotations

import doctest
import math
import re

REL_TOL = 1e-9
_NUMPY_SCALAR = re.compile(
    r"\bnp\.(?:float|int|uint|complex|longdouble|clongdouble|half|single|double|longlong|ulonglong"
    r"|intc|uintc|intp|uintp|short|ushort|byte|ubyte|long|ulong)(?:\d+)?\(([^()]*)\)"
)
_NUMPY_BOOL = re.compile(r"\bnp\.(True|False)_")
_ZERO_D_ARRAY = re.compile(r"\barray\(\s*([-+]?[\w.]+(?:[eE][-+]?\d+)?)\s*(?:,\s*dtype=[\w.]+\s*)?\)")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)(?![\w.])")


def _scalar(match: re.Match[str]) -> str:
    inner = match.group(1).strip()
    return f"({inner})" if inner.endswith("j") and not inner.startswith("(") else inner


def unwrap_numpy(text: str) -> str:
    """`np.float64(11.0)` -> `11.0`, `np.True_` -> `True`, `array(5.)` -> `5.` anywhere in `text`."""
    if "np." not in text and "array(" not in text:
        return text
    text = _NUMPY_SCALAR.sub(_scalar, text)
    text = _NUMPY_BOOL.sub(r"\1", text)
    return _ZERO_D_ARRAY.sub(r"\1", text)


def _is_float(token: str) -> bool:
    return any(c in token for c in ".eE")


def _same_number(want: str, got: str) -> bool:
    if want == got:
        return True
    if _is_float(want) != _is_float(got):
        return False  # an int is not a float: `3` does not match `3.0`
    if not _is_float(want):
        return int(want) == int(got)
    return math.isclose(float(want), float(got), rel_tol=REL_TOL, abs_tol=0.0)


def align_numbers(want: str, got: str) -> str | None:
    """`got` with each number that equals want's number at the same place written as in `want`;
    None when the two texts do not have the same count of numbers."""
    wanted = _NUMBER.findall(want)
    found = list(_NUMBER.finditer(got))
    if len(wanted) != len(found) or not found:
        return None
    parts: list[str] = []
    last = 0
    for token, match in zip(wanted, found):
        parts.append(got[last:match.start()])
        parts.append(token if _same_number(token, match.group()) else match.group())
        last = match.end()
    parts.append(got[last:])
    return "".join(parts)


class NumericOutputChecker(doctest.OutputChecker):
    """doctest's checker, plus numbers compared by value (see the module docstring)."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if super().check_output(want, got, optionflags):
            return True
        want, got = unwrap_numpy(want), unwrap_numpy(got)
        if super().check_output(want, got, optionflags):
            return True
        aligned = align_numbers(want, got)
        return aligned is not None and aligned != got and super().check_output(want, aligned, optionflags)
