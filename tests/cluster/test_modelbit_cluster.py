"""A repository in Modelbit's synced shapes, served unchanged by the operator on the local cluster.

The same folders as tests/unit/test_modelbit_serve.py (tests/fixtures/modelbit_repos.py): the
article's untyped `Linear_Model` with `import modelbit`, `common/` links, DataFrame mode, a
relative `open`, a package in the folder, a Modelbit file stub and an archived folder. Requests go
through the API server's service proxy, as a client inside the cluster would send them.
"""

from __future__ import annotations

import pytest
from fixtures.cluster import wait_until
from fixtures.modelbit_repos import NEEDS_FOLDER_CONTEXT, SERVED, STUB_HASH, write_modelbit_repo

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 600  # seven deployments' pods on a 2-core machine
SERVING = (*SERVED, *NEEDS_FOLDER_CONTEXT)


def test_a_modelbit_repository_serves_unchanged(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("mb")
    write_modelbit_repo(repo.path)
    head = repo.commit_push("synced from Modelbit")
    kube.apply_modelrepo("mb", {"url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s"})

    def all_serving() -> dict | None:
        status = kube.status("mb")
        by = {d["name"]: d for d in status.get("deployments", [])}
        ok = status.get("commit") == head and all(by.get(n, {}).get("ready") for n in SERVING)
        return by if ok else None

    try:
        by = wait_until(all_serving, READY, "the Modelbit folders ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {kube.status('mb')}") from None

    # The stub is named with what to do; nothing of it was unpickled; the others serve.
    assert "a Modelbit file stub" in by["Stubbed"]["message"] and STUB_HASH in by["Stubbed"]["message"]
    assert "invalid load key" not in by["Stubbed"]["message"]
    # The archived folder is listed as such and has no Deployment.
    assert by["Old_Model"]["message"] == "archived"
    assert "mb-old-model" not in kube.deployments("mb")

    # The article's function: a single call and Modelbit's batch rule, untyped argument.
    kube.wait_predict("mb-linear-model", "Linear_Model", 5, 11.0)
    assert kube.predict("mb-linear-model", "Linear_Model", [[1, 5], [2, 6]]) == (200, [[1, 11.0], [2, 13.0]])
    assert kube.predict("mb-shared-scale", "Shared_Scale", 4) == (200, 12)           # common/ links
    assert kube.predict("mb-no-args", "No_Args", []) == (200, "pong")                 # no mainFunctionArgs
    assert kube.predict("mb-frame-sum", "Frame_Sum", [[1, {"a": 1, "b": 2}], [2, {"a": 3, "b": 4}]]) == (
        200, [[1, 3], [2, 7]])                                                         # DataFrame mode
    assert kube.predict("mb-reads-file", "Reads_File", "Ada") == (200, "Hello, Ada!")  # relative open()
    assert kube.predict("mb-with-package", "With_Package", "abc") == (200, 3)          # app/ in the folder
    assert kube.predict("mb-common-import", "Common_Import", 2) == (200, 6)           # helpers.py from common/
