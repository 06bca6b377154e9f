import subprocess
import sys


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("init", "validate", "versions", "runtime", "serve", "operator"):
        assert command in out


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "modelrepo.cli", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr
