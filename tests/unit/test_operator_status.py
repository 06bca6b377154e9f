"""Status from what really runs: readiness, Degraded from Deployment conditions and pod reasons."""

import copy

from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment
from modelrepo.operator.status import Observation, build_status, condition, same_status

REPO = RepoRef(name="models", namespace="ml", uid="u", url="git://h/r.git", branch="main")
OLD, NEW = "a" * 40, "b" * 40


def deployment(name, commit, *, ready=True, generation=2, version=1):
    d = render_deployment(REPO, Folder(name, "t", commit, version), FolderSettings())
    d["metadata"]["generation"] = generation
    d["status"] = {
        "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1 if ready else 0,
        "readyReplicas": 1, "availableReplicas": 1,
    }
    if not ready:  # new ReplicaSet surging beside the old one
        d["status"]["replicas"] = 2
    return d


def pod(name, commit, init_state=None, container_state=None, restarts=0):
    labels = render_deployment(REPO, Folder(name, "t", commit, 1), FolderSettings())["spec"]["template"]["metadata"]["labels"]
    status = {}
    if init_state:
        status["initContainerStatuses"] = [{"name": "fetch", "restartCount": restarts, **init_state}]
    if container_state:
        status["containerStatuses"] = [{"name": "runtime", "restartCount": restarts, **container_state}]
    return {"metadata": {"labels": labels}, "status": status}


def observe(deps, pods=(), folders=None, **kw):
    folders = folders or {"A": Folder("A", "t", NEW, 2), "B": Folder("B", "t", OLD, 1)}
    return build_status(Observation(REPO, 3, NEW, folders, deps, pods, **kw), now="2026-11-26T13:00:00Z")


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_all_rolled_out_is_ready():
    st = observe([deployment("A", NEW, version=2), deployment("B", OLD)])
    assert st["ready"] == "2/2" and st["shortCommit"] == NEW[:7]
    assert cond(st, "Ready")["status"] == "True"
    assert cond(st, "Degraded")["status"] == "False"
    a = st["deployments"][0]
    assert a == {
        "name": "A", "branch": "main", "url": "http://models-a.ml.svc/v1/A/latest", "version": 2, "commit": NEW,
        "replicas": 1, "readyReplicas": 1, "ready": True, "message": "",
    }


def test_rollout_in_progress_is_progressing_not_degraded():
    st = observe([deployment("A", NEW, ready=False), deployment("B", OLD)])
    assert cond(st, "Progressing")["status"] == "True"
    assert cond(st, "Degraded")["status"] == "False"
    assert st["ready"] == "1/2"


def test_crashing_new_pods_make_degraded_name_the_deployment_and_reason():
    failing = pod("A", NEW, init_state={
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "source.py: docstring test failed"}},
    }, restarts=3)
    old_pod = pod("A", OLD, container_state={"state": {"running": {}}, "ready": True})
    st = observe([deployment("A", NEW, ready=False), deployment("B", OLD)], pods=[failing, old_pod])
    degraded = cond(st, "Degraded")
    assert degraded["status"] == "True"
    assert "A: init container fetch: CrashLoopBackOff: source.py: docstring test failed" in degraded["message"]
    assert "serving version" in degraded["message"]
    assert cond(st, "Ready")["status"] == "False" and cond(st, "Ready")["reason"] == "Degraded"


def test_progress_deadline_exceeded_is_degraded():
    d = deployment("A", NEW, ready=False)
    d["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                  "message": 'ReplicaSet "x" has timed out progressing.'}]
    st = observe([d, deployment("B", OLD)])
    assert "rollout stuck" in cond(st, "Degraded")["message"]


def test_invalid_folder_is_degraded_and_keeps_serving_the_old_version():
    st = observe([deployment("A", OLD), deployment("B", OLD)], invalid={"A": "deployments/A/source.py: line 3: SyntaxError"})
    entry = st["deployments"][0]
    assert entry["ready"] is False and "SyntaxError" in entry["message"]
    assert entry["commit"] == OLD
    assert "A: deployments/A/source.py: line 3: SyntaxError" in cond(st, "Degraded")["message"]


def test_source_error_is_source_ready_false():
    st = observe([deployment("A", NEW, version=2), deployment("B", OLD)], source_error="fatal: Authentication failed")
    assert cond(st, "SourceReady")["status"] == "False"
    assert cond(st, "Ready")["reason"] == "SourceNotReady"
    assert st["ready"] == "2/2"


def test_transition_time_only_moves_when_the_status_changes():
    prev = [condition("Ready", True, "Serving", "", 1, now="2026-01-01T00:00:00Z")]
    assert condition("Ready", True, "Serving", "x", 2, prev, now="later")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert condition("Ready", False, "Degraded", "x", 2, prev, now="later")["lastTransitionTime"] == "later"


def test_same_status_ignores_last_sync_time():
    st = observe([deployment("A", NEW, version=2), deployment("B", OLD)])
    other = copy.deepcopy(st)
    other["lastSyncTime"] = "2026-11-26T14:00:00Z"
    assert same_status(st, other)
