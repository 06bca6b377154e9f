"""modelrepo.git: the one place git runs. Timeouts, redaction and errors over real git."""

from __future__ import annotations

import socket
import threading

import pytest

from modelrepo import git


def test_failure_is_a_git_error_with_gits_message_and_the_command(tmp_path):
    with pytest.raises(git.GitError) as info:
        git.run(["rev-parse", "--verify", "nope^{commit}"], cwd=tmp_path)
    assert "not a git repository" in str(info.value)
    assert info.value.command.startswith("git rev-parse --verify")
    assert info.value.returncode == 128


def test_credentials_in_urls_and_secret_values_never_reach_the_message(tmp_path):
    creds = git.Credentials.from_mapping({"username": b"bob", "password": b"s3cret-pw"})
    url = "http://bob:s3cret-pw@127.0.0.1:9/repo.git"
    with git.environment(creds, url) as env, pytest.raises(git.GitError) as info:
        git.run(["ls-remote", url], env=env, creds=creds, timeout=30)
    shown = f"{info.value} {info.value.command}"
    assert "s3cret-pw" not in shown and "bob:" not in shown
    assert "***@127.0.0.1" in shown


def test_a_server_that_never_answers_times_out(tmp_path):
    """A hung remote must not freeze a sync loop, a poll thread or a notebook."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/repo.git"
    try:
        with pytest.raises(git.GitError, match="timed out after 2s"):
            git.run(["ls-remote", url], timeout=2)
    finally:
        for conn in accepted:
            conn.close()
        server.close()


def test_try_run_and_rev_parse_answer_none_for_no(tmp_path):
    assert git.try_run(["rev-parse", "HEAD"], cwd=tmp_path) is None
    git.run(["init", "-q", "-b", "main", str(tmp_path)])
    assert git.rev_parse(tmp_path, "HEAD") is None


@pytest.mark.parametrize("url, has", [
    ("https://u:p@host/r.git", True), ("git://tok@host/r", True), ("https://host/r.git", False),
    ("git@host:org/r.git", False), ("/srv/repo", False), ("ssh://git@host/r.git", False),
])
def test_url_has_credentials(url, has):
    assert git.url_has_credentials(url) is has


def test_the_hermetic_config_reaches_a_git_older_than_2_31(tmp_path):
    """Debian bullseye's git 2.30 (the Python 3.9 image) reads neither GIT_CONFIG_GLOBAL nor
    GIT_CONFIG_COUNT: without them, the private global config (safe.directory, for a pod's
    root-owned emptyDir) and the command-line config (file://, the bearer header) still apply."""
    creds = git.Credentials.from_mapping({"bearerToken": b"tok'en"})
    with git.environment(creds, "https://127.0.0.1:9/repo.git") as env:
        old_git = {k: v for k, v in env.items() if k != "GIT_CONFIG_GLOBAL" and not k.startswith("GIT_CONFIG_KEY")}
        old_git.update({"HOME": str(tmp_path), "GIT_CONFIG_COUNT": "0"})  # no ~/.gitconfig of this machine

        def config(*args: str) -> str:
            return git.run(["config", *args], env=old_git)

        assert config("--global", "--get", "safe.directory") == "*"
        assert config("--get", "protocol.file.allow") == "always"
        assert config("--get-all", "http.extraHeader") == "Authorization: Bearer tok'en"
