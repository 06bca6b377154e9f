"""How fast is the runtime? One run on loopback, one command:  .venv/bin/python bench/serve.py

Serves the same scikit-learn LinearRegression function five ways and loads each with wrk:
  modelrepo   `modelrepo runtime --dir <folder>` (the pod entry point, BentoML underneath)
  serve       `modelrepo serve <repo>` (every deployment of a branch, each version in its own
              worker process: the function call crosses a pipe)
  bentoml     a plain BentoML service written the documented way (@bentoml.api calling it)
  starlette   a minimal Starlette app calling the same function (uvicorn, one process)
  function    the function's own call time, in process (the floor)
Then a batch of 1,000 rows in one request to a `runtimeInfo.batch: true` deployment, against
the function's own vectorised call on the same 1,000 rows.

Servers run one at a time is not needed: idle servers cost nothing; each is measured in turn,
`--rounds` times interleaved, and the best round of each is kept (the machine is shared).
Prints a Markdown table with ratios; needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
from sklearn.linear_model import LinearRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.processes import stop_process_group  # noqa: E402

PY = sys.executable
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

SOURCE = '''
import numpy as np
import modelrepo

model = modelrepo.load_value("data/model.pkl")


def Linear_Model(x):
    """
    >>> round(Linear_Model(4.0), 6)
    9.0
    """
    return float(model.predict(np.array([[x]]))[0])
'''

BATCH_SOURCE = '''
import numpy as np
import modelrepo

model = modelrepo.load_value("data/model.pkl")


def Linear_Batch(xs):
    """
    >>> [round(y, 6) for y in Linear_Batch([4.0])]
    [9.0]
    """
    return model.predict(np.asarray(xs, dtype=float).reshape(-1, 1)).tolist()
'''

PLAIN_BENTOML = '''
import pickle
import numpy as np
import bentoml

with open({model!r}, "rb") as f:
    model = pickle.load(f)


def Linear_Model(x):
    return float(model.predict(np.array([[x]]))[0])


@bentoml.service(workers=1)
class Plain:
    @bentoml.api
    def predict(self, data: float) -> float:
        return Linear_Model(data)
'''

STARLETTE = '''
import pickle
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

with open({model!r}, "rb") as f:
    model = pickle.load(f)


def Linear_Model(x):
    return float(model.predict(np.array([[x]]))[0])


async def predict(request):
    body = await request.json()
    return JSONResponse({{"data": Linear_Model(body["data"])}})


async def predict_batch(request):
    rows = (await request.json())["data"]
    ys = model.predict(np.asarray([r[1] for r in rows], dtype=float).reshape(-1, 1)).tolist()
    return JSONResponse({{"data": [[r[0], y] for r, y in zip(rows, ys)]}})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/batch", predict_batch, methods=["POST"])])
'''

WRK_LUA = '''
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_deployment(root: Path, name: str, source: str, model_path: Path, batch: bool) -> Path:
    folder = root / "deployments" / name
    (folder / "data").mkdir(parents=True)
    shutil.copy(model_path, folder / "data" / "model.pkl")
    (folder / "source.py").write_text(textwrap.dedent(source).lstrip())
    batch_line = "\n  batch: true" if batch else ""
    (folder / "metadata.yaml").write_text(
        f"schemaVersion: 2\nruntimeInfo:\n  mainFunction: {name}\n  mainFunctionArgs: [\"x:float\"]\n"
        f"  pythonVersion: \"{VERSION}\"\n  systemPackages: []{batch_line}\n"
    )
    return folder


class Proc:
    def __init__(self, name: str, cmd: list[str], port: int, path: str, cwd: Path, env: dict[str, str]) -> None:
        self.name, self.port, self.path = name, port, path
        self.log = open(cwd / f"{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **env}, start_new_session=True)

    def wait(self, ready_path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready after {timeout}s; see {self.log.name}")

    def stop(self) -> None:
        stop_process_group(self.proc)


def wrk(url: str, body: str, duration: int, threads: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(WRK_LUA.format(body=body))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    lat = {p: _ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1)) for p in ("50", "99")}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "requests": requests, "p50": lat["50"], "p99": lat["99"], "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(0) if errors else ""}


def _ms(text: str) -> float:
    value, unit = re.match(r"([0-9.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-requests", type=int, default=50, help="row-wise 1,000-row requests to time")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                        help="the modelrepo checkout whose code the servers run (default: this one)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/serve.py needs wrk: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="modelrepo-bench-"))
    x = np.arange(100, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(x, 2 * x.ravel() + 1)
    model_path = work / "model.pkl"
    model_path.write_bytes(pickle.dumps(model))
    folder = write_deployment(work, "Linear_Model", SOURCE, model_path, batch=False)
    batch_folder = write_deployment(work, "Linear_Batch", BATCH_SOURCE, model_path, batch=True)
    (work / "plain_service.py").write_text(PLAIN_BENTOML.format(model=str(model_path)))
    (work / "starlette_app.py").write_text(STARLETTE.format(model=str(model_path)))

    env = {"BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": os.pathsep.join([str(work), args.root])}
    repo = work / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    shutil.copytree(folder, repo / "deployments" / "Linear_Model")
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c",
           "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "v1"], check=True)
    procs = {
        "modelrepo": Proc("modelrepo", [PY, "-m", "modelrepo.cli", "runtime", "--dir", str(folder), "--host",
                                        "127.0.0.1", "--port", str(p := free_port())], p,
                          "/v1/Linear_Model/latest", work, env),
        "serve": Proc("serve", [PY, "-m", "modelrepo.cli", "serve", str(repo), "--cache-dir", str(work / "cache"),
                                "--port", str(sv := free_port())], sv, "/v1/Linear_Model/latest", work, env),
        "bentoml": Proc("bentoml", [PY, "-m", "bentoml", "serve", "plain_service:Plain", "--host", "127.0.0.1",
                                    "--port", str(q := free_port())], q, "/predict", work,
                        {**env, "BENTOML_HOME": str(work / "bentoml-home")}),
        "starlette": Proc("starlette", [PY, "-m", "uvicorn", "starlette_app:app", "--host", "127.0.0.1",
                                        "--port", str(s := free_port()), "--no-access-log", "--log-level",
                                        "warning"], s, "/predict", work, env),
        "batch": Proc("batch", [PY, "-m", "modelrepo.cli", "runtime", "--dir", str(batch_folder), "--host",
                                "127.0.0.1", "--port", str(b := free_port())], b, "/v1/Linear_Batch/latest",
                      work, env),
    }
    try:
        procs["modelrepo"].wait("/readyz")
        procs["serve"].wait("/readyz")
        procs["batch"].wait("/readyz")
        procs["bentoml"].wait("/readyz")
        _wait_starlette(procs["starlette"])
        body = '{"data": 4.0}'
        # correctness first: all three answer the same
        for name in ("modelrepo", "serve", "bentoml", "starlette"):
            p = procs[name]
            r = httpx.post(f"http://127.0.0.1:{p.port}{p.path}", content=body,
                           headers={"content-type": "application/json"})
            assert r.status_code == 200, (name, r.text)
        results: dict[str, list[dict[str, float]]] = {n: [] for n in ("modelrepo", "serve", "bentoml", "starlette")}
        for _ in range(args.rounds):
            for name in results:
                p = procs[name]
                url = f"http://127.0.0.1:{p.port}{p.path}"
                wrk(url, body, 2, args.threads, args.connections, work)  # warm up
                results[name].append(wrk(url, body, args.duration, args.threads, args.connections, work))
        best = {n: max(rs, key=lambda r: r["rps"]) for n, rs in results.items()}

        fn_call = _function_time(model)
        rows_body = json.dumps({"data": [[i, float(i)] for i in range(1000)]})
        b = procs["batch"]
        batch_m = wrk(f"http://127.0.0.1:{b.port}{b.path}", rows_body, args.duration, 1, 1, work)
        st = procs["starlette"]
        batch_s = wrk(f"http://127.0.0.1:{st.port}/batch", rows_body, args.duration, 1, 1, work)
        batch_rows, batch_star = 1 / batch_m["rps"], 1 / batch_s["rps"]
        rowwise = _batch(procs["modelrepo"], max(5, args.batch_requests // 5))
        vector = _vector_time(model)
    finally:
        for p in procs.values():
            p.stop()

    m = best["modelrepo"]
    per_round = [
        (mr["rps"] / br["rps"], mr["rps"] / sr["rps"], mr["p99"] / sr["p99"])
        for mr, br, sr in zip(results["modelrepo"], results["bentoml"], results["starlette"], strict=True)
    ]
    med = [statistics.median(col) for col in zip(*per_round, strict=True)]
    lines = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds (table: best round), "
        f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.1f}",
        "",
        "| server | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("modelrepo", "serve", "bentoml", "starlette"):
        r = best[name]
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} |")
    lines.append(f"| function alone (in process) | {1 / fn_call:.0f} | {fn_call * 1000:.3f} | | |")
    lines += [
        "",
        "Ratios per round (the three servers measured back to back), then their median:",
        "",
        "| round | modelrepo / BentoML req/s | modelrepo / Starlette req/s | modelrepo / Starlette p99 |",
        "|---|---:|---:|---:|",
        *(f"| {i + 1} | {mb:.2f} | {ms:.2f} | {mp:.2f} |" for i, (mb, ms, mp) in enumerate(per_round)),
        f"| **median** | **{med[0]:.2f}x** (target >= 3x) | **{med[1]:.2f}x** (target >= 0.8x) | "
        f"**{med[2]:.2f}x** (target <= 2x) |",
        "",
        "- all rounds req/s: " + "; ".join(
            f"{n} " + ", ".join(f"{r['rps']:.0f}" for r in rs) for n, rs in results.items()),
        "",
        "| batch of 1,000 rows | ms per 1,000 rows | rows/s |",
        "|---|---:|---:|",
        f"| modelrepo, one request `{{\"data\": [[id, x], ...]}}` to a batch function | "
        f"{batch_rows * 1000:.2f} | {1000 / batch_rows:.0f} |",
        f"| raw Starlette app calling the vectorised function, same request | {batch_star * 1000:.2f} | "
        f"{1000 / batch_star:.0f} |",
        f"| the function's own vectorised call (in process) | {vector * 1000:.2f} | {1000 / vector:.0f} |",
        f"| modelrepo, one batch request to the one-row function (1,000 calls in one thread job) | "
        f"{rowwise * 1000:.2f} | {1000 / rowwise:.0f} |",
        f"| modelrepo, 1,000 single requests at the throughput above | {1e6 / m['rps']:.0f} | {m['rps']:.0f} |",
        "",
        f"- batch request / raw Starlette batch request: **{batch_rows / batch_star:.2f}x**; "
        f"/ vectorised call alone: {batch_rows / vector:.1f}x (HTTP and JSON of 1,000 rows both ways included); "
        f"/ 1,000 single requests: {batch_rows / (1 / m['rps']) / 1000:.3f}x",
        f"- batch requests timed with wrk -t1 -c1 -d{args.duration}s (one request at a time)",
    ]
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _wait_starlette(p: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{p.port}/predict", json={"data": 1.0}, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("starlette app did not start")


def _function_time(model: LinearRegression, n: int = 5000) -> float:
    def fn(v: float) -> float:
        return float(model.predict(np.array([[v]]))[0])

    for _ in range(200):
        fn(4.0)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n // 5):
            fn(4.0)
        times.append((time.perf_counter() - t) / (n // 5))
    return min(times)


def _vector_time(model: LinearRegression) -> float:
    xs = [float(i) for i in range(1000)]
    times = []
    for _ in range(50):
        t = time.perf_counter()
        model.predict(np.asarray(xs, dtype=float).reshape(-1, 1)).tolist()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _batch(p: Proc, requests: int) -> float:
    body = {"data": [[i, float(i)] for i in range(1000)]}
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}") as client:
        for _ in range(5):
            assert client.post(p.path, json=body).status_code == 200
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            r = client.post(p.path, json=body)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()["data"]) == 1000
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
