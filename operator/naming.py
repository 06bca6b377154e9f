"""Names of a ModelRepo's children (docs/operator.md): DNS-1035 labels, stable, at most 63 characters."""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_HASH_LEN = 8


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def child_name(repo: str, deployment: str, branch: str = "") -> str:
    """`<repo>-<name>` (or `<repo>-<branch>-<name>`) lowercased, `_` and `/` -> `-`; cut to 63
    characters with a hash suffix of the full text.

    The result is a valid DNS-1035 label, usable for both the Deployment and the Service.
    `branch` is given for the branches of `spec.branches` after the first: the first branch's
    children keep the names they had before branches existed.
    """
    full = f"{repo}-{branch}-{deployment}" if branch else f"{repo}-{deployment}"
    name = re.sub(r"[^a-z0-9-]", "-", full.lower().replace("_", "-"))
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if not name or not name[0].isalpha():
        name = f"mr-{name}"
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - _HASH_LEN - 1].rstrip('-')}-{_short_hash(full)}"
    return name


def gateway_child_name(repo: str) -> str:
    """The name of a ModelRepo's gateway Deployment and Service: `<repo>-gateway`."""
    return child_name(repo, "gateway")


def versions_child_name(repo: str, branch: str | None = None) -> str:
    """The versions pod's Deployment and Service: `<repo>-versions` for the ModelRepo's first
    branch (`branch` None), `<repo>-<branch>-versions` for another followed branch."""
    return child_name(repo, "versions" if branch is None else f"{branch}-versions")


def label_value(text: str) -> str:
    """A label value (<= 63 characters of [A-Za-z0-9_.-]) that still identifies `text`."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text).strip("-_.")
    if len(value) > MAX_NAME:
        value = f"{value[: MAX_NAME - _HASH_LEN - 1].rstrip('-_.')}-{_short_hash(text)}"
    return value
