"""The gateway's answers when an upstream is down or silent, and mirrors that never answer.

Real processes on loopback: `modelrepo runtime`, `modelrepo gateway`, and a silent upstream in
this process (accepts, reads, never answers until the test lets it close).
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from fixtures.runtime_server import Servers, free_port, wait_for, write_deployment

pytestmark = pytest.mark.slow


class Silent:
    """A TCP server that reads requests and never answers; records what it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.release = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self.release.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                with self._lock:
                    self.received += data

    def close(self) -> None:
        self.release.set()
        self.sock.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, module_servers: Servers):
    tmp = tmp_path_factory.mktemp("gateway-upstreams")
    silent = Silent()
    folder = write_deployment(tmp / "m", "M", "def M(x):\n    return x + 1\n", ["x:int", "return:int"])
    runtime = module_servers.start("runtime", "--dir", str(folder), "--name", "M", "--version", "1",
                                   "--commit", "1" * 40, env={"MODELREPO_BRANCH": "main"})
    closed = free_port("127.0.0.1")  # nothing listens there
    document = {
        "branches": ["main"],
        "upstreams": [
            {"name": "M", "url": runtime.url, "version": 1},
            {"name": "Down", "url": f"http://127.0.0.1:{closed}", "version": 1},
            {"name": "Hang", "url": f"http://127.0.0.1:{silent.port}", "version": 1},
        ],
        "definitions": {"main": {"endpoints": {"shadowed": {
            "backends": {"only": {"deployment": {"name": "M", "version": "latest"}, "weight": 1}},
            "mirrors": {"silent": {"deployment": {"name": "Hang", "version": "latest"}}}}}}},
    }
    config = tmp / "gateway.json"
    config.write_text(json.dumps(document))
    # --timeout 600 (the default): a caller held by a silent mirror would see the client's 60 s timeout
    patient = module_servers.start("gateway", "--config", str(config), "--host", "127.0.0.1")
    hasty = module_servers.start("gateway", "--config", str(config), "--host", "127.0.0.1", "--timeout", "2")
    for server in (runtime, patient, hasty):
        server.wait_ready()
    yield {"patient": patient, "hasty": hasty, "silent": silent, "closed": closed}
    silent.close()


def test_an_upstream_nobody_listens_on_is_a_503_naming_it(setup):
    answer = setup["patient"].post("/v1/Down/latest", {"data": 1})
    assert answer.status_code == 503
    assert answer.json() == {"error": f"Down on main is not reachable: cannot connect to 127.0.0.1:{setup['closed']} "
                                      "(ConnectionRefusedError)"}
    assert setup["patient"].post("/v1/M/latest", {"data": 1}).json() == {"data": 2}  # the others still answer


def test_an_upstream_that_never_answers_is_a_504_after_the_timeout(setup):
    answer = setup["hasty"].post("/v1/Hang/latest", {"data": 1})
    assert answer.status_code == 504
    assert answer.json() == {"error": "Hang on main did not answer in 2s"}
    assert setup["hasty"].post("/v1/M/latest", {"data": 1}).json() == {"data": 2}


def test_a_mirror_that_never_answers_does_not_hold_the_caller(setup):
    gateway, silent = setup["patient"], setup["silent"]
    for i in range(5):
        answer = gateway.post("/v1/shadowed/latest", {"data": 7000 + i})
        assert answer.status_code == 200 and answer.json() == {"data": 7001 + i}
        assert answer.headers["x-modelrepo-backend"] == "only"
    wait_for(lambda: all(f'{{"data":{7000 + i}}}'.encode() in silent.received.replace(b" ", b"") for i in range(5)),
             "the silent mirror to receive the 5 copies", timeout=30)
    assert not silent.release.is_set()  # every copy still unanswered while the callers had their answers

