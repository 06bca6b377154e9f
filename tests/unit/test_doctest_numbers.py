"""Docstring examples compare numbers by value: real numpy 2 results against natural examples."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from modelrepo.format.doctests import NumericOutputChecker


def failures(source: str, checker: doctest.OutputChecker | None = None, **globs: object) -> int:
    """Run `source` (a docstring) as doctest does; the number of failed examples."""
    test = doctest.DocTestParser().get_doctest(source, {"np": np, **globs}, "example", None, 0)
    runner = doctest.DocTestRunner(checker=checker or NumericOutputChecker(), verbose=False)
    runner.run(test, out=lambda _text: None)
    return runner.failures


def linear_model(x):
    return np.float64(2 * x + 1)


PASS = [
    (">>> linear_model(5)\n11.0\n", "np.float64 as the plain float (the article's function)"),
    (">>> np.int64(3)\n3\n", "np.int64 as an int"),
    (">>> np.float32(0.5)\n0.5\n", "np.float32"),
    (">>> np.array(5.0)\n5.0\n", "a 0-d array"),
    (">>> np.array(7)\n7\n", "a 0-d integer array"),
    (">>> [np.float64(1.5), 2]\n[1.5, 2]\n", "numpy scalars in a list"),
    (">>> (np.int32(1), np.float64(2.25))\n(1, 2.25)\n", "in a tuple"),
    (">>> {'a': np.float64(0.1), 'b': np.True_}\n{'a': 0.1, 'b': True}\n", "in a dict, and numpy booleans"),
    (">>> 0.1 + 0.2\n0.3\n", "floats within float formatting"),
    (">>> np.float64(1e-20)\n1e-20\n", "exponent notation"),
    (">>> np.float64(-2.5)\n-2.5\n", "negative"),
    (">>> np.complex128(1+2j)\n(1+2j)\n", "complex"),
    (">>> [np.float64(1.0)] * 30  # doctest: +ELLIPSIS\n[1.0, ..., 1.0]\n", "ELLIPSIS still works"),
    (">>> {'x': np.float64(1.5)}  # doctest: +NORMALIZE_WHITESPACE\n{'x':   1.5}\n", "NORMALIZE_WHITESPACE still works"),
]

FAIL = [
    (">>> linear_model(5)\n12.0\n", "another value"),
    (">>> np.int64(3)\n3.0\n", "an int is not a float"),
    (">>> np.float64(3.0)\n3\n", "a float is not an int"),
    (">>> 0.1 + 0.2\n0.3001\n", "beyond the tolerance"),
    (">>> [np.float64(1.5), 2]\n[1.5, 2, 3]\n", "another shape"),
    (">>> [np.float64(1.5), 2]\n(1.5, 2)\n", "a list is not a tuple"),
    (">>> 'a' + '1'\n'a2'\n", "text stays exact"),
    (">>> print('x  y')\nx y\n", "whitespace stays exact without NORMALIZE_WHITESPACE"),
    (">>> np.array([1.0, 2.0])\n[1.0, 2.0]\n", "an array of several values is not a list"),
    (">>> np.True_\nFalse\n", "another boolean"),
]


@pytest.mark.parametrize(("source", "why"), PASS, ids=[why for _, why in PASS])
def test_numbers_match_by_value(source, why):
    assert failures(source, linear_model=linear_model) == 0, why


@pytest.mark.parametrize(("source", "why"), FAIL, ids=[why for _, why in FAIL])
def test_everything_else_fails_as_with_plain_doctest(source, why):
    assert failures(source, linear_model=linear_model) == 1, why
    assert failures(source, doctest.OutputChecker(), linear_model=linear_model) == 1


def test_plain_doctest_refuses_what_the_checker_accepts():
    """The reason for the checker: plain doctest under numpy 2 fails the article's example."""
    assert failures(PASS[0][0], doctest.OutputChecker(), linear_model=linear_model) == 1
