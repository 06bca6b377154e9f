import re
import subprocess
import sys

import pytest

from modelrepo.cli import COMMANDS

# What a user types; each must be a command of its own, not a word in another command's help.
EXPECTED = ["init", "clone", "validate", "versions", "list", "runtime", "serve", "operator", "fetch", "fetcher", "check", "call", "gateway"]


def listed_commands(help_text: str) -> list[str]:
    """The command names in the `<command>` section of `modelrepo --help` (first word of a line)."""
    section = help_text.split("<command>", 2)[-1].split("\noptions:", 1)[0]
    return re.findall(r"^    (\S+)", section, re.MULTILINE)


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(listed_commands(out)) == sorted(EXPECTED)
    assert sorted(COMMANDS) == sorted(EXPECTED)


@pytest.mark.parametrize("command", EXPECTED)
def test_every_command_has_its_own_help(command):
    proc = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", command, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"usage: modelrepo {command}" in proc.stdout


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr
