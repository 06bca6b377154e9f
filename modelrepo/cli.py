"""The `modelrepo` command line: one subcommand per module under modelrepo.commands.

Each command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their command runs, so `modelrepo --help` stays fast and the
operator's and runtime's heavy dependencies load only where they are used.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that implements it
COMMANDS: dict[str, str] = {
    "init": "modelrepo.commands.init",
    "clone": "modelrepo.commands.clone",
    "list": "modelrepo.commands.list",
    "validate": "modelrepo.commands.validate",
    "versions": "modelrepo.commands.versions",
    "runtime": "modelrepo.commands.runtime",
    "serve": "modelrepo.commands.serve",
    "operator": "modelrepo.commands.operator",
    "fetch": "modelrepo.commands.fetch",
    "fetcher": "modelrepo.commands.fetcher",
    "call": "modelrepo.commands.call",
    "check": "modelrepo.commands.check",
    "gateway": "modelrepo.commands.gateway",
}


class UserError(Exception):
    """A problem the user can fix; printed as `modelrepo: <message>` with exit code 2."""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, unless its help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelrepo", description="Git-declared model deployments on Kubernetes.",
        formatter_class=_DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelrepo {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        # Import only the module of the command being run; the others get a bare entry.
        if name == wanted:
            module = importlib.import_module(module_name)
            sub = subparsers.add_parser(
                name, help=module.HELP, description=module.HELP,
                formatter_class=_DefaultsFormatter,
            )
            module.add_arguments(sub)
            for action in sub._actions:  # options without help text still show their default
                if action.help is None and action.default not in (None, False, [], argparse.SUPPRESS):
                    action.help = "(default: %(default)s)"
            sub.set_defaults(_module=module)
        else:
            subparsers.add_parser(name, help=_help_of(module_name))
    return parser


def _version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelrepo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _help_of(module_name: str) -> str:
    try:
        return importlib.import_module(module_name).HELP
    except ImportError:
        return "(unavailable)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser(argv).parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"modelrepo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, so `python -m modelrepo.cli` and the commands share one
    # UserError class (commands import modelrepo.cli, not __main__).
    from modelrepo.cli import main as _main

    sys.exit(_main())
