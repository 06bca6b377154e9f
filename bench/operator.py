"""Operator benchmark: a ModelRepo with 200 deployment folders (issue 5).

Measures, for one sync each:
  - the first sync (everything applied: the cost a whole-repo refresh pays on every change),
  - a poll with no change (target: zero API writes, one ls-remote),
  - a push changing one folder (target: exactly one Deployment applied),
and the operator process's peak memory. The baseline is the first sync, measured in the same
run; ratios are printed against it.

Against the real cluster when one answers (KUBECONFIG, else .cluster/kubeconfig): the
Deployments get `replicas: 0` (spec.runtime.replicas), so 200 folders need no pods and no
simulated nodes. Without a cluster it says so and uses an in-memory API (writes still counted).

    .venv/bin/python bench/operator.py [--folders 200] [--polls 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.git_servers import WorkRepo, start_git_servers  # noqa: E402

from modelrepo.operator import kube, metrics, sync  # noqa: E402


def kubeconfig() -> str | None:
    for candidate in (os.environ.get("KUBECONFIG"), str(ROOT / ".cluster" / "kubeconfig")):
        if not candidate or not Path(candidate).is_file():
            continue
        try:
            from kubernetes import client, config

            api = config.new_client_from_config(config_file=candidate)
            client.VersionApi(api).get_code(_request_timeout=5)
            return candidate
        except Exception:  # noqa: BLE001 - not usable
            continue
    return None


class MemoryAPI:
    """Stand-in for the API server when no cluster answers (same counters as kube.py)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}

    def install(self) -> None:
        def count(what: str) -> None:
            kube.WRITES[what] += 1

        def apply(obj: dict) -> dict:
            count(f"apply {obj['kind']}")
            obj = copy.deepcopy(obj)
            obj["metadata"]["generation"] = 1
            obj["status"] = {"observedGeneration": 1}
            self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
            return obj

        def list_children(ns: str, repo: str):
            kube.READS["list"] += 3
            deps = [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == "Deployment"]
            svcs = [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == "Service"]
            return deps, svcs, []

        def delete_child(ns: str, name: str) -> None:
            count("delete Deployment")
            self.objects.pop(("Deployment", name), None)
            self.objects.pop(("Service", name), None)

        kube.apply, kube.list_children, kube.delete_child = apply, list_children, delete_child
        kube.apply_status = lambda ns, name, status: count("apply ModelRepo/status")
        kube.post_event = lambda body, t, reason, message: count("create Event")


def kubectl(cfg: str, *args: str, input: str | None = None) -> str:
    proc = subprocess.run(["kubectl", "--kubeconfig", cfg, *args], input=input, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def writes_snapshot() -> dict[str, int]:
    return dict(kube.WRITES)


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def ls_remote_total(ns: str, name: str) -> float:
    return metrics.LS_REMOTE.labels(ns, name)._value.get()


def timed_sync(body: dict, state: sync.RepoState, cache: Path) -> tuple[float, dict[str, int], sync.SyncResult]:
    before = writes_snapshot()
    started = time.perf_counter()
    result = sync.sync(body, state, cache)
    elapsed = time.perf_counter() - started
    if result.error:
        raise SystemExit(f"sync failed: {result.error}")
    return elapsed, diff(writes_snapshot(), before), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    servers = start_git_servers(work / "repos")
    cfg = kubeconfig()
    namespace = f"bench-operator-{secrets.token_hex(3)}"
    try:
        bare = servers.create_repo("models")
        repo = WorkRepo.create(bare, work / "work")
        for i in range(args.folders):
            repo.write_deployment(f"Model_{i:03d}", body=f"return x + {i}", doc=str(4 + i))
        repo.commit_push(f"{args.folders} models")
        spec = {
            "url": servers.daemon_url("models"), "branch": "main", "interval": "60s",
            "include": ["*"], "exclude": [], "runtime": {"replicas": 0}, "service": {"type": "ClusterIP", "port": 80},
        }
        if cfg:
            os.environ["KUBECONFIG"] = cfg
            kube.reset_client()
            kubectl(cfg, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "modelrepo.yaml"))
            kubectl(cfg, "wait", "--for=condition=Established", "--timeout=60s", "crd/modelrepos.modelrepo.dev")
            kubectl(cfg, "create", "namespace", namespace)
            manifest = {"apiVersion": "modelrepo.dev/v1alpha1", "kind": "ModelRepo", "metadata": {"name": "models", "namespace": namespace}, "spec": spec}
            kubectl(cfg, "apply", "-f", "-", input=json.dumps(manifest))
            body = kube.get_modelrepo(namespace, "models")
            where = f"real cluster ({cfg}), Deployments with replicas 0"
        else:
            MemoryAPI().install()
            body = {
                "apiVersion": "modelrepo.dev/v1alpha1", "kind": "ModelRepo",
                "metadata": {"name": "models", "namespace": namespace, "uid": "bench", "generation": 1}, "spec": spec,
            }
            where = "NO CLUSTER: in-memory API stand-in (API latency not included)"
        assert body is not None
        state, cache = sync.RepoState(), work / "cache"

        first_s, first_w, first = timed_sync(body, state, cache)
        # The first rollout settles (Deployment controller fills in their status): those status
        # writes are real changes, not idle-poll writes; measure idle polls after them.
        settle_writes = 0
        for _ in range(120):
            _, writes, _ = timed_sync(body, state, cache)
            settle_writes += sum(writes.values())
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in (body.get("status") or {}).get("conditions", []))
            if ready and not writes:
                break
            time.sleep(1)
        poll_times, poll_writes, ls_before = [], [], ls_remote_total(namespace, "models")
        for _ in range(args.polls):
            elapsed, writes, _ = timed_sync(body, state, cache)
            poll_times.append(elapsed)
            poll_writes.append(sum(writes.values()))
        ls_per_poll = (ls_remote_total(namespace, "models") - ls_before) / args.polls

        repo.write_deployment("Model_007", body="return x * 100", doc="400")
        repo.commit_push("change one folder")
        one_s, one_w, one = timed_sync(body, state, cache)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        poll = statistics.median(poll_times)
        print(f"operator benchmark: {args.folders} folders; API: {where}")
        print(f"  first sync (baseline, all applied): {first_s:7.2f} s  writes {sum(first_w.values()):4d}  {first_w}")
        print(f"  status writes while the first rollout settled: {settle_writes}")
        print(f"  no-change poll (median of {args.polls}):   {poll:7.3f} s  writes {max(poll_writes):4d}  ls-remote/poll {ls_per_poll:.0f}"
              f"  -> {poll / first_s:.4f}x baseline time")
        print(f"  one-folder change:                {one_s:7.2f} s  writes {sum(one_w.values()):4d}  {one_w}"
              f"  -> {one_s / first_s:.3f}x baseline time, Deployments applied {one_w.get('apply Deployment', 0)}"
              f" vs {first_w.get('apply Deployment', 0)}")
        print(f"  applied on change: {one.applied}")
        print(f"  operator process peak RSS: {rss_mb:.0f} MiB")
        ok = max(poll_writes) == 0 and ls_per_poll == 1 and one_w.get("apply Deployment", 0) == 1 and len(first.applied) == args.folders
        print("  targets (0 writes idle, 1 ls-remote, 1 Deployment on change):", "met" if ok else "NOT MET")
        return 0 if ok else 1
    finally:
        servers.stop()
        if cfg:
            subprocess.run(["kubectl", "--kubeconfig", cfg, "delete", "namespace", namespace, "--wait=false"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
