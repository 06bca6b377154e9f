"""Plans: apply only changed folders, prune only removed ones, report invalid names."""

from modelrepo.operator.plan import make_plan, selected
from modelrepo.operator.render import (
    Folder,
    FolderSettings,
    RepoRef,
    render_deployment,
    render_service,
)

REPO = RepoRef(name="models", namespace="ml", uid="u", url="git://h/r.git", branch="main")
CONFIG = REPO.config_hash()


def folders(**trees):
    return {n: Folder(n, t, "c" * 40, 1) for n, t in trees.items()}


def existing(fs):
    deps = [render_deployment(REPO, f, FolderSettings()) for f in fs.values()]
    svcs = [render_service(REPO, n) for n in fs]
    return deps, svcs


def test_nothing_changed_nothing_to_do():
    fs = folders(A="1", B="2", C="3")
    plan = make_plan("models", fs, *existing(fs), config_hash=CONFIG)
    assert not plan.changes
    assert [f.name for f in plan.unchanged] == ["A", "B", "C"]


def test_one_changed_folder_is_the_only_one_applied():
    before = folders(A="1", B="2", C="3")
    after = folders(A="1", B="2b", C="3")
    plan = make_plan("models", after, *existing(before), config_hash=CONFIG)
    assert [f.name for f in plan.apply] == ["B"]
    assert plan.prune == [] and plan.services == []


def test_removed_folder_is_pruned_new_one_applied():
    plan = make_plan("models", folders(A="1", D="4"), *existing(folders(A="1", B="2")), config_hash=CONFIG)
    assert [f.name for f in plan.apply] == ["D"]
    assert plan.services == ["D"]
    assert plan.prune == ["models-b"]


def test_repository_settings_change_rolls_everything():
    fs = folders(A="1", B="2")
    plan = make_plan("models", fs, *existing(fs), config_hash="other")
    assert [f.name for f in plan.apply] == ["A", "B"]


def test_include_and_exclude_globs():
    assert selected("churn_v2", ["churn_*"], [])
    assert not selected("churn_v2", ["*"], ["*_v2"])
    fs = folders(churn_a="1", churn_b="2", other="3")
    plan = make_plan("models", fs, *existing(fs), include=["churn_*"], exclude=["*_b"], config_hash=CONFIG)
    assert [f.name for f in plan.unchanged] == ["churn_a"]
    assert plan.prune == ["models-churn-b", "models-other"]


def test_invalid_and_colliding_names_are_reported_and_skipped():
    fs = folders(**{"bad-name": "1", "Foo_Bar": "2", "foo_bar": "3"})
    plan = make_plan("models", fs, [], [], config_hash=CONFIG)
    assert "bad-name" in plan.invalid and "Python identifier" in plan.invalid["bad-name"]
    assert "collides" in plan.invalid["foo_bar"]
    assert [f.name for f in plan.apply] == ["Foo_Bar"]


def test_a_folder_named_like_the_gateway_is_refused_not_applied():
    folders = {"Gateway": Folder("Gateway", "t1", "c1", 1), "Ok": Folder("Ok", "t2", "c2", 1)}
    plan = make_plan("models", folders, [], [], config_hash=CONFIG)
    assert [f.name for f in plan.apply] == ["Ok"]
    assert "is the workspace gateway's; rename the folder" in plan.invalid["Gateway"]
