"""The webhook receiver over real HTTP on loopback, with injected ModelRepo lister and trigger.

No cluster: the two callables the operator injects are replaced by a list and a recorder;
what is asserted is what a git host sees (status, JSON answer) and which syncs started.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from modelrepo.operator import webhooks as wh

SECRET = b"It's a Secret to Everybody"
URL = "https://github.com/acme/models.git"


class Receiver:
    """The app served by a real aiohttp server on 127.0.0.1 in a thread with its own loop."""

    def __init__(self, targets: list[wh.RepoTarget], window: float = 0.05) -> None:
        self.targets = targets
        self.syncs: list[tuple[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.gate: asyncio.Event | None = None
        self.app = wh.make_app(lambda: self.targets, self._trigger, window=window)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "webhook server did not start"
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def _trigger(self, namespace: str, name: str) -> None:
        self.syncs.append((namespace, name))
        if self.gate is not None:
            await self.gate.wait()

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

    def hold_syncs(self) -> None:
        """Make every triggered sync last until release_syncs()."""
        self.gate = asyncio.run_coroutine_threadsafe(self._new_gate(), self.loop).result()

    async def _new_gate(self) -> asyncio.Event:
        return asyncio.Event()

    def release_syncs(self) -> None:
        self.loop.call_soon_threadsafe(self.gate.set)

    def wait_idle(self, deadline: float = 10.0) -> None:
        """Wait until no sync is running or pending (a condition, with a deadline)."""
        end = time.monotonic() + deadline
        while self.app[wh.COALESCER_KEY].busy():
            assert time.monotonic() < end, "syncs still running after the deadline"
            time.sleep(0.01)

    def close(self) -> None:
        self.client.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([wh.RepoTarget("ml", "models", URL, "main", SECRET)], window=0.05)
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
    assert resp.json() == {"status": "accepted", "syncs": {"ml/models": "started"}}
    receiver.wait_idle()
    assert receiver.syncs == [("ml", "models")]


def test_github_ping_answers_200_and_syncs_nothing(receiver):
    body = json.dumps(
        {"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"clone_url": URL}}
    ).encode()
    resp = post_github(receiver, body, event="ping")
    assert resp.status_code == 200
    assert resp.json() == {"status": "pong", "matched": ["ml/models"]}
    assert post_github(receiver, body, event="ping", secret=b"wrong").status_code == 401
    receiver.wait_idle()
    assert receiver.syncs == []


def test_wrong_signature_is_401_and_nothing_happens(receiver):
    resp = post_github(receiver, github_push(), secret=b"not the secret")
    assert resp.status_code == 401
    assert "signature does not match" in resp.json()["error"]
    body = github_push()
    tampered = post_github(
        receiver,
        body.replace(b"1111", b"2222"),
        **{"X-Hub-Signature-256": wh.hmac_sha256_signature(SECRET, body)},
    )
    assert tampered.status_code == 401
    receiver.wait_idle()
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


def test_unknown_repository_or_branch_is_202_with_nothing_done(receiver):
    other = post_github(
        receiver, github_push(url="https://github.com/acme/other.git"), secret=b"anything"
    )
    assert other.status_code == 202 and other.json()["status"] == "ignored"
    branch = post_github(receiver, github_push(ref="refs/heads/dev"))
    assert branch.status_code == 202 and branch.json()["status"] == "ignored"
    tag = post_github(receiver, github_push(ref="refs/tags/v1"))
    assert tag.status_code == 202 and tag.json()["status"] == "ignored"
    receiver.wait_idle()
    assert receiver.syncs == []


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
        assert resp.json()["syncs"] == {"ml/https": "started", "team/ssh": "started"}
        r.wait_idle()
        assert sorted(r.syncs) == [("ml", "https"), ("team", "ssh")]
    finally:
        r.close()


def test_form_encoded_github_push_is_accepted(receiver):
    from urllib.parse import urlencode

    body = urlencode({"payload": github_push().decode()}).encode()
    resp = post_github(receiver, body, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 202
    receiver.wait_idle()
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
        assert ok.status_code == 202 and ok.json()["syncs"] == {"ml/models": "started"}
        r.wait_idle()
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
    receiver.wait_idle()
    assert receiver.syncs == [("ml", "models")]


def test_a_burst_of_ten_pushes_makes_at_most_two_syncs(receiver):
    receiver.hold_syncs()  # the first sync is still running while the burst arrives
    answers = [post_github(receiver, github_push()).json()["syncs"]["ml/models"] for _ in range(10)]
    assert answers == ["started", "queued"] + ["coalesced"] * 8
    receiver.release_syncs()
    receiver.wait_idle()
    assert receiver.syncs == [("ml", "models")] * 2


def test_a_failing_trigger_does_not_wedge_later_pushes():
    calls = []

    def trigger(namespace, name):
        calls.append(name)
        raise RuntimeError("apiserver down")

    async def scenario():
        coalescer = wh.SyncCoalescer(trigger, window=0)
        assert coalescer.request("ml", "models") == "started"
        while coalescer.busy():
            await asyncio.sleep(0.01)
        assert coalescer.request("ml", "models") == "started"
        while coalescer.busy():
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert calls == ["models", "models"]


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


def test_secret_sources_are_read_only_for_matching_modelrepos():
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
        assert reads == ["models"]
        # A Secret that cannot be read: the push cannot be verified, so it is refused.
        assert post_github(r, github_push(ref="refs/heads/dev")).status_code == 401
        assert reads == ["models", "gone"]
        r.wait_idle()
        assert r.syncs == [("ml", "models")]
    finally:
        r.close()
