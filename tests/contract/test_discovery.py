"""Discovery of the built-in resources our code uses, and the server version (behaviour 13)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.conftest import ContractClient


async def _resources(api: ContractClient, group_version: str) -> dict[str, dict[str, Any]]:
    path = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    status, listing = await api.request("GET", path)
    assert status == 200
    return {resource["name"]: resource for resource in listing["resources"]}


async def test_version_reports_a_current_kubernetes(api: ContractClient) -> None:
    status, version = await api.request("GET", "/version")
    assert status == 200 and version["major"] == "1" and int(version["minor"].rstrip("+")) >= 30
    assert version["gitVersion"].startswith("v1.")


async def test_pods_offer_status_binding_log_and_eviction(api: ContractClient) -> None:
    core = await _resources(api, "v1")
    assert (core["pods"]["kind"], core["pods"]["namespaced"]) == ("Pod", True)
    assert core["pods/binding"]["kind"] == "Binding" and core["pods/binding"]["verbs"] == ["create"]
    assert core["pods/status"]["kind"] == "Pod" and core["pods/log"]["verbs"] == ["get"]
    assert (core["pods/eviction"]["group"], core["pods/eviction"]["kind"]) == ("policy", "Eviction")


@pytest.mark.parametrize(
    ("group_version", "plural", "kind", "namespaced"),
    [
        ("v1", "namespaces", "Namespace", False),
        ("v1", "nodes", "Node", False),
        ("v1", "configmaps", "ConfigMap", True),
        ("v1", "secrets", "Secret", True),
        ("v1", "serviceaccounts", "ServiceAccount", True),
        ("v1", "services", "Service", True),
        ("v1", "events", "Event", True),
        ("v1", "endpoints", "Endpoints", True),
        ("events.k8s.io/v1", "events", "Event", True),
        ("coordination.k8s.io/v1", "leases", "Lease", True),
        ("node.k8s.io/v1", "runtimeclasses", "RuntimeClass", False),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
        ("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    ],
)
async def test_builtin_resources_are_discoverable(api: ContractClient, group_version: str, plural: str, kind: str,
                                                  namespaced: bool) -> None:
    resource = (await _resources(api, group_version))[plural]
    assert (resource["kind"], resource["namespaced"]) == (kind, namespaced)
    assert {"create", "get", "list", "watch", "patch", "delete"} <= set(resource["verbs"])


async def test_token_reviews_can_only_be_created(api: ContractClient) -> None:
    reviews = (await _resources(api, "authentication.k8s.io/v1"))["tokenreviews"]
    assert reviews["verbs"] == ["create"] and reviews["namespaced"] is False


async def test_nodes_and_namespaces_have_a_status_subresource(api: ContractClient) -> None:
    core = await _resources(api, "v1")
    assert set(core["nodes/status"]["verbs"]) == {"get", "patch", "update"}
    assert set(core["namespaces/status"]["verbs"]) == {"get", "patch", "update"}
