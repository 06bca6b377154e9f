"""Git access against real repositories and real servers (git daemon, http-backend, sshd)."""

import subprocess

import pytest
from fixtures.git_servers import HTTP_PASSWORD, HTTP_TOKEN, WorkRepo

from modelrepo.cli import main as cli_main
from modelrepo.git import Credentials, GitError, redact_urls
from modelrepo.operator import gitsource
from modelrepo.repository import deployment_versions, folder_trees


@pytest.fixture(scope="module")
def repo(git_servers, tmp_path_factory):
    """models.git on the servers: A, B at v1; then B changed (v2)."""
    name = f"models-{tmp_path_factory.mktemp('n').name}"
    bare = git_servers.create_repo(name)
    work = WorkRepo.create(bare, tmp_path_factory.mktemp("work"))
    work.write_deployment("A")
    work.write_deployment("B")
    first = work.commit_push("A and B")
    work.write_deployment("B", body="return x * 3", doc="12")
    second = work.commit_push("B triples")
    return name, first, second


def urls_and_creds(servers, name):
    return [
        ("daemon", servers.daemon_url(name), None),
        ("http-basic", servers.http_url(name), Credentials.from_mapping(servers.basic_auth_secret())),
        ("http-bearer", servers.http_url(name), Credentials.from_mapping(servers.bearer_secret())),
        ("ssh", servers.ssh_url(name), Credentials.from_mapping(servers.ssh_secret())),
        ("file", servers.file_url(name), None),
    ]


@pytest.mark.parametrize("kind", ["daemon", "http-basic", "http-bearer", "ssh", "file"])
def test_resolve_fetch_blobless_and_tree_hashes_over_every_transport(git_servers, repo, kind, tmp_path):
    name, first, second = repo
    url, creds = next((u, c) for k, u, c in urls_and_creds(git_servers, name) if k == kind)
    assert gitsource.ls_remote(url, "main", creds) == second
    cache = tmp_path / "cache"
    gitsource.fetch(cache, url, second, creds, ref="main")
    # blobless: the commit and trees are there, no file content yet
    missing = subprocess.run(
        ["git", "rev-list", "--objects", "--missing=print", second], cwd=cache, capture_output=True, text=True,
    ).stdout
    assert any(line.startswith("?") for line in missing.splitlines())
    trees_now = folder_trees(cache, second)
    trees_then = folder_trees(cache, first)
    assert set(trees_now) == {"A", "B"}
    assert trees_now["A"] == trees_then["A"] and trees_now["B"] != trees_then["B"]
    versions = deployment_versions(cache, second)
    assert [v.commit for v in versions["B"]] == [first, second]
    assert [v.commit for v in versions["A"]] == [first]
    out = gitsource.export_folder(cache, url, second, "deployments/B", tmp_path / "export", creds)
    assert "x * 3" in (out / "source.py").read_text()


@pytest.mark.parametrize("kind", ["daemon", "http-basic", "ssh"])
def test_sparse_checkout_fetches_only_the_folder(git_servers, repo, kind, tmp_path):
    name, first, _ = repo
    url, creds = next((u, c) for k, u, c in urls_and_creds(git_servers, name) if k == kind)
    folder = gitsource.sparse_checkout(url, first, "deployments/B", tmp_path / "w", creds, ref="main")
    assert "x * 2" in (folder / "source.py").read_text()
    assert not (tmp_path / "w" / "deployments" / "A").exists()


def test_wrong_password_is_a_clear_error_without_the_password(git_servers, repo):
    name, *_ = repo
    creds = Credentials.from_mapping({"username": b"modelrepo", "password": b"not-" + HTTP_PASSWORD.encode()})
    with pytest.raises(GitError) as err:
        gitsource.ls_remote(git_servers.http_url(name), "main", creds)
    assert "Authentication failed" in str(err.value)
    assert HTTP_PASSWORD not in str(err.value)


def test_password_in_the_url_is_redacted(git_servers, repo):
    name, *_ = repo
    url = git_servers.http_url(name).replace("http://", f"http://modelrepo:wrong-{HTTP_TOKEN}@")
    with pytest.raises(GitError) as err:
        gitsource.ls_remote(url, "main")
    assert HTTP_TOKEN not in str(err.value)


def test_ssh_host_key_is_always_verified(git_servers, repo, tmp_path):
    name, *_ = repo
    url = git_servers.ssh_url(name)
    with pytest.raises(GitError, match="known_hosts"):
        gitsource.ls_remote(url, "main", Credentials(identity=git_servers.client_key))
    other_key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    wrong_host = git_servers.known_hosts.split()[0] + b" " + b" ".join(other_key.with_suffix(".pub").read_bytes().split()[:2])
    with pytest.raises(GitError, match="Host key verification failed"):
        gitsource.ls_remote(url, "main", Credentials(identity=git_servers.client_key, known_hosts=wrong_host))


def test_unknown_branch_and_unreachable_server(git_servers, repo):
    name, *_ = repo
    with pytest.raises(GitError, match="no branch or tag 'nope'"):
        gitsource.ls_remote(git_servers.daemon_url(name), "nope")
    with pytest.raises(GitError):
        gitsource.ls_remote(f"git://127.0.0.1:1/{name}.git", "main")


def test_credentials_never_show_in_repr():
    creds = Credentials.from_mapping({"username": b"u", "password": b"hunter2hunter2"})
    assert "hunter2" not in repr(creds)
    assert creds.redact("x hunter2hunter2 y") == "x *** y"
    assert redact_urls("see https://u:pw@host/r.git") == "see https://***@host/r.git"


def test_fetch_command_checks_the_folder(git_servers, repo, tmp_path, capsys):
    name, first, second = repo
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    for key, value in git_servers.basic_auth_secret().items():
        (secret_dir / key).write_bytes(value)
    rc = cli_main([
        "fetch", "--url", git_servers.http_url(name), "--commit", second, "--path", "deployments/B",
        "--dest", str(tmp_path / "model"), "--credentials", str(secret_dir), "--ref", "main",
    ])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "model" / "deployments" / "B" / "source.py").is_file()
    # git only, and nothing left that holds a credential: no .git at all
    assert not (tmp_path / "model" / ".git").exists()
    left = b"".join(p.read_bytes() for p in (tmp_path / "model").rglob("*") if p.is_file())
    assert git_servers.basic_auth_secret()["password"] not in left
    rc = cli_main(["check", "--dir", str(tmp_path / "model" / "deployments" / "B")])
    assert rc == 0, capsys.readouterr().err


def test_fetch_command_fails_clearly_on_a_failing_doctest(git_servers, tmp_path, capsys):
    bare = git_servers.create_repo("doctest-fails")
    work = WorkRepo.create(bare, tmp_path / "work")
    work.write_deployment("C", body="return x * 2", doc="9")
    sha = work.commit_push("wrong doctest")
    rc = cli_main([
        "fetch", "--url", git_servers.daemon_url("doctest-fails"), "--commit", sha, "--path", "deployments/C",
        "--dest", str(tmp_path / "model"),
    ])
    assert rc == 0, capsys.readouterr().err
    rc = cli_main(["check", "--dir", str(tmp_path / "model" / "deployments" / "C")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "C(4)" in err and "expected '9'" in err and "got '8'" in err


def test_fetch_command_bad_url_is_a_user_error(tmp_path, capsys):
    rc = cli_main([
        "fetch", "--url", "git://127.0.0.1:1/none.git", "--commit", "a" * 40, "--path", "deployments/X",
        "--dest", str(tmp_path / "m"),
    ])
    assert rc == 2
    assert capsys.readouterr().err.startswith("modelrepo: fetching deployments/X")
