"""`modelrepo operator`: run the ModelRepo operator against the current kubeconfig (or in-cluster).

Serves liveness (`/healthz`, kopf's probe endpoint), Prometheus `/metrics` and, when a port is
given, the push webhooks (`/hooks/github|gitlab|generic`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from modelrepo.cli import UserError

HELP = "run the ModelRepo operator (kopf) against the current kubeconfig"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config or in-cluster)")
    parser.add_argument("-n", "--namespace", action="append", default=[], help="watch only this namespace (repeatable); default: all")
    parser.add_argument("--bind", default="0.0.0.0", help="address of the liveness, metrics and webhook endpoints")
    parser.add_argument("--liveness-port", type=int, default=8080, help="port of GET /healthz (0: off)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="port of GET /metrics (0: off)")
    parser.add_argument("--webhook-port", type=int, default=0, help="port of POST /hooks/* (0: off)")
    parser.add_argument("--cache-dir", default=os.environ.get("MODELREPO_CACHE_DIR", "/tmp/modelrepo-cache"), help="git cache, one blobless repository per ModelRepo")
    parser.add_argument("--workers", type=int, default=8, help="threads for git and API work (concurrent syncs)")
    parser.add_argument("--log-format", choices=["plain", "json"], default="plain", help="log line format")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        if not Path(args.kubeconfig).is_file():
            raise UserError(f"--kubeconfig {args.kubeconfig}: no such file")
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    import kopf

    from modelrepo.operator import handlers, metrics

    handlers.CONFIG.update(
        cache_dir=Path(args.cache_dir), workers=args.workers,
        webhook_port=args.webhook_port or None, webhook_host=args.bind,
    )
    kopf.configure(
        verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if args.metrics_port:
        metrics.serve(args.metrics_port, addr=args.bind)
    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness,
    )
    return 0
