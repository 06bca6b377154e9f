"""charts/modelrepo rendered by the real helm: what a cluster admin would get from `helm install`."""

from __future__ import annotations

import json
import tarfile

import pytest
import yaml
from fixtures.helm import CHART

from modelrepo.operator.policy import PodPolicy
from modelrepo.operator.render import RUNTIME_PORT

ROOT = CHART.parents[1]

# The operator's rights, exactly: anything more is a regression in least privilege.
EXPECTED_RULES = {
    ("modelrepo.dev", "modelrepos"): {"get", "list", "watch", "patch"},
    ("modelrepo.dev", "modelrepos/status"): {"get", "patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "patch"},  # patch: the gateway pods' table annotation
    ("", "configmaps"): {"get", "create", "patch"},  # the gateway's routing table
    ("", "secrets"): {"get"},
    ("", "events"): {"create"},
    ("batch", "jobs"): {"get", "list", "watch", "create"},  # environment builds
}


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


def operator_container(docs: list[dict]) -> dict:
    (deployment,) = by_kind(docs)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_chart_lints_clean(helm):
    helm.run("lint", "--strict", str(CHART))


def test_default_install_is_cluster_wide_with_minimal_verbs(helm):
    kinds = by_kind(helm.template())
    assert sorted(kinds) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    (role,) = kinds["ClusterRole"]
    rules = rules_of(role)
    assert rules == EXPECTED_RULES
    every_verb = set().union(*rules.values())
    assert not every_verb & {"*", "escalate", "bind", "impersonate", "deletecollection", "update"}
    assert all("*" not in resource for _, resource in rules)
    (binding,) = kinds["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (sa,) = kinds["ServiceAccount"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "modelrepo-system"}
    ]


def test_watch_namespaces_gives_roles_only(helm):
    kinds = by_kind(helm.template("--set", "watchNamespaces={ml,team-a}"))
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert sorted(r["metadata"]["namespace"] for r in kinds["Role"]) == ["ml", "team-a"]
    assert sorted(b["metadata"]["namespace"] for b in kinds["RoleBinding"]) == ["ml", "team-a"]
    for role in kinds["Role"]:
        assert rules_of(role) == EXPECTED_RULES
    for binding in kinds["RoleBinding"]:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "modelrepo-system"
    args = operator_container(helm.template("--set", "watchNamespaces={ml,team-a}"))["args"]
    assert (
        "--namespace=ml" in args and "--namespace=team-a" in args and "--all-namespaces" not in args
    )


def test_operator_deployment_one_replica_recreate_non_root_read_only(helm):
    docs = helm.template()
    (deployment,) = by_kind(docs)["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    container = operator_container(docs)
    assert container["image"] == "modelrepo:dev" and container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "operator"
    assert not [a for a in container["args"] if a.startswith("--namespace")]  # every namespace
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--webhook-port={ports['webhook']}" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert f"--liveness-port={ports['health']}" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    # The only writable path is the /tmp emptyDir.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELREPO_RUNTIME_IMAGE"] == "modelrepo:dev"
    assert env["HOME"] == "/tmp"


def test_service_ports_named_webhook_and_metrics_reach_the_container(helm):
    docs = helm.template()
    (service,) = by_kind(docs)["Service"]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"webhook", "metrics"}
    container_ports = {p["name"] for p in operator_container(docs)["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports
    (deployment,) = by_kind(docs)["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_values_for_image_runtime_image_resources_and_ingress(helm):
    docs = helm.template(
        "--set",
        "image.repository=registry.example/modelrepo,image.tag=1.2.3",
        "--set",
        "runtimeImage=registry.example/runtime:7",
        "--set",
        "resources.limits.memory=1Gi",
        "--set",
        "ingress.enabled=true,ingress.host=hooks.example.com,ingress.className=nginx",
    )
    container = operator_container(docs)
    assert container["image"] == "registry.example/modelrepo:1.2.3"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELREPO_RUNTIME_IMAGE"] == "registry.example/runtime:7"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    (ingress,) = by_kind(docs)["Ingress"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hooks.example.com" and ingress["spec"]["ingressClassName"] == "nginx"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/hooks" and path["backend"]["service"]["port"] == {"name": "webhook"}


def test_crds_come_from_crds_folder_without_a_copy(helm, tmp_path):
    link = CHART / "crds"
    assert link.is_symlink() and link.resolve() == (ROOT / "crds").resolve()
    shown = [d for d in yaml.safe_load_all(helm.run("show", "crds", str(CHART)).stdout) if d]
    source = [
        d
        for f in sorted((ROOT / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    assert shown == source and shown[0]["metadata"]["name"] == "modelrepos.modelrepo.dev"
    # A packaged chart (what gets published) carries the real file, not a dangling link.
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("modelrepo-*.tgz")
    with tarfile.open(archive) as tar:
        member = tar.getmember("modelrepo/crds/modelrepo.yaml")
        assert member.isfile()
        assert tar.extractfile(member).read() == (ROOT / "crds" / "modelrepo.yaml").read_bytes()


def test_no_template_output_for_a_disabled_service_account(helm):
    docs = helm.template("--set", "serviceAccount.create=false,serviceAccount.name=existing")
    assert "ServiceAccount" not in by_kind(docs)
    (deployment,) = by_kind(docs)["Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


@pytest.mark.parametrize(
    "bad",
    [
        "modelPods.modelSizeLimit=lots",
        "modelPods.allowedImages=notalist",
        "watchNamespaces=notalist",
        "watchNamespaces={Not_A_Namespace}",
        "image.pullPolicy=Sometimes", "operator.logFormat=xml",
        "service.webhookPort=0",
    ],
)
def test_bad_values_fail_with_a_message_naming_the_value(helm, bad):
    proc = helm.run("template", "x", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert bad.split("=")[0].split(".")[-1] in proc.stderr


def test_model_pod_policy_and_defaults_reach_the_operator_as_env(helm):
    env = {e["name"]: e.get("value") for e in operator_container(helm.template())["env"]}
    # defaults: only the runtime image, no service account, any Secret but the git credentials
    assert env["MODELREPO_ALLOWED_IMAGES"] == ""
    assert env["MODELREPO_ALLOWED_SERVICE_ACCOUNTS"] == ""
    assert env["MODELREPO_ALLOWED_ENV_SECRETS"] == "*"
    assert json.loads(env["MODELREPO_DEFAULT_RESOURCES"])["limits"]["memory"]
    assert json.loads(env["MODELREPO_INIT_RESOURCES"])["limits"]["memory"]
    assert env["MODELREPO_MODEL_SIZE_LIMIT"] and env["MODELREPO_TMP_SIZE_LIMIT"]
    env = {e["name"]: e.get("value") for e in operator_container(helm.template(
        "--set", "modelPods.allowedImages={registry.example/models/*,python:3.11}",
        "--set", "modelPods.allowedServiceAccounts={reader}",
        "--set", "modelPods.allowedEnvSecrets=null",
        "--set", "modelPods.resources.limits.memory=8Gi,modelPods.modelSizeLimit=20Gi",
    ))["env"]}
    assert env["MODELREPO_ALLOWED_IMAGES"] == "registry.example/models/*,python:3.11"
    assert env["MODELREPO_ALLOWED_SERVICE_ACCOUNTS"] == "reader"
    assert env["MODELREPO_ALLOWED_ENV_SECRETS"] == ""
    assert json.loads(env["MODELREPO_DEFAULT_RESOURCES"])["limits"] == {"memory": "8Gi"}
    assert env["MODELREPO_MODEL_SIZE_LIMIT"] == "20Gi"
    # what the chart passes is what the operator reads
    policy = PodPolicy.from_env(env)
    assert policy.images == ("registry.example/models/*", "python:3.11")
    assert policy.allowed_env_secrets == () and policy.model_size_limit == "20Gi"


def _policies(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in by_kind(docs).get("NetworkPolicy", [])}


def test_network_policy_of_the_operator_opens_only_webhook_metrics_dns_api_and_git(helm):
    docs = helm.template()
    (policy,) = _policies(docs).values()  # cluster-wide install: no model-pod namespaces known
    spec = policy["spec"]
    (deployment,) = by_kind(docs)["Deployment"]
    assert spec["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {"webhook", "metrics"}
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 6443, 22, 9418}
    assert all(rule.get("ports") for rule in spec["egress"])  # no rule opens every port
    narrowed = helm.template(
        "--set", "networkPolicy.operator.gitEgress[0].to[0].ipBlock.cidr=192.0.2.0/24",
        "--set", "networkPolicy.operator.gitEgress[0].ports[0].port=443",
    )
    (policy,) = _policies(narrowed).values()
    assert {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443}]} in policy["spec"]["egress"]
    assert "NetworkPolicy" not in by_kind(helm.template("--set", "networkPolicy.enabled=false"))


def test_network_policy_of_model_pods_opens_only_the_serving_port(helm):
    docs = helm.template("--set", "watchNamespaces={ml,team-a}")
    policies = _policies(docs)
    model = {ns: p for (ns, name), p in policies.items() if name.endswith("-model-pods")}
    assert sorted(model) == ["ml", "team-a"]
    spec = model["ml"]["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "modelrepo"}}
    assert spec["policyTypes"] == ["Ingress"]
    rule, _gateways = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]  # the runtime container's port name
    assert rule["from"] == [{"podSelector": {}}]  # the same namespace only
    custom = _policies(helm.template(
        "--set", "networkPolicy.modelPods.namespaces={prod}",
        "--set", "networkPolicy.modelPods.ingressFrom[0].namespaceSelector.matchLabels.role=ingress",
    ))
    (prod,) = [p for (ns, _), p in custom.items() if ns == "prod"]
    assert prod["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"role": "ingress"}}}]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector's meaning (matchLabels and the Exists/In operators the chart uses)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        if expression["operator"] == "Exists" and not present:
            return False
        if expression["operator"] == "In" and labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _admits(policy: dict, source: dict[str, str], target: dict[str, str], port: str) -> bool:
    """Does `policy` (in the source's namespace) let a pod labelled `source` reach `target`:`port`?"""
    spec = policy["spec"]
    if not _selects(spec["podSelector"], target):
        return True  # not covered by this policy
    for rule in spec.get("ingress") or []:
        if port not in [p["port"] for p in rule.get("ports") or [{"port": port}]]:
            continue
        peers = rule.get("from")
        if peers is None or any("namespaceSelector" not in peer and _selects(peer["podSelector"], source) for peer in peers):
            return True
    return False


def test_network_policy_admits_the_gateway_to_model_pods_and_callers_to_the_gateway(helm):
    """The operator's gateway pods forward to the folders' pods: a narrowed ingressFrom must not cut them off."""
    from modelrepo.operator.gateway import render_deployment as render_gateway
    from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment

    repo = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    gateway = render_gateway(repo, None)["spec"]["template"]["metadata"]["labels"]
    model = render_deployment(repo, Folder("A", "t", "c" * 40, 1), FolderSettings())["spec"]["template"]["metadata"]["labels"]
    caller = {"app": "web-frontend"}
    narrowed = _policies(helm.template(
        "--set", "watchNamespaces={ml}", "--set", "networkPolicy.modelPods.ingressFrom[0].podSelector.matchLabels.app=web-frontend"))
    (policy,) = [p for (ns, name), p in narrowed.items() if ns == "ml" and name.endswith("-model-pods")]
    assert _admits(policy, gateway, model, "http")  # the gateway reaches the model pods
    assert _admits(policy, caller, gateway, "http")  # callers named in ingressFrom reach the gateway
    assert not _admits(policy, {"app": "other"}, model, "http")  # and nobody else
    assert not _admits(policy, {"app": "other"}, gateway, "http")
    assert not _admits(policy, gateway, model, "metrics")  # the serving port only


def test_model_pod_port_name_matches_the_rendered_runtime_container():
    from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment

    repo = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    pod = render_deployment(repo, Folder("A", "t", "c" * 40, 1), FolderSettings())["spec"]["template"]["spec"]
    assert [p["name"] for p in pod["containers"][0]["ports"]] == ["http"]
    assert pod["containers"][0]["ports"][0]["containerPort"] == RUNTIME_PORT


def test_registry_auth_secret_is_mounted_where_the_operator_reads_it(helm):
    from modelrepo.operator.environments import AUTH_FILE, EnvironmentSettings

    docs = helm.template("--set", "environments.registry=registry.example:5000",
                         "--set", "environments.registryAuthSecret=registry-login")
    (deployment,) = by_kind(docs)["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "registry-auth"]
    assert volume["secret"] == {"secretName": "registry-login", "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "registry-auth"]
    assert f"{mount['mountPath']}/.dockerconfigjson" == AUTH_FILE and mount["readOnly"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert EnvironmentSettings.from_json(env["MODELREPO_ENVIRONMENTS"]).auth_file == AUTH_FILE
    plain = by_kind(helm.template())["Deployment"][0]["spec"]["template"]["spec"]
    assert "registry-auth" not in [v["name"] for v in plain["volumes"]]


def test_environments_values_reach_the_operator_as_it_reads_them(helm):
    from modelrepo.operator.environments import EnvironmentSettings

    def settings(*args: str) -> EnvironmentSettings:
        env = {e["name"]: e.get("value") for e in operator_container(helm.template(*args))["env"]}
        return EnvironmentSettings.from_json(env["MODELREPO_ENVIRONMENTS"])

    default = settings()
    assert not default.enabled and default.gpu_label == "nvidia.com/gpu.product"  # nothing built by default
    mine = settings(
        "--set", "environments.registry=registry.example:5000",
        "--set", "environments.baseImages.3\\.10=registry.example:5000/runtime:py3.10",
        "--set", "environments.gpuNodeLabel=cloud.example/accelerator",
    )
    assert mine.enabled and mine.base_images["3.10"].image == "registry.example:5000/runtime:py3.10"
    assert mine.gpu_label == "cloud.example/accelerator" and mine.timeout_seconds == 1800
