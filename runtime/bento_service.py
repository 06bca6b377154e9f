"""The BentoML service that serves deployments (`@bentoml.service`, BentoML >= 1.4).

BentoML runs the server: its process manager, uvicorn worker, /livez, /metrics (Prometheus,
including modelrepo's own request metrics), the OpenAPI docs at / and /docs.json, and the
service lifecycle (the catalog starts in the service's __init__ and stops on shutdown).

The model routes are the plain ASGI `RuntimeApp`, mounted with `bentoml.asgi_app` so they
appear in the service, and put in front of BentoML's middleware stack by `FastPathService`
(`service_class=`) so that a model call pays for none of it. Every answer, BentoML's too,
carries X-Modelrepo-Commit and X-Modelrepo-Version.

What to serve comes from the environment variable MODELREPO_RUNTIME_SPEC (JSON), set by
`modelrepo runtime` / `modelrepo serve` before BentoML starts its worker process:
  {"mode": "folder", "folder", "name", "version", "commit", "branch", "max_body_bytes", "timeout"}
  {"mode": "repo", "source", "branches", "interval", "cache_dir", "fetch", "max_body_bytes", "timeout",
   "memory_limit", "load_timeout", "api_keys_file"}
  {"mode": "versions", "fetcher", "versions_dir", "branch", "max_cached", "max_body_bytes", "timeout"}
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml

from modelrepo.modelbit_compat import install as install_modelbit
from modelrepo.runtime.app import DEFAULT_MAX_BODY_BYTES, RuntimeApp
from modelrepo.runtime.gateway.keys import KeyRing
from modelrepo.runtime.launch import SPEC_ENV  # noqa: E402


class _Holder:
    """The live RuntimeApp of this worker process (set when the service instance starts)."""

    app: RuntimeApp | None = None
    catalog: Any = None


HOLDER = _Holder()


async def model_routes(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI entry of the model routes (mounted into the service; reached directly by FrontApp)."""
    app = HOLDER.app
    if scope["type"] == "lifespan":  # the catalog's life follows the service instance's
        message = await receive()
        await send({"type": f"{message['type']}.complete"})
        return
    if app is None:
        body = b'{"error": "starting"}'
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await app(scope, receive, send)


# What BentoML answers: health, metrics, the OpenAPI page and its assets. All else is ours.
BENTOML_PATHS = ("/livez", "/healthz", "/metrics", "/docs.json", "/schema.json", "/static_content/", "/assets/")


class FrontApp:
    """Sends model routes and /readyz straight to the RuntimeApp, BentoML's paths to BentoML."""

    def __init__(self, bentoml_app: Any) -> None:
        self.bentoml_app = bentoml_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path != "/" and not path.startswith(BENTOML_PATHS):  # model routes, /readyz, 404s
                return await model_routes(scope, receive, send)
            catalog = HOLDER.catalog
            if catalog is not None:
                return await self.bentoml_app(scope, receive, _with_headers(send, catalog.headers))
        return await self.bentoml_app(scope, receive, send)


def _with_headers(send: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return wrapped


class FastPathService(bentoml.Service):
    """A bentoml.Service whose ASGI app has the model routes in front of the middleware."""

    def to_asgi(self, is_main: bool = True) -> Any:
        return FrontApp(super().to_asgi(is_main))

    @property
    def openapi_spec(self) -> Any:
        from bentoml._internal.service.openapi.specification import PathItem
        from bentoml._internal.utils.cattr import bentoml_cattr

        spec = super().openapi_spec
        spec.paths["/v1/{name}/{version}"] = bentoml_cattr.structure(_OPENAPI_MODEL_PATH, PathItem)
        spec.paths["/v1/{name}/{branch}/{version}"] = bentoml_cattr.structure(_OPENAPI_BRANCH_PATH, PathItem)
        return spec


@bentoml.asgi_app(model_routes, path="/v1", name="models")
@bentoml.service(
    name="modelrepo",
    service_class=FastPathService,
    workers=1,
    logging={"access": {"enabled": False}},
)
class Runtime:
    """Serves model deployments by the modelrepo REST contract (docs/runtime.md)."""

    def __init__(self) -> None:
        install_modelbit()  # this worker process imports source.py: `import modelbit` must work
        spec = json.loads(os.environ.get(SPEC_ENV) or "{}")
        catalog = build_catalog(spec)
        HOLDER.catalog = catalog
        HOLDER.app = RuntimeApp(catalog, int(spec.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES),
                                keys=read_keys(spec.get("api_keys_file")))
        catalog.start()

    @bentoml.on_shutdown
    def stop(self) -> None:
        if HOLDER.catalog is not None:
            HOLDER.catalog.stop()

    def __is_ready__(self) -> bool:
        return HOLDER.catalog is not None and HOLDER.catalog.readiness()[0]


def read_keys(path: str | None) -> KeyRing | None:
    """The API keys `modelrepo serve --api-keys` names (None: no keys asked for). A file that
    cannot be read admits nobody rather than everybody."""
    if not path:
        return None
    try:
        return KeyRing.read(path)
    except OSError as exc:
        print(f"API keys file not readable ({type(exc).__name__}): every /v1/ call is refused", flush=True)
        return KeyRing(())


def build_catalog(spec: dict[str, Any]) -> Any:
    """The catalog described by a MODELREPO_RUNTIME_SPEC document."""
    mode = spec.get("mode")
    timeout = spec.get("timeout")
    if mode == "folder":
        from modelrepo.runtime.catalogs.folder import FolderCatalog

        return FolderCatalog(
            spec["folder"], spec["name"], spec.get("version"), spec.get("commit") or "", timeout,
            branch=spec.get("branch") or None,
        )
    if mode == "repo":
        from modelrepo.runtime.catalogs.branches import BranchesCatalog
        from modelrepo.runtime.catalogs.repository import RepoCatalog
        from modelrepo.runtime.isolation import DEFAULT_LOAD_TIMEOUT

        branches = spec.get("branches") or [spec.get("branch") or "main"]
        environments = None  # one set of virtualenvs for every branch (runtime/environments.py)
        if spec.get("envs_dir"):
            from modelrepo.runtime.environments import Environments

            environments = Environments(spec["envs_dir"], fallback=spec.get("python_fallback") or "never")
        return BranchesCatalog([
            RepoCatalog(
                spec["source"], branch=branch, interval=float(spec.get("interval", 2)),
                cache_dir=spec["cache_dir"], default_timeout=timeout, fetch=bool(spec.get("fetch")),
                memory_limit=spec.get("memory_limit"),
                load_timeout=float(spec.get("load_timeout") or DEFAULT_LOAD_TIMEOUT), environments=environments,
            )
            for branch in branches
        ])
    if mode == "versions":
        from modelrepo.runtime.catalogs.versions import VersionsCatalog

        return VersionsCatalog(spec["fetcher"], spec["versions_dir"], spec["branch"],
                               max_cached=int(spec.get("max_cached") or 4), default_timeout=timeout)
    raise RuntimeError(f"{SPEC_ENV} must describe what to serve (mode folder, repo or versions), got {spec!r}")


_OPENAPI_MODEL_PATH = {
    "post": {
        "tags": ["Models"],
        "summary": "Call a deployment's function",
        "description": (
            "Single call: {\"data\": X} (several arguments: X is the list of arguments). "
            "Batch: {\"data\": [[id, X...], ...]} answered as {\"data\": [[id, Y], ...]} in request "
            "order (Modelbit's rule: rows of [id, *arguments]); explicit form ?batch=true / ?batch=false. "
            "Also timeout_seconds (seconds) beside data. Every answer carries "
            "X-Modelrepo-Commit and X-Modelrepo-Version."
        ),
        "operationId": "call_model",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "deployment name (folder under deployments/)"},
            {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "latest, a version number, or a commit SHA prefix (7+ hex digits)"},
            {"name": "batch", "in": "query", "required": False, "schema": {"type": "boolean"}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"data": {}}, "required": ["data"]}}}},
        "responses": {
            "200": {"description": "{\"data\": result}"},
            "400": {"description": "bad JSON or wrong shape"},
            "404": {"description": "unknown deployment or version"},
            "413": {"description": "body over the limit"},
            "500": {"description": "the function raised: {\"error\": \"Type: message\"}"},
            "503": {"description": "not ready"},
            "504": {"description": "timed out"},
        },
    }
}

_OPENAPI_BRANCH_PATH = {
    "post": {
        **_OPENAPI_MODEL_PATH["post"],
        "summary": "Call a deployment's function on a branch (Modelbit's client URL)",
        "operationId": "call_model_on_branch",
        "parameters": [
            _OPENAPI_MODEL_PATH["post"]["parameters"][0],
            {"name": "branch", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the branch served, with ~ for / (feature~x is feature/x)"},
            *_OPENAPI_MODEL_PATH["post"]["parameters"][1:],
        ],
    }
}
