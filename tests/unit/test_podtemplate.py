"""The Pod of one replica follows the contract of docs/contract.md; the template hash tracks it."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.api import keys
from wasmlet.api.http import parse_handler
from wasmlet.api.podtemplate import build_pod, template_hash
from wasmlet.api.workload import WasmWorkload, parse_workload

SHA = "ab" * 32
POD_NAME_ENV = {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def workload(uid: str | None = "uid-1", **spec: Any) -> WasmWorkload:
    spec.setdefault("module", {"image": "registry.local/hello:1"})
    meta: dict[str, Any] = {"name": "hello", "namespace": "apps"}
    if uid:
        meta["uid"] = uid
    return parse_workload({"metadata": meta, "spec": spec})


def test_the_pod_is_labelled_owned_and_bound() -> None:
    w = workload()
    pod = build_pod(w, name="hello-x2k4z", node_name="edge-1")
    meta = pod["metadata"]
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert (meta["name"], meta["namespace"]) == ("hello-x2k4z", "apps")
    assert meta["labels"] == {
        "wasmlet.dev/workload": "hello",
        "wasmlet.dev/template-hash": template_hash(w),
        "app.kubernetes.io/managed-by": "wasmlet",
    }
    assert meta["ownerReferences"] == [{
        "apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload", "name": "hello", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True,
    }]
    assert pod["spec"]["nodeName"] == "edge-1"


def test_a_workload_without_uid_gives_an_ownerless_unbound_pod() -> None:
    pod = build_pod(workload(uid=None), name="hello-1", node_name=None)
    assert "ownerReferences" not in pod["metadata"]
    assert "nodeName" not in pod["spec"]


def test_the_pod_spec_carries_runtime_tolerations_and_selector() -> None:
    w = workload(runtime="wasmtime", nodeSelector={"zone": "a"},
                 tolerations=[{"key": "edge", "operator": "Exists", "effect": "NoExecute"}])
    spec = build_pod(w, name="p", node_name="n")["spec"]
    assert spec["runtimeClassName"] == "wasmtime"
    edge = {"key": "edge", "operator": "Exists", "effect": "NoExecute"}
    assert spec["tolerations"] == [*keys.wasm_tolerations(), *keys.lost_node_tolerations(), edge]
    assert spec["nodeSelector"] == {"zone": "a", "kubernetes.io/arch": "wasm32-wasi"}
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["automountServiceAccountToken"] is False
    assert "hostNetwork" not in spec and "activeDeadlineSeconds" not in spec


def test_the_container_carries_args_env_mounts_and_resources() -> None:
    w = workload(
        args=["--port", "8080"],
        env=[{"name": "MODE", "value": "fast"}, POD_NAME_ENV],
        volumes=[{"name": "cfg", "configMap": {"name": "hello-cfg"}}, {"name": "tmp", "emptyDir": {}}],
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/hello", "readOnly": True}],
        workingDir="/work",
        resources={"limits": {"memory": "64Mi", "cpu": "500m"}},
        restartPolicy="OnFailure", activeDeadlineSeconds=600, terminationGracePeriodSeconds=5, network="host",
    )
    pod = build_pod(w, name="p", node_name="n")
    [container] = pod["spec"]["containers"]
    assert container == {
        "name": "main",
        "image": "registry.local/hello:1",
        "args": ["--port", "8080"],
        "env": [{"name": "MODE", "value": "fast"}, POD_NAME_ENV],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/hello", "readOnly": True}],
        "workingDir": "/work",
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
    }
    spec = pod["spec"]
    assert spec["volumes"] == [{"name": "cfg", "configMap": {"name": "hello-cfg"}}, {"name": "tmp", "emptyDir": {}}]
    assert spec["restartPolicy"] == "OnFailure"
    assert (spec["activeDeadlineSeconds"], spec["terminationGracePeriodSeconds"]) == (600, 5)
    assert spec["hostNetwork"] is True


@pytest.mark.parametrize(("module", "image", "annotations"), [
    ({"image": "reg.local/m@sha256:" + SHA, "pullPolicy": "IfNotPresent", "pullSecrets": [{"name": "regcred"}]},
     "reg.local/m@sha256:" + SHA, None),
    ({"url": "https://m.example/a.wasm", "sha256": SHA}, "https://m.example/a.wasm", {"wasmlet.dev/sha256.main": SHA}),
    ({"configMap": {"name": "mods", "key": "a.wasm"}}, "configmap://mods/a.wasm", None),
])
def test_the_module_becomes_the_container_image(module: dict[str, Any], image: str,
                                                  annotations: dict[str, str] | None) -> None:
    pod = build_pod(workload(module=module), name="p", node_name="n")
    assert pod["spec"]["containers"][0]["image"] == image
    assert pod["metadata"].get("annotations") == annotations
    if "pullSecrets" in module:
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_a_configmap_module_is_referenced_by_a_volume_so_a_node_identity_may_read_it() -> None:
    """The Node authorizer relates a ConfigMap to a node only through its Pods' volumes and env."""
    pod = build_pod(workload(module={"configMap": {"name": "mods", "key": "a.wasm"}},
                             volumes=[{"name": "tmp", "emptyDir": {}}]), name="p", node_name="n")
    assert pod["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "wasmlet-module", "configMap": {"name": "mods", "items": [{"key": "a.wasm", "path": "module.wasm"}]}},
    ]
    assert "volumeMounts" not in pod["spec"]["containers"][0]  # referenced, never mounted
    assert "volumes" not in build_pod(workload(module={"url": "https://m.example/a.wasm", "sha256": SHA}),
                                      name="p", node_name="n")["spec"]


def test_the_container_name_is_configurable_and_names_the_sha256_annotation() -> None:
    w = workload(module={"url": "https://m.example/a.wasm", "sha256": SHA})
    pod = build_pod(w, name="p", node_name="n", container_name="app")
    assert pod["spec"]["containers"][0]["name"] == "app"
    assert pod["metadata"]["annotations"] == {"wasmlet.dev/sha256.app": SHA}


def test_an_http_workload_gets_the_port_and_the_handler_annotation() -> None:
    w = workload(http={"port": 8080, "path": "/api", "service": True})
    pod = build_pod(w, name="p", node_name="n")
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]
    value = pod["metadata"]["annotations"][keys.http_annotation("main")]
    assert value == ('{"port":8080,"path":"/api","maxConcurrency":32,"requestTimeoutSeconds":10,'
                     '"maxBodyBytes":1048576}')
    # The annotation is the agent's contract: it parses back to the very handler of the spec.
    assert w.spec.http is not None and parse_handler(value) == w.spec.http.handler


def test_the_http_annotation_follows_the_container_name() -> None:
    pod = build_pod(workload(http={"port": 80}), name="p", node_name="n", container_name="web")
    assert set(pod["metadata"]["annotations"]) == {"wasmlet.dev/http.web"}


def test_a_workload_without_http_has_no_ports_and_no_handler() -> None:
    pod = build_pod(workload(), name="p", node_name="n")
    assert "ports" not in pod["spec"]["containers"][0]
    assert "annotations" not in pod["metadata"]


def test_built_pods_are_independent_of_the_model() -> None:
    w = workload(env=[{"name": "A", "value": "1"}], tolerations=[{"key": "k", "operator": "Exists"}])
    pod = build_pod(w, name="p", node_name="n")
    pod["spec"]["containers"][0]["env"][0]["value"] = "changed"
    pod["spec"]["tolerations"][-1]["key"] = "changed"
    again = build_pod(w, name="p", node_name="n")
    assert again["spec"]["containers"][0]["env"][0]["value"] == "1"
    assert again["spec"]["tolerations"][-1]["key"] == "k"


def test_the_same_spec_gives_the_same_hash() -> None:
    assert template_hash(workload()) == template_hash(workload())
    assert len(template_hash(workload())) == 10
    # Identity and binding are not part of the template.
    assert template_hash(workload(uid="other")) == template_hash(workload())


@pytest.mark.parametrize("change", [
    {"module": {"image": "registry.local/hello:2"}},
    {"args": ["--verbose"]},
    {"env": [{"name": "A", "value": "1"}]},
    {"runtime": "wasmtime"},
    {"restartPolicy": "Never"},
    {"nodeSelector": {"zone": "b"}},
    {"resources": {"limits": {"memory": "32Mi"}}},
    {"network": "host"},
    {"http": {"port": 8080}},
])
def test_a_changed_template_gives_a_new_hash(change: dict[str, Any]) -> None:
    assert template_hash(workload(**change)) != template_hash(workload())


@pytest.mark.parametrize("change", [
    {"port": 8081},
    {"path": "/v2"},
    {"maxConcurrency": 8},
    {"requestTimeoutSeconds": 30},
    {"maxBodyBytes": 1024},
])
def test_a_changed_http_handler_rolls_the_pods(change: dict[str, Any]) -> None:
    assert template_hash(workload(http={"port": 8080, **change})) != template_hash(workload(http={"port": 8080}))


def test_the_service_flag_is_not_part_of_the_pod() -> None:
    with_service = workload(http={"port": 8080, "service": True})
    assert template_hash(with_service) == template_hash(workload(http={"port": 8080}))


@pytest.mark.parametrize("change", [
    {"replicas": 5},
    {"placement": {"spread": False, "rescheduleAfterSeconds": None}},
    {"updateStrategy": {"type": "Recreate"}},
])
def test_replicas_placement_and_strategy_do_not_change_the_hash(change: dict[str, Any]) -> None:
    assert template_hash(workload(**change)) == template_hash(workload())
