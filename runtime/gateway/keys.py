"""API keys: who may call what (docs/runtime.md, "API keys").

A keys file has one key a line, optionally scoped to names (deployments or endpoints):

    mk_live_4f9a...                      # any deployment and endpoint
    mk_team_b_77c1...  Linear_Model,split  # only these

`#` starts a comment. Callers send `Authorization: <key>` (Modelbit's header) or
`Authorization: Bearer <key>`. Only SHA-256 digests of the keys are kept, every known key is
compared (constant time, no early exit), and a key is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyRing:
    """Digests of the accepted keys and their scopes (None: every name)."""

    entries: tuple[tuple[bytes, frozenset[str] | None], ...]

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        entries = []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            scope = frozenset(n for part in words[1:] for n in part.split(",") if n) if len(words) > 1 else None
            entries.append((hashlib.sha256(words[0].encode()).digest(), scope))
        return cls(tuple(entries))

    @classmethod
    def read(cls, path: str | Path) -> KeyRing:
        return cls.parse(Path(path).read_text())

    def check(self, header: bytes | None, name: str) -> str | None:
        """None when `header` (the Authorization value) may call `name`; else the 401 message."""
        if not header:
            return "missing API key: send it as the Authorization header"
        value = header.strip()
        if value[:7].lower() == b"bearer ":
            value = value[7:].strip()
        digest = hashlib.sha256(value).digest()
        matched = False
        allowed = False
        for known, scope in self.entries:  # every entry, so timing says nothing about which matched
            same = hmac.compare_digest(digest, known)
            matched |= same
            allowed |= same and (scope is None or name in scope)
        if allowed:
            return None
        if matched:
            return f"this API key may not call {name}"
        return "API key not valid"


def authorization(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for key, value in headers:
        if key == b"authorization":
            return value
    return None
