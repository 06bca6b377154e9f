"""From `git push` to the new version answering through its Service: webhook versus polling.

One command (needs root for the local cluster; reuses a running one; with $KUBECONFIG set,
that cluster as it is, pods reaching this machine at $MODELREPO_HOST_IP):

    .venv/bin/python bench/push_to_serve.py [--pushes 10] [--modes webhook,polling]

What it does: starts (or reuses) the local cluster, installs the chart in a fresh namespace
(operator in-cluster, watching only that namespace), serves a one-function repository from a
git daemon on the node address, then pushes N new versions of the function. Webhook mode:
`spec.interval: 1h` and a signed GitHub push event right after each push. Polling mode: the
CRD's default interval and no webhook. Each push is timed through the stages a user waits
for, observed from outside the operator every 50 ms:

    push -> webhook answered (202)           (webhook mode only)
         -> ls-remote done (the operator's modelrepo_ls_remote_total went up: sync started)
         -> Deployment patched (pod template annotation modelrepo.dev/commit = the new SHA)
         -> pod ready (a pod of the new commit reports Ready)
         -> served (the Service answers with X-Modelrepo-Commit = the new SHA)

Prints median and p90 of each stage and the ratio polling/webhook of the totals. Stops by
itself: every wait has a deadline; the namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.git_servers import WorkRepo, start_git_servers  # noqa: E402

CHART = ROOT / "charts" / "modelrepo"
SECRET = "bench-webhook-secret"
POLL = 0.05
STAGES = ["webhook", "ls_remote", "patched", "ready", "served"]


def sh(*args: str, input: str | None = None) -> str:
    proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


class Cluster:
    def __init__(self) -> None:
        if not os.environ.get("KUBECONFIG"):
            print("[bench] hack/cluster.sh up (reuses a running cluster)", flush=True)
            subprocess.run(
                ["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True, timeout=90 * 60
            )
        env = dict(
            line.split("=", 1)
            for line in sh("bash", str(ROOT / "hack" / "cluster.sh"), "env").splitlines()
            if "=" in line
        )
        # KUBECONFIG set: that cluster as it is, pods reaching this machine at MODELREPO_HOST_IP.
        self.kubeconfig = os.environ.get("KUBECONFIG") or env["KUBECONFIG"]
        self.node_ip = os.environ.get("MODELREPO_HOST_IP") or env["NODE_IP"]
        kubectl = Path(env.get("K8S_BIN", "")) / "kubectl"
        self.kubectl_bin = str(kubectl) if kubectl.is_file() else "kubectl"
        self.helm = sh("bash", str(ROOT / "hack" / "helm.sh")).strip().splitlines()[-1]

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return sh(self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args, input=input)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}
    except (urllib.error.URLError, OSError):
        return 0, b"", {}


def service_url(c: Cluster, ns: str, name: str, port_name: str) -> str | None:
    try:
        svc = c.get("-n", ns, "service", name)
    except SystemExit:
        return None
    for port in svc["spec"]["ports"]:
        if port.get("name") == port_name:
            return f"http://{svc['spec']['clusterIP']}:{port['port']}"
    return None


def ls_remote_total(metrics: str) -> float:
    status, text, _ = http("GET", f"{metrics}/metrics")
    if status != 200:
        return -1
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r"^modelrepo_ls_remote_total\{[^}]*\} ([0-9.e+]+)$", text.decode(), re.M
        )
    )


def signed_push(url: str, before: str, after: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {
                "full_name": "acme/models",
                "git_url": url,
                "clone_url": "https://github.example/acme/models.git",
            },
        }
    ).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    return body, headers


def wait(what: str, cond, deadline: float):
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"[bench] timed out waiting for {what}")
        time.sleep(POLL)


def time_one_push(
    c: Cluster,
    ns: str,
    work: WorkRepo,
    url: str,
    hooks: str | None,
    metrics: str,
    factor: int,
    timeout: float,
) -> dict[str, float]:
    before = work.head()
    work.write_deployment("Double", body=f"return x * {factor}", doc=str(4 * factor))
    calls = ls_remote_total(metrics)
    t0 = time.monotonic()
    sha = work.commit_push(f"Double: times {factor}")
    t_push = time.monotonic()
    marks = {"push": t_push - t0}
    deadline = t_push + timeout
    if hooks:
        body, headers = signed_push(url, before, sha)
        status, answer, _ = http("POST", f"{hooks}/hooks/github", body, headers)
        if status != 202:
            raise SystemExit(f"[bench] webhook answered {status}: {answer!r}")
        marks["webhook"] = time.monotonic() - t_push
    wait("ls-remote", lambda: ls_remote_total(metrics) > calls, deadline)
    marks["ls_remote"] = time.monotonic() - t_push

    def patched():
        d = c.get("-n", ns, "deployment", "models-double")
        return (
            d["spec"]["template"]["metadata"].get("annotations", {}).get("modelrepo.dev/commit")
            == sha
        )

    wait("Deployment patched", patched, deadline)
    marks["patched"] = time.monotonic() - t_push

    def ready():
        pods = c.get("-n", ns, "pods", "-l", f"modelrepo.dev/commit={sha}")["items"]
        return any(
            cond["type"] == "Ready" and cond["status"] == "True"
            for p in pods
            for cond in p.get("status", {}).get("conditions", [])
        )

    wait("pod ready", ready, deadline)
    marks["ready"] = time.monotonic() - t_push
    svc = service_url(c, ns, "models-double", "http")

    def served():
        status, body, headers = http(
            "POST", f"{svc}/v1/Double/latest", b'{"data": 4}', {"Content-Type": "application/json"}
        )
        return status == 200 and headers.get("x-modelrepo-commit") == sha

    wait("new version served", served, deadline)
    marks["served"] = time.monotonic() - t_push
    return marks


def summary(name: str, runs: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    out = {}
    print(f"\n{name}: {len(runs)} pushes, seconds after `git push` returned (median / p90)")
    for stage in STAGES:
        values = sorted(r[stage] for r in runs if stage in r)
        if not values:
            continue
        p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
        out[stage] = (statistics.median(values), p90)
        print(f"  {stage:<10} {out[stage][0]:7.2f} / {out[stage][1]:7.2f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--modes", default="webhook,polling")
    parser.add_argument("--timeout", type=float, default=300, help="deadline per push, seconds")
    args = parser.parse_args()
    modes = args.modes.split(",")

    c = Cluster()
    ns = f"bench-push-{secrets.token_hex(3)}"
    c.kubectl("create", "namespace", ns)
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    servers = start_git_servers(tmp / "repos", bind=c.node_ip)
    results: dict[str, list[dict[str, float]]] = {}
    try:
        c.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelrepo-install",
            "-f",
            str(ROOT / "crds"),
        )
        sh(
            c.helm,
            "upgrade",
            "--install",
            "mr",
            str(CHART),
            "--kubeconfig",
            c.kubeconfig,
            "--namespace",
            ns,
            "--skip-crds",
            "--wait",
            "--timeout",
            "5m",
            "--set",
            f"watchNamespaces={{{ns}}}",
        )
        hooks = service_url(c, ns, "mr-modelrepo", "webhook")
        metrics = service_url(c, ns, "mr-modelrepo", "metrics")
        bare = servers.create_repo("models")
        work = WorkRepo.create(bare, tmp / "work")
        work.write_deployment("Double", body="return x * 2", doc="8")
        first = work.commit_push("Double: times two")
        url = servers.daemon_url("models")
        c.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "git", "namespace": ns},
                    "data": {"webhookSecret": base64.b64encode(SECRET.encode()).decode()},
                }
            ),
        )
        repo = {
            "apiVersion": "modelrepo.dev/v1alpha1",
            "kind": "ModelRepo",
            "metadata": {"name": "models", "namespace": ns},
            "spec": {"url": url, "branch": "main", "interval": "1h", "secretRef": {"name": "git"}},
        }
        c.kubectl("apply", "-f", "-", input=json.dumps(repo))
        svc_deadline = time.monotonic() + 600

        def first_served():
            svc = service_url(c, ns, "models-double", "http")
            if not svc:
                return False
            status, _, headers = http(
                "POST",
                f"{svc}/v1/Double/latest",
                b'{"data": 4}',
                {"Content-Type": "application/json"},
            )
            return status == 200 and headers.get("x-modelrepo-commit") == first

        wait("version 1 served", first_served, svc_deadline)
        print(
            f"[bench] namespace {ns}: version 1 served; timing {args.pushes} pushes per mode",
            flush=True,
        )
        factor = 3
        for mode in modes:
            if mode == "polling":
                spec = {"spec": {"interval": None}}  # back to the CRD's default
                c.kubectl(
                    "-n", ns, "patch", "modelrepo", "models", "--type=merge", "-p", json.dumps(spec)
                )
            runs = []
            for i in range(args.pushes):
                marks = time_one_push(
                    c,
                    ns,
                    work,
                    url,
                    hooks if mode == "webhook" else None,
                    metrics,
                    factor,
                    args.timeout,
                )
                factor += 1
                runs.append(marks)
                print(
                    f"[bench] {mode} push {i + 1}: "
                    + ", ".join(f"{k} {v:.2f}s" for k, v in marks.items()),
                    flush=True,
                )
            results[mode] = runs
    finally:
        # The ModelRepo first, while its operator runs (its finalizer), then the namespace.
        subprocess.run(
            [
                c.kubectl_bin,
                "--kubeconfig",
                c.kubeconfig,
                "-n",
                ns,
                "delete",
                "modelrepos",
                "--all",
                "--wait",
                "--timeout=120s",
            ],
            capture_output=True,
            timeout=180,
        )
        servers.stop()
        subprocess.run(
            [
                c.kubectl_bin,
                "--kubeconfig",
                c.kubeconfig,
                "delete",
                "namespace",
                ns,
                "--wait=false",
            ],
            capture_output=True,
            timeout=60,
        )
    stats = {mode: summary(mode, runs) for mode, runs in results.items()}
    if "webhook" in stats and "polling" in stats:
        w, p = stats["webhook"]["served"], stats["polling"]["served"]
        print(
            f"\npolling / webhook, push to served: median {p[0] / w[0]:.1f}x, p90 {p[1] / w[1]:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
