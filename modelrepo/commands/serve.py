"""`modelrepo serve <path-or-url>`: serve every deployment of one or more branches on this machine.

Serves the committed state of each branch head (never the work tree), polls the branches and
swaps in each changed deployment once its new version is loaded and has passed its
docstring tests, exactly like a push rolls out in the cluster. A git URL is cloned (bare)
into the cache directory and fetched on every poll. Every deployment version runs in a worker
process of its own (docs/runtime.md, "Isolation").
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from modelrepo import git
from modelrepo.commands.runtime import add_server_arguments, serve_or_fail
from modelrepo.duration import parse_duration
from modelrepo.git import redact_urls as redact  # never print credentials

KEYS_ENV = "MODELREPO_API_KEYS_FILE"
HELP = "serve all deployments of a git branch locally and follow new commits (push/revert)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a git repository: local path or URL (https://, ssh://, git://, file://, git@host:path)")
    parser.add_argument("--branch", action="append", dest="branches", metavar="BRANCH",
                        help="a branch to serve (repeat for several; the first answers /v1/<Name>/<ref>; "
                             "default main)")
    parser.add_argument("--all-branches", action="store_true", help="serve every branch of the repository")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--interval", default="2s", help="how often to look for new commits: seconds (2, 0.5) or a Go duration (2s, 500ms, 1m30s)")
    parser.add_argument("--cache-dir", help="where clones and extracted versions go (default ~/.cache/modelrepo)")
    parser.add_argument("--memory-limit", default=None,
                        help="address space per deployment worker, e.g. 2G or 512M; 0 for none "
                             "(default: half of this machine's memory)")
    parser.add_argument("--load-timeout", default="120s",
                        help="how long importing a version and running its docstring tests may take "
                             "before it is refused (default 120s)")
    parser.add_argument("--secrets", help="YAML file of secret names to values, for modelrepo.get_secret (docs/data.md)")
    parser.add_argument("--warehouses", help="YAML file of warehouse names to SQLAlchemy URLs, for datasets/*.yaml (docs/data.md)")
    parser.add_argument("--api-keys", metavar="FILE", default=None,
                        help="require an API key on /v1/ routes: a file of keys, one a line, optionally "
                             "followed by the names it may call (default $MODELREPO_API_KEYS_FILE; none)")
    parser.add_argument("--python-fallback", choices=("never", "nearest"), default="never",
                        help="a deployment asking for a Python not installed here: refuse it (never, the "
                             "default) or run it with the nearest installed Python (nearest), with a warning")
    add_server_arguments(parser)


def parse_size(text: str) -> int:
    """`2G`, `512M`, `64k`, `1000000` -> bytes (powers of 1024); ValueError if not a size."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in units and value[-1:] else ""
    number = value[: len(value) - len(unit)]
    try:
        size = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 2G, 512M, 0)") from None
    if size < 0:
        raise ValueError(f"{text!r} is negative")
    return int(size * units[unit])


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError

    interval, load_timeout, memory_limit = _timings(args)
    if args.all_branches and args.branches:
        raise UserError("give --branch or --all-branches, not both")
    wanted = args.branches or ["main"]
    _export_data_files(args)
    cache_root = Path(args.cache_dir or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not args.cache_dir:
        cache_root = cache_root / "modelrepo"
    repo, cache_dir, fetch = _repository(args, cache_root, wanted)
    found = branches_of(repo)
    branches = all_branches_first_default(repo, found) if args.all_branches else wanted
    missing = [b for b in branches if b not in found]
    if missing or not branches:
        listed = ", ".join(found) or "none with a commit"
        raise UserError(f"no branch {missing[0] if missing else 'at all'!r} in {redact(args.source)}; branches: {listed}")
    _make_cache_dir(cache_dir)
    keys_file = api_keys_file(args.api_keys or os.environ.get(KEYS_ENV) or None)
    spec = {
        "mode": "repo", "source": str(repo), "branches": branches, "interval": interval,
        "cache_dir": str(cache_dir), "fetch": fetch, "memory_limit": memory_limit, "load_timeout": load_timeout,
        "max_body_bytes": args.max_body_bytes, "timeout": args.timeout, "api_keys_file": keys_file,
        "envs_dir": str(cache_root / "envs"), "python_fallback": args.python_fallback,
    }
    more = f" (and /v1/<Name>/<branch>/<ref> for {', '.join(branches)})" if len(branches) > 1 else ""
    print(f"serving branch {branches[0]} of {redact(args.source)} at http://{args.host}:{args.port}/v1/<Name>/latest"
          f"{more} (checking for new commits every {args.interval})", flush=True)
    return serve_or_fail(spec, args.host, args.port)


def _timings(args: argparse.Namespace) -> tuple[float, float, int | None]:
    """--interval, --load-timeout and --memory-limit parsed; UserError naming the flag otherwise."""
    from modelrepo.cli import UserError

    try:
        interval = parse_duration(args.interval)
    except ValueError as exc:
        raise UserError(f"--interval: {exc}") from None
    if interval <= 0:
        raise UserError("--interval must be more than 0")
    try:
        load_timeout = parse_duration(args.load_timeout)
        memory_limit = None if args.memory_limit is None else parse_size(args.memory_limit)
    except ValueError as exc:
        raise UserError(f"--load-timeout/--memory-limit: {exc}") from None
    if load_timeout <= 0:
        raise UserError("--load-timeout must be more than 0")
    return interval, load_timeout, memory_limit


def _make_cache_dir(path: Path) -> None:
    """Create serve's cache directory; UserError (not a traceback) when it cannot be."""
    from modelrepo.cli import UserError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cache directory {path}: {exc.strerror}; choose another with --cache-dir") from None


def _export_data_files(args: argparse.Namespace) -> None:
    """--secrets/--warehouses become the env variables get_secret / get_dataset read, here and in workers."""
    from modelrepo.cli import UserError

    for option, path, env in (("--secrets", args.secrets, "MODELREPO_SECRETS_FILE"),
                              ("--warehouses", args.warehouses, "MODELREPO_WAREHOUSES_FILE")):
        if path:
            if not Path(path).is_file():
                raise UserError(f"{option} {path}: no such file")
            os.environ[env] = str(Path(path).resolve())


def _repository(args: argparse.Namespace, cache_root: Path, wanted: list[str]) -> tuple[Path, Path, bool]:
    """(git directory to serve, its cache directory, whether to fetch from the URL on each poll).

    A URL is cloned bare once into the cache and fetched afterwards; a path is served in place."""
    from modelrepo.cli import UserError

    if git.is_url(args.source):
        cache_dir = cache_root / "serve" / hashlib.sha256(args.source.encode()).hexdigest()[:16]
        repo = cache_dir / "repo.git"
        if not (repo / "HEAD").exists():
            _make_cache_dir(cache_dir)
            print(f"cloning {redact(args.source)} into {repo}", flush=True)
            _git_or_fail(None, "clone", "--bare", "--quiet", args.source, str(repo))
        else:
            refspecs = (["+refs/heads/*:refs/heads/*"] if args.all_branches
                        else [f"+refs/heads/{b}:refs/heads/{b}" for b in wanted])
            _git_or_fail(repo, "fetch", "--quiet", "--prune", args.source, *refspecs)
        return repo, cache_dir, True
    path = Path(args.source).resolve()
    if not path.exists():
        raise UserError(f"{args.source}: no such directory")
    if git.try_run(["rev-parse", "--git-dir"], cwd=path) is None:
        raise UserError(f"{args.source}: not a git repository")
    return path, cache_root / "serve" / hashlib.sha256(str(path).encode()).hexdigest()[:16], False


def api_keys_file(path: str | None) -> str | None:
    """The absolute path of a readable keys file holding at least one key; UserError otherwise.
    Prints how many keys, never which."""
    from modelrepo.cli import UserError
    from modelrepo.runtime.gateway.keys import KeyRing

    if path is None:
        return None
    try:
        ring = KeyRing.read(path)
    except OSError as exc:
        raise UserError(f"--api-keys / ${KEYS_ENV}: cannot read {path}: {exc.strerror or exc}") from None
    if not ring.entries:
        raise UserError(f"--api-keys / ${KEYS_ENV}: {path} holds no key (one key a line, # for comments)")
    print(f"API keys: {len(ring.entries)} key(s) from {path} required on /v1/ routes", flush=True)
    return str(Path(path).resolve())


def all_branches_first_default(repo: Path, found: list[str]) -> list[str]:
    """Every branch, the one `/v1/<Name>/<ref>` answers for first: main, else the repository's HEAD."""
    head = git.try_run(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo)
    default = "main" if "main" in found else (head.strip() if head and head.strip() in found else "")
    return [default, *(b for b in found if b != default)] if default else found


def branches_of(repo: Path) -> list[str]:
    """The branch names of `repo`, sorted."""
    out = git.run(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], cwd=repo)
    return sorted(line for line in out.splitlines() if line)


def _git_or_fail(repo: Path | None, *args: str) -> None:
    from modelrepo.cli import UserError

    try:
        git.run(args, cwd=repo)
    except git.GitError as exc:
        raise UserError(f"git {args[0]} failed: {redact(exc.stderr)}") from None
