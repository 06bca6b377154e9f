"""From `git push` to served, for the three kinds of change an environment can see (issue 10):

    no build     a new version of a folder the base image satisfies (today's case)
    cold         a folder with a new environment: a build Job, then the rollout
    cached       a source.py-only change of a folder with its own environment (no build)

One command (root; the local cluster must be up with its registry, `make cluster`; or
KUBECONFIG + MODELREPO_TEST_ENVIRONMENTS (the operator's MODELREPO_ENVIRONMENTS JSON) naming
another registry, pods reaching this machine at MODELREPO_HOST_IP):

    .venv/bin/python bench/environments.py [--rounds 2]

Runs `modelrepo operator` on this machine watching a fresh namespace, serves a repository from
a git daemon on the node address, and times each push until the Service answers with the new
version's output (kubectl's service proxy, polled every 0.2 s). Prints each time and the
median per kind. Every wait has a deadline; the namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cluster.test_environments import PACKAGE, VERSION, _fresh, _settings  # noqa: E402
from fixtures.git_servers import WorkRepo, start_git_servers  # noqa: E402

DEADLINE = 900


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "env"], capture_output=True, text=True, check=True,
    ).stdout.split())
    kubeconfig = os.environ.get("KUBECONFIG") or env["KUBECONFIG"]
    node_ip = os.environ.get("MODELREPO_HOST_IP") or env["NODE_IP"]
    kubectl_bin = str(Path(env["K8S_BIN"]) / "kubectl") if Path(env["K8S_BIN"], "kubectl").exists() else "kubectl"
    ns = f"bench-env-{int(time.time())}"

    def kubectl(*a: str, input: str | None = None) -> str:
        return subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, *a], input=input, capture_output=True,
                              text=True, check=True, timeout=120).stdout

    def answer(name: str, x: int) -> object:
        path = f"/api/v1/namespaces/{ns}/services/envs-{name.lower()}:80/proxy/v1/{name}/latest"
        proc = subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, "create", "--raw", path, "-f", "-"],
                              input=json.dumps({"data": x}), capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout)["data"] if proc.returncode == 0 else None

    def served(name: str, expected: object, started: float) -> float:
        while time.monotonic() - started < DEADLINE:
            if answer(name, 1) == expected:
                return time.monotonic() - started
            time.sleep(0.2)
        raise SystemExit(f"{name} did not answer {expected!r} within {DEADLINE}s")

    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "modelrepo.yaml"))
    kubectl("create", "namespace", ns)
    work = Path(tempfile.mkdtemp(prefix="bench-env-"))
    servers = start_git_servers(work / "repos", bind=node_ip)
    operator = None
    times: dict[str, list[float]] = {"no build": [], "cold": [], "cached": []}
    try:
        repo = WorkRepo.create(servers.create_repo("envs"), work / "envs")
        operator = subprocess.Popen(
            [sys.executable, "-m", "modelrepo.cli", "operator", "--kubeconfig", kubeconfig, "-n", ns,
             "--bind", "127.0.0.1", "--liveness-port", "0", "--metrics-port", "0", "--cache-dir", str(work / "cache")],
            stdout=(work / "operator.log").open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "MODELREPO_ENVIRONMENTS": json.dumps(_settings()), "PYTHONPATH": str(ROOT)},
        )
        repo.write_deployment("Plain", body="return 0", doc="0")
        repo.commit_push("start")
        body = {"apiVersion": "modelrepo.dev/v1alpha1", "kind": "ModelRepo", "metadata": {"name": "envs"},
                "spec": {"url": servers.daemon_url("envs"), "branch": "main", "interval": "5s"}}
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(body))
        served("Plain", 0, time.monotonic())
        for i in range(1, args.rounds + 1):
            repo.write_deployment("Plain", body=f"return {i}", doc=str(i))
            repo.commit_push(f"plain {i}")
            times["no build"].append(served("Plain", i, time.monotonic()))

            requirements = _fresh(f"{PACKAGE}=={VERSION}\n")
            pkg = f"Pkg{i}"
            source = (f"import importlib.metadata\n\n\ndef {pkg}(x: int):\n    \"\"\"\n    >>> {pkg}(1)\n"
                      f"    '{VERSION} 1'\n    \"\"\"\n    return f\"{{importlib.metadata.version('{PACKAGE}')}} {{x}}\"\n")
            repo.write_deployment(pkg)
            repo.write(f"deployments/{pkg}/source.py", source)
            repo.write(f"deployments/{pkg}/requirements.txt", requirements)
            repo.commit_push(f"{pkg}: a new environment")
            times["cold"].append(served(pkg, f"{VERSION} 1", time.monotonic()))

            repo.write(f"deployments/{pkg}/source.py", source.replace("{x}", "{x}!").replace(" 1'", " 1!'"))
            repo.commit_push(f"{pkg}: source only")
            times["cached"].append(served(pkg, f"{VERSION} 1!", time.monotonic()))
            print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), flush=True)
        print(f"\npush -> served (median of {args.rounds})")
        for kind, values in times.items():
            print(f"  {kind:9s} {statistics.median(values):6.1f}s   (each: {', '.join(f'{v:.1f}' for v in values)})")
    finally:
        if operator:
            operator.terminate()
            operator.wait(timeout=30)
        servers.stop()
        subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, "delete", "namespace", ns, "--wait=false"],
                       capture_output=True, check=False)


if __name__ == "__main__":
    main()
