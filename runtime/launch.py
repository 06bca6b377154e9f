"""Start the BentoML server for a MODELREPO_RUNTIME_SPEC, as `modelrepo runtime`/`serve` do.

Everything BentoML writes goes under a temporary directory (its home, the Prometheus
multiprocess directory, sockets), so the server runs as any user on a read-only root file
system with only /tmp writable. Usage statistics are switched off: no call leaves the machine.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
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


def serve(spec: dict[str, Any], host: str, port: int) -> int:
    """Run the BentoML server until interrupted."""
    os.environ[SPEC_ENV] = json.dumps(spec)
    prepare_environment()
    from modelrepo.runtime.bento_service import Runtime

    Runtime.serve_http(host=host, port=port)
    return 0
