"""The WasmWorkload model: defaults as the CRD's, and errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.api import http
from wasmlet.api import workload as model
from wasmlet.api.http import HttpHandler
from wasmlet.api.workload import HttpSpec, InvalidWorkload, parse_workload

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
    assert spec.http is None
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
    handler = props["http"]["properties"]
    assert handler["path"]["default"] == http.DEFAULT_PATH
    assert handler["maxConcurrency"]["default"] == http.DEFAULT_MAX_CONCURRENCY
    assert handler["requestTimeoutSeconds"]["default"] == http.DEFAULT_REQUEST_TIMEOUT_SECONDS
    assert handler["maxBodyBytes"]["default"] == http.DEFAULT_MAX_BODY_BYTES
    assert handler["service"]["default"] is model.DEFAULT_HTTP_SERVICE


def test_the_crds_http_bounds_are_the_handler_contracts() -> None:
    """The API server rejects what the agent would reject in the Pod's annotation, and nothing more."""
    schema = crd_spec_schema()["properties"]["http"]
    assert schema["required"] == ["port"]
    assert set(schema["properties"]) == set(model.HTTP_FIELDS)
    bounds = {name: (node.get("minimum"), node.get("maximum")) for name, node in schema["properties"].items()
              if node["type"] == "integer"}
    assert bounds == {
        "port": (1, 65535),
        "maxConcurrency": (1, http.MAX_CONCURRENCY),
        "requestTimeoutSeconds": (1, http.MAX_REQUEST_TIMEOUT_SECONDS),
        "maxBodyBytes": (0, http.MAX_BODY_BYTES),
    }
    assert schema["properties"]["path"]["pattern"] == "^/"


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


def test_http_gets_the_handler_defaults_and_no_service() -> None:
    spec = parse_workload(body(http={"port": 8080})).spec
    assert spec.http == HttpSpec(handler=HttpHandler(port=8080, path="/", max_concurrency=32,
                                                     request_timeout_seconds=10, max_body_bytes=1024 * 1024),
                                 service=False)
    assert spec.http.port == 8080


def test_http_takes_every_field() -> None:
    spec = parse_workload(body(http={"port": 9000, "path": "/api", "maxConcurrency": 4, "requestTimeoutSeconds": 2,
                                     "maxBodyBytes": 0, "service": True})).spec
    assert spec.http == HttpSpec(HttpHandler(9000, "/api", 4, 2, 0), service=True)


def test_an_explicit_null_http_is_no_http() -> None:
    assert parse_workload(body(http=None)).spec.http is None


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
    ({"replicaz": 2, "runtim": "wasmer"}, "spec", "unknown fields replicaz, runtim (expected one of"),
    ({"http": {"port": 80, "sevrice": True, "pth": "/"}}, "spec.http", "unknown fields sevrice, pth"),
    ({"http": 8080}, "spec.http", "must be an object"),
    ({"http": {}}, "spec.http.port", "is required"),
    ({"http": {"port": 0}}, "spec.http.port", "between 1 and 65535, not 0"),
    ({"http": {"port": 65536}}, "spec.http.port", "between 1 and 65535"),
    ({"http": {"port": "8080"}}, "spec.http.port", "must be an integer, not '8080'"),
    ({"http": {"port": True}}, "spec.http.port", "must be an integer"),
    ({"http": {"port": 80, "path": "x"}}, "spec.http.path", "starting with /"),
    ({"http": {"port": 80, "path": 3}}, "spec.http.path", "starting with /"),
    ({"http": {"port": 80, "maxConcurrency": "many"}}, "spec.http.maxConcurrency", "must be an integer, not 'many'"),
    ({"http": {"port": 80, "maxConcurrency": 0}}, "spec.http.maxConcurrency", "between 1 and 10000"),
    ({"http": {"port": 80, "requestTimeoutSeconds": 3601}}, "spec.http.requestTimeoutSeconds", "between 1 and 3600"),
    ({"http": {"port": 80, "maxBodyBytes": -1}}, "spec.http.maxBodyBytes", "between 0 and"),
    ({"http": {"port": 80, "service": "yes"}}, "spec.http.service", "true or false"),
    ({"http": {"port": 80, "sevrice": True}}, "spec.http.sevrice", "unknown field"),
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


@pytest.mark.parametrize("name", ["1web", "web.v2", "web-"])
def test_a_service_needs_a_workload_name_that_is_a_service_name(name: str) -> None:
    raw = {**body(http={"port": 80, "service": True}), "metadata": {"name": name}}
    with pytest.raises(InvalidWorkload) as caught:
        parse_workload(raw)
    assert caught.value.field_path == "spec.http.service"
    assert f"{name!r} is not a Service name" in caught.value.message
    # Without a Service any WasmWorkload name will do.
    assert parse_workload({**raw, "spec": {**raw["spec"], "http": {"port": 80}}}).name == name


def test_a_manifest_without_namespace_gets_the_default() -> None:
    raw = body()
    del raw["metadata"]["namespace"]
    assert parse_workload(raw, default_namespace="edge").namespace == "edge"
