"""`modelrepo runtime --dir <folder>`: serve one deployment folder (the entry point of pods)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "serve one deployment folder over the REST contract (the runtime of a pod)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="the deployment folder (with metadata.yaml, source.py)")
    parser.add_argument("--fetcher", metavar="URL",
                        help="instead of --dir: serve every version of the branch's deployments on demand, "
                             "folders fetched by the versions pod's fetcher at URL (needs --versions-dir, --branch)")
    parser.add_argument("--versions-dir", help="with --fetcher: the volume the fetcher writes the folders to")
    parser.add_argument("--max-cached", type=int, default=4, help="with --fetcher: versions loaded at once (least recently called go)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--name", help="deployment name in the routes (default: the folder's name)")
    parser.add_argument("--commit", help="commit SHA for X-Modelrepo-Commit (default: $MODELREPO_COMMIT or git)")
    parser.add_argument("--version", type=int, help="version number (default: $MODELREPO_VERSION or git)")
    parser.add_argument("--branch", default=os.environ.get("MODELREPO_BRANCH") or None,
                        help="the branch this folder is served from, for /v1/<Name>/<branch>/<version> "
                             "(default: $MODELREPO_BRANCH; unset: any branch in a route is accepted)")
    add_server_arguments(parser)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `modelrepo serve`."""
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                        help="largest request body accepted (default 16 MiB; larger gets 413)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a request may take when metadata.yaml sets no deployment.timeoutSeconds (default 60)")


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError
    from modelrepo.format import name_problem

    if args.fetcher:
        return serve_or_fail(versions_spec(args), args.host, args.port)
    if not args.dir:
        raise UserError("give --dir (one folder) or --fetcher (every version on demand)")
    folder = Path(args.dir).resolve()
    if not folder.is_dir():
        raise UserError(f"--dir {args.dir}: no such directory")
    name = args.name or folder.name
    problem = name_problem(name)
    if problem:
        raise UserError(f"{problem} (use --name)")
    commit = args.commit or os.environ.get("MODELREPO_COMMIT") or ""
    version = args.version
    if version is None and os.environ.get("MODELREPO_VERSION"):
        try:
            version = int(os.environ["MODELREPO_VERSION"])
        except ValueError:
            raise UserError(f"MODELREPO_VERSION={os.environ['MODELREPO_VERSION']!r} is not a number") from None
    if not commit or version is None:
        git_commit, git_version = identity_from_git(folder, name)
        commit = commit or git_commit
        version = git_version if version is None else version
    spec = {
        "mode": "folder", "folder": str(folder), "name": name, "commit": commit, "version": version,
        "branch": args.branch,
        "max_body_bytes": args.max_body_bytes, "timeout": args.timeout,
    }
    return serve_or_fail(spec, args.host, args.port)


def versions_spec(args: argparse.Namespace) -> dict[str, object]:
    """The runtime spec of the versions pod (`--fetcher`)."""
    from modelrepo.cli import UserError

    if args.dir:
        raise UserError("give --dir or --fetcher, not both")
    if not args.versions_dir or not args.branch:
        raise UserError("--fetcher needs --versions-dir and --branch")
    if args.max_cached < 1:
        raise UserError("--max-cached must be at least 1")
    return {
        "mode": "versions", "fetcher": args.fetcher, "versions_dir": args.versions_dir, "branch": args.branch,
        "max_cached": args.max_cached, "max_body_bytes": args.max_body_bytes, "timeout": args.timeout,
    }


def serve_or_fail(spec: dict[str, object], host: str, port: int) -> int:
    """Run the server; a port that is taken is a one-line error (exit 2), not a traceback."""
    from modelrepo.cli import UserError
    from modelrepo.runtime.launch import PortInUse, serve

    try:
        return serve(spec, host, port)
    except PortInUse as exc:
        raise UserError(str(exc)) from None


def identity_from_git(folder: Path, name: str) -> tuple[str, int | None]:
    """(commit, version number) of the folder's last commit when it sits in a git work tree."""
    from modelrepo import git
    from modelrepo.format import DEPLOYMENTS_DIR
    from modelrepo.repository import HistoryError, versions_of

    top = git.try_run(["rev-parse", "--show-toplevel"], cwd=folder)
    if not top or folder.parent.name != DEPLOYMENTS_DIR or folder.parent.parent != Path(top).resolve():
        return "", None
    try:
        versions = versions_of(top, folder.name)
    except HistoryError:
        return "", None
    if not versions:
        return "", None
    return versions[-1].commit, versions[-1].number
