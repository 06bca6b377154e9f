"""Load the gateway's routing table and keys from files, and reload them when they change.

In the cluster both files are mounted: the routing table from the ConfigMap the operator
writes, the keys from the ModelRepo's keys Secret. Kubernetes replaces mounted files on
update (an atomic symlink swap), so a poll of the file's content every `interval` seconds
picks up a push without restarting anything. A file that does not parse keeps the previous
table serving and logs why.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from modelrepo.runtime.gateway.keys import KeyRing
from modelrepo.runtime.gateway.routing import Table

log = logging.getLogger("modelrepo.gateway")


def load_table(path: str | Path) -> Table:
    """The routing table of a configuration file; ValueError naming the problem."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        return Table.from_json(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class Watcher:
    """Holds the current table and key ring; a daemon thread reloads them on change."""

    def __init__(self, config: str | Path, keys: str | Path | None = None, interval: float = 1.0) -> None:
        self.config_path = Path(config)
        self.keys_path = Path(keys) if keys else None
        self.interval = interval
        self._table: Table | None = None
        self._keys: KeyRing | None = None
        self._seen: dict[Path, bytes | None] = {}
        self._stop = threading.Event()
        self.reload()

    def table(self) -> Table | None:
        return self._table

    def keys(self) -> KeyRing | None:
        """None when no keys file was configured. A configured but missing file admits nobody."""
        if self.keys_path is None:
            return None
        return self._keys or KeyRing(())

    def _changed(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError:
            data = None
        if self._seen.get(path, b"\0unseen") == data:
            return None
        self._seen[path] = data
        return data if data is not None else b""

    def reload(self) -> None:
        if self._changed(self.config_path) is not None:
            try:
                self._table = load_table(self.config_path)
                log.info("routing table loaded from %s", self.config_path)
            except ValueError as exc:
                log.error("routing table not reloaded, the previous one keeps serving: %s", exc)
        if self.keys_path is not None and self._changed(self.keys_path) is not None:
            try:
                self._keys = KeyRing.read(self.keys_path)
                log.info("%d API key(s) loaded", len(self._keys.entries))  # how many, never which
            except OSError as exc:
                log.error("API keys not readable (%s): every call is refused", type(exc).__name__)
                self._keys = KeyRing(())

    def start(self) -> None:
        threading.Thread(target=self._run, name="modelrepo-gateway-config", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.reload()
