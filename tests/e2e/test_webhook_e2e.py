"""A signed push reaches the operator running in-cluster from the Helm chart and rolls out.

What a user sees: the chart installs the operator (namespaced, polling every hour, so only the
webhook can explain a quick rollout); a ModelRepo on a real git daemon serves version 1; a
GitHub-shaped push event signed with the ModelRepo Secret's `webhookSecret` makes the Service
answer with the pushed version; a wrong signature gets 401, an unsigned body 401, an oversized
body 413, a ping 200, and none of them starts a sync.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.cluster import Cluster, wait_until
from fixtures.git_servers import GitServers, WorkRepo, start_git_servers
from fixtures.helm import CHART, Helm

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-webhook-secret"
RELEASE = "mr"


@dataclass
class Installed:
    namespace: str
    webhook: str  # http://<ClusterIP>:<port> of the chart's Service, port `webhook`
    metrics: str


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _service_url(cluster: Cluster, namespace: str, name: str, port_name: str) -> str:
    svc = json.loads(cluster.kubectl("-n", namespace, "get", "service", name, "-o", "json"))
    (port,) = [
        p["port"]
        for p in svc["spec"]["ports"]
        if p.get("name", "") == port_name or len(svc["spec"]["ports"]) == 1
    ]
    return f"http://{svc['spec']['clusterIP']}:{port}"


@pytest.fixture
def git_on_node(cluster: Cluster, tmp_path: Path) -> Iterator[GitServers]:
    """Git servers on the node address, where pods reach this machine."""
    if not cluster.host_ip:
        pytest.skip("the cluster gives no address where pods reach this machine")
    servers = start_git_servers(tmp_path / "repos", bind=cluster.host_ip)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def chart_operator(cluster: Cluster, helm: Helm, namespace: str) -> Iterator[Installed]:
    """The chart installed as `make install` does, watching only this test's namespace."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelrepo-install",
        "-f",
        str(ROOT / "crds"),
    )
    cluster.kubectl(
        "wait", "--for", "condition=established", "--timeout=60s", "crd/modelrepos.modelrepo.dev"
    )
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    helm.run(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--skip-crds",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "operator.verbose=true",
        env=env,
    )
    name = f"{RELEASE}-modelrepo"
    try:
        yield Installed(
            namespace,
            _service_url(cluster, namespace, name, "webhook"),
            _service_url(cluster, namespace, name, "metrics"),
        )
    finally:
        # ModelRepos go first, while the operator still runs to remove its finalizer; else the
        # namespace would stay Terminating.
        cluster.kubectl(
            "-n",
            namespace,
            "delete",
            "modelrepos",
            "--all",
            "--wait",
            "--timeout=120s",
            check=False,
        )
        helm.run("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False, env=env)


def github_push(url: str, before: str, after: str, ref: str = "refs/heads/main") -> bytes:
    """A push event as GitHub sends it (the fields the receiver reads, and some it does not)."""
    return json.dumps(
        {
            "ref": ref,
            "before": before,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {
                "id": 1,
                "name": "models",
                "full_name": "acme/models",
                "private": True,
                "html_url": "https://github.example/acme/models",
                "clone_url": "https://github.example/acme/models.git",
                "ssh_url": "git@github.example:acme/models.git",
                "git_url": url,
                "default_branch": "main",
            },
            "pusher": {"name": "octocat", "email": "octocat@example.invalid"},
            "head_commit": {"id": after, "message": "new version"},
        }
    ).encode()


def signed(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "e2e-delivery",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def ls_remote_calls(metrics_url: str) -> float:
    """How many ls-remote calls the operator made (its Prometheus counter, all ModelRepos)."""
    status, text, _ = _http("GET", f"{metrics_url}/metrics")
    assert status == 200
    total = 0.0
    for line in text.decode().splitlines():
        match = re.match(r"^modelrepo_ls_remote_total\{.*\} ([0-9.e+]+)$", line)
        if match:
            total += float(match.group(1))
    return total


def test_signed_push_rolls_out_and_bad_requests_are_refused(
    cluster: Cluster, chart_operator: Installed, git_on_node: GitServers, tmp_path: Path
):
    ns = chart_operator.namespace
    bare = git_on_node.create_repo("models")
    work = WorkRepo.create(bare, tmp_path / "work")
    work.write_deployment("Double", body="return x * 2", doc="8")
    first = work.commit_push("Double: times two")
    url = git_on_node.daemon_url("models")

    secret = {"webhookSecret": base64.b64encode(SECRET.encode()).decode()}
    cluster.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git", "namespace": ns}, "data": secret}
    )
    cluster.apply(
        {
            "apiVersion": "modelrepo.dev/v1alpha1",
            "kind": "ModelRepo",
            "metadata": {"name": "models", "namespace": ns},
            "spec": {"url": url, "branch": "main", "interval": "1h", "secretRef": {"name": "git"}},
        }
    )

    def answer() -> tuple[int, dict[str, str]] | None:
        try:
            service = _service_url(cluster, ns, "models-double", "http")
        except AssertionError:
            return None
        status, body, headers = _http(
            "POST",
            f"{service}/v1/Double/latest",
            json.dumps({"data": 4}).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 200:
            return None
        return json.loads(body)["data"], {k.lower(): v for k, v in headers.items()}

    data, headers = wait_until(answer, 300, "version 1 of Double served")
    assert data == 8 and headers["x-modelrepo-commit"] == first

    # A GitHub ping for this repository: 200, and no sync.
    calls = ls_remote_calls(chart_operator.metrics)
    ping = json.dumps(
        {"zen": "Design for failure.", "hook_id": 7, "repository": {"git_url": url}}
    ).encode()
    status, body, _ = _http(
        "POST", f"{chart_operator.webhook}/hooks/github", ping, signed(ping, event="ping")
    )
    assert status == 200 and json.loads(body)["status"] == "pong"

    # Version 2 is pushed; the operator polls only every hour.
    work.write_deployment("Double", body="return x * 3", doc="12")
    second = work.commit_push("Double: times three")
    push = github_push(url, first, second)

    # Refused: a wrong signature, no signature, a body over 1 MiB. Each answer comes before any
    # sync could start, and the operator's ls-remote counter shows none did.
    status, body, _ = _http(
        "POST", f"{chart_operator.webhook}/hooks/github", push, signed(push, secret="not-the-secret")
    )
    assert status == 401, body
    unsigned = {k: v for k, v in signed(push).items() if k != "X-Hub-Signature-256"}
    status, body, _ = _http("POST", f"{chart_operator.webhook}/hooks/github", push, unsigned)
    assert status == 401, body
    big = push[:-1] + b', "padding": "' + b"x" * (1024 * 1024) + b'"}'
    status, body, _ = _http("POST", f"{chart_operator.webhook}/hooks/github", big, signed(big))
    assert status == 413, body
    assert ls_remote_calls(chart_operator.metrics) == calls
    data, headers = answer()
    assert data == 8 and headers["x-modelrepo-commit"] == first

    # The signed push: 202 at once, and the Service answers with version 2.
    status, body, _ = _http("POST", f"{chart_operator.webhook}/hooks/github", push, signed(push))
    assert status == 202, body
    assert json.loads(body)["syncs"] == {f"{ns}/models": "queued"}
    data, headers = wait_until(
        lambda: (r := answer()) and r[0] == 12 and r, 300, "version 2 of Double served"
    )
    assert headers["x-modelrepo-commit"] == second
    assert headers["x-modelrepo-version"] == "2"
