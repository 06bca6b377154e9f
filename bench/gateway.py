"""What does the gateway add? One run on loopback, one command:  .venv/bin/python bench/gateway.py

Starts one `modelrepo runtime` (a function returning 2x, so the model's own time is near zero
and the gateway's share is as large as it can be) and one `modelrepo gateway` in front of it
with an API key, then loads both with wrk, interleaved `--rounds` times, best round kept:
  latency     1 connection: p50 of the direct call vs through the gateway (the added p50)
  throughput  `--connections` connections: requests/s through the gateway / direct
Targets: under 1 ms p50 added, at least 0.8x the throughput. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
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
        best: dict[tuple[str, str], dict[str, float]] = {}
        for _ in range(args.rounds):
            for mode, (threads, connections) in {"latency": (1, 1), "throughput": (2, args.connections)}.items():
                for label, url in urls.items():
                    result = wrk(url, '{"data": 21}', args.duration, threads, connections, work)
                    if result["non2xx"] or result["errors"]:
                        raise SystemExit(f"{label}: {result['non2xx']} non-2xx answers {result['errors']}")
                    key = (mode, label)
                    if key not in best or result["rps"] > best[key]["rps"]:
                        best[key] = result
    finally:
        for proc in procs:
            proc.stop()
    added = best[("latency", "gateway")]["p50"] - best[("latency", "direct")]["p50"]
    ratio = best[("throughput", "gateway")]["rps"] / best[("throughput", "direct")]["rps"]
    print("| load | path | p50 ms | p99 ms | requests/s |\n|---|---|---|---|---|")
    for (mode, label), r in sorted(best.items()):
        print(f"| {mode} | {label} | {r['p50']:.3f} | {r['p99']:.3f} | {r['rps']:.0f} |")
    print(f"\nadded p50 (1 connection): {added:.3f} ms (target < 1 ms): {'met' if added < 1 else 'NOT met'}")
    print(f"throughput ratio ({args.connections} connections): {ratio:.2f}x (target >= 0.8x): "
          f"{'met' if ratio >= 0.8 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
