"""Environments in the cluster: serve with the base image, build, or refuse; the build Job; GPUs."""

from __future__ import annotations

import pytest

from modelrepo.format.environment import Environment, environment_hash
from modelrepo.operator.environments import (
    BaseImage,
    EnvironmentSettings,
    decide,
    failure_text,
    gpu_pod_fields,
    job_state,
    pinned,
    render_build_job,
)
from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment
from modelrepo.operator.status import Observation, build_status, pod_problem

BASES = {
    "3.11": BaseImage("reg.test:5000/modelrepo/runtime:py3.11", {"numpy": "1.26.4"}),
    "3.13": BaseImage("reg.test:5000/modelrepo/runtime:py3.13", {"numpy": "2.1.0"}),
}
SETTINGS = EnvironmentSettings(
    registry="reg.test:5000", base_images=BASES, builder_image="reg.test:5000/modelrepo/builder:1",
    gpu_tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
)


def test_without_a_registry_nothing_is_built_or_refused():
    decision = decide(Environment.of("3.10", "six==1.16.0", ["ffmpeg"]), EnvironmentSettings())
    assert decision.image is None and not decision.build and decision.refused is None


def test_a_folder_the_base_image_satisfies_needs_no_build():
    today = decide(Environment.of("3.11", "numpy==1.26.4\n"), SETTINGS)
    assert (today.build, today.image, today.refused) == (False, None, None)  # the runtime image, as today
    other_python = decide(Environment.of("3.13", "numpy>=2\n"), SETTINGS)
    assert (other_python.build, other_python.image) == (False, BASES["3.13"].image)


def test_a_folder_with_another_package_is_built_once_per_environment():
    env = Environment.of("3.11", "six==1.16.0\n")
    decision = decide(env, SETTINGS)
    assert decision.build and decision.base == BASES["3.11"].image
    assert decision.target == f"reg.test:5000/modelrepo/env:{environment_hash(env)}"
    assert decide(Environment.of("3.11", "# same\nsix==1.16.0\n"), SETTINGS).target == decision.target
    assert decide(Environment.of("3.11", "numpy==1.26.4", ["ffmpeg"]), SETTINGS).build


def test_a_python_without_base_image_is_refused_naming_the_value_to_set():
    refused = decide(Environment.of("3.10", "numpy==1.26.4"), SETTINGS).refused
    assert refused and "pythonVersion 3.10" in refused and 'environments.baseImages."3.10"' in refused


def test_system_package_names_that_are_not_debian_names_are_refused():
    refused = decide(Environment.of("3.11", "", ["ffmpeg; curl evil"]), SETTINGS).refused
    assert refused and "'ffmpeg; curl evil'" in refused


def test_the_build_job_is_bounded_privileged_alone_and_cleaned_up():
    env = Environment.of("3.11", "six==1.16.0\n", ["ffmpeg"])
    decision = decide(env, SETTINGS)
    job = render_build_job("ns", "repo", env, decision, "six==1.16.0\n", SETTINGS)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env_vars = {e["name"]: e["value"] for e in container["env"]}
    assert job["metadata"]["name"] == f"modelrepo-env-{decision.env_hash}"
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 1800 and spec["ttlSecondsAfterFinished"] == 3600
    assert container["resources"]["limits"]["memory"] == "4Gi"
    assert container["securityContext"] == {"privileged": True, "runAsUser": 0}
    assert pod["automountServiceAccountToken"] is False and "secret" not in str(pod["volumes"])
    assert (env_vars["BASE"], env_vars["TARGET"], env_vars["SYSTEM_PACKAGES"]) == (
        BASES["3.11"].image, decision.target, "ffmpeg")
    assert env_vars["REQUIREMENTS"] == "six==1.16.0\n" and env_vars["TLS_VERIFY"] == "true"
    assert "hostNetwork" not in pod and "dnsConfig" not in pod


def test_the_build_job_takes_the_pip_index_ca_and_network_from_settings():
    settings = EnvironmentSettings.from_json(
        '{"registry": "198.18.0.1:5000", "plainHttp": true, "hostNetwork": true, "nameservers": ["10.0.0.53"],'
        ' "caBundleHostPath": "/etc/ssl/certs/ca-certificates.crt", "baseImages": {"3.11": "r/x:1"},'
        ' "pipEnv": {"PIP_INDEX_URL": "https://index.test/simple", "HOME": "/x"}}'
    )
    env = Environment.of("3.11", "six")
    pod = render_build_job("ns", "r", env, decide(env, settings), "six", settings)["spec"]["template"]["spec"]
    env_vars = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env_vars["PIP_INDEX_URL"] == "https://index.test/simple" and "HOME" not in env_vars
    assert env_vars["TLS_VERIFY"] == "false"
    assert pod["hostNetwork"] is True and pod["dnsConfig"] == {"nameservers": ["10.0.0.53"]}
    assert {"name": "ca", "hostPath": {"path": "/etc/ssl/certs/ca-certificates.crt", "type": "File"}} in pod["volumes"]


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="registy"):
        EnvironmentSettings.from_json('{"registy": "x"}')


def test_job_state_and_the_failure_names_the_last_lines_pip_printed():
    assert job_state(None) == "absent" and job_state({"status": {"active": 1}}) == "running"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    assert job_state(failed) == "failed"
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "complete"
    log = "Collecting x\nERROR: Could not find a version that satisfies the requirement nopkg==1.0\n" \
          "ERROR: No matching distribution found for nopkg==1.0\n" \
          "Error: building at STEP \"RUN pip install\": exit status 1\n"
    pods = [{"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": log}}}]}}]
    assert failure_text(failed, pods) == (
        "ERROR: Could not find a version that satisfies the requirement nopkg==1.0 | "
        "ERROR: No matching distribution found for nopkg==1.0")
    assert failure_text(failed, []) == "BackoffLimitExceeded"


def test_pinned_by_digest():
    assert pinned("reg.test:5000/modelrepo/env:abc", "sha256:1") == "reg.test:5000/modelrepo/env@sha256:1"


REPO = RepoRef(name="r", namespace="ns", uid="u", url="https://git.test/r.git")
FOLDER = Folder("m", "tree", "c" * 40, 1)


def test_gpu_capabilities_render_a_limit_a_node_selector_and_tolerations():
    assert gpu_pod_fields(None, SETTINGS) == {}
    typed = gpu_pod_fields("T4", SETTINGS)
    assert typed["nodeSelector"] == {"nvidia.com/gpu.product": "T4"}
    other_label = EnvironmentSettings(gpu_label="cloud.test/accelerator")
    assert gpu_pod_fields("L4", other_label)["nodeSelector"] == {"cloud.test/accelerator": "L4"}
    spec = render_deployment(REPO, FOLDER, FolderSettings(gpu=typed))["spec"]["template"]["spec"]
    runtime = spec["containers"][0]
    assert runtime["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "T4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nvidia.com/gpu" not in str(spec["initContainers"])
    plain = render_deployment(REPO, FOLDER, FolderSettings(gpu=gpu_pod_fields("", SETTINGS)))["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and plain["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_an_environment_image_replaces_the_runtime_image_in_every_container():
    image = "reg.test:5000/modelrepo/env@sha256:1"
    spec = render_deployment(REPO, FOLDER, FolderSettings(image=image))["spec"]["template"]["spec"]
    assert {c["image"] for c in spec["containers"] + spec["initContainers"]} == {image}


def test_status_reports_the_build_per_deployment():
    status = build_status(Observation(
        repo=REPO, generation=1, commit="c" * 40, folders={"m": FOLDER}, deployments=[],
        builds={"m": "building"},
    ))
    (entry,) = status["deployments"]
    assert entry["message"] == "building"
    assert "rolling out: m" in [c for c in status["conditions"] if c["type"] == "Progressing"][0]["message"]


def test_a_pod_no_node_can_take_reports_the_schedulers_reason():
    pod = {"metadata": {"labels": {"modelrepo.dev/commit": "c1"}}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}}
    assert pod_problem([pod], "c1") == "pod Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert pod_problem([pod], "other") is None
