"""Call a deployment over REST from Python, as Modelbit's `get_inference` does, plus the server URL.

`get_inference(url, "Linear_Model", [[1, 5], [2, 6]])` posts `{"data": ...}` to
`<url>/v1/Linear_Model/latest` (or `/v1/<Name>/<branch>/<version>`, `~` for `/` in the branch)
and returns the answer document, `{"data": ...}`. An `{"error": ...}` answer raises
`InferenceError` with the server's message and HTTP status.

Large batches are sent in chunks, as Modelbit's client does: rows `[[id, *args], ...]` (or a
pandas DataFrame, sent as Modelbit's DataFrame rows `[[index, {column: value}], ...]`) go in
requests of at most `batch_size` rows and `batch_bytes` bytes, each with `?batch=true`, and the
answers are put back together in request order. Smaller bodies go as they are, in one request,
and the server's batch rule decides. Standard library only (urllib), so any notebook can use it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_BATCH_SIZE = 10_000
# Under the runtime's default body limit (16 MiB, `--max-body-bytes`) with room to spare.
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 300.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_TYPES = (int, float, str)


class InferenceError(Exception):
    """The server answered `{"error": ...}` (or could not be reached); `status` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def inference_url(url: str, deployment: str, branch: str | None = None, version: str | int = "latest") -> str:
    """`<url>/v1/<deployment>[/<branch>]/<version>` with `/` in the branch written as `~`."""
    if not _NAME.match(deployment):
        raise ValueError(f"deployment name {deployment!r} must match [A-Za-z_][A-Za-z0-9_]*")
    parts = [deployment]
    if branch:
        parts.append(urllib.parse.quote(branch.replace("/", "~"), safe="~"))
    parts.append(urllib.parse.quote(str(version), safe=""))
    return f"{url.rstrip('/')}/v1/{'/'.join(parts)}"


def get_inference(
    url: str,
    deployment: str,
    data: Any,
    branch: str | None = None,
    version: str | int = "latest",
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> dict[str, Any]:
    """The answer of `deployment` for `data` (`{"data": ...}`, with `"errors"` for failed batch rows)."""
    if batch_size < 1 or batch_bytes < 1:
        raise ValueError("batch_size and batch_bytes must be positive")
    endpoint = inference_url(url, deployment, branch, version)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = api_key
    data = _plain(data)
    body = _encode({"data": data})
    if not _is_rows(data) or (len(data) <= batch_size and len(body) <= batch_bytes):
        return _post(endpoint, body, headers, timeout)
    rows: list[Any] = []
    errors: list[Any] = []
    for chunk in _chunks(data, batch_size, batch_bytes):
        answer = _post(f"{endpoint}?batch=true", _encode({"data": chunk}), headers, timeout)
        part = answer.get("data")
        if not isinstance(part, list) or len(part) != len(chunk):
            raise InferenceError(f"{endpoint}: a chunk of {len(chunk)} rows was answered with {part!r:.200}")
        rows.extend(part)
        errors.extend(answer.get("errors") or [])
    return {"data": rows, "errors": errors} if errors else {"data": rows}


def _plain(data: Any) -> Any:
    """A pandas DataFrame as Modelbit's DataFrame rows; numpy values as lists and numbers."""
    kind = type(data).__name__
    module = type(data).__module__.partition(".")[0]
    if module == "pandas" and kind == "DataFrame":
        records = json.loads(data.to_json(orient="records", date_format="iso"))  # NaN -> null
        index = json.loads(data.index.to_series().to_json(orient="values", date_format="iso"))
        return [[row_id, record] for row_id, record in zip(index, records)]
    if module in ("numpy", "pandas") and hasattr(data, "tolist"):
        return data.tolist()
    return data


def _encode(document: Any) -> bytes:
    try:
        return json.dumps(document, allow_nan=False, default=_default, separators=(",", ":")).encode()
    except ValueError as exc:
        raise ValueError(f"data cannot be sent as JSON: {exc} (NaN and infinity have no JSON form)") from None


def _default(value: Any) -> Any:
    for method in ("tolist", "item", "isoformat"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    raise TypeError(f"data of type {type(value).__name__} cannot be sent as JSON")


def _is_rows(data: Any) -> bool:
    """Batch rows `[[id, ...], ...]` (only those are ever split into chunks)."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(type(row) is list and row and type(row[0]) in _ID_TYPES for row in data)
    )


def _chunks(rows: list[list[Any]], batch_size: int, batch_bytes: int) -> list[list[list[Any]]]:
    """Consecutive runs of rows, each at most `batch_size` rows and (when rows allow) `batch_bytes`."""
    chunks: list[list[list[Any]]] = []
    current: list[list[Any]] = []
    size = 0
    for row in rows:
        row_bytes = len(_encode(row)) + 1
        if current and (len(current) >= batch_size or size + row_bytes > batch_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += row_bytes
    if current:
        chunks.append(current)
    return chunks


def _post(endpoint: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the caller's URL
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InferenceError(f"cannot reach {endpoint}: {reason}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        raise InferenceError(
            f"{endpoint} answered HTTP {status} without JSON: {text[:200].decode(errors='replace')}", status
        ) from None
    if isinstance(answer, dict) and "error" in answer:
        raise InferenceError(str(answer["error"]), status)
    if not isinstance(answer, dict) or status >= 400:
        raise InferenceError(f"{endpoint} answered HTTP {status}: {str(answer)[:200]}", status)
    return answer
