"""The names the operator owns on the Kubernetes API: its resource, and the labels and
annotations it writes on the children (docs/operator.md). Every module reads them from here."""

from __future__ import annotations

GROUP = "modelrepo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelRepo"
PLURAL = "modelrepos"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrepo"}
LABEL_REPO = f"{GROUP}/repo"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_COMMIT = f"{GROUP}/commit"
LABEL_BRANCH = f"{GROUP}/branch"  # on the children of spec.branches after the first (also in their selector)
ANN_COMMIT = f"{GROUP}/commit"
ANN_NAME = f"{GROUP}/name"
ANN_TREE = f"{GROUP}/tree"
ANN_CONFIG = f"{GROUP}/config"
ANN_VERSION = f"{GROUP}/version"
ANN_BRANCH = f"{GROUP}/branch"  # the branch of a child whose name carries it
ANN_DATASETS = f"{GROUP}/datasets-commit"  # only on folders that read datasets
ANN_COMMON = f"{GROUP}/common-commit"  # only on folders whose linked common/ files changed since
