"""The one duration grammar (`modelrepo serve --interval`, `spec.interval`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from modelrepo.duration import parse_duration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("2.5", 2.5),
        ("0", 0),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("2h45m", 9900),
        ("1h0m0.5s", 3600.5),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("1500000000ns", 1.5),
        ("-1m", -60),
    ],
)
def test_go_durations_and_bare_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "1x", "m", "1m 30s", " 2s", "1.2.3s", "1e3", "inf", "nan", "9" * 400 + "h"]
)
def test_anything_else_is_an_error_naming_the_value_and_the_forms(text):
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert repr(text) in str(err.value)
    assert "1m30s" in str(err.value) or "too large" in str(err.value)


def test_every_interval_the_crd_admits_parses_to_the_same_value():
    """The CRD's pattern (and CEL's Go durations) is a subset of the grammar: no value the API
    server accepts can fail in the operator."""
    crd = yaml.safe_load((ROOT / "crds" / "modelrepo.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pattern = re.compile(spec["properties"]["interval"]["pattern"])
    admitted = {"5s": 5, "60s": 60, "1m30s": 90, "1.5h": 5400, "24h": 86400, "2h45m": 9900, "500ms": 0.5}
    for text, seconds in admitted.items():
        assert pattern.search(text), text
        assert parse_duration(text) == seconds
    assert parse_duration(spec["properties"]["interval"]["default"]) == 60


def test_serve_interval_takes_the_grammar(capsys):
    from modelrepo.cli import main

    # "1m30s" passes the interval check and fails on the missing source; "soon" fails on itself
    assert main(["serve", "/nonexistent/repo", "--interval", "1m30s"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["serve", "/nonexistent/repo", "--interval", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--interval" in err and "'soon'" in err and "1m30s" in err
