"""Environments on the real local cluster: a folder with its own requirements gets an image
built by a Job (buildah), pushed to the node's registry and pinned by digest; a source-only
change builds nothing; a requirement that does not exist fails the build, naming it, while the
old version keeps serving (issue 10).

Needs the registry of `make cluster` (hack/cluster.sh env: REGISTRY) with the runtime and
builder images pushed, or MODELREPO_TEST_ENVIRONMENTS (the operator's MODELREPO_ENVIRONMENTS
JSON) naming another one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures.cluster import CLUSTER_SH, wait_until
from fixtures.operator import running_operator

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
BUILD = 900  # deadline (s) for a build: pulling the base image into the Job's pod, pip install
READY = 420
PACKAGE, VERSION = "humanize", "4.9.0"  # pure Python, not in the runtime image
MISSING = "no-such-package-modelrepo-test"


def _nameservers() -> list[str]:
    text = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    return re.findall(r"^nameserver\s+(\S+)", text, re.M)


def _runtime_pythons(registry: str) -> list[str]:
    """The Pythons whose runtime image `make cluster` pushed (modelrepo/runtime:py<version>;
    3.9 only with CLUSTER_PYTHONS naming it)."""
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/modelrepo/runtime/tags/list", timeout=5) as answer:  # noqa: S310
            tags = json.load(answer).get("tags") or []
    except (OSError, ValueError):
        return ["3.11", "3.13"]
    return sorted(tag[2:] for tag in tags if tag.startswith("py"))


def _settings() -> dict:
    if os.environ.get("MODELREPO_TEST_ENVIRONMENTS"):
        return json.loads(os.environ["MODELREPO_TEST_ENVIRONMENTS"])
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True).stdout.split())
    registry = env.get("REGISTRY", "")
    settings = {
        "registry": registry, "plainHttp": True, "hostNetwork": True, "nameservers": _nameservers(),
        "builderImage": f"{registry}/modelrepo/builder:1",
        "baseImages": {p: f"{registry}/modelrepo/runtime:py{p}" for p in _runtime_pythons(registry)},
    }
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        settings["caBundleHostPath"] = "/etc/ssl/certs/ca-certificates.crt"
    return settings


@pytest.fixture
def environments() -> dict:
    settings = _settings()
    try:
        urllib.request.urlopen(f"http://{settings['registry']}/v2/", timeout=5).close()  # noqa: S310
    except OSError as exc:
        pytest.skip(f"no registry at {settings['registry']!r} ({exc}); run `make cluster` with its registry")
    return settings


@pytest.fixture
def env_operator(cluster, namespace, modelrepo_crd, tmp_path, environments, monkeypatch):
    monkeypatch.setenv("MODELREPO_ENVIRONMENTS", json.dumps(environments))
    with running_operator(cluster, namespace, tmp_path) as op:
        yield op


def _fresh(requirements: str) -> str:
    """The same packages as a new environment (a line pip skips), so this run builds it itself."""
    return f"{requirements}unused-{time.monotonic_ns()}==1.0; python_version < '3'\n"


def _versioned(repo, name: str, requirements: str, suffix: str) -> None:
    repo.write_deployment(name)
    repo.write(f"deployments/{name}/source.py", (
        "import importlib.metadata\n\n\n"
        f"def {name}(x: int):\n"
        f'    """\n    >>> {name}(4)\n    \'{VERSION} 4{suffix}\'\n    """\n'
        f"    return f\"{{importlib.metadata.version('{PACKAGE}')}} {{x}}{suffix}\"\n"
    ))
    repo.write(f"deployments/{name}/requirements.txt", requirements)


def _entry(kube, repo: str, name: str) -> dict:
    return next((d for d in kube.status(repo).get("deployments", []) if d["name"] == name), {})


def _build_jobs(kube) -> list[str]:
    out = json.loads(kube.kubectl("get", "jobs", "-l", "app.kubernetes.io/component=environment-build", "-o", "json"))
    return sorted(j["metadata"]["name"] for j in out["items"])


def test_build_once_serve_by_digest_source_change_builds_nothing_failure_keeps_old(
    kube, env_operator, environments, node_git_servers, node_model_repo,
):
    env_operator_settings = environments
    repo = node_model_repo("envs")
    repo.write_deployment("Plain")  # requirements the base image satisfies: no build
    # another Python: its base image from the registry as it is, no build
    repo.write_deployment("Py313", body="return '.'.join(map(str, __import__('sys').version_info[:2]))",
                          doc="'3.13'", python="3.13")
    requirements = _fresh(f"{PACKAGE}=={VERSION}\n")
    _versioned(repo, "Pkg", requirements, "")
    first = repo.commit_push("a folder with its own requirement")
    spec = {"url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s"}
    kube.apply_modelrepo("envs", spec)

    wait_until(lambda: _entry(kube, "envs", "Pkg").get("message") == "building", 120, "Pkg building")
    status = kube.wait_ready("envs", first, 3, timeout=BUILD)
    pkg = _entry(kube, "envs", "Pkg")
    assert pkg["message"].startswith("built sha256:"), pkg
    assert _entry(kube, "envs", "Plain")["message"] == "" and _entry(kube, "envs", "Py313")["message"] == ""
    kube.wait_predict("envs-pkg", "Pkg", 21, f"{VERSION} 21", READY)
    kube.wait_predict("envs-plain", "Plain", 21, 42, READY)
    kube.wait_predict("envs-py313", "Py313", 1, "3.13", READY)
    py313_image = kube.deployments_by_name("envs-py313")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert py313_image == env_operator_settings["baseImages"]["3.13"]
    image = kube.deployments_by_name("envs-pkg")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@" + pkg["message"].split()[1]) and "/modelrepo/env@" in image
    plain_image = kube.deployments_by_name("envs-plain")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert plain_image == kube.cluster.image or plain_image.endswith(kube.cluster.image)
    jobs = _build_jobs(kube)
    assert len(jobs) == 1 and status["ready"] == "3/3"

    # source.py only: a new version on the same image, no new build
    _versioned(repo, "Pkg", requirements, "!")
    second = repo.commit_push("source only")
    kube.wait_ready("envs", second, 3, timeout=READY)
    kube.wait_predict("envs-pkg", "Pkg", 21, f"{VERSION} 21!", READY)
    assert _build_jobs(kube) == jobs
    assert kube.deployments_by_name("envs-pkg")["spec"]["template"]["spec"]["containers"][0]["image"] == image

    # a requirement that does not exist: build failed, named; the old version keeps serving
    _versioned(repo, "Pkg", f"{requirements}{MISSING}==1.0\n", "?")
    repo.commit_push("a requirement that does not exist")

    def failed() -> str | None:
        build = _entry(kube, "envs", "Pkg").get("message", "")
        return build if build.startswith("build failed") else None

    message = wait_until(failed, BUILD, "Pkg build failed")
    assert MISSING in message, message
    degraded = kube.condition("envs", "Degraded")
    assert degraded["status"] == "True" and MISSING in degraded["message"] and "serving version 2" in degraded["message"]
    assert kube.predict("envs-pkg", "Pkg", 21) == (200, f"{VERSION} 21!")
    assert any(MISSING in m for m in kube.events("BuildFailed"))


def test_a_python_3_9_folder_gets_its_package_and_runs_on_3_9(kube, env_operator, environments, node_git_servers, node_model_repo):
    """The bullseye runtime image: the init container (`modelrepo fetch`, `check`) and the server
    (`modelrepo runtime`) run on Python 3.9, under a package built into the folder's image."""
    if "3.9" not in environments["baseImages"]:
        pytest.skip("no modelrepo/runtime:py3.9 in the registry: run the cluster with CLUSTER_PYTHONS naming 3.9")
    repo = node_model_repo("py39")
    repo.write_deployment("Py39", python="3.9")
    repo.write("deployments/Py39/source.py", (
        "import importlib.metadata\nimport sys\n\n\n"
        "def Py39(x: int):\n"
        f'    """\n    >>> Py39(4)\n    \'3.9 {VERSION} 4\'\n    """\n'
        "    python = '.'.join(map(str, sys.version_info[:2]))\n"
        f"    return f\"{{python}} {{importlib.metadata.version('{PACKAGE}')}} {{x}}\"\n"
    ))
    repo.write("deployments/Py39/requirements.txt", _fresh(f"{PACKAGE}=={VERSION}\n"))
    first = repo.commit_push("a folder on Python 3.9 with its own requirement")
    spec = {"url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s"}
    kube.apply_modelrepo("py39", spec)

    kube.wait_ready("py39", first, 1, timeout=BUILD)
    assert _entry(kube, "py39", "Py39")["message"].startswith("built sha256:")
    kube.wait_predict("py39-py39", "Py39", 21, f"3.9 {VERSION} 21", READY)


def test_a_python_without_base_image_is_refused_by_name(kube, env_operator, node_git_servers, node_model_repo):
    repo = node_model_repo("nobase")
    repo.write_deployment("Py310", python="3.10")
    repo.commit_push("a Python with no base image")
    spec = {"url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s"}
    kube.apply_modelrepo("nobase", spec)
    message = wait_until(lambda: _entry(kube, "nobase", "Py310").get("message"), 120, "Py310 refused")
    assert "pythonVersion 3.10 has no base image" in message and 'environments.baseImages."3.10"' in message
    assert "nobase-py310" not in kube.deployments("nobase")
    assert kube.condition("nobase", "Degraded")["status"] == "True"


def test_a_gpu_deployment_stays_pending_with_the_schedulers_reason(kube, operator, node_git_servers, node_model_repo):
    """This machine has no GPU: the pod asks for one, no node has it, the status says so."""
    repo = node_model_repo("gpu")
    repo.write_deployment("OnGpu")
    metadata = f"{repo.path}/deployments/OnGpu/metadata.yaml"
    with open(metadata, "a") as f:
        f.write("  capabilities: [\"gpu=T4\"]\n")
    repo.commit_push("a GPU model")
    spec = {"url": node_git_servers.daemon_url(repo.name), "branch": "main", "interval": "5s"}
    kube.apply_modelrepo("gpu", spec)

    def reported() -> str | None:
        message = _entry(kube, "gpu", "OnGpu").get("message", "")
        return message if "Unschedulable" in message else None

    message = wait_until(reported, 120, "OnGpu reported unschedulable")
    assert "nvidia.com/gpu" in message or "node affinity/selector" in message, message
    pod_spec = kube.deployments_by_name("gpu-ongpu")["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "T4"}
    assert kube.condition("gpu", "Degraded")["status"] == "True"
