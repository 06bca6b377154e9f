"""What the operator asks the image registry (OCI distribution API, docs/cluster.md).

Two questions: does the image of an environment exist already (its digest, so that the
Deployment pins it), and what a base image has installed (its `modelrepo.packages` label,
written by the project's build scripts). Anonymous reads; plain http for the local cluster's
registry, https otherwise.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
TIMEOUT_S = 10


class RegistryError(Exception):
    """The registry did not answer as a registry does."""


def split_image(image: str) -> tuple[str, str, str]:
    """`host[:port]/repo/path:tag` (or `@sha256:...`) -> (host, repository, reference)."""
    host, _, rest = image.partition("/")
    if not rest:
        raise RegistryError(f"{image!r} names no registry host")
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        repo, _, ref = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repo, ref


def _get(url: str, method: str = "GET", accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - registry URL from settings
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), b""
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryError(f"registry at {url.split('/v2/')[0]} unreachable: {exc}") from None


def _base(host: str, plain_http: bool) -> str:
    return f"{'http' if plain_http else 'https'}://{host}/v2"


def manifest_digest(image: str, plain_http: bool = False) -> str | None:
    """The digest of `image` in its registry, or None when the registry does not have it."""
    host, repo, ref = split_image(image)
    status, headers, _ = _get(f"{_base(host, plain_http)}/{repo}/manifests/{ref}", "HEAD", MANIFEST_TYPES)
    if status == 404:
        return None
    digest = {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")
    if status != 200 or not digest:
        raise RegistryError(f"{image}: the registry answered {status} without a digest")
    return digest


def image_labels(image: str, plain_http: bool = False) -> dict[str, str]:
    """The labels of `image`'s config ({} when the image is missing)."""
    host, repo, ref = split_image(image)
    base = _base(host, plain_http)
    status, _, body = _get(f"{base}/{repo}/manifests/{ref}", accept=MANIFEST_TYPES)
    if status == 404:
        return {}
    try:
        manifest: dict[str, Any] = json.loads(body)
        config_digest = manifest["config"]["digest"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{image}: not an image manifest (status {status})") from None
    status, _, body = _get(f"{base}/{repo}/blobs/{config_digest}")
    try:
        config = json.loads(body)
    except ValueError:
        raise RegistryError(f"{image}: its config blob is not JSON (status {status})") from None
    return dict((config.get("config") or {}).get("Labels") or {})
