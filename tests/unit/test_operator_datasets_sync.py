"""A push that changes only datasets/ (or common/) rolls the deployments reading (linking) it, no other.

Pure parts (which datasets a source reads, which commit last changed them) and the sync against
a real git server with the in-memory API of test_operator_sync.
"""

from __future__ import annotations

import copy

from fixtures.git_servers import WorkRepo
from unit.test_operator_sync import api, body_for  # noqa: F401 - the in-memory API fixture

from modelrepo.format.datasets import dataset_of, datasets_read, newest_change
from modelrepo.operator import sync
from modelrepo.operator.sync import RepoState


def test_which_datasets_a_source_reads():
    assert datasets_read('import modelbit\nx = modelbit.get_dataset("customers", filters={"id": [1]})') == {"customers"}
    assert datasets_read("get_dataset(dsName='leads')\nget_dataset( \"sales.v2\")") == {"leads", "sales.v2"}
    assert datasets_read("def f(x):\n    return x * 2\n") == frozenset()
    assert datasets_read('get_dataset("a")\nname = "b"\nget_dataset(name)') is None  # any dataset


def test_dataset_files_and_the_newest_change_that_matters():
    assert dataset_of("datasets/customers.yaml") == "customers"
    assert dataset_of("datasets/leads.yml") == "leads"
    assert dataset_of("datasets/.gitkeep") is None and dataset_of("datasets/sub/x.yaml") is None
    assert dataset_of("deployments/A/datasets/x.yaml") is None
    changes = [("c3", frozenset({"leads"})), ("c2", frozenset({"customers"})), ("c1", frozenset({"customers", "leads"}))]
    assert newest_change(frozenset({"customers"}), changes) == "c2"
    assert newest_change(frozenset({"leads", "customers"}), changes) == "c3"
    assert newest_change(None, changes) == "c3"
    assert newest_change(frozenset(), changes) == ""
    assert newest_change(frozenset({"other"}), changes) == ""


def reader(name: str, call: str) -> str:
    return (f"import modelrepo\n\n\ndef {name}(x: int):\n    frame = {call}\n    return len(frame) + x\n")


def dataset(query: str) -> str:
    return f"query: {query}\nwarehouse: crm\nschemaVersion: 2\n"


def test_a_dataset_push_rolls_only_the_deployments_reading_it(api, git_servers, tmp_path):  # noqa: F811
    bare = git_servers.create_repo("sync-datasets")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("Plain")
    for name, call in (("Cust", 'modelrepo.get_dataset("customers")'), ("Lead", "modelrepo.get_dataset('leads')"),
                       ("Any", 'modelrepo.get_dataset(["customers", "leads"][x])')):
        work.write_deployment(name)
        work.write(f"deployments/{name}/source.py", reader(name, call))
    work.write("datasets/customers.yaml", dataset("select 1 as id"))
    work.write("datasets/leads.yaml", dataset("select 2 as id"))
    first = work.commit_push("four deployments, two datasets")
    body, state = body_for(git_servers.daemon_url("sync-datasets")), RepoState()
    assert sorted(sync.sync(body, state, tmp_path / "cache").applied) == ["Any", "Cust", "Lead", "Plain"]

    def fetch_args(child: str) -> list[str]:
        return api.objects[("Deployment", child)]["spec"]["template"]["spec"]["initContainers"][0]["args"]

    assert "--datasets-at" not in fetch_args("models-cust")  # datasets/ of its own commit
    body["status"] = copy.deepcopy(api.status)

    work.write("datasets/customers.yaml", dataset("select 3 as id"))
    second = work.commit_push("only the customers query")
    result = sync.sync(body, state, tmp_path / "cache")
    assert sorted(result.applied) == ["Any", "Cust"]
    for child in ("models-cust", "models-any"):
        args = fetch_args(child)
        assert args[args.index("--commit") + 1] == first and args[args.index("--datasets-at") + 1] == second
    assert "--datasets-at" not in fetch_args("models-lead") + fetch_args("models-plain")

    work.write("README.md", "not a dataset\n")
    work.commit_push("unrelated")
    assert sync.sync(body, state, tmp_path / "cache").applied == []

    work.write("datasets/leads.yaml", dataset("select 4 as id"))
    work.commit_push("only the leads query")
    assert sorted(sync.sync(body, state, tmp_path / "cache").applied) == ["Any", "Lead"]


def test_a_common_file_push_rolls_only_the_deployments_linking_it(api, git_servers, tmp_path):  # noqa: F811
    bare = git_servers.create_repo("sync-common")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("Plain")
    work.write_deployment("Linked")
    work.write("common/helpers.py", "FACTOR = 2\n")
    work.write("common/unused.py", "X = 1\n")
    (work.path / "deployments/Linked/helpers.py").symlink_to("../../common/helpers.py")
    first = work.commit_push("a folder linking a common file")
    body, state = body_for(git_servers.daemon_url("sync-common")), RepoState()
    assert sorted(sync.sync(body, state, tmp_path / "cache").applied) == ["Linked", "Plain"]

    def fetch_commit(child: str) -> str:
        args = api.objects[("Deployment", child)]["spec"]["template"]["spec"]["initContainers"][0]["args"]
        return args[args.index("--commit") + 1]

    assert fetch_commit("models-linked") == first
    work.write("common/unused.py", "X = 2\n")
    work.commit_push("a common file nobody links")
    assert sync.sync(body, state, tmp_path / "cache").applied == []

    work.write("common/helpers.py", "FACTOR = 3\n")
    second = work.commit_push("only the linked common file")
    assert sync.sync(body, state, tmp_path / "cache").applied == ["Linked"]
    linked = api.objects[("Deployment", "models-linked")]
    assert fetch_commit("models-linked") == second  # the folder is the same there, helpers.py is new
    assert linked["metadata"]["annotations"]["modelrepo.dev/commit"] == first  # still version 1
    assert {d["name"]: d["version"] for d in api.status["deployments"]}["Linked"] == 1

    work.write_deployment("Linked", body="return x * 3", doc="12")
    third = work.commit_push("Linked v2")
    assert sync.sync(body, state, tmp_path / "cache").applied == ["Linked"]
    assert fetch_commit("models-linked") == third
    assert "modelrepo.dev/common-commit" not in api.objects[("Deployment", "models-linked")]["metadata"]["annotations"]
