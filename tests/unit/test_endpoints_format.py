"""endpoints/<name>.yaml and endpoints/aliases.yaml: parsing, checks and `modelrepo validate`."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from fixtures.runtime_server import write_deployment

from modelrepo.cli import main
from modelrepo.format.endpoints import (
    Target,
    alias_problem,
    cross_problems,
    parse_aliases,
    parse_endpoint,
    parse_files,
)

MODELBIT_ENDPOINT = """\
backends:
  split_1:
    deployment: {branch: main, name: filtering_deployment, version: 10}
    weight: 1
mirrors:
  shadow:
    deployment: {branch: main, name: filtering_deployment, version: latest}
schemaVersion: 1
"""


def test_a_real_modelbit_endpoint_file_parses():
    endpoint = parse_endpoint("filtering", MODELBIT_ENDPOINT)
    assert [(b.key, b.target, b.weight) for b in endpoint.backends] == [
        ("split_1", Target("filtering_deployment", "10", "main"), 1.0)]
    assert endpoint.mirrors == (("shadow", Target("filtering_deployment", "latest", "main")),)
    # what the operator hands the gateway reads back to the same endpoint
    assert parse_endpoint("filtering", yaml.safe_dump(endpoint.to_json())) == endpoint


def test_defaults_weight_one_version_latest_branch_of_the_file():
    endpoint = parse_endpoint("e", "backends: {a: {deployment: {name: M}}}")
    assert endpoint.backends[0].target == Target("M", "latest", None)
    assert endpoint.backends[0].weight == 1.0


@pytest.mark.parametrize("text, says", [
    ("backends: {}", "at least one backend"),
    ("backends: {a: {deployment: {name: M}, weight: 0}}", "every weight is 0"),
    ("backends: {a: {deployment: {name: M}, weight: -1}}", "backends.a.weight -1 must be a number >= 0"),
    ("backends: {a: {deployment: {name: 9x}}}", "backends.a.deployment.name '9x'"),
    ("backends: {a: {deployment: {name: M, version: 0}}}", "version numbers start at 1"),
    ("backends: {a: {deployment: {name: M, version: 'a b'}}}", "backends.a.deployment.version 'a b'"),
    ("backends: {a: {deployment: M}}", "backends.a.deployment must be a mapping"),
    ("backends: {a: {deployment: {name: M}}}\nschemaVersion: 2", "schemaVersion 2 is not supported"),
    ("backends: [", "not valid YAML"),
    ("- a", "must be a YAML mapping"),
    ("backends: {a: {deployment: {name: M}}}\nmirrors: {m: {deployment: {}}}", "mirrors.m.deployment.name None"),
])
def test_bad_endpoint_files_say_what_and_where(text, says):
    with pytest.raises(ValueError) as info:
        parse_endpoint("e", text)
    assert says in str(info.value)


def test_aliases_name_versions_and_cannot_look_like_versions():
    assert parse_aliases("aliases: {Linear_Model: {official: 3, candidate: latest}}\nschemaVersion: 1") == {
        "Linear_Model": {"official": "3", "candidate": "latest"}}
    assert alias_problem("latest") and alias_problem("abcdef0") and alias_problem("3") and alias_problem("a/b")
    assert alias_problem("official") is None
    with pytest.raises(ValueError, match="aliases.M: alias 'deadbeef' would be read as a commit SHA prefix"):
        parse_aliases("aliases: {M: {deadbeef: 1}}")
    with pytest.raises(ValueError, match="not another alias"):
        parse_aliases("aliases: {M: {official: candidate}}")


def test_one_bad_file_is_reported_and_the_others_still_count():
    found, problems = parse_files({
        "good.yaml": "backends: {a: {deployment: {name: M}}}",
        "bad.yaml": "backends: {}",
        "aliases.yaml": "aliases: {M: {official: 1}}",
    })
    assert set(found.endpoints) == {"good"} and found.aliases == {"M": {"official": "1"}}
    assert problems == [("bad.yaml", "backends: an endpoint needs at least one backend")]
    assert cross_problems(found, {"Other"}) == [
        ("good.yaml", "backends.a: no deployment M in deployments/"),
        ("aliases.yaml", "aliases.M: no deployment M in deployments/"),
    ]
    assert cross_problems(parse_files({"M.yaml": "backends: {a: {deployment: {name: M}}}"})[0], {"M"}) == [
        ("M.yaml", "endpoint M has the name of a deployment; rename one of them")]


def test_validate_checks_endpoints(tmp_path, capsys):
    write_deployment(tmp_path, "Double", "def Double(x):\n    return 2 * x\n", ["x:int", "return:int"])
    (tmp_path / "endpoints").mkdir()
    (tmp_path / "endpoints" / ".gitkeep").write_text("")
    (tmp_path / "endpoints" / "split.yaml").write_text(textwrap.dedent("""\
        backends:
          a: {deployment: {name: Double, version: 1}, weight: 9}
          b: {deployment: {name: Double, version: latest}, weight: 1}
        schemaVersion: 1
        """))
    (tmp_path / "endpoints" / "aliases.yaml").write_text("aliases: {Double: {official: 1}}\nschemaVersion: 1\n")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "1 deployment(s) valid, 2 endpoints file(s) valid"

    (tmp_path / "endpoints" / "typo.yaml").write_text("backends: {a: {deployment: {name: Doubel}, weight: x}}\n")
    (tmp_path / "endpoints" / "ghost.yaml").write_text("backends: {a: {deployment: {name: Ghost}}}\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "endpoints/typo.yaml: backends.a.weight 'x' must be a number >= 0" in out
    assert "endpoints/ghost.yaml: backends.a: no deployment Ghost in deployments/" in out
    assert out[-1] == "2 problem(s) in 2 endpoints file(s)"
