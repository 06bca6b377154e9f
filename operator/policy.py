"""What a ModelRepo may ask of its pods, and the pods' fail-safe defaults (docs/install.md, trust model).

Whoever may edit a ModelRepo must not get arbitrary pods: spec.runtime may name only allowed
images and service accounts, and take env values only from ConfigMaps and Secrets other than
the git credentials. Credentials never travel in spec.url (they would show in the Pod spec).
The operator reads its policy from environment variables the Helm chart sets; everything here
is plain data in, data out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrepo.git import strip_credentials, url_has_credentials

DEFAULT_RUNTIME_IMAGE = "modelrepo:dev"
# Schemes whose userinfo is always a credential; ssh:// may carry a bare user (ssh://git@host/...).


@dataclass(frozen=True)
class PodPolicy:
    """Allowlists for spec.runtime and defaults for every model pod."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    # Exact names, or prefixes ending in `*`. Empty allowed_images: only runtime_image.
    allowed_images: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_env_secrets: tuple[str, ...] = ("*",)
    resources: Mapping[str, Any] = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"},
    })
    init_resources: Mapping[str, Any] = field(default_factory=lambda: {
        "requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"},
    })
    model_size_limit: str = "4Gi"
    tmp_size_limit: str = "1Gi"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PodPolicy:
        """The policy from MODELREPO_* variables (docs/install.md lists them); unset = default."""
        default = cls()

        def names(key: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
            if key not in env:
                return fallback
            return tuple(n.strip() for n in env[key].split(",") if n.strip())

        def resources(key: str, fallback: Mapping[str, Any]) -> Mapping[str, Any]:
            text = env.get(key, "").strip()
            if not text:
                return fallback
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
                raise ValueError(f"{key} must be a JSON object with `requests` and/or `limits`")
            return value

        return cls(
            runtime_image=env.get("MODELREPO_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
            allowed_images=names("MODELREPO_ALLOWED_IMAGES", ()),
            allowed_service_accounts=names("MODELREPO_ALLOWED_SERVICE_ACCOUNTS", ()),
            allowed_env_secrets=names("MODELREPO_ALLOWED_ENV_SECRETS", default.allowed_env_secrets),
            resources=resources("MODELREPO_DEFAULT_RESOURCES", default.resources),
            init_resources=resources("MODELREPO_INIT_RESOURCES", default.init_resources),
            model_size_limit=env.get("MODELREPO_MODEL_SIZE_LIMIT") or default.model_size_limit,
            tmp_size_limit=env.get("MODELREPO_TMP_SIZE_LIMIT") or default.tmp_size_limit,
        )

    @property
    def images(self) -> tuple[str, ...]:
        return self.allowed_images or (self.runtime_image,)

    def render_inputs(self) -> list[Any]:
        """What of the policy shapes a rendered pod (a change rolls every child)."""
        return [self.runtime_image, self.resources, self.init_resources, self.model_size_limit, self.tmp_size_limit]


def allowed(name: str, patterns: Iterable[str]) -> bool:
    """`name` equals a pattern, or starts with a pattern ending in `*` (before the `*`)."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def _listing(patterns: Iterable[str]) -> str:
    items = list(patterns)
    return ", ".join(items) if items else "none"


@dataclass(frozen=True)
class Refusal:
    """Why the operator will not render this ModelRepo's children at all."""

    reason: str  # the SourceReady condition's reason
    message: str


def refusal(spec: Mapping[str, Any], policy: PodPolicy) -> Refusal | None:
    """The first reason to refuse the spec of a ModelRepo, or None. Checked before any git call."""
    url = str(spec.get("url") or "")
    if url_has_credentials(url):
        return Refusal(
            "CredentialsInURL",
            f"spec.url {strip_credentials(url)} embeds credentials; remove them from the URL and put them "
            "in a Secret named by spec.secretRef (keys username + password, or bearerToken)",
        )
    problems = runtime_problems(spec.get("runtime") or {}, (spec.get("secretRef") or {}).get("name"), policy)
    if problems:
        return Refusal("RuntimeNotAllowed", "; ".join(problems))
    return None


def runtime_problems(runtime: Mapping[str, Any], git_secret: str | None, policy: PodPolicy) -> list[str]:
    """Every field of spec.runtime the policy forbids, each naming the field and what is allowed."""
    problems: list[str] = []
    image = runtime.get("image")
    if image and not allowed(str(image), policy.images):
        problems.append(f"spec.runtime.image {image!r} is not allowed (allowed: {_listing(policy.images)})")
    account = runtime.get("serviceAccountName")
    if account and not allowed(str(account), policy.allowed_service_accounts):
        problems.append(
            f"spec.runtime.serviceAccountName {account!r} is not allowed "
            f"(allowed: {_listing(policy.allowed_service_accounts)})"
        )
    for i, entry in enumerate(runtime.get("env") or []):
        source = (entry or {}).get("valueFrom") if isinstance(entry, Mapping) else None
        if not source:
            continue
        where = f"spec.runtime.env[{i}].valueFrom"
        kinds = set(source)
        if not kinds <= {"secretKeyRef", "configMapKeyRef"}:
            bad = ", ".join(sorted(kinds - {"secretKeyRef", "configMapKeyRef"}))
            problems.append(f"{where}.{bad} is not allowed (allowed: secretKeyRef, configMapKeyRef)")
            continue
        secret = (source.get("secretKeyRef") or {}).get("name") if "secretKeyRef" in source else None
        if secret is None:
            continue
        if git_secret and secret == git_secret:
            problems.append(f"{where}.secretKeyRef {secret!r} is the git credentials Secret (spec.secretRef); "
                            "model pods never see it")
        elif not allowed(str(secret), policy.allowed_env_secrets):
            problems.append(f"{where}.secretKeyRef {secret!r} is not allowed "
                            f"(allowed: {_listing(policy.allowed_env_secrets)})")
    return problems


def _from_environment() -> PodPolicy:
    """The operator's policy; a bad variable stops it with one line naming the variable."""
    try:
        return PodPolicy.from_env(os.environ)
    except ValueError as exc:
        raise SystemExit(f"modelrepo: {exc}") from None


POLICY = _from_environment()
