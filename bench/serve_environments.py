"""`modelrepo serve`: commit to served for a new environment (a virtualenv is built), a source-only
change of a deployment with its own environment (the virtualenv is reused) and a change of a
deployment the serving Python satisfies (no virtualenv, the baseline). One command:

    .venv/bin/python bench/serve_environments.py [--rounds 3]

One serve process (polling every 100 ms) over a fresh local repository with two deployments:
`Plain` (no requirements: the serving Python) and `Pinned` (`six==<version>`: its own
virtualenv). Each round commits, in turn: a new `six` pin for Pinned (cold: uv resolves, downloads
the wheel into its cache, builds the virtualenv), a source.py change of Pinned (cached), a
source.py change of Plain (no virtualenv), and times each until the answer shows the new
version. uv gets a fresh cache of its own (UV_CACHE_DIR), so the first cold round also downloads
the worker's packages. Prints each time, the medians and the ratios to the no-virtualenv case.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.runtime_server import Server, Servers, commit_all, init_repo, write_deployment  # noqa: E402

SIX_VERSIONS = ["1.12.0", "1.13.0", "1.14.0", "1.15.0", "1.16.0", "1.17.0", "1.11.0", "1.10.0"]
PINNED = '''
import six


def Pinned(x):
    return [six.__version__, ROUND]
'''
PLAIN = '''
def Plain(x):
    return ROUND
'''
DEADLINE = 600.0


def timed(server: Server, name: str, expected: object, commit: Callable[[], object]) -> float:
    """Seconds from the commit until `name` answers `expected` (polled every 20 ms)."""
    started = time.monotonic()
    commit()
    while time.monotonic() - started < DEADLINE:
        r = server.post(f"/v1/{name}/latest", {"data": 1})
        if r.status_code == 200 and r.json()["data"] == expected:
            return time.monotonic() - started
        time.sleep(0.02)
    raise SystemExit(f"{name} never answered {expected!r}:\n{server.output()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-envs-"))
    repo = init_repo(tmp / "models")
    pin = repo / "deployments" / "Pinned" / "requirements.txt"

    def pinned(version: str, n: int) -> None:
        write_deployment(repo, "Pinned", PINNED.replace("ROUND", str(n)), ["x:int"])
        pin.write_text(f"six=={version}\n")

    pinned(SIX_VERSIONS[0], 0)
    write_deployment(repo, "Plain", PLAIN.replace("ROUND", "0"), ["x:int"])
    commit_all(repo, "v1")
    servers = Servers(tmp)
    server = servers.start("serve", str(repo), "--interval", "100ms", "--cache-dir", str(tmp / "cache"),
                           env={"UV_CACHE_DIR": str(tmp / "uv-cache")})
    try:
        server.wait_ready(DEADLINE)
        times: dict[str, list[float]] = {"cold": [], "cached": [], "no virtualenv": []}
        for r in range(1, args.rounds + 1):
            version = SIX_VERSIONS[r % len(SIX_VERSIONS)]
            n = 3 * r
            times["cold"].append(timed(server, "Pinned", [version, n], lambda version=version, n=n: (
                pinned(version, n), commit_all(repo, f"Pinned: six {version}"))))
            times["cached"].append(timed(server, "Pinned", [version, n + 1], lambda version=version, n=n: (
                pinned(version, n + 1), commit_all(repo, "Pinned: source only"))))
            times["no virtualenv"].append(timed(server, "Plain", n + 2, lambda n=n: (
                write_deployment(repo, "Plain", PLAIN.replace("ROUND", str(n + 2)), ["x:int"]),
                commit_all(repo, "Plain: source only"))))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
        base = statistics.median(times["no virtualenv"])
        print("\n| change | median commit to served | ratio to no virtualenv |\n|---|---|---|")
        for kind, values in times.items():
            median = statistics.median(values)
            print(f"| {kind} | {median:.2f} s | {median / base:.1f}x |")
        built = [line for line in server.output().splitlines() if line.startswith("environment ")]
        print("\n" + "\n".join(built))
    finally:
        servers.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
