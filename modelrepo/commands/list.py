"""`modelrepo list [<dir|url>]`: every deployment of a branch with its latest version."""

from __future__ import annotations

import argparse

HELP = "list the deployments: name, latest version, commit, date, archived or not"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".",
                        help="the model repository: a clone, a bare repository or a URL")
    parser.add_argument("--rev", default="HEAD", help="branch, tag or commit to read")


def run(args: argparse.Namespace) -> int:
    from modelrepo import git
    from modelrepo.cli import UserError
    from modelrepo.commands._source import SourceError, git_dir, resolve
    from modelrepo.format import ARCHIVED_MARKER, deployment_path
    from modelrepo.repository import HistoryError, deployment_versions, folder_trees

    try:
        with git_dir(args.dir) as repo:
            sha = resolve(repo, args.rev, args.dir)
            if sha is None:
                print(f"no deployments: {args.rev} of {args.dir} has no commit yet")
                return 0
            versions = deployment_versions(repo, sha)
            present = folder_trees(repo, sha)
            archived = {
                name for name in present
                if git.try_run(["cat-file", "-e", f"{sha}:{deployment_path(name)}/{ARCHIVED_MARKER}"],
                               cwd=repo) is not None
            }
    except (SourceError, HistoryError, git.GitError) as exc:
        raise UserError(str(exc)) from None
    rows = [(name, versions[name][-1]) for name in sorted(present) if versions.get(name)]
    if not rows:
        print(f"no deployments on {args.rev} of {args.dir}")
        return 0
    width = max(10, *(len(name) for name, _ in rows))
    print(f"{'NAME':<{width}} {'VERSION':<8} {'COMMIT':<8} {'DATE':<25} STATE")
    for name, latest in rows:
        state = "archived" if name in archived else "active"
        print(f"{name:<{width}} {latest.number:<8} {latest.commit[:7]:<8} {latest.date.isoformat():<25} {state}")
    return 0
