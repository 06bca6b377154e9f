"""Datasets and secrets on the real cluster: PostgreSQL on the node address, Secrets in the namespace.

A deployment joins its input with `get_dataset("customers")` from PostgreSQL through the
warehouses Secret (a push changing only the query rolls it, and nothing else); another returns
`get_secret("API_TOKEN")` from a Secret granted to it alone; a new version needing a broken
query does not get ready and the old one keeps serving.
The pods run the project image; MODELREPO_TEST_IMAGE names another (a branch's own build).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from fixtures.cluster import wait_until
from fixtures.postgres import start_postgres

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 420
SECRET = "tok-cluster-5ecret-7731"

ENRICH = '''import modelrepo


def Enrich(customer_id: int):
    customers = modelrepo.get_dataset("customers", filters={"id": [customer_id]})
    row = customers.to_dict("records")[0] if len(customers) else {}
    return {"customer_id": customer_id, "name": row.get("name"), "segment": row.get("segment")}
'''
WHISPER = '''import modelrepo


def Whisper(ask: int):
    return modelrepo.get_secret("API_TOKEN") if ask == 1 else "not asked"
'''


@pytest.fixture(scope="module")
def node_postgres(cluster):
    if not cluster.host_ip:
        pytest.skip("the cluster gives no host address for pods to reach a test database")
    server = start_postgres(cluster.host_ip, clients="0.0.0.0/0")
    server.admin_sql(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, segment text);"
        "INSERT INTO customers VALUES (1, 'Ann', 'gold'), (2, 'Bob', 'silver');"
    )
    yield server
    server.stop()


def write(repo, relpath: str, text: str) -> None:
    repo.write(relpath, text)


def deployment(repo, name: str, source: str, arg: str) -> None:
    write(repo, f"deployments/{name}/source.py", source)
    meta = {"schemaVersion": 2, "runtimeInfo": {"mainFunction": name, "mainFunctionArgs": [arg],
                                                "pythonVersion": "3.11", "systemPackages": []}}
    write(repo, f"deployments/{name}/metadata.yaml", yaml.safe_dump(meta, sort_keys=False))


def pod_report(kube) -> str:
    """Each pod's container states and the last lines of its logs: why a rollout did not get ready."""
    lines = []
    for pod in json.loads(kube.kubectl("get", "pods", "-o", "json"))["items"]:
        name = pod["metadata"]["name"]
        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
        lines.append(f"{name}: " + json.dumps([{s["name"]: s.get("state")} for s in statuses]))
        for container in ("fetch", "runtime"):
            lines.append(kube.kubectl("logs", name, "-c", container, "--tail=15", check=False))
    return "\n".join(lines)


def test_datasets_and_secrets_in_pods(kube, operator, node_git_servers, node_model_repo, node_postgres, cluster):
    repo = node_model_repo("data")
    deployment(repo, "Enrich", ENRICH, "customer_id:int")
    deployment(repo, "Whisper", WHISPER, "ask:int")
    write(repo, "datasets/customers.yaml", "query: select id, name, segment from customers\nwarehouse: crm\nschemaVersion: 2\n")
    first = repo.commit_push("two deployments and a dataset")
    kube.create_secret("warehouses", {"crm": node_postgres.url().encode()})
    kube.create_secret("tokens", {"API_TOKEN": SECRET.encode()})
    image = os.environ.get("MODELREPO_TEST_IMAGE") or cluster.image
    kube.apply_modelrepo("data", {
        "url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s",
        "runtime": {"image": image},
        "warehousesSecretRef": {"name": "warehouses"},
        "secrets": [{"name": "tokens", "deployments": ["Whisper"]}],
    })
    try:
        kube.wait_ready("data", first, 2, timeout=READY)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pod_report(kube)}") from None
    kube.wait_predict("data-enrich", "Enrich", 1, {"customer_id": 1, "name": "Ann", "segment": "gold"})
    kube.wait_predict("data-whisper", "Whisper", 0, "not asked")
    assert kube.predict("data-whisper", "Whisper", 1) == (200, SECRET)
    enrich_pod = kube.deployments_by_name("data-enrich")["spec"]["template"]["spec"]
    assert "/etc/modelrepo/secrets/tokens" not in json.dumps(enrich_pod)  # granted to Whisper only

    # A push changing only the query rolls Enrich (it reads customers), and only Enrich.
    whisper_pods = kube.pod_uids("data-whisper")
    write(repo, "datasets/customers.yaml",
          "query: select id, upper(name) as name, segment from customers\nwarehouse: crm\nschemaVersion: 2\n")
    requery = repo.commit_push("only the customers query")
    kube.wait_predict("data-enrich", "Enrich", 1, {"customer_id": 1, "name": "ANN", "segment": "gold"}, timeout=READY)
    enrich = kube.deployments_by_name("data-enrich")["metadata"]["annotations"]
    assert enrich["modelrepo.dev/commit"] == first and enrich["modelrepo.dev/datasets-commit"] == requery
    assert kube.pod_uids("data-whisper") == whisper_pods

    # The secret and the database password are nowhere but in Whisper's answer.
    everything = json.dumps(kube.modelrepo("data")) + kube.kubectl("get", "events", "-o", "json")
    for child in ("data-enrich", "data-whisper"):
        everything += kube.kubectl("logs", f"deployment/{child}", "--all-containers", "--tail=-1")
    assert SECRET not in everything
    assert "rd-0nly-pa55" not in everything

    # A new version that needs a broken query does not get ready; v1 keeps answering.
    write(repo, "datasets/vip.yaml", "query: select id from vip_list\nwarehouse: crm\nschemaVersion: 2\n")
    deployment(repo, "Enrich", ENRICH.replace("    customers =", '    modelrepo.get_dataset("vip")\n    customers ='),
               "customer_id:int")
    second = repo.commit_push("Enrich v2 reads vip")
    problem = 'relation "vip_list" does not exist'

    def refused_pod_log() -> str:
        pods = json.loads(kube.kubectl("get", "pods", "-l", f"modelrepo.dev/commit={second}", "-o", "json"))["items"]
        for pod in pods:
            log = kube.kubectl("logs", pod["metadata"]["name"], "-c", "runtime", check=False)
            if problem in log:
                return log
        return ""

    log = wait_until(refused_pod_log, READY, "the new pod's log naming the broken query", interval=2)
    assert "dataset 'vip': query failed on warehouse 'crm'" in log
    assert kube.predict("data-enrich", "Enrich", 2) == (200, {"customer_id": 2, "name": "BOB", "segment": "silver"})
    assert kube.status("data")["commit"] == second
