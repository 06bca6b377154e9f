"""The webhook receiver over real HTTP on loopback, with injected ModelRepo lister and trigger.

No cluster: the ModelRepo lister is a list; the trigger is a recorder, or the real
`triggers.request_sync` with a registered loop inbox. What is asserted is what a git host
sees (status, JSON answer) and which syncs were requested.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from modelrepo.operator import triggers
from modelrepo.operator import webhooks as wh

SECRET = b"It's a Secret to Everybody"
URL = "https://github.com/acme/models.git"


class Receiver:
    """The app served by a real aiohttp server on 127.0.0.1 in a thread with its own loop."""

    def __init__(self, targets: list[wh.RepoTarget], request_sync=None) -> None:
        self.targets = targets
        self.syncs: list[tuple[str, str]] = []
        self.running = True  # what the recording trigger answers (is the ModelRepo's loop running)
        self.loop = asyncio.new_event_loop()
        self.app = wh.make_app(lambda: self.targets, request_sync or self._request)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "webhook server did not start"
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def _request(self, namespace: str, name: str) -> bool:
        self.syncs.append((namespace, name))
        return self.running

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def close(self) -> None:
        self.client.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([wh.RepoTarget("ml", "models", URL, "main", SECRET)])
    yield r
    r.close()


def github_push(ref: str = "refs/heads/main", url: str = URL, **extra) -> bytes:
    owner_repo = url.split("github.com/")[1].removesuffix(".git")
    payload = {
        "ref": ref,
        "before": "0" * 40,
        "after": "1" * 40,
        "repository": {
            "full_name": owner_repo,
            "clone_url": url,
            "ssh_url": f"git@github.com:{owner_repo}.git",
            "html_url": f"https://github.com/{owner_repo}",
        },
        **extra,
    }
    return json.dumps(payload).encode()


def post_github(
    r: Receiver, body: bytes, event: str = "push", secret: bytes | None = SECRET, **headers
):
    hdrs = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": "d-1"}
    if secret is not None:
        hdrs["X-Hub-Signature-256"] = wh.hmac_sha256_signature(secret, body)
    hdrs.update(headers)
    return r.client.post("/hooks/github", content=body, headers=hdrs)


def test_signed_github_push_is_accepted_and_syncs_the_matching_modelrepo_once(receiver):
    resp = post_github(receiver, github_push())
    assert resp.status_code == 202
    assert resp.json() == {"status": "accepted", "syncs": {"ml/models": "queued"}}
    assert receiver.syncs == [("ml", "models")]


def test_github_ping_answers_200_and_syncs_nothing(receiver):
    body = json.dumps(
        {"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"clone_url": URL}}
    ).encode()
    resp = post_github(receiver, body, event="ping")
    assert resp.status_code == 200
    assert resp.json() == {"status": "pong", "matched": ["ml/models"]}
    assert post_github(receiver, body, event="ping", secret=b"wrong").status_code == 401
    assert receiver.syncs == []


def test_wrong_signature_is_401_and_nothing_happens(receiver):
    resp = post_github(receiver, github_push(), secret=b"not the secret")
    assert resp.status_code == 401
    assert resp.json() == {"error": wh.NOT_VERIFIED}
    body = github_push()
    tampered = post_github(
        receiver,
        body.replace(b"1111", b"2222"),
        **{"X-Hub-Signature-256": wh.hmac_sha256_signature(SECRET, body)},
    )
    assert tampered.status_code == 401
    assert receiver.syncs == []


def test_unsigned_push_is_401(receiver):
    resp = post_github(receiver, github_push(), secret=None)
    assert resp.status_code == 401
    assert "X-Hub-Signature-256" in resp.json()["error"]
    assert receiver.syncs == []


def test_oversized_body_is_413_with_and_without_content_length(receiver):
    big = github_push(padding="x" * wh.MAX_BODY)
    resp = post_github(receiver, big)
    assert resp.status_code == 413
    assert "limit" in resp.json()["error"]

    def chunks():  # chunked transfer: no Content-Length to check up front
        for _ in range(17):
            yield b"x" * 65536

    hdrs = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    resp = receiver.client.post("/hooks/github", content=chunks(), headers=hdrs)
    assert resp.status_code == 413
    assert receiver.syncs == []


def test_body_at_the_limit_is_read_in_full(receiver):
    body = github_push()
    body = body[:-1] + b', "padding": "' + b"x" * (wh.MAX_BODY - len(body) - 15) + b'"}'
    assert len(body) == wh.MAX_BODY
    assert post_github(receiver, body).status_code == 202


def test_unknown_repository_and_wrong_secret_get_the_same_401():
    """Nothing tells a sender without the secret whether a repository is watched."""
    reads = []

    def source(name):
        def read():
            reads.append(name)
            return SECRET

        return read

    r = Receiver(
        [
            wh.RepoTarget("ml", "models", URL, "main", source("models")),
            wh.RepoTarget("ml", "docs", "https://github.com/acme/docs.git", "main", source("docs")),
        ]
    )
    other = "https://github.com/acme/other.git"
    try:
        answers = {
            "watched, wrong secret": post_github(r, github_push(), secret=b"guess"),
            "unknown, wrong secret": post_github(r, github_push(url=other), secret=b"guess"),
            # signed with a secret the receiver knows, but no ModelRepo of that repository
            # holds it: it cannot be verified, so it is refused like any other.
            "unknown, a real secret": post_github(r, github_push(url=other)),
        }
        assert {k: (a.status_code, a.json()) for k, a in answers.items()} == {
            k: (401, {"error": wh.NOT_VERIFIED}) for k in answers
        }
        # the same work too: one Secret read for the watched repository and for the unknown one
        assert len(reads) == 3
        unsigned = [
            post_github(r, github_push(url=u), secret=None) for u in (URL, other)
        ]
        assert unsigned[0].status_code == unsigned[1].status_code == 401
        assert unsigned[0].json() == unsigned[1].json()
        ping = json.dumps({"zen": "z", "repository": {"clone_url": other}}).encode()
        assert post_github(r, ping, event="ping").json() == {"error": wh.NOT_VERIFIED}
        assert r.syncs == []
    finally:
        r.close()


def test_verified_push_to_another_branch_or_a_tag_is_202_with_nothing_done(receiver):
    branch = post_github(receiver, github_push(ref="refs/heads/dev"))
    assert branch.status_code == 202
    assert branch.json() == {
        "status": "ignored",
        "reason": "no ModelRepo whose webhookSecret verifies this push follows branch 'dev'",
    }
    tag = post_github(receiver, github_push(ref="refs/tags/v1"))
    assert tag.status_code == 202
    assert tag.json() == {"status": "ignored", "reason": "not a push to a branch"}
    assert receiver.syncs == []


def test_unsigned_bodies_are_refused_before_they_are_read(receiver):
    big = github_push(padding="x" * wh.MAX_BODY)  # would be a 413 if it were read
    resp = post_github(receiver, big, secret=None)
    assert resp.status_code == 401 and "X-Hub-Signature-256" in resp.json()["error"]


def test_hostile_bodies_are_400_without_a_traceback(receiver, caplog):
    nested = b"[" * 100_000 + b"]" * 100_000
    resp = post_github(receiver, nested)
    assert resp.status_code == 400
    assert resp.json() == {"error": "body is not valid JSON: nested too deeply"}
    huge_number = b'{"ref": 1' + b"1" * 5000 + b"}"
    resp = post_github(receiver, huge_number)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    generic = json.dumps({"url": "https://[oops/x.git", "branch": "main"}).encode()
    sig = {wh.GENERIC_SIGNATURE_HEADER: wh.hmac_sha256_signature(SECRET, generic)}
    resp = receiver.client.post("/hooks/generic", content=generic, headers=sig)
    assert resp.status_code == 401 and resp.json() == {"error": wh.NOT_VERIFIED}
    assert [r for r in caplog.records if r.exc_info] == []
    assert receiver.syncs == []


def test_credentials_in_pushed_urls_never_reach_the_log(receiver, caplog):
    caplog.set_level("INFO", logger="modelrepo.webhooks")
    for url in ("git://user:hunter2@example.com/acme/x.git", "https://user:hunter2@example.com/x"):
        body = json.dumps({"url": url, "branch": "main"}).encode()
        sig = {wh.GENERIC_SIGNATURE_HEADER: wh.hmac_sha256_signature(SECRET, body)}
        assert receiver.client.post("/hooks/generic", content=body, headers=sig).status_code == 401
    assert "example.com" in caplog.text
    assert "hunter2" not in caplog.text


def test_other_events_and_bad_json_get_clear_answers(receiver):
    resp = post_github(receiver, b"{}", event="issues")
    assert resp.status_code == 202 and "only push and ping" in resp.json()["reason"]
    resp = post_github(receiver, b"{not json")
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    assert receiver.syncs == []


def test_push_matches_every_spelling_and_only_verified_modelrepos():
    r = Receiver(
        [
            wh.RepoTarget("ml", "https", URL, "main", SECRET),
            wh.RepoTarget("team", "ssh", "ssh://git@GitHub.com:22/acme/models", "main", SECRET),
            wh.RepoTarget("other", "scp", "git@github.com:acme/models.git", "main", b"their own"),
            wh.RepoTarget("dev", "dev", URL, "dev", SECRET),
            wh.RepoTarget("x", "nosecret", URL, "main", None),
        ]
    )
    try:
        resp = post_github(r, github_push())
        assert resp.status_code == 202
        assert resp.json()["syncs"] == {"ml/https": "queued", "team/ssh": "queued"}
        assert sorted(r.syncs) == [("ml", "https"), ("team", "ssh")]
    finally:
        r.close()


def test_form_encoded_github_push_is_accepted(receiver):
    from urllib.parse import urlencode

    body = urlencode({"payload": github_push().decode()}).encode()
    resp = post_github(receiver, body, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 202
    assert receiver.syncs == [("ml", "models")]


def test_gitlab_push_with_token():
    url = "https://gitlab.example.com/acme/models.git"
    r = Receiver(
        [wh.RepoTarget("ml", "models", "git@gitlab.example.com:acme/models.git", "main", SECRET)]
    )
    try:
        body = json.dumps(
            {
                "object_kind": "push",
                "ref": "refs/heads/main",
                "project": {
                    "git_http_url": url,
                    "git_ssh_url": "git@gitlab.example.com:acme/models.git",
                },
            }
        ).encode()
        hdrs = {"X-Gitlab-Event": "Push Hook", "Content-Type": "application/json"}
        assert r.client.post("/hooks/gitlab", content=body, headers=hdrs).status_code == 401
        bad = r.client.post(
            "/hooks/gitlab", content=body, headers={**hdrs, "X-Gitlab-Token": "nope"}
        )
        assert bad.status_code == 401
        ok = r.client.post(
            "/hooks/gitlab", content=body, headers={**hdrs, "X-Gitlab-Token": SECRET.decode()}
        )
        assert ok.status_code == 202 and ok.json()["syncs"] == {"ml/models": "queued"}
        assert r.syncs == [("ml", "models")]
    finally:
        r.close()


def test_generic_hmac_form(receiver):
    body = json.dumps({"url": "git@github.com:acme/models.git", "branch": "main"}).encode()
    unsigned = receiver.client.post("/hooks/generic", content=body)
    assert unsigned.status_code == 401 and wh.GENERIC_SIGNATURE_HEADER in unsigned.json()["error"]
    sig = {wh.GENERIC_SIGNATURE_HEADER: wh.hmac_sha256_signature(SECRET, body)}
    ok = receiver.client.post("/hooks/generic", content=body, headers=sig)
    assert ok.status_code == 202
    missing = json.dumps({"branch": "main"}).encode()
    resp = receiver.client.post(
        "/hooks/generic",
        content=missing,
        headers={wh.GENERIC_SIGNATURE_HEADER: wh.hmac_sha256_signature(SECRET, missing)},
    )
    assert resp.status_code == 400 and "'url'" in resp.json()["error"]
    assert receiver.syncs == [("ml", "models")]


def test_a_burst_of_ten_pushes_queues_one_sync_in_the_modelrepo_loop():
    """The real trigger path: the receiver wakes the loop's inbox; the inbox coalesces."""
    loop = asyncio.new_event_loop()  # the ModelRepo's loop (the operator's, in production)
    waker = triggers.register("ml", "burst", loop)
    r = Receiver([wh.RepoTarget("ml", "burst", URL, "main", SECRET)], triggers.request_sync)
    try:
        answers = [post_github(r, github_push()).json() for _ in range(10)]
        assert answers == [{"status": "accepted", "syncs": {"ml/burst": "queued"}}] * 10
        assert loop.run_until_complete(waker.wait(10)) == {triggers.SYNC}
        assert loop.run_until_complete(waker.wait(0)) == set()  # one sync for the whole burst
    finally:
        r.close()
        triggers.unregister("ml", "burst", waker)
        loop.close()


def test_the_answer_says_when_no_loop_runs_or_the_modelrepo_is_suspended():
    r = Receiver(
        [
            wh.RepoTarget("ml", "models", URL, "main", SECRET),
            wh.RepoTarget("ml", "paused", URL, "main", SECRET, suspended=True),
        ]
    )
    try:
        r.running = False  # e.g. the operator is starting and the loop is not there yet
        resp = post_github(r, github_push())
        assert resp.status_code == 202
        assert resp.json() == {
            "status": "accepted",
            "syncs": {"ml/models": "not running", "ml/paused": "suspended"},
        }
        assert r.syncs == [("ml", "models")]  # a suspended ModelRepo is not even asked
    finally:
        r.close()


def test_healthz(receiver):
    assert receiver.client.get("/healthz").text == "ok"


def test_apiserver_trouble_is_503_and_a_bug_is_a_500_without_traceback():
    r = Receiver([])
    try:
        r.targets = None  # the lister fails (as when the apiserver cannot be reached)
        resp = post_github(r, github_push())
        assert resp.status_code == 503 and "retry later" in resp.json()["error"]
        r.targets = [wh.RepoTarget("ml", "broken", None, "main", SECRET)]  # a bug while matching
        resp = post_github(r, github_push())
        assert resp.status_code == 500
        assert resp.json() == {
            "error": "internal error in the webhook receiver; see the operator log"
        }
    finally:
        r.close()


def test_secret_sources_are_read_only_for_modelrepos_of_the_pushed_repository():
    reads = []

    def source(name, value):
        def read():
            reads.append(name)
            if value is None:
                raise LookupError("Secret ml/git does not exist")
            return value

        return read

    r = Receiver(
        [
            wh.RepoTarget("ml", "models", URL, "main", source("models", SECRET)),
            wh.RepoTarget(
                "ml", "other", "https://github.com/acme/other.git", "main", source("other", SECRET)
            ),
            wh.RepoTarget("ml", "gone", URL, "dev", source("gone", None)),
        ]
    )
    try:
        assert post_github(r, github_push()).status_code == 202
        assert reads == ["models", "gone"]  # every branch of the repository, no other one
        # A Secret that cannot be read: a push for its branch cannot be verified with it.
        resp = post_github(r, github_push(ref="refs/heads/dev"), secret=b"the dev secret")
        assert resp.status_code == 401
        assert reads == ["models", "gone"] * 2
        assert r.syncs == [("ml", "models")]
    finally:
        r.close()
