"""Repository code never sees the git credentials (issue 11, docs/operator.md "The pods").

A deployment whose source.py prints its environment and every file it can read, at import (in
the `check` init container and in `runtime`) and in a request, is served from a private
repository over https (basic auth) and over ssh. Neither the username, the password, the
private key nor the webhook secret may appear in any pod log, in what the code could read, or
in the Pod spec. A `spec.url` with credentials in it is refused without creating anything.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from pathlib import Path

import pytest
from fixtures import git_servers as servers_module
from fixtures.cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 420  # deadline (s) for pods to start: image load + Python import on a 2-core machine
MARK = "=== SNOOP"

# Prints (at import) and returns (per request) the environment and every readable file outside
# the image's own read-only trees; where a credential could be, it is in there.
SNOOP = f'''
import os

MARK = {MARK!r}

SKIP = ("/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/opt/modelrepo",
        "/var/lib/dpkg", "/var/cache", "/etc/ssl", "/boot")
PROC = ("/proc/self/environ", "/proc/self/cmdline", "/proc/self/mountinfo", "/proc/1/environ", "/proc/1/cmdline")


def _read(path, out):
    try:
        with open(path, "rb") as f:
            data = f.read(65536)
    except OSError as exc:
        out.append(f"--- {{path}}: unreadable ({{exc.__class__.__name__}})")
        return
    out.append(f"--- {{path}}\\n" + data.decode("latin-1"))


def snoop(when):
    out = [f"{{MARK}} {{when}}"]
    out.extend(f"env {{k}}={{v}}" for k, v in sorted(os.environ.items()))
    for path in PROC:
        _read(path, out)
    for root, dirs, files in os.walk("/", onerror=lambda e: out.append(f"--- unlistable {{e.filename}}")):
        dirs[:] = [d for d in dirs if not os.path.join(root, d).startswith(SKIP)]
        out.append(f"dir {{root}}: {{sorted(dirs + files)}}")
        for name in files:
            _read(os.path.join(root, name), out)
    return "\\n".join(out)


print(snoop("import"), flush=True)


def Snoop(x: int):
    """
    >>> Snoop(0)[:len(MARK)] == MARK
    True
    """
    text = snoop("request")
    if x:  # requests (x=1) print too; the docstring test (x=0) must not
        print(text, flush=True)
    return text
'''


def push_snoop(repo) -> str:
    repo.write_deployment("Snoop")
    repo.write("deployments/Snoop/source.py", SNOOP)
    return repo.commit_push("snoop")


def key_lines(identity: bytes) -> list[str]:
    """The base64 body lines of a private key: any of them found means the key leaked."""
    return [line for line in identity.decode().splitlines() if line and not line.startswith("-----")]


def pod_texts(kube, repo_name: str) -> dict[str, str]:
    """Pod specs and the log of every container of the ModelRepo's pods, by a readable name."""
    pods = json.loads(kube.kubectl("get", "pods", "-l", f"modelrepo.dev/repo={repo_name}", "-o", "json"))["items"]
    texts = {"deployments": kube.kubectl("get", "deployments", "-l", f"modelrepo.dev/repo={repo_name}", "-o", "json")}
    for pod in pods:
        name = pod["metadata"]["name"]
        texts[f"{name} spec"] = json.dumps(pod)
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            texts[f"{name} log {c['name']}"] = kube.kubectl("logs", name, "-c", c["name"], check=False)
    return texts


def assert_nothing_leaks(texts: dict[str, str], needles: dict[str, str]) -> None:
    leaks = [f"{what} in {where}" for where, text in texts.items() for what, needle in needles.items() if needle in text]
    assert leaks == []


def serve_and_collect(kube, name: str, spec: dict, secret: dict[str, bytes]) -> dict[str, str]:
    kube.create_secret(f"{name}-git", secret)
    kube.apply_modelrepo(name, {**spec, "branch": "main", "interval": "5s", "secretRef": {"name": f"{name}-git"}})
    wait_until(lambda: kube.status(name).get("ready") == "1/1", READY, f"ModelRepo {name} serving Snoop", interval=2)
    status, answer = wait_until(
        lambda: (r := kube.predict(f"{name}-snoop", "Snoop", 1))[0] == 200 and r, 120, "Snoop answering", interval=2,
    )
    texts = pod_texts(kube, name)
    texts["request answer"] = answer
    texts["status"] = json.dumps(kube.status(name))
    if os.environ.get("MODELREPO_SNOOP_DUMP"):  # to look at what the code saw
        out = Path(os.environ["MODELREPO_SNOOP_DUMP"]) / name
        out.mkdir(parents=True, exist_ok=True)
        for where, text in texts.items():
            (out / where.replace(" ", "_").replace("/", "_")).write_text(text)
    return texts


def assert_the_code_looked(texts: dict[str, str]) -> None:
    """The snooping code really ran at import in `check` and `runtime`, and in a request."""
    answer = texts["request answer"]
    runtime_logs = [t for w, t in texts.items() if w.endswith("log runtime")]
    check_logs = [t for w, t in texts.items() if w.endswith("log check")]
    assert check_logs and all(f"{MARK} import" in t for t in check_logs)
    assert runtime_logs and all(f"{MARK} import" in t for t in runtime_logs)
    assert f"{MARK} request" in answer and "dir /model/deployments/Snoop" in answer and "dir /tmp" in answer
    assert "env MODELREPO_COMMIT=" in answer
    # ... and found no git repository and no Secret mount
    assert "dir /model: ['deployments']" in answer  # no .git
    assert not re.search(r"^dir /etc/modelrepo", answer, re.M)  # no Secret mount


def test_https_credentials_never_reach_repository_code(kube, operator, node_git_servers, node_model_repo, monkeypatch):
    # Unique values, so that finding one anywhere is a leak, not a coincidence.
    user, password, hook = f"u{secrets.token_hex(6)}", secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setattr(servers_module, "HTTP_USER", user)
    monkeypatch.setattr(servers_module, "HTTP_PASSWORD", password)
    repo = node_model_repo("snoop-https")
    push_snoop(repo)
    secret = {**node_git_servers.basic_auth_secret(), "webhookSecret": hook.encode()}
    assert secret["username"] == user.encode()
    texts = serve_and_collect(kube, "snoop-https", {"url": node_git_servers.http_url(repo.name)}, secret)
    header = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert_nothing_leaks(texts, {"username": user, "password": password, "webhookSecret": hook, "basic auth header": header})
    assert_the_code_looked(texts)

    # The same URL with the credentials in it: refused, nothing created, nothing shown.
    url = node_git_servers.http_url(repo.name).replace("://", f"://{user}:{password}@", 1)
    kube.apply_modelrepo("snoop-inline", {"url": url, "branch": "main", "interval": "5s"})
    cond = wait_until(
        lambda: (c := kube.condition("snoop-inline", "SourceReady")).get("status") == "False" and c,
        60, "SourceReady=False for a URL with credentials",
    )
    assert cond["reason"] == "CredentialsInURL" and "spec.secretRef" in cond["message"]
    assert password not in json.dumps(kube.status("snoop-inline"))
    assert kube.deployments("snoop-inline") == {}
    assert password not in operator.log_text() and hook not in operator.log_text()


def test_ssh_key_never_reaches_repository_code(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("snoop-ssh")
    push_snoop(repo)
    hook = secrets.token_hex(16)
    secret = {**node_git_servers.ssh_secret(), "webhookSecret": hook.encode()}
    texts = serve_and_collect(kube, "snoop-ssh", {"url": node_git_servers.ssh_url(repo.name)}, secret)
    needles = {f"private key line {i}": line for i, line in enumerate(key_lines(secret["identity"]))}
    assert needles
    assert_nothing_leaks(texts, {**needles, "webhookSecret": hook})
    assert_the_code_looked(texts)
