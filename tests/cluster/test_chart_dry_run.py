"""The rendered chart is accepted by a real API server (server-side dry run: validation,
admission, RBAC object checks), cluster-wide and namespaced."""

from __future__ import annotations

import pytest
from fixtures.helm import CHART

pytestmark = pytest.mark.cluster


def _dry_run(cluster, manifests: str) -> str:
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=modelrepo-test",
        "-f",
        "-",
        input=manifests,
    )


def test_cluster_wide_chart_passes_server_side_dry_run(cluster, helm, namespace):
    rendered = helm.run(
        "template", "mr", str(CHART), "--namespace", namespace, "--include-crds"
    ).stdout
    out = _dry_run(cluster, rendered)
    for obj in (
        "customresourcedefinition.apiextensions.k8s.io/modelrepos.modelrepo.dev",
        "serviceaccount/mr-modelrepo",
        "clusterrole.rbac.authorization.k8s.io/mr-modelrepo",
        "clusterrolebinding.rbac.authorization.k8s.io/mr-modelrepo",
        "service/mr-modelrepo",
        "deployment.apps/mr-modelrepo",
    ):
        assert obj in out, out
    assert "(server dry run)" in out


def test_namespaced_chart_with_ingress_passes_server_side_dry_run(cluster, helm, namespace):
    rendered = helm.run(
        "template",
        "mr",
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "ingress.enabled=true,ingress.host=hooks.example.com",
    ).stdout
    out = _dry_run(cluster, rendered)
    assert "role.rbac.authorization.k8s.io/mr-modelrepo" in out
    assert "rolebinding.rbac.authorization.k8s.io/mr-modelrepo" in out
    assert "ingress.networking.k8s.io/mr-modelrepo" in out
    assert "clusterrole" not in out
