"""manifests/10-runtimeclasses.yaml (rendered from the chart): one RuntimeClass per runtime the agent can offer, scheduling
onto the node label the agent sets and tolerating the taints it sets (docs/contract.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wasmlet.api import keys
from wasmlet.nodeagent.runtime import BACKENDS

from tests.fixtures.kubeapi_seed import runtime_class_manifests

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "10-runtimeclasses.yaml"


def runtime_classes() -> dict[str, dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    assert all(doc["apiVersion"] == "node.k8s.io/v1" and doc["kind"] == "RuntimeClass" for doc in docs)
    return {doc["metadata"]["name"]: doc for doc in docs}


def test_there_is_one_runtime_class_per_runtime_backend() -> None:
    assert sorted(runtime_classes()) == sorted(keys.RUNTIMES) == sorted(BACKENDS)


def test_each_runtime_class_is_handled_by_its_backend_on_the_nodes_that_offer_it() -> None:
    for name, runtime_class in runtime_classes().items():
        assert runtime_class["handler"] == name
        assert runtime_class["scheduling"]["nodeSelector"] == {keys.runtime_label(name): "true"}
        assert runtime_class["scheduling"]["tolerations"] == keys.wasm_tolerations()


def test_the_test_clusters_runtime_classes_schedule_as_the_manifest_does() -> None:
    for seeded in runtime_class_manifests(keys.RUNTIMES):
        shipped = runtime_classes()[seeded["metadata"]["name"]]
        assert seeded["handler"] == shipped["handler"]
        assert seeded["scheduling"]["nodeSelector"] == shipped["scheduling"]["nodeSelector"]
