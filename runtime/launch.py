"""Start the BentoML server for a MODELREPO_RUNTIME_SPEC, as `modelrepo runtime`/`serve` do.

Everything BentoML writes goes under a temporary directory (its home, the Prometheus
multiprocess directory, sockets), so the server runs as any user on a read-only root file
system with only /tmp writable. Usage statistics are switched off: no call leaves the machine.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import shutil
import socket
import tempfile
from typing import Any

SPEC_ENV = "MODELREPO_RUNTIME_SPEC"


def prepare_environment() -> None:
    """BENTOML_HOME and friends under a writable temporary directory."""
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    if not os.environ.get("BENTOML_HOME"):
        # A home per process: two servers on one machine must not share the metrics directory.
        home = tempfile.mkdtemp(prefix="modelrepo-bentoml-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        os.environ["BENTOML_HOME"] = home
    os.makedirs(os.environ["BENTOML_HOME"], exist_ok=True)
    if not os.access(os.getcwd(), os.W_OK):
        os.chdir(tempfile.gettempdir())  # BentoML's worker may write relative to its working dir


class PortInUse(Exception):
    """The address to listen on is taken (or not ours to take); the message says which."""


def check_port(host: str, port: int) -> None:
    """Fail before starting BentoML when nothing could listen at host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortInUse(f"cannot listen on {host}:{port}: {why} (choose another with --port)") from None


def serve(spec: dict[str, Any], host: str, port: int) -> int:
    """Run the BentoML server until interrupted."""
    check_port(host, port)
    os.environ[SPEC_ENV] = json.dumps(spec)
    prepare_environment()
    from modelrepo.runtime.bento_service import Runtime

    Runtime.serve_http(host=host, port=port)
    return 0
