"""spec.branches as pure functions: which branches, child names and labels, the gateway's table,
status entries per branch and endpoint status (the sync over a real git server is in
test_operator_sync.py)."""

from __future__ import annotations

from modelrepo.format.endpoints import parse_files
from modelrepo.operator.gateway import BranchRoutes, routing_table
from modelrepo.operator.naming import child_name
from modelrepo.operator.plan import make_plan, match_branches
from modelrepo.operator.render import (
    Folder,
    FolderSettings,
    RepoRef,
    render_deployment,
    render_service,
)
from modelrepo.operator.status import Observation, build_status, endpoint_entries
from modelrepo.operator.webhooks import RepoTarget
from modelrepo.runtime.gateway.routing import Table, decide

REPO = RepoRef(name="models", namespace="ml", uid="u", url="git://h/r.git", branches=("main", "staging"))
C1, C2 = "1" * 40, "2" * 40


def folder(name, branch, tree="t", commit=C1, version=1):
    return Folder(name, tree, commit, version, branch=branch, branch_in_name=branch != "main")


def test_branch_entries_keep_their_order_patterns_sort_and_missing_names_are_said():
    heads = {"main": C1, "release-2": C2, "release-10": C2, "feature": C1}
    found, missing = match_branches(["main", "release-*", "staging", "release-2"], heads)
    assert list(found) == ["main", "release-10", "release-2"] and missing == ["staging"]
    assert match_branches(["nope-*"], heads) == ({}, [])


def test_the_first_branch_is_the_first_name_never_a_pattern():
    assert REPO.first_branch == "main" and REPO.ref == "main"
    assert RepoRef("m", "ns", "u", "git://h/r", branches=("release-*", "main")).first_branch is None
    assert RepoRef("m", "ns", "u", "git://h/r", branch="dev").first_branch == "dev"
    assert RepoRef("m", "ns", "u", "git://h/r", revision="v1").first_branch == "v1"


def test_other_branches_children_carry_the_branch_in_name_labels_and_selector():
    assert child_name("models", "Linear_Model", "feature/New.x") == "models-feature-new-x-linear-model"
    long = child_name("models", "M", "b" * 80)
    assert len(long) <= 63 and long != child_name("models", "M", "b" * 81)
    main = render_deployment(REPO, folder("A", "main"), FolderSettings())
    staging = render_deployment(REPO, folder("A", "staging", commit=C2), FolderSettings())
    assert main["metadata"]["name"] == "models-a" and staging["metadata"]["name"] == "models-staging-a"
    assert "modelrepo.dev/branch" not in main["metadata"]["labels"]
    assert "modelrepo.dev/branch" not in main["metadata"]["annotations"]
    assert staging["metadata"]["annotations"]["modelrepo.dev/branch"] == "staging"
    pod_labels = staging["spec"]["template"]["metadata"]["labels"]
    # main's Service selects none of staging's pods (its selector predates branches).
    main_selector = render_service(REPO, "A")["spec"]["selector"]
    assert not all(pod_labels.get(k) == v for k, v in main_selector.items())
    staging_selector = render_service(REPO, "A", "staging")["spec"]["selector"]
    assert all(pod_labels.get(k) == v for k, v in staging_selector.items())
    fetch = staging["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert fetch[fetch.index("--ref") + 1] == "staging"


def test_names_colliding_across_branches_are_refused_not_applied():
    folders = {f.key: f for f in (folder("staging_A", "main"), folder("A", "staging"), folder("B", "staging"))}
    plan = make_plan("models", folders, [], [], config_hash="h")
    assert [f.key for f in plan.apply] == ["staging_A", "staging/B"]
    assert plan.invalid == {"staging/A": (
        "deployments/A on branch staging: its Kubernetes name 'models-staging-a' collides with deployments/staging_A; rename one")}


def test_a_branch_whose_folders_are_gone_is_pruned_and_the_first_kept():
    before = [folder("A", "main"), folder("A", "staging")]
    deps = [render_deployment(REPO, f, FolderSettings()) for f in before]
    svcs = [render_service(REPO, f.name, f.named_branch) for f in before]
    plan = make_plan("models", {"A": before[0]}, deps, svcs, config_hash=REPO.config_hash())
    assert plan.prune == ["models-staging-a"] and not plan.apply


def test_routing_table_has_every_branch_its_upstreams_definitions_and_on_demand_url():
    found, _ = parse_files({"split.yaml": "backends: {a: {deployment: {name: A}, weight: 9}, b: {deployment: {name: A, version: 1}}}\n"})
    table = routing_table(REPO, [
        BranchRoutes("main", [folder("A", "main", version=2)], found.to_json()),
        BranchRoutes("staging", [folder("A", "staging", commit=C2, version=3)], {}, on_demand="http://versions-staging"),
    ])
    assert table["branches"] == ["main", "staging"]
    assert [(u["branch"], u["url"], u["version"]) for u in table["upstreams"]] == [
        ("main", "http://models-a.ml.svc", 2), ("staging", "http://models-staging-a.ml.svc", 3)]
    assert table["onDemand"] == {"staging": "http://versions-staging"}
    routed = Table.from_json(table)  # what the gateway pod loads
    assert decide(routed, "A", "staging", "latest", 0.5).primary.url == "http://models-staging-a.ml.svc/v1/A/latest"
    assert decide(routed, "A", None, "latest", 0.5).primary.url == "http://models-a.ml.svc/v1/A/latest"
    assert decide(routed, "split", None, "latest", 0.1).primary.backend == "a"


def test_status_lists_each_branch_its_deployments_and_the_first_branch_commit():
    folders = {f.key: f for f in (folder("B", "main"), folder("A", "staging", commit=C2, version=2), folder("A", "main"))}
    deps = [render_deployment(REPO, f, FolderSettings()) for f in folders.values()]
    for d in deps:
        d["metadata"]["generation"] = 1
        d["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    status = build_status(Observation(REPO, 1, C1, folders, deps, invalid={"staging/bad-name": "deployments/bad-name: ..."},
                                      branches=[("main", C1), ("staging", C2)]), now="2026-12-01T00:00:00Z")
    assert [(d["branch"], d["name"], d.get("version")) for d in status["deployments"]] == [
        ("main", "A", 1), ("main", "B", 1), ("staging", "A", 2), ("staging", "bad-name", None)]
    assert status["deployments"][2]["url"] == "http://models-staging-a.ml.svc/v1/A/latest"
    assert status["commit"] == C1 and status["ready"] == "3/4"
    assert status["branches"] == [{"name": "main", "commit": C1}, {"name": "staging", "commit": C2}]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["message"].startswith("bad-name (branch staging): deployments/bad-name")


def test_endpoint_entries_resolve_latest_numbers_aliases_and_say_what_is_wrong():
    found, problems = parse_files({
        "split.yaml": "backends: {n: {deployment: {name: A}, weight: 3}, o: {deployment: {name: A, version: official}},"
                      " s: {deployment: {name: A, version: abababa}, weight: 0}, x: {deployment: {name: A, version: 9}}}\n"
                      "mirrors: {m: {deployment: {name: A, branch: staging}}}\n",
        "bad.yml": "backends: [1]\n",
        "aliases.yaml": "aliases: {A: {official: 1}}\n",
    })
    folders = {("main", "A"): folder("A", "main", commit="ab" * 20, version=4), ("staging", "A"): folder("A", "staging", version=6)}
    entries = endpoint_entries("main", found, problems, folders, {"main": found.aliases})
    split, bad = entries
    assert [(b["key"], b.get("resolvedVersion"), b["weight"]) for b in split["backends"]] == [
        ("n", 4, 3.0), ("o", 1, 1.0), ("s", 4, 0.0), ("x", None, 1.0)]  # SHA prefix of the head; no version 9
    assert split["mirrors"] == [{"key": "m", "deployment": "A", "branch": "staging", "version": "latest", "resolvedVersion": 6}]
    assert split["valid"] is True
    assert bad == {"name": "bad", "branch": "main", "file": "endpoints/bad.yml", "valid": False,
                   "message": "backends must be a mapping of names to definitions"}


def test_a_push_to_any_followed_branch_wakes_the_modelrepo():
    target = RepoTarget("ml", "m", "git://h/r", None, None, branches=("main", "release-*"))
    assert target.follows("main") and target.follows("release-3") and not target.follows("feature")
    assert RepoTarget("ml", "m", "git://h/r", "main", None).follows("main")
    assert not RepoTarget("ml", "m", "git://h/r", "main", None).follows(None)
