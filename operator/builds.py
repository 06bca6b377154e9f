"""The image a changed folder is served with: decide, look in the registry, start a build.

Called by the sync for each changed folder after its static checks. Decisions and manifests
are the pure functions of environments.py; this module only asks the registry and the API
server. A folder whose image is being built is not applied (its old version keeps serving)
and is looked at again on the next sync, which the build Job's events trigger.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from modelrepo.format.environment import environment_of_folder, parse_package_list
from modelrepo.format.layout import REQUIREMENTS_FILE
from modelrepo.operator import kube, registry
from modelrepo.operator.environments import (
    COMPONENT_BUILD,
    EnvironmentSettings,
    decide,
    failure_text,
    gpu_pod_fields,
    job_name,
    job_state,
    pinned,
    render_build_job,
)
from modelrepo.operator.keys import MANAGED_BY

log = logging.getLogger("modelrepo.operator.builds")
SETTINGS = EnvironmentSettings.from_json(os.environ.get("MODELREPO_ENVIRONMENTS", ""))
_packages: dict[str, dict[str, str]] = {}  # base image -> its packages (read once per process)


@dataclass(frozen=True)
class Outcome:
    """How to serve one folder: with `image` (None: the runtime image) and `gpu_fields`, or not
    yet (`wait`: a build runs), or not at all (`problem`). `build` is the status text."""

    image: str | None = None
    gpu_fields: dict | None = None
    pull_secrets: tuple[str, ...] = ()  # imagePullSecrets of the model pods (an image of the registry)
    build: str | None = None
    problem: str | None = None
    wait: bool = False


def _with_base_packages(settings: EnvironmentSettings) -> EnvironmentSettings:
    """Base images whose package list the values do not give: read it from the image label."""
    bases = dict(settings.base_images)
    for python, base in bases.items():
        if base.packages:
            continue
        if base.image not in _packages:
            labels = registry.image_labels(base.image, settings.plain_http, settings.auth_file)
            _packages[base.image] = parse_package_list(labels.get("modelrepo.packages", ""))
            log.info("base image %s (Python %s): %d packages", base.image, python, len(_packages[base.image]))
        bases[python] = replace(base, packages=_packages[base.image])
    return replace(settings, base_images=bases)


def _pull_secrets(image: str | None, settings: EnvironmentSettings) -> tuple[str, ...]:
    """The pull Secret for an image of the environments' registry (built, or a base image there)."""
    if image and settings.pull_secret and image.startswith(settings.registry + "/"):
        return (settings.pull_secret,)
    return ()


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def serve_with(namespace: str, repo_name: str, folder_dir: Path, settings: EnvironmentSettings = SETTINGS) -> Outcome:
    """Decide the image of the folder at `folder_dir`; start its build when it has none."""
    env = environment_of_folder(folder_dir)
    gpu = gpu_pod_fields(env.gpu, settings) or None
    if not settings.enabled:
        return Outcome(gpu_fields=gpu)
    try:
        decision = decide(env, _with_base_packages(settings))
        if decision.refused:
            return Outcome(problem=decision.refused)
        if not decision.build:
            return Outcome(image=decision.image, gpu_fields=gpu, pull_secrets=_pull_secrets(decision.image, settings))
        digest = registry.manifest_digest(decision.target, settings.plain_http, settings.auth_file)
    except registry.RegistryError as exc:
        return Outcome(problem=f"image registry: {exc}")
    if digest:
        return Outcome(image=pinned(decision.target, digest), gpu_fields=gpu, build=f"built {digest}",
                       pull_secrets=_pull_secrets(decision.target, settings))
    name = job_name(decision.env_hash)
    job = kube.get_job(namespace, name)
    state = job_state(job)
    if state == "failed":
        pods = kube.list_pods(namespace, f"job-name={name}")
        text = f"build failed: {failure_text(job, pods)}"
        return Outcome(build=text, problem=text)
    if state == "complete":  # pushed, yet not in the registry (deleted since?): build again
        text = f"build Job {name} completed but {decision.target} is not in the registry"
        return Outcome(build=text, problem=text)
    if state == "running":
        return Outcome(build="building", wait=True)
    running = [j for j in kube.list_jobs(namespace, _selector({**MANAGED_BY, **COMPONENT_BUILD}))
               if job_state(j) == "running"]
    if len(running) >= settings.concurrency:
        return Outcome(build=f"waiting: {len(running)} builds run (concurrency {settings.concurrency})", wait=True)
    req = folder_dir / REQUIREMENTS_FILE
    text = req.read_text(encoding="utf-8") if req.is_file() else ""
    kube.create_job(render_build_job(namespace, repo_name, env, decision, text, settings))
    log.info("building %s for %s/%s (%s)", decision.target, namespace, repo_name, "; ".join(decision.unmet))
    return Outcome(build="building", wait=True)
