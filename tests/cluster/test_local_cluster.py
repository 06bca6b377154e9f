"""The cluster the project tests against: a node that runs the project image and serves a model.

What a user sees: the node is Ready; a Deployment of the project image serving a small model
folder becomes Available; its Service answers a prediction on its ClusterIP from this machine
and by DNS name from another pod; a pod that is not ready gets no traffic from the Service.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fixtures.cluster import Cluster, create_namespace, delete_namespace, wait_until
from kubernetes import client, utils

pytestmark = pytest.mark.cluster

LOCAL_RANGE = ipaddress.ip_network("198.18.0.0/15")
RUNTIME_PORT = 3000

SOURCE = '''\
def {name}(x: int) -> int:
    """Multiply by {factor}.

    >>> {name}(4)
    {example}
    """
    return {factor} * x
'''

METADATA = """\
schemaVersion: 2
runtimeInfo:
  mainFunction: {name}
  mainFunctionArgs: ["x:int"]
  pythonVersion: "3.11"
  systemPackages: []
"""


def model_folder(name: str, factor: int) -> dict[str, str]:
    """A deployment folder (docs/repo-format.md) without pickles: fits in a ConfigMap."""
    return {
        "source.py": SOURCE.format(name=name, factor=factor, example=4 * factor),
        "metadata.yaml": METADATA.format(name=name),
        "requirements.txt": "",
    }


def runtime_deployment(
    name: str, model: str, image: str, labels: dict[str, str], ready_probe: dict
) -> dict:
    """A Deployment running `modelrepo runtime` on a folder copied from a ConfigMap."""
    restricted = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    folder = f"/models/{model}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {**labels, "app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                    },
                    "initContainers": [{
                        "name": "folder",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", f"mkdir -p {folder} && cp /src/* {folder}/"],
                        "securityContext": restricted,
                        "volumeMounts": [
                            {"name": "src", "mountPath": "/src", "readOnly": True},
                            {"name": "models", "mountPath": "/models"},
                        ],
                    }],
                    "containers": [{
                        "name": "runtime",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["runtime", "--dir", folder, "--port", str(RUNTIME_PORT),
                                 "--name", model],
                        "env": [
                            {"name": "MODELREPO_COMMIT", "value": "0123456789abcdef" * 2 + "01234567"},
                            {"name": "MODELREPO_VERSION", "value": "1"},
                        ],
                        "ports": [{"name": "http", "containerPort": RUNTIME_PORT}],
                        "readinessProbe": ready_probe,
                        "securityContext": restricted,
                        "volumeMounts": [
                            {"name": "models", "mountPath": "/models", "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "src", "configMap": {"name": name}},
                        {"name": "models", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


READYZ_PROBE = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1,
                "failureThreshold": 2}
NEVER_READY_PROBE = {"exec": {"command": ["false"]}, "periodSeconds": 1}


def deploy_model(cluster: Cluster, ns: str, name: str, model: str, factor: int,
                 service_labels: dict[str, str], ready_probe: dict) -> None:
    utils.create_from_dict(cluster.api, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": model_folder(model, factor),
    }, namespace=ns)
    utils.create_from_dict(
        cluster.api,
        runtime_deployment(name, model, cluster.image, service_labels, ready_probe),
        namespace=ns,
    )


def pod_report(cluster: Cluster, ns: str) -> str:
    """Pod phases, container states and recent log lines: the message of a failed wait."""
    core = client.CoreV1Api(cluster.api)
    lines = []
    for pod in core.list_namespaced_pod(ns).items:
        lines.append(f"pod {pod.metadata.name}: {pod.status.phase}")
        for st in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
            lines.append(f"  {st.name}: ready={st.ready} state={st.state.to_dict()}")
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, ns, container=st.name,
                                                   tail_lines=15)
                lines += ["    " + line for line in log.splitlines()]
            except client.ApiException:
                pass
    events = core.list_namespaced_event(ns).items
    lines += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events[-15:]]
    return "\n".join(lines)


def wait_available(cluster: Cluster, ns: str, name: str, timeout: float = 300) -> None:
    apps = client.AppsV1Api(cluster.api)

    def available() -> bool:
        conds = apps.read_namespaced_deployment_status(name, ns).status.conditions or []
        return any(c.type == "Available" and c.status == "True" for c in conds)

    try:
        wait_until(available, timeout, f"Deployment {ns}/{name} to become Available")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pod_report(cluster, ns)}") from None


def predict(url: str, x: int) -> tuple[int, dict]:
    """POST {"data": x} as a user would; return (status, JSON answer)."""
    req = urllib.request.Request(url, data=json.dumps({"data": x}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


@dataclass
class ServedModel:
    namespace: str
    service: str
    cluster_ip: str


@pytest.fixture(scope="module")
def served_model(cluster: Cluster) -> Iterator[ServedModel]:
    """A Deployment + Service of the project image serving `double` (2 * x)."""
    ns = create_namespace(cluster, "served-model")
    try:
        deploy_model(cluster, ns, "double", "double", 2, {"serves": "double"}, READYZ_PROBE)
        svc = utils.create_from_dict(cluster.api, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "double"},
            "spec": {"selector": {"serves": "double"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }, namespace=ns)[0]
        wait_available(cluster, ns, "double")
        yield ServedModel(ns, "double", svc.spec.cluster_ip)
    finally:
        delete_namespace(cluster, ns)


def test_node_is_ready(cluster: Cluster) -> None:
    nodes = client.CoreV1Api(cluster.api).list_node().items
    assert nodes, "the cluster has no node"
    ready = [n.metadata.name for n in nodes
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
    assert ready, f"no node is Ready: {[n.status.conditions for n in nodes]}"
    # What a user typing kubectl sees (the fixture's kubectl is the cluster's own for the local one).
    assert f"node/{ready[0]}" in cluster.kubectl("get", "nodes", "-o", "name").split()
    if cluster.info.local:
        addresses = {a.type: a.address for a in nodes[0].status.addresses}
        assert ipaddress.ip_address(addresses["InternalIP"]) in LOCAL_RANGE
        assert addresses["InternalIP"] == cluster.host_ip


def test_prediction_through_cluster_ip_from_host(cluster: Cluster, served_model: ServedModel) -> None:
    if cluster.info.local:
        assert ipaddress.ip_address(served_model.cluster_ip) in LOCAL_RANGE
    url = f"http://{served_model.cluster_ip}/v1/double/latest"
    status, answer = wait_until(lambda: predict(url, 21), 60, f"an answer from {url}")
    assert (status, answer) == (200, {"data": 42})


def test_prediction_by_service_dns_name_from_another_pod(
    cluster: Cluster, served_model: ServedModel
) -> None:
    ns = served_model.namespace
    script = textwrap.dedent(f"""
        import json, urllib.request
        for host in ("double", "double.{ns}.svc.cluster.local"):
            req = urllib.request.Request("http://" + host + "/v1/double/latest",
                data=json.dumps({{"data": 5}}).encode(),
                headers={{"Content-Type": "application/json"}})
            with urllib.request.urlopen(req, timeout=10) as resp:
                print(host, resp.status, resp.read().decode())
    """)
    utils.create_from_dict(cluster.api, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [{
                "name": "client", "image": cluster.image, "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", script],
                "securityContext": {"readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False},
            }],
        },
    }, namespace=ns)
    core = client.CoreV1Api(cluster.api)

    def finished() -> str | None:
        phase = core.read_namespaced_pod_status("client", ns).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(finished, 180, "the client pod to finish")
    logs = core.read_namespaced_pod_log("client", ns)
    assert phase == "Succeeded", f"client pod {phase}:\n{logs}\n{pod_report(cluster, ns)}"
    answers = [line.split(" ", 2) for line in logs.splitlines()]
    assert [(host, status, json.loads(body)) for host, status, body in answers] == [
        ("double", "200", {"data": 10}),
        (f"double.{ns}.svc.cluster.local", "200", {"data": 10}),
    ], logs


def test_pod_that_is_not_ready_gets_no_traffic(cluster: Cluster, served_model: ServedModel) -> None:
    ns = served_model.namespace
    # Same Service labels, a different answer (3 * x), and a readiness probe that always fails.
    deploy_model(cluster, ns, "triple", "double", 3, {"serves": "double"}, NEVER_READY_PROBE)
    core = client.CoreV1Api(cluster.api)
    discovery = client.DiscoveryV1Api(cluster.api)

    def unready_endpoint() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector="app=triple").items
        running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
        if not running:
            return None
        ip = running[0].status.pod_ip
        slices = discovery.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=double").items
        for s in slices:
            for ep in s.endpoints or []:
                if ip in ep.addresses and ep.conditions.ready is False:
                    return ip
        return None

    ip = wait_until(unready_endpoint, 180, "the never-ready pod to be listed as not ready")
    # The pod itself serves (so traffic reaching it would show 3 * x) ...
    direct = f"http://{ip}:{RUNTIME_PORT}/v1/double/latest"
    assert wait_until(lambda: predict(direct, 4), 120, f"an answer from {direct}") == (
        200, {"data": 12})
    # ... yet every request through the Service is answered by the ready pod.
    url = f"http://{served_model.cluster_ip}/v1/double/latest"
    answers = [predict(url, 4) for _ in range(30)]
    assert answers == [(200, {"data": 8})] * 30
