"""What does the gateway add? One run on loopback, one command:  .venv/bin/python bench/gateway.py

Starts one `modelrepo runtime` (a function returning 2x, so the model's own time is near zero
and the gateway's share is as large as it can be) and one `modelrepo gateway` in front of it
with an API key, then loads both with wrk, interleaved `--rounds` times (direct, gateway,
direct, ...), and prints the median over rounds of each figure and of each round's ratio:
  latency     1 connection: p50 of the direct call vs through the gateway (the added p50)
  throughput  `--connections` connections: requests/s through the gateway / direct
  CPU         CPU time per request of the runtime's and the gateway's processes (from /proc):
              what the gateway costs whatever else loads the machine
Targets: under 1 ms p50 added, at least 0.8x the throughput. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import PY, VERSION, Proc, free_port, wrk  # noqa: E402  (bench/serve.py's helpers)

KEY = "mk_bench_0123456789abcdef"
# bench/serve.py's wrk() formats this with the body; the key goes to both (the runtime ignores it).
WRK_LUA = f'''
wrk.method = "POST"
wrk.body = '{{body}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{KEY}"
'''


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its descendants (the runtime runs BentoML's worker as a child)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (OSError, IndexError):
        pass
    return total


def measure(urls: dict[str, str], procs: list, args: argparse.Namespace, work: Path) -> dict[tuple[str, str], dict]:
    """One round: each load on each path in turn; CPU per request of both processes under the load."""
    results = {}
    for mode, (threads, connections) in {"latency": (1, 1), "throughput": (2, args.connections)}.items():
        for label, url in urls.items():
            before = [cpu_seconds(p.proc.pid) for p in procs]
            result = wrk(url, '{"data": 21}', args.duration, threads, connections, work)
            if result["non2xx"] or result["errors"]:
                raise SystemExit(f"{label}: {result['non2xx']} non-2xx answers {result['errors']}")
            used = [cpu_seconds(p.proc.pid) - b for p, b in zip(procs, before, strict=True)]
            result["cpu_us"] = {p.name: 1e6 * u / result["requests"] for p, u in zip(procs, used, strict=True)}
            results[(mode, label)] = result
    return results


def report(rounds: list[dict[tuple[str, str], dict]], args: argparse.Namespace) -> None:
    median = statistics.median
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; medians of {len(rounds)} rounds")
    print("| load | path | p50 ms | p99 ms | requests/s | runtime CPU µs/request | gateway CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    for key in rounds[0]:
        rows = [r[key] for r in rounds]
        print(f"| {key[0]} | {key[1]} | {median(r['p50'] for r in rows):.3f} | {median(r['p99'] for r in rows):.3f} | "
              f"{median(r['rps'] for r in rows):.0f} | {median(r['cpu_us']['runtime'] for r in rows):.0f} | "
              f"{median(r['cpu_us']['gateway'] for r in rows):.0f} |")
    added = median(r[("latency", "gateway")]["p50"] - r[("latency", "direct")]["p50"] for r in rounds)
    ratio = median(r[("throughput", "gateway")]["rps"] / r[("throughput", "direct")]["rps"] for r in rounds)
    print(f"\nadded p50 (1 connection): {added:.3f} ms (target < 1 ms): {'met' if added < 1 else 'NOT met'}")
    print(f"throughput ratio ({args.connections} connections): {ratio:.2f}x (target >= 0.8x): "
          f"{'met' if ratio >= 0.8 else 'NOT met'}")
    gateway_cpu = median(r[("throughput", "gateway")]["cpu_us"]["gateway"] for r in rounds)
    runtime_cpu = median(r[("throughput", "direct")]["cpu_us"]["runtime"] for r in rounds)
    print(f"gateway CPU per request / runtime CPU per request ({args.connections} connections): "
          f"{gateway_cpu / runtime_cpu:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/gateway.py needs wrk: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="modelrepo-bench-gateway-"))
    folder = work / "deployments" / "Double"
    folder.mkdir(parents=True)
    (folder / "source.py").write_text("def Double(x):\n    return 2 * x\n")
    (folder / "metadata.yaml").write_text(textwrap.dedent(f"""\
        schemaVersion: 2
        runtimeInfo: {{mainFunction: Double, mainFunctionArgs: ["x:int", "return:int"], pythonVersion: "{VERSION}"}}
        """))
    runtime_port, gateway_port = free_port(), free_port()
    (work / "gateway.json").write_text(json.dumps({"branches": ["main"], "upstreams": [
        {"name": "Double", "branch": "main", "url": f"http://127.0.0.1:{runtime_port}", "version": 1, "latest": True}]}))
    (work / "keys.txt").write_text(KEY + "\n")
    cli = [PY, "-m", "modelrepo.cli"]
    procs = [
        Proc("runtime", [*cli, "runtime", "--dir", str(folder), "--host", "127.0.0.1", "--port", str(runtime_port),
                         "--version", "1", "--commit", "0" * 40], runtime_port, "", work, {}),
        Proc("gateway", [*cli, "gateway", "--config", str(work / "gateway.json"), "--api-keys", str(work / "keys.txt"),
                         "--host", "127.0.0.1", "--port", str(gateway_port)], gateway_port, "", work, {}),
    ]
    try:
        for proc in procs:
            proc.wait("/readyz")
        import serve  # its wrk() writes the Lua script from serve.WRK_LUA: ours adds the key
        serve.WRK_LUA = WRK_LUA
        urls = {"direct": f"http://127.0.0.1:{runtime_port}/v1/Double/latest",
                "gateway": f"http://127.0.0.1:{gateway_port}/v1/Double/latest"}
        rounds = [measure(urls, procs, args, work) for _ in range(args.rounds)]
    finally:
        for proc in procs:
            proc.stop()
    report(rounds, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
