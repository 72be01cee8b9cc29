"""The Helm chart, rendered with Helm's own engine for the default and the KubeEdge values.

Every rendered object is validated against the Kubernetes OpenAPI schema (kubernetes-validate,
strict: unknown fields fail) of the oldest release the chart supports and of the newest one the
package knows; then the promises the chart makes are checked one by one.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    KUBEEDGE_VALUES,
    NAMESPACE,
    ROOT,
    env_of,
    kubeedge_values,
    one,
    render,
    render_text,
)

Obj = dict[str, Any]

# The chart's kubeVersion floor, and the newest release kubernetes-validate carries.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
SERVICE_MONITOR = {"enabled": True, "labels": {"release": "prometheus"}}
VARIANTS = {
    "default": {},
    "kubeedge": kubeedge_values(),
    "namespaced-operator": {"operator": {"watchNamespace": "apps"}},
    "everything-on": {"namespace": {"create": True}, "agent": {
        "metrics": {"serviceMonitor": SERVICE_MONITOR}, "tlsSecretName": "agent-tls", "verbose": True,
        "insecureRegistries": ["registry.lan:5000"], "nodeLabels": {"zone": "a"},
        "allocatableMemory": 4 * 1024 ** 3, "shutdownGraceSeconds": 12.5,
        "extraVolumes": [{"name": "data", "hostPath": {"path": "/srv/data"}}],
        "extraVolumeMounts": [{"name": "data", "mountPath": "/srv/data"}]},
        "operator": {"image": {"digest": "sha256:" + "a" * 64}, "extraArgs": ["--verbose"]}},
}

# ServiceMonitor is a Prometheus Operator CRD, not in the Kubernetes schema: the fields the
# chart may use (monitoring.coreos.com/v1), checked by hand.
SERVICE_MONITOR_SPEC = {"jobLabel", "selector", "namespaceSelector", "endpoints"}
SERVICE_MONITOR_ENDPOINT = {"port", "path", "scheme", "interval", "scrapeTimeout", "tlsConfig", "relabelings"}


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def variant(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(VARIANTS[request.param])


def test_the_chart_lints_clean_with_helm() -> None:
    for values in (None, kubeedge_values()):
        report = helm_python.lint(CHART, values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], problems or report["errors"]


def test_every_object_is_valid_for_kubernetes(variant: tuple[str, list[Obj]]) -> None:
    name, objects = variant
    assert objects, name
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            check_service_monitor(obj)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_what_kubernetes_rejects() -> None:
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = ["not", "a", "string"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
    deployment["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def check_service_monitor(monitor: Obj) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= SERVICE_MONITOR_SPEC
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT
        assert endpoint["port"] == "kubelet-api" and endpoint["scheme"] == "https" and endpoint["path"] == "/metrics"


def test_namespaced_objects_go_to_the_release_namespace_except_the_lease_role(variant: tuple[str, list[Obj]]) -> None:
    name, objects = variant
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in ("Role", "RoleBinding"):
            assert namespace in ("kube-node-lease", "apps"), obj["metadata"]
        elif obj["kind"] in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "RuntimeClass"):
            assert namespace is None, obj["metadata"]
        else:
            assert namespace == NAMESPACE, (name, obj["kind"])


def test_every_object_carries_the_standard_labels(variant: tuple[str, list[Obj]]) -> None:
    for obj in variant[1]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "wasmlet"
        assert labels["app.kubernetes.io/instance"] == "wasmlet"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("wasmlet-")


def test_one_template_per_kind_per_component() -> None:
    for name, text in render_text(VARIANTS["everything-on"]).items():
        if name == "NOTES.txt":
            continue
        kinds = {doc["kind"] for doc in yaml.safe_load_all(text) if doc}
        rbac = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        assert len(kinds) == 1 or kinds <= rbac, f"{name} renders {sorted(kinds)}"


# -- the operator ----------------------------------------------------------------------------


def test_the_operator_runs_one_replica_replaced_with_recreate() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_operator_is_probed_restricted_and_bounded() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = env_of(container)
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "healthz")
    assert env["WASMLET_LIVENESS_ENDPOINT"] == f"http://0.0.0.0:{port}/healthz"


def test_every_operator_value_reaches_a_setting() -> None:
    values = {"operator": {"watchNamespace": "apps", "resyncSeconds": 60, "retrySeconds": 2,
                           "watchTimeoutSeconds": 120, "verbose": True}}
    env = env_of(one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert (env["WASMLET_NAMESPACE"], env["WASMLET_RESYNC_SECONDS"], env["WASMLET_RETRY_SECONDS"]) == ("apps", "60", "2")
    assert (env["WASMLET_WATCH_TIMEOUT_SECONDS"], env["WASMLET_VERBOSE"]) == ("120", "true")
    from wasmlet.operator.settings import load_settings

    settings = load_settings([], {k: v for k, v in env.items() if isinstance(v, str)})
    assert (settings.namespace, settings.resync_seconds, settings.verbose) == ("apps", 60.0, True)
    assert settings.metrics_endpoint == "http://0.0.0.0:9090/metrics"
    assert (settings.standalone, settings.peering_name) == (False, "wasmlet")  # the release's full name
    alone = env_of(one(render({"operator": {"peering": {"enabled": False}}}), "Deployment")["spec"]["template"][
        "spec"]["containers"][0])
    assert load_settings([], {k: v for k, v in alone.items() if isinstance(v, str)}).standalone is True


def test_an_image_digest_pins_the_image() -> None:
    container = one(render(VARIANTS["everything-on"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"ghcr\.io/wasmlet/wasmlet-operator:[^@]+@sha256:a{64}", container["image"])


# -- the agent -------------------------------------------------------------------------------


def agent_pod(values: Obj | None = None) -> Obj:
    return dict(one(render(values), "DaemonSet")["spec"]["template"]["spec"])


def test_the_agent_runs_on_labelled_hosts_next_to_their_kubelet() -> None:
    pod = agent_pod()
    assert pod["nodeSelector"] == {"wasmlet.dev/host": "true"}
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    [container] = pod["containers"]
    [port] = container["ports"]
    assert port["containerPort"] != 10250  # the host kubelet's port
    env = env_of(container)
    assert env["WASMLET_KUBELET_PORT"] == str(port["containerPort"])
    assert env["HOST_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["WASMLET_NODE_NAME"] == "$(HOST_NODE_NAME)-wasm"  # a virtual Node next to the host's
    assert env["WASMLET_NODE_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    names = [e["name"] for e in container["env"]]
    assert names.index("HOST_NODE_NAME") < names.index("WASMLET_NODE_NAME")  # $(VAR) expands earlier vars only
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "kubelet-api", "scheme": "HTTPS"}


def test_the_agent_keeps_state_and_module_cache_on_the_host() -> None:
    pod = agent_pod()
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"] == {"path": "/var/lib/wasmlet", "type": "DirectoryOrCreate"}
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state_dir = env_of(container)["WASMLET_STATE_DIR"]
    assert mounts[state_dir] == "state" and mounts["/tmp"] == "tmp"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    [init] = pod["initContainers"]
    assert init["command"] == ["chown", "65532:65532", state_dir]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_agent_values_reach_its_settings(tmp_path: Any) -> None:
    values = VARIANTS["everything-on"]
    env = env_of(agent_pod(values)["containers"][0])
    assert env["WASMLET_NODE_LABELS"] == "zone=a"
    assert env["WASMLET_INSECURE_REGISTRIES"] == "registry.lan:5000"
    assert env["WASMLET_TLS_CERT_FILE"] == "/etc/wasmlet/tls/tls.crt"
    from wasmlet.nodeagent.config import load_settings

    plain = {k: v for k, v in env.items() if isinstance(v, str) and k.startswith("WASMLET_")}
    assert plain["WASMLET_CLIENT_CA_FILE"] == "/etc/wasmlet/client-ca/ca.crt"  # kube-root-ca.crt, mounted
    (tmp_path / "ca.crt").write_text("a CA")
    plain.update(WASMLET_NODE_NAME="worker-1-wasm", WASMLET_NODE_IP="10.0.0.7", WASMLET_STATE_DIR=str(tmp_path),
                 WASMLET_CLIENT_CA_FILE=str(tmp_path / "ca.crt"))
    settings = load_settings(None, plain, {})
    assert settings.kubelet_port == 10260 and settings.runtimes == ("wasmer", "wasmtime")
    assert settings.module_cache_max_bytes == 2 * 1024 ** 3 and settings.node_labels == {"zone": "a"}
    assert settings.insecure_registries == ("registry.lan:5000",)
    assert settings.kubelet_api_auth == "webhook" and settings.kubelet_api_authorization == "webhook"
    assert settings.allocatable_memory == 4 * 1024 ** 3 and settings.shutdown_grace_seconds == 12.5


def test_the_kubeedge_preset_is_the_cloud_side_only() -> None:
    objects = render(kubeedge_values())
    assert not [o for o in objects if o["kind"] == "DaemonSet"]  # agents are systemd services on the edge hosts
    operator = one(objects, "Deployment")["spec"]["template"]["spec"]
    [term] = operator["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "node-role.kubernetes.io/edge", "operator": "DoesNotExist"}]
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "RuntimeClass"} == {"wasmer", "wasmtime"}


def test_the_service_monitor_scrapes_the_agents_over_https() -> None:
    objects = render(VARIANTS["everything-on"])
    monitor, service = one(objects, "ServiceMonitor", "wasmlet-agent"), one(objects, "Service", "wasmlet-agent")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["clusterIP"] == "None"
    assert not [o for o in render() if o["kind"] == "ServiceMonitor"]  # opt-in


# -- CRDs and RuntimeClasses -----------------------------------------------------------------


def test_the_charts_crds_are_byte_identical_copies_of_the_canonical_ones() -> None:
    canonical = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert "wasmworkloads.wasmlet.dev.yaml" in canonical
    assert copies == canonical, "copy crds/*.yaml to helm/wasmlet/files/crds/"


def test_the_rendered_crds_are_the_canonical_ones_kept_on_uninstall() -> None:
    rendered = {o["metadata"]["name"]: o for o in render() if o["kind"] == "CustomResourceDefinition"}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        canonical = yaml.safe_load(path.read_text())
        crd = rendered.pop(canonical["metadata"]["name"])
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert (canonical["metadata"].get("labels") or {}).items() <= crd["metadata"]["labels"].items()
        assert {k: v for k, v in crd.items() if k != "metadata"} == {k: v for k, v in canonical.items() if k != "metadata"}
    assert not rendered
    assert all("annotations" not in o["metadata"] for o in render({"crds": {"keep": False}})
               if o["kind"] == "CustomResourceDefinition")
    assert not [o for o in render({"crds": {"enabled": False}}) if o["kind"] == "CustomResourceDefinition"]


def test_the_values_warn_about_deleting_the_crd() -> None:
    text = (CHART / "values.yaml").read_text()
    block = text[text.index("crds:"):text.index("runtimeClasses:")]
    assert "WARNING" in block and "deletes every WasmWorkload" in block


def test_runtime_classes_send_pods_to_nodes_offering_the_runtime() -> None:
    from wasmlet.api import keys

    classes = {o["metadata"]["name"]: o for o in render() if o["kind"] == "RuntimeClass"}
    assert set(classes) == set(keys.RUNTIMES)
    for name, runtime_class in classes.items():
        assert runtime_class["handler"] == name
        assert runtime_class["scheduling"]["nodeSelector"] == {keys.runtime_label(name): "true"}
        assert runtime_class["scheduling"]["tolerations"] == keys.wasm_tolerations()


# -- values and their schema -----------------------------------------------------------------


@pytest.mark.parametrize("values", [
    {"unknown": 1},
    {"operator": {"replicas": 2, "peering": {"enabled": False}}},
    {"operator": {"replicaz": 2}},
    {"agent": {"kubeletPort": 10250}},
    {"agent": {"nodeNameSuffix": ""}},
    {"agent": {"runtimes": ["wasmer", "docker"]}},
    {"agent": {"metrics": {"serviceMonitor": {"enabeld": True}}}},
    {"crds": {"keep": "yes"}},
    {"agent": {"allocatableMemory": -1}},
    {"agent": {"allocatableMemory": "2Gi"}},
    {"agent": {"shutdownGraceSeconds": -1}},
    {"agent": {"shutdownGraceSeconds": 60, "terminationGracePeriodSeconds": 60}},
])
def test_the_schema_rejects_bad_values(values: Obj) -> None:
    with pytest.raises((helm_python.HelmValuesError, helm_python.HelmRenderError)):
        render(values)


def test_values_yaml_and_its_schema_describe_the_same_keys() -> None:
    from tests.deploy.chart import schema

    def keys_of(node: Obj, prefix: str = "") -> set[str]:
        found = set()
        for key, child in (node.get("properties") or {}).items():
            found.add(prefix + key)
            if child.get("type") == "object" and "properties" in child:
                found |= keys_of(child, f"{prefix}{key}.")
        return found

    def value_keys(values: Obj, declared: set[str], prefix: str = "") -> set[str]:
        found = set()
        for key, child in values.items():
            found.add(prefix + key)
            if isinstance(child, dict) and any(k.startswith(f"{prefix}{key}.") for k in declared):
                found |= value_keys(child, declared, f"{prefix}{key}.")
        return found

    declared = keys_of(schema())
    assert value_keys(yaml.safe_load((CHART / "values.yaml").read_text()), declared) == declared - {"global"}


def test_every_key_of_values_yaml_is_documented_above_itself() -> None:
    from tests.deploy.chart import schema

    declared = _schema_paths(schema())
    undocumented, stack = [], []
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        stack[depth:] = [match.group(2)]
        path = ".".join(stack)
        previous = lines[number - 1].strip() if number else ""
        if path in declared and not previous.startswith("#"):
            undocumented.append(path)
    assert not undocumented, f"values without a comment above them: {undocumented}"


def _schema_paths(node: Obj, prefix: str = "") -> set[str]:
    paths = set()
    for key, child in (node.get("properties") or {}).items():
        # The probes' timing keys are Kubernetes' own, documented by the probe's comment;
        # every other key needs its own.
        paths.add(prefix + key)
        if key not in ("livenessProbe", "readinessProbe") and "properties" in child:
            paths |= _schema_paths(child, f"{prefix}{key}.")
    return paths


def test_the_kubeedge_values_only_name_keys_the_chart_has() -> None:
    helm_python.Chart.load(CHART).validate_schema(yaml.safe_load(KUBEEDGE_VALUES.read_text()))


def test_notes_tell_how_to_run_a_first_workload(variant: tuple[str, list[Obj]]) -> None:
    notes = render_text(VARIANTS[variant[0]])["NOTES.txt"]
    # Hosts are chosen by a label the user sets, or (KubeEdge) by the edge label they carry.
    first = "docs/kubeedge.md" if variant[0] == "kubeedge" else "kubectl label node"
    for step in (first, "kubectl create configmap", "kind: WasmWorkload", "kubectl get ww",
                 "kubectl logs", "kubectl scale ww", "wasmlet status"):
        assert step in notes, step
    manifest = notes[notes.index("apiVersion: wasmlet.dev"):notes.index("     YAML")]
    workload = yaml.safe_load("\n".join(line.removeprefix("     ") for line in manifest.splitlines()))
    from wasmlet.api.workload import parse_workload

    workload["metadata"]["namespace"] = "default"
    parse_workload(workload)  # the example is a valid WasmWorkload
