"""modelrepo: deploy a Python function from a notebook into a git repository of models.

`modelrepo.deploy(fn)` writes and commits `deployments/<Name>/`; `modelrepo.load_value` is what
a deployment's source.py uses to get its captured values back; `modelrepo.get_inference` calls
a served deployment over REST. Deploy-time machinery (git, cloudpickle, source capture) is
imported only when `deploy` is first used, so serving a deployment imports little.
"""

from __future__ import annotations

from typing import Any

from modelrepo.format.values import load_value

__all__ = [
    "deploy", "switch_branch", "current_branch", "load_value", "DeployError", "DeployResult",
    "get_inference", "InferenceError", "get_secret", "get_dataset",
]
_DEPLOYER = ("deploy", "switch_branch", "current_branch", "DeployError", "DeployResult")


def __dir__() -> list[str]:
    """The public names, also the lazy ones, so Tab completion in Jupyter shows them."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    if name in _DEPLOYER:
        from modelrepo import deployer

        return getattr(deployer, name)
    if name in ("get_inference", "InferenceError"):
        from modelrepo import client

        return getattr(client, name)
    if name == "get_secret":
        from modelrepo.secrets import get_secret

        return get_secret
    if name == "get_dataset":
        from modelrepo.datasets import get_dataset

        return get_dataset
    raise AttributeError(f"module 'modelrepo' has no attribute {name!r}")
