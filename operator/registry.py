"""What the operator asks the image registry (OCI distribution API, docs/cluster.md).

Two questions: does the image of an environment exist already (its digest, so that the
Deployment pins it), and what a base image has installed (its `modelrepo.packages` label,
written by the project's build scripts). Plain http for the local cluster's registry, https
otherwise.

Reads are anonymous until the registry answers 401; then the credentials of the registry's
host in `auth_file` (a dockerconfigjson, the chart mounts `environments.registryAuthSecret`)
answer its challenge: `Basic` directly, `Bearer` through the token service it names. The
credentials are never logged nor put in an error message.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
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


def credentials(auth_file: str, host: str) -> tuple[str, str] | None:
    """(user, password) of `host` in a dockerconfigjson file; None when it names no such host."""
    try:
        auths = json.loads(Path(auth_file).read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise RegistryError(f"registry credentials {auth_file}: not a readable dockerconfigjson "
                            f"({type(exc).__name__})") from None
    for key, entry in auths.items():
        if urllib.parse.urlsplit(key if "//" in key else f"//{key}").netloc != host or not isinstance(entry, dict):
            continue
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password") or "")
        try:
            user, _, password = base64.b64decode(entry.get("auth") or "").decode().partition(":")
        except ValueError:
            raise RegistryError(f"registry credentials {auth_file}: the auth of {host} is not base64") from None
        return user, password
    return None


def _basic(user_password: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(user_password).encode()).decode()


def _challenge(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The scheme and parameters of a WWW-Authenticate header (`Bearer realm="...",service="..."`)."""
    value = {k.lower(): v for k, v in headers.items()}.get("www-authenticate", "")
    scheme, _, rest = value.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _authorization(url: str, headers: dict[str, str], login: tuple[str, str]) -> str:
    """The Authorization header answering the registry's 401 challenge."""
    scheme, params = _challenge(headers)
    if scheme != "bearer" or not params.get("realm"):
        return _basic(login)
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    token_url = params["realm"] + ("?" + query if query else "")
    status, _, body = _request(token_url, "GET", {"Authorization": _basic(login)})
    try:
        answer = json.loads(body)
        return "Bearer " + (answer.get("token") or answer["access_token"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RegistryError(f"the token service of {url.split('/v2/')[0]} answered {status} without a token") from None


def _get(url: str, method: str = "GET", accept: str | None = None, auth_file: str = "") -> tuple[int, dict[str, str], bytes]:
    """One registry read; on 401, again with the credentials of `auth_file` (RegistryError naming the 401)."""
    headers = {"Accept": accept} if accept else {}
    status, answer_headers, body = _request(url, method, headers)
    if status != 401:
        return status, answer_headers, body
    host = urllib.parse.urlsplit(url).netloc
    login = credentials(auth_file, host) if auth_file else None
    if login is None:
        where = f"no credentials for {host} in {auth_file}" if auth_file else "no registry credentials configured"
        raise RegistryError(f"registry {host} answered 401 Unauthorized ({where}: set environments.registryAuthSecret)")
    headers["Authorization"] = _authorization(url, answer_headers, login)
    status, answer_headers, body = _request(url, method, headers)
    if status == 401:
        raise RegistryError(f"registry {host} answered 401 Unauthorized to the credentials for {host} in {auth_file}")
    return status, answer_headers, body


def _request(url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - registry URL from settings
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), b""
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryError(f"registry at {url.split('/v2/')[0]} unreachable: {exc}") from None


def _base(host: str, plain_http: bool) -> str:
    return f"{'http' if plain_http else 'https'}://{host}/v2"


def manifest_digest(image: str, plain_http: bool = False, auth_file: str = "") -> str | None:
    """The digest of `image` in its registry, or None when the registry does not have it."""
    host, repo, ref = split_image(image)
    try:
        status, headers, _ = _get(f"{_base(host, plain_http)}/{repo}/manifests/{ref}", "HEAD", MANIFEST_TYPES, auth_file)
    except RegistryError as exc:
        raise RegistryError(f"{image}: {exc}") from None
    if status == 404:
        return None
    digest = {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")
    if status != 200 or not digest:
        raise RegistryError(f"{image}: the registry answered {status} without a digest")
    return digest


def image_labels(image: str, plain_http: bool = False, auth_file: str = "") -> dict[str, str]:
    """The labels of `image`'s config ({} when the image is missing)."""
    host, repo, ref = split_image(image)
    base = _base(host, plain_http)
    try:
        status, _, body = _get(f"{base}/{repo}/manifests/{ref}", accept=MANIFEST_TYPES, auth_file=auth_file)
    except RegistryError as exc:
        raise RegistryError(f"{image}: {exc}") from None
    if status == 404:
        return {}
    try:
        manifest: dict[str, Any] = json.loads(body)
        config_digest = manifest["config"]["digest"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{image}: not an image manifest (status {status})") from None
    status, _, body = _get(f"{base}/{repo}/blobs/{config_digest}", auth_file=auth_file)
    try:
        config = json.loads(body)
    except ValueError:
        raise RegistryError(f"{image}: its config blob is not JSON (status {status})") from None
    return dict((config.get("config") or {}).get("Labels") or {})
