"""Child names (docs/operator.md): lowercase, `_` -> `-`, at most 63 characters, distinct when cut."""

import re

from modelrepo.format import is_valid_name
from modelrepo.operator.naming import child_name, label_value

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_lowercased_with_dashes():
    assert child_name("models", "Linear_Model") == "models-linear-model"


def test_long_names_are_cut_to_63_with_a_hash_that_keeps_them_apart():
    a = child_name("models", "A" * 80 + "_one")
    b = child_name("models", "A" * 80 + "_two")
    assert len(a) <= 63 and len(b) <= 63
    assert a != b
    assert DNS1035.match(a) and DNS1035.match(b)


def test_names_starting_with_a_digit_become_valid_labels():
    assert DNS1035.match(child_name("1repo", "_x"))


def test_deployment_names_must_be_python_identifiers():
    assert is_valid_name("Linear_Model")
    assert not is_valid_name("linear-model")
    assert not is_valid_name("9lives")


def test_label_values_fit():
    assert label_value("Linear_Model") == "Linear_Model"
    assert len(label_value("x" * 100)) <= 63
