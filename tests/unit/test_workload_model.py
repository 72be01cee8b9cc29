"""The WasmWorkload model: defaults as the CRD's, and errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.api import workload as model
from wasmlet.api.workload import InvalidWorkload, parse_workload

CRD = Path(__file__).resolve().parents[2] / "crds" / "wasmworkloads.wasmlet.dev.yaml"
SHA = "0123456789abcdef" * 4


def body(**spec: Any) -> dict[str, Any]:
    spec.setdefault("module", {"image": "registry.local/hello:1"})
    return {
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmWorkload",
        "metadata": {"name": "hello", "namespace": "apps", "uid": "uid-1", "generation": 3},
        "spec": spec,
    }


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def test_a_minimal_workload_gets_every_default() -> None:
    w = parse_workload(body())
    assert (w.name, w.namespace, w.uid, w.generation) == ("hello", "apps", "uid-1", 3)
    spec = w.spec
    assert spec.replicas == 1
    assert spec.runtime == "wasmer"
    assert spec.restart_policy == "Always"
    assert spec.termination_grace_period_seconds == 30
    assert spec.network == "none"
    assert spec.placement == model.Placement(spread=True, reschedule_after_seconds=60)
    assert spec.update_strategy == model.UpdateStrategy("RollingUpdate", "25%", "25%")
    assert not spec.runs_to_completion


def test_the_models_defaults_are_the_crds_defaults() -> None:
    props = crd_spec_schema()["properties"]
    assert props["replicas"]["default"] == model.DEFAULT_REPLICAS
    assert props["runtime"]["default"] == "wasmer"
    assert props["restartPolicy"]["default"] == model.DEFAULT_RESTART_POLICY
    assert props["terminationGracePeriodSeconds"]["default"] == model.DEFAULT_GRACE_SECONDS
    assert props["network"]["default"] == model.DEFAULT_NETWORK
    placement = props["placement"]["properties"]
    assert placement["spread"]["default"] is True
    assert placement["rescheduleAfterSeconds"]["default"] == model.DEFAULT_RESCHEDULE_AFTER
    strategy = props["updateStrategy"]["properties"]
    assert strategy["type"]["default"] == "RollingUpdate"
    rolling = strategy["rollingUpdate"]["properties"]
    assert rolling["maxUnavailable"]["default"] == model.DEFAULT_MAX_UNAVAILABLE
    assert rolling["maxSurge"]["default"] == model.DEFAULT_MAX_SURGE


def test_the_model_knows_exactly_the_crds_spec_fields() -> None:
    assert set(model.SPEC_FIELDS) == set(crd_spec_schema()["properties"])


def test_module_reference_is_what_the_pod_image_says() -> None:
    assert parse_workload(body()).spec.module.reference == "registry.local/hello:1"
    url = parse_workload(body(module={"url": "https://m.example/a.wasm", "sha256": SHA})).spec.module
    assert (url.reference, url.digest) == ("https://m.example/a.wasm", f"sha256:{SHA}")
    cm = parse_workload(body(module={"configMap": {"name": "mods", "key": "a.wasm"}})).spec.module
    assert cm.reference == "configmap://mods/a.wasm"
    pinned = parse_workload(body(module={"image": f"reg/x@sha256:{SHA}"})).spec.module
    assert pinned.digest == f"sha256:{SHA}"


def test_explicit_null_reschedule_means_never() -> None:
    w = parse_workload(body(placement={"rescheduleAfterSeconds": None}))
    assert w.spec.placement.reschedule_after_seconds is None


def test_run_to_completion_policies() -> None:
    assert parse_workload(body(restartPolicy="Never")).spec.runs_to_completion
    assert parse_workload(body(restartPolicy="OnFailure")).spec.runs_to_completion


def test_env_volumes_and_tolerations_pass_through_as_copies() -> None:
    raw = body(
        env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        volumes=[{"name": "data", "emptyDir": {}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        tolerations=[{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
    )
    original = copy.deepcopy(raw)
    w = parse_workload(raw)
    assert w.spec.env[1]["valueFrom"]["secretKeyRef"]["key"] == "k"
    w.spec.env[0]["value"] = "changed"
    assert raw == original


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"module": {}}, "spec.module", "exactly one of image, url and configMap"),
    ({"module": {"image": "a", "url": "https://b", "sha256": SHA}}, "spec.module", "found image, url"),
    ({"module": {"url": "https://m/a.wasm"}}, "spec.module.sha256", "required with url"),
    ({"module": {"url": "https://m/a.wasm", "sha256": "ABC"}}, "spec.module.sha256", "64 lowercase hex"),
    ({"module": {"url": "ftp://m/a.wasm", "sha256": SHA}}, "spec.module.url", "http:// or https://"),
    ({"module": {"image": "a", "sha256": SHA}}, "spec.module.sha256", "only used with url"),
    ({"module": {"configMap": {"name": "x"}}}, "spec.module.configMap.key", "required"),
    ({"module": {"image": "a", "sha265": SHA}}, "spec.module.sha265", "unknown field"),
    ({"replicas": -1}, "spec.replicas", ">= 0"),
    ({"replicas": "2"}, "spec.replicas", "integer"),
    ({"replicas": True}, "spec.replicas", "integer"),
    ({"runtime": "wamr"}, "spec.runtime", "wasmer, wasmtime"),
    ({"restartPolicy": "Sometimes"}, "spec.restartPolicy", "Always, OnFailure, Never"),
    ({"network": "bridge"}, "spec.network", "none, host"),
    ({"args": ["ok", 3]}, "spec.args[1]", "string"),
    ({"env": [{"value": "x"}]}, "spec.env[0].name", "required"),
    ({"env": [{"name": "A"}, {"name": "A"}]}, "spec.env[1].name", "duplicate"),
    ({"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
     "spec.env[0]", "mutually exclusive"),
    ({"env": [{"name": "A", "valueFrom": {}}]}, "spec.env[0].valueFrom", "exactly one"),
    ({"volumes": [{"name": "v", "nfs": {}}]}, "spec.volumes[0]", "exactly one of configMap"),
    ({"volumes": [{"name": "v", "hostPath": {}}]}, "spec.volumes[0].hostPath.path", "required"),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "spec.volumeMounts[0].name", "no volume named"),
    ({"resources": {"limits": {"memory": 1.5}}}, "spec.resources.limits.memory", "quantity"),
    ({"resources": {"requests": {"memory": "64MB"}}}, "spec.resources.requests.memory", "quantity"),
    ({"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds", ">= 1"),
    ({"nodeSelector": {"kubernetes.io/arch": "amd64"}}, "spec.nodeSelector", "wasm32-wasi"),
    ({"nodeSelector": {"zone": 1}}, "spec.nodeSelector.zone", "string"),
    ({"tolerations": [{"operator": "Equal", "value": "x"}]}, "spec.tolerations[0].operator", "Exists"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "x"}]}, "spec.tolerations[0].value", "empty"),
    ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "spec.tolerations[0].effect", "NoSchedule"),
    ({"placement": {"spread": "yes"}}, "spec.placement.spread", "true or false"),
    ({"placement": {"rescheduleAfterSeconds": -5}}, "spec.placement.rescheduleAfterSeconds", ">= 0"),
    ({"updateStrategy": {"type": "Canary"}}, "spec.updateStrategy.type", "RollingUpdate, Recreate"),
    ({"updateStrategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     "spec.updateStrategy.rollingUpdate", "only be set when type is RollingUpdate"),
    ({"updateStrategy": {"rollingUpdate": {"maxSurge": "ten"}}},
     "spec.updateStrategy.rollingUpdate.maxSurge", "percentage"),
    ({"updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
     "spec.updateStrategy.rollingUpdate", "both be 0"),
    ({"replicaz": 2}, "spec.replicaz", "unknown field"),
])
def test_an_invalid_spec_names_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidWorkload) as caught:
        parse_workload(body(**spec))
    assert caught.value.field_path == field
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_metadata_and_kind_are_checked() -> None:
    with pytest.raises(InvalidWorkload, match=r"metadata\.name: is required"):
        parse_workload({"spec": {"module": {"image": "a"}}})
    with pytest.raises(InvalidWorkload, match="kind: must be WasmWorkload"):
        parse_workload({**body(), "kind": "Deployment"})
    with pytest.raises(InvalidWorkload, match=r"metadata\.name: must be at most 63"):
        parse_workload({**body(), "metadata": {"name": "x" * 64}})
    with pytest.raises(InvalidWorkload, match=r"spec\.module: is required"):
        parse_workload({"metadata": {"name": "x"}, "spec": {}})


def test_a_manifest_without_namespace_gets_the_default() -> None:
    raw = body()
    del raw["metadata"]["namespace"]
    assert parse_workload(raw, default_namespace="edge").namespace == "edge"
