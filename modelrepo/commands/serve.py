"""`modelrepo serve <path-or-url>`: serve every deployment of a branch on this machine.

Serves the committed state of the branch head (never the work tree), polls the branch and
swaps in each changed deployment once its new version is loaded and has passed its
docstring tests, exactly like a push rolls out in the cluster. A git URL is cloned (bare)
into the cache directory and fetched on every poll.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from modelrepo import git
from modelrepo.commands.runtime import add_server_arguments
from modelrepo.duration import parse_duration
from modelrepo.git import redact_urls as redact  # never print credentials

HELP = "serve all deployments of a git branch locally and follow new commits (push/revert)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a git repository: local path or URL (https://, ssh://, git://, file://, git@host:path)")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--interval", default="2s", help="how often to look for new commits: seconds (2, 0.5) or a Go duration (2s, 500ms, 1m30s)")
    parser.add_argument("--cache-dir", help="where clones and extracted versions go (default ~/.cache/modelrepo)")
    parser.add_argument("--secrets", help="YAML file of secret names to values, for modelrepo.get_secret (docs/data.md)")
    parser.add_argument("--warehouses", help="YAML file of warehouse names to SQLAlchemy URLs, for datasets/*.yaml (docs/data.md)")
    add_server_arguments(parser)




def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError
    from modelrepo.runtime.launch import serve

    try:
        interval = parse_duration(args.interval)
    except ValueError as exc:
        raise UserError(f"--interval: {exc}") from None
    if interval <= 0:
        raise UserError("--interval must be more than 0")
    for option, path, env in (("--secrets", args.secrets, "MODELREPO_SECRETS_FILE"),
                              ("--warehouses", args.warehouses, "MODELREPO_WAREHOUSES_FILE")):
        if path:
            if not Path(path).is_file():
                raise UserError(f"{option} {path}: no such file")
            os.environ[env] = str(Path(path).resolve())  # read by get_secret / get_dataset, here and in workers
    cache_root = Path(args.cache_dir or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not args.cache_dir:
        cache_root = cache_root / "modelrepo"
    if git.is_url(args.source):
        key = hashlib.sha256(args.source.encode()).hexdigest()[:16]
        cache_dir = cache_root / "serve" / key
        repo = cache_dir / "repo.git"
        if not (repo / "HEAD").exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            print(f"cloning {redact(args.source)} into {repo}", flush=True)
            _git_or_fail(None, "clone", "--bare", "--quiet", args.source, str(repo))
        else:
            _git_or_fail(repo, "fetch", "--quiet", "--prune", args.source,
                         f"+refs/heads/{args.branch}:refs/heads/{args.branch}")
        fetch = True
    else:
        path = Path(args.source).resolve()
        if not path.exists():
            raise UserError(f"{args.source}: no such directory")
        if git.try_run(["rev-parse", "--git-dir"], cwd=path) is None:
            raise UserError(f"{args.source}: not a git repository")
        repo = path
        key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        cache_dir = cache_root / "serve" / key
        fetch = False
    if git.rev_parse(repo, f"refs/heads/{args.branch}") is None:
        raise UserError(f"{redact(args.source)}: no branch {args.branch!r} with a commit")
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "mode": "repo", "source": str(repo), "branch": args.branch, "interval": interval,
        "cache_dir": str(cache_dir), "fetch": fetch,
        "max_body_bytes": args.max_body_bytes, "timeout": args.timeout,
    }
    print(f"serving branch {args.branch} of {redact(args.source)} at http://{args.host}:{args.port}/v1/<Name>/latest "
          f"(checking for new commits every {args.interval})", flush=True)
    return serve(spec, args.host, args.port)


def _git_or_fail(repo: Path | None, *args: str) -> None:
    from modelrepo.cli import UserError

    try:
        git.run(args, cwd=repo)
    except git.GitError as exc:
        raise UserError(f"git {args[0]} failed: {redact(exc.stderr)}") from None
