"""`modelrepo gateway --config <file>`: one URL in front of many deployment servers."""

from __future__ import annotations

import argparse
import os

HELP = "route /v1/<Name>[/<branch>]/<ref> to deployment servers: endpoints, aliases, branches, API keys"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="routing table (JSON: branches, upstreams, definitions, onDemand; docs/runtime.md); "
                             "reloaded when it changes")
    parser.add_argument("--api-keys", default=os.environ.get("MODELREPO_API_KEYS_FILE") or None,
                        help="file of API keys, one a line, optionally followed by the names it may call "
                             "(default: $MODELREPO_API_KEYS_FILE; unset: no key needed)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--reload-interval", type=float, default=1.0, help="seconds between checks of the files")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds an upstream may take to answer")
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from modelrepo.cli import UserError
    from modelrepo.runtime.gateway.app import GatewayApp
    from modelrepo.runtime.gateway.config import Watcher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not os.path.exists(args.config):
        raise UserError(f"--config {args.config}: no such file")
    watcher = Watcher(args.config, args.api_keys, args.reload_interval)
    if watcher.table() is None:
        raise UserError(f"--config {args.config}: not a valid routing table (see the log above)")
    watcher.start()
    app = GatewayApp(watcher.table, watcher.keys, max_body_bytes=args.max_body_bytes, timeout=args.timeout)
    print(f"gateway listening on http://{args.host}:{args.port}", flush=True)
    # httptools and uvloop (C parser, libuv loop): h11 and the asyncio loop cost about as much CPU
    # per request as the model server itself (docs/benchmarks.md, "Gateway overhead").
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", loop="uvloop", lifespan="on",
                access_log=False, log_level="warning", proxy_headers=False, server_header=False)
    return 0
