"""`modelrepo call <url> <Name> <json>`: one REST call of a served deployment, from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "call a served deployment over REST and print the answer's data as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:3000")
    parser.add_argument("name", metavar="Name", help="the deployment")
    parser.add_argument("data", metavar="json", help='the request\'s "data" as JSON, e.g. 5 or \'[[1, 5], [2, 6]]\'; - reads stdin')
    parser.add_argument("--branch", help="call the deployment of this branch (/v1/<Name>/<branch>/<version>)")
    parser.add_argument("--version", default="latest", help="latest (default), a version number or a commit SHA prefix")
    parser.add_argument("--api-key", default=os.environ.get("MODELREPO_API_KEY"),
                        help="sent as the Authorization header (default: $MODELREPO_API_KEY)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the answer (default 300)")


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError
    from modelrepo.client import InferenceError, get_inference

    text = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"<json> is not valid JSON: {exc} (got {text[:80]!r})") from None
    if args.timeout <= 0:
        raise UserError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    try:
        answer = get_inference(args.url, args.name, data, branch=args.branch, version=args.version,
                               api_key=args.api_key, timeout=args.timeout)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except InferenceError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        print(f"modelrepo: {exc.message}{status}", file=sys.stderr)
        return 1
    print(json.dumps(answer.get("data"), ensure_ascii=False))
    for error in answer.get("errors") or []:
        print(f"modelrepo: row {error.get('id')!r}: {error.get('error')}", file=sys.stderr)
    return 1 if answer.get("errors") else 0
