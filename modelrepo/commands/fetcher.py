"""`modelrepo fetcher`: the versions pod's git-only container, fetching any version on request.

It holds the git credentials and runs no repository code; the pod's runtime container (no
credentials) asks it on 127.0.0.1 for the version list and for one folder at one commit
(modelrepo.operator.fetcher; docs/operator.md, "Old versions").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelrepo.cli import UserError

HELP = "fetch deployment folders at any of their versions on request, git only (the versions pod)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="repository URL (no credentials in it: use --credentials)")
    parser.add_argument("--ref", required=True, help="the branch (or pinned commit) whose versions are served")
    parser.add_argument("--dest", required=True, help="directory the folders are fetched into (shared with the runtime)")
    parser.add_argument("--cache-dir", default="/tmp/modelrepo-fetcher", help="blobless git cache of the history")
    parser.add_argument("--credentials", help="directory of a mounted Secret (identity, known_hosts, username, password, bearerToken)")
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (only the pod's containers reach it)")


def run(args: argparse.Namespace) -> int:
    import logging

    from modelrepo.git import Credentials, url_has_credentials
    from modelrepo.operator.fetcher import Fetcher, server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if url_has_credentials(args.url):
        raise UserError("--url must not hold credentials (use --credentials)")
    creds = Credentials.from_dir(args.credentials) if args.credentials else None
    fetcher = Fetcher(url=args.url, ref=args.ref, dest=Path(args.dest), cache=Path(args.cache_dir), creds=creds)
    fetcher.clear_partial()
    try:
        httpd = server(fetcher, args.port)
    except OSError as exc:
        raise UserError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    print(f"fetcher for {args.ref} listening on http://127.0.0.1:{args.port}", flush=True)
    httpd.serve_forever()
    return 0
