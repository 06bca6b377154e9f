"""`modelrepo versions <dir> <Name>`: the version numbers of one deployment (docs/repo-format.md)."""

from __future__ import annotations

import argparse

HELP = "list the versions of a deployment: number, commit, date, message"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="the model repository: a clone, a bare repository or a URL")
    parser.add_argument("name", metavar="Name", help="the deployment (folder under deployments/)")
    parser.add_argument("--rev", default="HEAD", help="branch, tag or commit to read")


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError
    from modelrepo.commands._source import SourceError, git_dir, resolve
    from modelrepo.repository import HistoryError, versions_of

    try:
        with git_dir(args.dir) as repo:
            sha = resolve(repo, args.rev, args.dir)
            versions = versions_of(repo, args.name, rev=sha) if sha else []
    except (SourceError, HistoryError) as exc:
        raise UserError(str(exc)) from None
    if not versions:
        raise UserError(f"{args.name}: no versions on {args.rev} in {args.dir}")
    print(f"{'VERSION':<8} {'COMMIT':<8} {'DATE':<25} MESSAGE")
    for v in reversed(versions):
        print(f"{v.number:<8} {v.commit[:7]:<8} {v.date.isoformat():<25} {v.message}")
    return 0
