"""Pure functions of the webhook receiver: URL normalisation, matching, signatures, payloads."""

from __future__ import annotations

import pytest

from modelrepo.git import redact_url, redact_urls
from modelrepo.operator import webhooks as wh

SAME_REPO = [
    "https://github.com/acme/models.git",
    "https://github.com/acme/models",
    "https://GitHub.com/acme/models/",
    "https://user:token@github.com/acme/models.git",
    "https://github.com:443/acme/models.git",
    "http://github.com:80/acme/models",
    "ssh://git@github.com/acme/models.git",
    "ssh://git@github.com:22/acme/models",
    "git+ssh://git@github.com/acme/models.git",
    "git@github.com:acme/models.git",
    "git@github.com:/acme/models.git",
    "github.com:acme/models",
    "git://github.com/acme/models.git",
    "git://github.com:9418/acme/models.git",
    "  https://github.com/Acme/Models.git  ",
]


@pytest.mark.parametrize("url", SAME_REPO)
def test_every_spelling_of_one_repository_normalises_to_one_key(url):
    assert wh.normalize_url(url) == "github.com/acme/models"


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/other.git",
        "https://gitlab.com/acme/models.git",
        "https://github.com:8443/acme/models.git",
        "ssh://git@github.com:2222/acme/models.git",
        "https://github.com/acme/models/sub.git",
    ],
)
def test_other_repositories_hosts_and_ports_stay_distinct(url):
    assert wh.normalize_url(url) != "github.com/acme/models"


def test_local_paths_and_file_urls_keep_their_path():
    assert wh.normalize_url("file:///srv/git/models.git") == "/srv/git/models"
    assert wh.normalize_url("/srv/git/models.git") == "/srv/git/models"
    assert wh.normalize_url("file:///srv/git/models.git") != wh.normalize_url(
        "file:///srv/git/x.git"
    )


def _target(name="models", url="https://github.com/acme/models.git", branch="main", secret=b"s3"):
    return wh.RepoTarget("ml", name, url, branch, secret)


def test_matching_needs_the_same_repository_and_the_same_branch():
    targets = [
        _target("a"),
        _target("b", branch="dev"),
        _target("c", url="git@github.com:acme/models.git"),
        _target("d", url="https://github.com/acme/other.git"),
        _target("e", branch=None),  # pinned revision: never moved by a push
    ]
    urls = ["https://github.com/acme/models.git", "git@github.com:acme/models.git"]
    assert [t.name for t in wh.match_targets(targets, urls, "main")] == ["a", "c"]
    assert [t.name for t in wh.match_targets(targets, urls, "dev")] == ["b"]
    assert wh.match_targets(targets, urls, None) == []
    assert wh.match_targets(targets, [], "main") == []


def test_same_repository_ignores_the_branch_and_unparsable_urls():
    targets = [_target("a"), _target("b", branch="dev"), _target("d", url="https://h/other.git")]
    urls = ["https://[oops/x.git", "git@github.com:acme/models.git"]
    assert [t.name for t in wh.same_repository(targets, urls)] == ["a", "b"]
    assert wh.same_repository(targets, ["https://[oops/x.git"]) == []


def test_git_urls_with_user_info_are_redacted_like_https_ones():
    text = "fetching git://user:tok3n@example.com/x.git and https://user:tok3n@example.com/x.git"
    assert redact_urls(text) == (
        "fetching git://***@example.com/x.git and https://***@example.com/x.git"
    )
    assert redact_url("git://tok3n@example.com:9418/x.git") == "git://***@example.com:9418/x.git"


def test_hmac_signature_checks():
    body = b'{"ref": "refs/heads/main"}'
    good = wh.hmac_sha256_signature(b"s3", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert wh.verify_hmac(b"s3", body, good)
    assert not wh.verify_hmac(b"other", body, good)
    assert not wh.verify_hmac(b"s3", body + b" ", good)
    assert not wh.verify_hmac(b"s3", body, good.replace("sha256=", "sha1="))
    assert not wh.verify_hmac(None, body, good)  # a ModelRepo without a secret never verifies
    assert not wh.verify_hmac(b"s3", body, None)
    assert not wh.verify_hmac(b"s3", body, "sha256=\u00e9")


def test_token_checks():
    assert wh.verify_token(b"tok", "tok")
    assert not wh.verify_token(b"tok", "tok2")
    assert not wh.verify_token(None, "tok")
    assert not wh.verify_token(b"tok", None)


def test_payload_parsers_collect_every_url_and_the_branch():
    gh = wh.github_push(
        {
            "ref": "refs/heads/main",
            "repository": {
                "clone_url": "https://github.com/acme/models.git",
                "ssh_url": "git@github.com:acme/models.git",
                "html_url": "https://github.com/acme/models",
            },
        }
    )
    assert gh.branch == "main" and "git@github.com:acme/models.git" in gh.urls
    assert wh.github_push({"ref": "refs/tags/v1", "repository": {}}).branch is None
    gl = wh.gitlab_push(
        {
            "ref": "refs/heads/dev",
            "project": {"git_http_url": "https://gitlab.example/acme/models.git"},
            "repository": {"git_ssh_url": "git@gitlab.example:acme/models.git"},
        }
    )
    assert gl.branch == "dev" and len(gl.urls) == 2
    gen = wh.generic_push({"url": "https://h/x.git", "ref": "refs/heads/main"})
    assert gen == wh.PushEvent(("https://h/x.git",), "main")
    with pytest.raises(wh.BadPayload, match="'url'"):
        wh.generic_push({"branch": "main"})
    with pytest.raises(wh.BadPayload, match="'branch'"):
        wh.generic_push({"url": "https://h/x.git"})


def test_json_bodies_form_bodies_and_garbage():
    assert wh.parse_json_body(b'{"a": 1}') == {"a": 1}
    assert wh.parse_json_body(
        b"payload=%7B%22a%22%3A+1%7D", "application/x-www-form-urlencoded"
    ) == {"a": 1}
    with pytest.raises(wh.BadPayload, match="not valid JSON"):
        wh.parse_json_body(b"{nope")
    with pytest.raises(wh.BadPayload, match="JSON object"):
        wh.parse_json_body(b"[1, 2]")


def test_targets_from_modelrepo_bodies_read_the_webhook_secret():
    secrets = {
        ("ml", "git"): {"webhookSecret": b"s3", "username": b"u"},
        ("ml", "nohook"): {"username": b"u"},
    }
    bodies = [
        {
            "metadata": {"namespace": "ml", "name": "a"},
            "spec": {"url": "https://h/x.git", "branch": "main", "secretRef": {"name": "git"}},
        },
        {
            "metadata": {"namespace": "ml", "name": "b"},
            "spec": {"url": "https://h/x.git", "branch": "main", "secretRef": {"name": "nohook"}},
        },
        {
            "metadata": {"namespace": "ml", "name": "c"},
            "spec": {"url": "https://h/x.git", "revision": "v1"},
        },
        {
            "metadata": {"namespace": "ml", "name": "d"},
            "spec": {"url": "https://h/x.git", "branch": "main", "suspend": True},
        },
        {
            "metadata": {"namespace": "ml", "name": "e"},
            "spec": {"url": "https://h/x.git", "branch": "main", "secretRef": {"name": "gone"}},
        },
    ]
    reads = []

    def read_secret(ns, n):
        reads.append(n)
        return secrets.get((ns, n))

    got = wh.targets_from_modelrepos(bodies, read_secret)
    assert [(t.name, t.url, t.branch, t.suspended) for t in got] == [
        ("a", "https://h/x.git", "main", False),
        ("b", "https://h/x.git", "main", False),
        ("c", "https://h/x.git", None, False),
        ("d", "https://h/x.git", "main", True),  # verified, answered "suspended", never synced
        ("e", "https://h/x.git", "main", False),
    ]
    assert reads == []  # nothing read until a push matches
    assert got[0].secret() == b"s3"
    assert got[1].secret() is None  # no webhookSecret key: never verifies
    assert got[2].secret is None  # no secretRef
    assert got[3].secret is None  # no secretRef
    assert got[4].secret() is None  # the Secret is gone
    assert reads == ["git", "nohook", "gone"]
