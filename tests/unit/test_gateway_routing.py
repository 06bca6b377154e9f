"""The gateway's routing decisions and key checks, as pure functions."""

from __future__ import annotations

import pytest

from modelrepo.runtime.gateway.keys import KeyRing
from modelrepo.runtime.gateway.routing import RouteError, Table, decide

SHA_OLD = "a" * 40
SHA_NEW = "b" * 40


def table(**extra) -> Table:
    return Table.from_json({
        "branches": ["main", "feature/x"],
        "upstreams": [
            {"name": "M", "branch": "main", "url": "http://new:3000/", "version": 2, "commit": SHA_NEW, "latest": True},
            {"name": "M", "branch": "main", "url": "http://old:3000", "version": 1, "commit": SHA_OLD, "latest": False},
            {"name": "M", "branch": "feature/x", "url": "http://fx:3000", "version": 3, "commit": "c" * 40},
            {"name": "Shadow", "branch": "main", "url": "http://shadow:3000", "version": 1},
        ],
        "definitions": {"main": {
            "endpoints": {"split": {
                "backends": {"old": {"deployment": {"name": "M", "version": 1}, "weight": 9},
                             "new": {"deployment": {"name": "M", "version": "latest"}, "weight": 1}},
                "mirrors": {"copy": {"deployment": {"name": "Shadow"}}, "gone": {"deployment": {"name": "Nope"}}},
            }},
            "aliases": {"M": {"official": "1", "candidate": "latest"}},
        }},
        **extra,
    })


def test_deployment_versions_by_latest_number_sha_and_alias():
    t = table()
    assert decide(t, "M", None, "latest", 0.5).primary.url == "http://new:3000/v1/M/latest"
    assert decide(t, "M", None, "2", 0.5).primary.url == "http://new:3000/v1/M/2"
    assert decide(t, "M", None, "1", 0.5).primary.url == "http://old:3000/v1/M/1"
    assert decide(t, "M", None, SHA_OLD[:7], 0.5).primary.url == "http://old:3000/v1/M/1"
    assert decide(t, "M", None, "official", 0.5).primary.url == "http://old:3000/v1/M/1"
    assert decide(t, "M", "main", "candidate", 0.5).primary.url == "http://new:3000/v1/M/latest"


def test_branch_in_the_url_routes_to_that_branchs_upstream():
    decision = decide(table(), "M", "feature/x", "latest", 0.5)
    assert decision.primary.url == "http://fx:3000/v1/M/latest" and decision.primary.branch == "feature/x"
    with pytest.raises(RouteError, match="no branch dev here"):
        decide(table(), "M", "dev", "latest", 0.5)
    with pytest.raises(RouteError, match="M has no version or alias official on branch feature/x"):
        decide(table(), "M", "feature/x", "official", 0.5)  # aliases are per branch


def test_endpoint_weights_split_the_draw_and_mirrors_are_copies():
    t = table()
    assert decide(t, "split", None, "latest", 0.0).primary.backend == "old"
    assert decide(t, "split", None, "latest", 0.899).primary.backend == "old"
    assert decide(t, "split", None, "latest", 0.9).primary.backend == "new"
    assert decide(t, "split", None, "latest", 0.999999).primary.url == "http://new:3000/v1/M/latest"
    # a mirror that names nothing running is left out, never an error for the caller
    assert [m.url for m in decide(t, "split", None, "latest", 0.1).mirrors] == ["http://shadow:3000/v1/Shadow/latest"]
    with pytest.raises(RouteError, match="split is an endpoint: call it at /v1/split/latest"):
        decide(t, "split", None, "3", 0.1)


def test_unknown_names_and_versions_are_404_saying_what_exists():
    with pytest.raises(RouteError, match=r"no deployment or endpoint Nope on branch main \(known: M, Shadow, split\)") as info:
        decide(table(), "Nope", None, "latest", 0.5)
    assert info.value.status == 404
    with pytest.raises(RouteError, match=r"M has no version or alias 7 on branch main \(running: 1, 2\)"):
        decide(table(), "M", None, "7", 0.5)


def test_versions_not_running_go_to_the_branchs_on_demand_runtime():
    t = table(onDemand={"main": "http://versions:3000", "feature/x": "http://versions-fx:3000"})
    assert decide(t, "M", None, "7", 0.5).primary.url == "http://versions:3000/v1/M/main/7"
    assert decide(t, "Other", "feature/x", "1", 0.5).primary.url == "http://versions-fx:3000/v1/Other/feature~x/1"


def test_bad_tables_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="branches: name at least one branch"):
        Table.from_json({"upstreams": []})
    with pytest.raises(ValueError, match="definitions.main.endpoints.e: backends: an endpoint needs at least one backend"):
        Table.from_json({"branches": ["main"], "definitions": {"main": {"endpoints": {"e": {"backends": {}}}}}})


def test_keys_plain_or_bearer_scoped_and_never_echoed():
    ring = KeyRing.parse("# team keys\nmk_all\nmk_scoped  M,split  # only these\n")
    assert ring.check(b"mk_all", "Anything") is None
    assert ring.check(b"Bearer mk_all", "Anything") is None
    assert ring.check(b"bearer  mk_scoped ", "split") is None
    assert ring.check(b"mk_scoped", "Other") == "this API key may not call Other"
    assert ring.check(None, "M") == "missing API key: send it as the Authorization header"
    assert ring.check(b"mk_wrong", "M") == "API key not valid"
    assert KeyRing(()).check(b"mk_all", "M") == "API key not valid"
