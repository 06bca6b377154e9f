"""Git push webhooks: turn a signed push notification into an immediate sync.

Why a receiver at all: polling makes a push wait up to `spec.interval`; a webhook makes the
sync start at once. The receiver only decides (is the push authentic, which ModelRepos does
it concern) and asks their loops to sync: it does no Kubernetes or git work itself, and it
queues nothing of its own. The operator injects two callables into `make_app`:

- `list_targets()` -> iterable of `RepoTarget` (every ModelRepo with its url, branch and
  `webhookSecret`), sync or async;
- `request_sync(namespace, name)` -> bool: wakes that ModelRepo's loop
  (`triggers.request_sync`, where requests coalesce: one flag per loop); False when no loop
  runs for it. It must not block.

Routes (all answers are JSON):

| route | authentication |
|---|---|
| `POST /hooks/github` | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`; events `push`, `ping` |
| `POST /hooks/gitlab` | `X-Gitlab-Token: <secret>`; event `Push Hook` |
| `POST /hooks/generic` | `X-Modelrepo-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`; body `{"url": ..., "branch": ...}` |
| `GET /healthz` | none; `200 ok` while the receiver runs |

Answers: no signature header `401` (checked before the body is read); body over 1 MiB
`413`; not JSON, or nested too deeply, `400`. Then the push is verified against the
`webhookSecret` of every ModelRepo of the pushed repository, whatever branch it follows:

- nothing verifies: `401`, with the same body whether no ModelRepo follows the repository
  or one does with another secret. Why: an unknown repository cannot be told apart from a
  wrong secret without revealing which repositories are watched. When no ModelRepo follows
  the repository, the push is still checked against one other ModelRepo's secret (result
  ignored), so that both cases do the same work (a Secret read and an HMAC).
- verified: `202 {"status": "accepted", "syncs": {"ns/name": "queued"}}` for the ModelRepos
  following the pushed branch (`"not running"` when that ModelRepo has no loop, e.g. the
  operator is starting; `"suspended"` when `spec.suspend` is set), or `202 {"status":
  "ignored"}` when none follows that branch; a GitHub ping `200`. Only a sender who holds a
  ModelRepo's secret learns anything about it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import hashlib
import hmac
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from modelrepo.git import redact_urls

log = logging.getLogger("modelrepo.webhooks")

MAX_BODY = 1024 * 1024
GENERIC_SIGNATURE_HEADER = "X-Modelrepo-Signature-256"
SECRET_KEY = "webhookSecret"

_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).*)$")


SecretSource = Callable[[], "bytes | None"]


@dataclass(frozen=True)
class RepoTarget:
    """One ModelRepo as the receiver sees it. `branch` None = pinned revision (never pushed).

    `secret` is the `webhookSecret` value, or a callable returning it: a callable is only
    called (in a thread) for ModelRepos of the pushed repository (and one decoy), so a push
    costs one or a few Secret reads, never one per ModelRepo.
    """

    namespace: str
    name: str
    url: str
    branch: str | None
    secret: bytes | SecretSource | None
    suspended: bool = False
    branches: tuple[str, ...] = ()  # spec.branches: names and globs

    def follows(self, branch: str | None) -> bool:
        """Does a push to `branch` concern this ModelRepo (spec.branch, or a spec.branches name or glob)?"""
        if branch is None:
            return False
        return branch == self.branch or any(fnmatch.fnmatchcase(branch, b) for b in self.branches)


ListTargets = Callable[[], "Iterable[RepoTarget] | Awaitable[Iterable[RepoTarget]]"]
RequestSync = Callable[[str, str], bool]


# ---------------------------------------------------------------- URL normalisation


def normalize_url(url: str) -> str:
    """A key equal for every spelling of one repository: `host[:port]/path`, lowercase.

    https://, http://, ssh://, git://, scp-like `git@host:path`, user info, default ports,
    trailing `.git` and slashes, host case all fold away. Case folds in the path too: git
    hosts commonly ignore it, and a false match costs one cheap ls-remote, while a missed
    match costs a whole poll interval. file:// and plain paths keep their path.
    """
    text = url.strip()
    if "://" not in text:
        scp = _SCP_LIKE.match(text)
        if scp and "/" not in scp.group("host") and not re.match(r"^[A-Za-z]:[\\/]", text):
            host, path, port = scp.group("host"), scp.group("path"), None
        else:  # a local path
            host, path, port = "", text, None
    else:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        scheme = "ssh" if scheme in ("git+ssh", "ssh+git") else scheme
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is not None and _DEFAULT_PORTS.get(scheme) == port:
            port = None
        path = parts.path
    path = path.strip("/")
    while path.endswith(".git") or path.endswith("/"):
        path = path[:-4] if path.endswith(".git") else path[:-1]
    host = host.lower()
    netloc = f"{host}:{port}" if port else host
    return f"{netloc}/{path}".lower()


def _keys(urls: Iterable[str]) -> set[str]:
    """Normalised keys of the URLs a payload names; one that cannot be parsed names nothing."""
    keys = set()
    for url in urls:
        try:
            keys.add(normalize_url(url))
        except ValueError:  # e.g. "https://[oops": a payload's garbage, not our bug
            continue
    return keys


def same_repository(targets: Iterable[RepoTarget], urls: Iterable[str]) -> list[RepoTarget]:
    """The ModelRepos of the repository known by any of `urls`, whatever branch they follow."""
    keys = _keys(u for u in urls if u)
    return [t for t in targets if keys and _keys([t.url]) & keys]


def match_targets(
    targets: Iterable[RepoTarget], urls: Iterable[str], branch: str | None
) -> list[RepoTarget]:
    """The ModelRepos following `branch` of a repository known by any of `urls`."""
    if branch is None:
        return []
    return [t for t in same_repository(targets, urls) if t.follows(branch)]


# ---------------------------------------------------------------- signatures


def hmac_sha256_signature(secret: bytes, body: bytes) -> str:
    """The `sha256=<hex>` form GitHub (and /hooks/generic) send."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_hmac(secret: bytes | None, body: bytes, header: str | None) -> bool:
    """Constant-time check of a `sha256=<hex>` header; a target without a secret never verifies."""
    if not secret or not header:
        return False
    expected = hmac_sha256_signature(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_token(secret: bytes | None, header: str | None) -> bool:
    """Constant-time check of a shared token (GitLab's `X-Gitlab-Token`)."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret, header.encode("utf-8", "replace"))


# ---------------------------------------------------------------- payloads


@dataclass(frozen=True)
class PushEvent:
    """What a provider's payload says: which repository (several spellings) and which branch."""

    urls: tuple[str, ...]
    branch: str | None


class BadPayload(ValueError):
    """The body is not what the route expects; the message says what is wrong."""


def _branch_of(ref: Any) -> str | None:
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    return None


def _strings(obj: Mapping[str, Any] | None, *keys: str) -> list[str]:
    if not isinstance(obj, Mapping):
        return []
    return [obj[k] for k in keys if isinstance(obj.get(k), str)]


def parse_json_body(body: bytes, content_type: str = "application/json") -> Mapping[str, Any]:
    """JSON object from the body; GitHub's form encoding (`payload=...`) is accepted too."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8"))
            if "payload" not in form:
                raise BadPayload("form body without a 'payload' field")
            data = json.loads(form["payload"][0])
        else:
            data = json.loads(body)
    except RecursionError:
        raise BadPayload("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # bad UTF-8, bad JSON, an integer with too many digits
        raise BadPayload(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadPayload("body must be a JSON object")
    return data


def github_push(data: Mapping[str, Any]) -> PushEvent:
    """Repository URLs and branch of a GitHub `push` (or `ping`) payload."""
    repo = data.get("repository")
    urls = _strings(repo, "clone_url", "ssh_url", "git_url", "html_url", "url", "svn_url")
    return PushEvent(tuple(urls), _branch_of(data.get("ref")))


def gitlab_push(data: Mapping[str, Any]) -> PushEvent:
    """Repository URLs and branch of a GitLab `Push Hook` payload."""
    urls = _strings(
        data.get("project"), "git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url"
    )
    urls += _strings(data.get("repository"), "git_http_url", "git_ssh_url", "homepage", "url")
    return PushEvent(tuple(urls), _branch_of(data.get("ref")))


def generic_push(data: Mapping[str, Any]) -> PushEvent:
    """`{"url": "<repository url>", "branch": "main"}` (or `"ref": "refs/heads/main"`)."""
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise BadPayload("field 'url' (the repository URL, a string) is required")
    branch = data.get("branch")
    if branch is None:
        branch = _branch_of(data.get("ref"))
    if not isinstance(branch, str) or not branch:
        raise BadPayload("field 'branch' (or 'ref': 'refs/heads/<branch>') is required")
    return PushEvent((url,), branch)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# ---------------------------------------------------------------- HTTP


def _answer(code: int, **fields: Any) -> web.Response:
    return web.json_response(fields, status=code)


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """An unexpected error is logged with its traceback and answered 500 without one."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("webhook %s failed", request.path)
        return _answer(500, error="internal error in the webhook receiver; see the operator log")


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` (checked before and while reading)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    # read(n) may return less than n before EOF; keep reading until EOF or over the limit
    chunks = [body]
    size = len(body)
    while size <= limit and not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)


async def _secret_of(target: RepoTarget, *, quiet: bool = False) -> bytes | None:
    """The target's secret; a callable source runs in a thread (it may call the API)."""
    if not callable(target.secret):
        return target.secret
    try:
        value = await asyncio.to_thread(target.secret)
    except Exception as exc:  # a missing Secret: the push cannot be verified, so refused
        if not quiet:
            log.warning(
                "webhook: cannot read the webhookSecret of %s/%s: %s",
                target.namespace,
                target.name,
                exc,
            )
        return None
    return value or None


NOT_VERIFIED = (
    "signature does not verify with the webhookSecret of any ModelRepo following this repository"
)


class _Unavailable(Exception):
    """The ModelRepos could not be listed; the git host should retry later (503)."""


class _Receiver:
    def __init__(self, list_targets: ListTargets, request_sync: RequestSync, max_body: int) -> None:
        self.list_targets = list_targets
        self.request_sync = request_sync
        self.max_body = max_body

    async def _targets(self) -> list[RepoTarget]:
        try:
            return list(await _maybe_await(self.list_targets()))
        except Exception as exc:
            log.warning("webhook: listing ModelRepos failed: %s", exc)
            raise _Unavailable from None

    async def _verified(
        self, targets: list[RepoTarget], urls: tuple[str, ...], verify: Callable[[bytes | None], bool]
    ) -> tuple[list[RepoTarget], list[RepoTarget]]:
        """(ModelRepos of the pushed repository, those whose secret verifies the push).

        With none of the repository, one other ModelRepo's secret is read and checked all the
        same (result ignored): an unknown repository and a wrong secret cost the same work.
        """
        candidates = same_repository(targets, urls)
        if not candidates:
            decoy = next((t for t in targets if t.secret is not None), None)
            if decoy is not None:
                verify(await _secret_of(decoy, quiet=True))
            return [], []
        secrets = [await _secret_of(t) for t in candidates]
        return candidates, [t for t, s in zip(candidates, secrets) if verify(s)]

    async def _dispatch(
        self,
        provider: str,
        delivery: str,
        push: PushEvent,
        verify: Callable[[bytes | None], bool],
        *,
        ping: bool = False,
    ) -> web.Response:
        try:
            targets = await self._targets()
        except _Unavailable:
            return _answer(503, error="cannot list ModelRepos right now; retry later")
        candidates, verified = await self._verified(targets, push.urls, verify)
        if not verified:
            log.warning(
                "webhook %s %s: refused (401): %s",
                provider,
                delivery,
                "signature does not verify for "
                + ", ".join(f"{t.namespace}/{t.name}" for t in candidates)
                if candidates
                else f"no ModelRepo follows {redact_urls(str(push.urls[:1]))}",
            )
            return _answer(401, error=NOT_VERIFIED)
        names = [f"{t.namespace}/{t.name}" for t in verified]
        if ping:
            log.info("webhook %s %s: ping verified for %s", provider, delivery, ", ".join(names))
            return _answer(200, status="pong", matched=names)
        following = [t for t in verified if t.follows(push.branch)]
        if not following:
            reason = (
                f"no ModelRepo whose webhookSecret verifies this push follows branch {push.branch!r}"
                if push.branch is not None
                else "not a push to a branch"
            )
            log.info("webhook %s %s: %s; nothing done", provider, delivery, reason)
            return _answer(202, status="ignored", reason=reason)
        syncs = {f"{t.namespace}/{t.name}": self._request(t) for t in following}
        log.info("webhook %s %s: branch %s -> %s", provider, delivery, push.branch, syncs)
        return _answer(202, status="accepted", syncs=syncs)

    def _request(self, target: RepoTarget) -> str:
        """Wake the ModelRepo's loop; the answer says what really happened."""
        if target.suspended:
            return "suspended"
        return "queued" if self.request_sync(target.namespace, target.name) else "not running"

    async def _body(self, request: web.Request) -> bytes | web.Response:
        body = await _read_limited(request, self.max_body)
        if body is None:
            return _answer(413, error=f"body over the limit of {self.max_body} bytes")
        return body

    async def github(self, request: web.Request) -> web.Response:
        signature = request.headers.get("X-Hub-Signature-256")
        if not signature:
            return _answer(
                401, error="missing X-Hub-Signature-256 header (set a secret on the webhook)"
            )
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        event = request.headers.get("X-GitHub-Event", "")
        if event not in ("push", "ping"):
            return _answer(
                202, status="ignored", reason=f"event {event!r} is not handled; only push and ping"
            )
        try:
            data = parse_json_body(body, request.content_type)
        except BadPayload as exc:
            return _answer(400, error=str(exc))
        return await self._dispatch(
            "github",
            request.headers.get("X-GitHub-Delivery", "-"),
            github_push(data),
            lambda secret: verify_hmac(secret, body, signature),
            ping=event == "ping",
        )

    async def gitlab(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Gitlab-Token")
        if not token:
            return _answer(
                401, error="missing X-Gitlab-Token header (set a secret token on the webhook)"
            )
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        event = request.headers.get("X-Gitlab-Event", "")
        if event != "Push Hook":
            return _answer(
                202, status="ignored", reason=f"event {event!r} is not handled; only Push Hook"
            )
        try:
            data = parse_json_body(body)
        except BadPayload as exc:
            return _answer(400, error=str(exc))
        return await self._dispatch(
            "gitlab",
            request.headers.get("X-Gitlab-Event-UUID", "-"),
            gitlab_push(data),
            lambda secret: verify_token(secret, token),
        )

    async def generic(self, request: web.Request) -> web.Response:
        signature = request.headers.get(GENERIC_SIGNATURE_HEADER)
        if not signature:
            return _answer(
                401,
                error=f"missing {GENERIC_SIGNATURE_HEADER} header: sha256=<hex HMAC-SHA256 of the body>",
            )
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            push = generic_push(parse_json_body(body))
        except BadPayload as exc:
            return _answer(400, error=str(exc))
        return await self._dispatch(
            "generic", "-", push, lambda secret: verify_hmac(secret, body, signature)
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def make_app(
    list_targets: ListTargets,
    request_sync: RequestSync,
    *,
    max_body: int = MAX_BODY,
) -> web.Application:
    """The webhook aiohttp application."""
    receiver = _Receiver(list_targets, request_sync, max_body)
    # aiohttp's own limit sits above ours so our 413 (with a JSON answer) wins.
    app = web.Application(client_max_size=max_body + 1024, middlewares=[_no_tracebacks])
    app.router.add_post("/hooks/github", receiver.github)
    app.router.add_post("/hooks/gitlab", receiver.gitlab)
    app.router.add_post("/hooks/generic", receiver.generic)
    app.router.add_get("/healthz", receiver.healthz)
    return app


async def start_server(
    list_targets: ListTargets,
    request_sync: RequestSync,
    host: str = "0.0.0.0",
    port: int = 8080,
    **options: Any,
) -> web.AppRunner:
    """Serve `make_app(...)` on the running loop (e.g. from a kopf startup handler).

    Stop it with `await runner.cleanup()`.
    """
    runner = web.AppRunner(make_app(list_targets, request_sync, **options), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("webhook receiver listening on %s:%s", host, port)
    return runner


# ---------------------------------------------------------------- from ModelRepo objects


def _webhook_secret(
    read_secret: Callable[[str, str], Mapping[str, bytes] | None], namespace: str, name: str
) -> bytes | None:
    value = (read_secret(namespace, name) or {}).get(SECRET_KEY)
    return (value.encode() if isinstance(value, str) else value) or None


def targets_from_modelrepos(
    modelrepos: Iterable[Mapping[str, Any]],
    read_secret: Callable[[str, str], Mapping[str, bytes] | None],
) -> list[RepoTarget]:
    """RepoTargets from ModelRepo bodies; `read_secret(namespace, name)` gives decoded data.

    The Secret is read only when a push matches the ModelRepo (a lazy source), so a push for
    an unknown repository costs no API call. A ModelRepo without a secretRef or without the
    `webhookSecret` key can be matched but never verified: pushes to it are refused (401).
    Suspended ModelRepos are kept (a push to them is verified, answered "suspended", and
    syncs nothing).
    """
    targets = []
    for body in modelrepos:
        meta, spec = body.get("metadata", {}), body.get("spec", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        ref = (spec.get("secretRef") or {}).get("name")
        source = functools.partial(_webhook_secret, read_secret, namespace, ref) if ref else None
        targets.append(
            RepoTarget(
                namespace, name, spec.get("url", ""), spec.get("branch"), source,
                suspended=bool(spec.get("suspend")), branches=tuple(spec.get("branches") or ()),
            )
        )
    return targets
