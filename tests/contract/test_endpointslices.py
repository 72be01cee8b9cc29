"""EndpointSlices of selecting Services, as kube-controller-manager keeps them (behaviour 14).

wasm Pods report their Node's IP as `status.podIP` and serve on their containerPort there; a
Service reaches them only through the slices tested here. On a real cluster no kubelet runs on
the contract Nodes, so the statuses the tests write stay as written (for the minute the Node
lifecycle controller leaves a Node that never reported before marking its Pods not ready).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.contract.builders import backend_pod, node, running_status, service
from tests.contract.conftest import ContractClient, eventually

SLICES = "discovery.k8s.io/v1"
MANAGED_BY = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
WEB = {"app": "web"}
HTTP = {"name": "http", "containerPort": 8080}
# TEST-NET-3 addresses: valid endpoint IPs that route nowhere.
IP_A, IP_B, IP_C = "203.0.113.10", "203.0.113.11", "203.0.113.12"


async def _node(api: ContractClient, *, create: bool = True) -> str:
    name = api.unique("contract-eps")
    api.owns("v1", "nodes", name)
    if create:
        await api.create("v1", "nodes", None, node(name))
    return name


async def _start(api: ContractClient, name: str, node_name: str, ip: str | None, *, ready: bool = True,
                 labels: dict[str, str] = WEB, ports: tuple[dict[str, Any], ...] = (HTTP,)) -> dict[str, Any]:  # fmt: skip
    created = await api.create("v1", "pods", api.namespace, backend_pod(name, node_name, labels, *ports))
    await api.patch("v1", "pods", api.namespace, name, {"status": running_status(ip, ready=ready)}, subresource="status")
    return dict(created)


async def _slices(api: ContractClient, svc: str) -> list[dict[str, Any]]:
    params = {"labelSelector": f"kubernetes.io/service-name={svc}"}
    return list((await api.list(SLICES, "endpointslices", api.namespace, params=params))["items"])


def _endpoints(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The endpoints of all slices by the name of their Pod."""
    return {ep["targetRef"]["name"]: ep for s in slices for ep in s.get("endpoints") or []}


async def _until(api: ContractClient, svc: str, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The Service's slices once `predicate` holds for them (the test fails with the last ones seen)."""
    seen: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal seen
        seen = await _slices(api, svc)
        return predicate(seen)

    assert await eventually(check), f"the slices of {svc} never got there: {seen}"
    return seen


def _conditions(slices: list[dict[str, Any]], pod: str) -> dict[str, Any] | None:
    endpoint = _endpoints(slices).get(pod)
    return endpoint["conditions"] if endpoint else None


async def test_a_ready_pod_is_listed_as_ready_at_its_resolved_port(api: ContractClient) -> None:
    node_name = await _node(api)
    port = {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}
    svc = await api.create("v1", "services", api.namespace, {**service("web", WEB, port), "metadata": {"name": "web",
                                                                                                       "labels": {"tier": "front"}}})
    pod = await _start(api, "p", node_name, IP_A)
    [listed] = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    meta = listed["metadata"]
    assert meta["name"].startswith("web-") and meta["generateName"] == "web-"
    assert meta["labels"] == {"tier": "front", "kubernetes.io/service-name": "web", **MANAGED_BY}
    owner = {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": svc["metadata"]["uid"], "controller": True,
             "blockOwnerDeletion": True}
    assert meta["ownerReferences"] == [owner]
    assert listed["addressType"] == "IPv4"
    assert listed["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"}]
    assert listed["endpoints"] == [{
        "addresses": [IP_A],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": api.namespace, "name": "p", "uid": pod["metadata"]["uid"]},
        "nodeName": node_name,
    }]  # fmt: skip


async def test_a_pod_that_is_not_ready_is_listed_as_neither_ready_nor_serving(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A, ready=False)
    slices = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert _conditions(slices, "p") == {"ready": False, "serving": False, "terminating": False}
    assert slices[0]["ports"] == [{"name": "", "protocol": "TCP", "port": 80}]  # targetPort defaults to port


async def test_publish_not_ready_addresses_lists_a_pod_that_is_not_ready_as_ready(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB, publishNotReadyAddresses=True))
    await _start(api, "p", node_name, IP_A, ready=False)
    slices = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert _conditions(slices, "p") == {"ready": True, "serving": False, "terminating": False}


async def test_pods_without_an_ip_or_outside_the_selector_are_not_listed(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "no-ip", node_name, None, ready=False)
    await _start(api, "other", node_name, IP_B, labels={"app": "other"})
    await _start(api, "p", node_name, IP_A)
    # Every sync lists all the Service's Pods: once the last one is in, the others were seen too.
    slices = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert set(_endpoints(slices)) == {"p"}


async def test_a_pod_relabelled_out_of_the_selector_leaves(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    await api.patch("v1", "pods", api.namespace, "p", {"metadata": {"labels": {"app": "elsewhere"}}})
    await _until(api, "web", lambda slices: not _endpoints(slices))


async def test_a_pod_that_finished_is_dropped(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    finished = {**running_status(IP_A, ready=False), "phase": "Succeeded"}
    await api.patch("v1", "pods", api.namespace, "p", {"status": finished}, subresource="status")
    await _until(api, "web", lambda slices: not _endpoints(slices))


async def test_a_named_target_port_resolves_per_pod_into_slices_by_port(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB, {"name": "web", "port": 80, "targetPort": "http"}))
    await _start(api, "a", node_name, IP_A, ports=({"name": "http", "containerPort": 8080},))
    await _start(api, "b", node_name, IP_B, ports=({"name": "http", "containerPort": 9090},))
    await _start(api, "c", node_name, IP_C, ports=({"name": "metrics", "containerPort": 9100},))
    slices = await _until(api, "web", lambda slices: set(_endpoints(slices)) == {"a", "b", "c"})
    by_port = {
        tuple(port["port"] for port in s["ports"] or []): sorted(ep["targetRef"]["name"] for ep in s["endpoints"] or []) for s in slices
    }
    # A Pod without the named port still gets in, in a slice without ports (kubectl: `<unset>`).
    assert by_port == {(8080,): ["a"], (9090,): ["b"], (): ["c"]}
    assert [s["ports"] for s in slices if not s["ports"]] == [None]


async def test_a_deleted_pod_is_terminating_until_it_is_gone(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    [before] = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    await api.delete("v1", "pods", api.namespace, "p")  # bound: only marked, until its kubelet lets go
    slices = await _until(api, "web", lambda slices: (_conditions(slices, "p") or {}).get("terminating") is True)
    assert _conditions(slices, "p") == {"ready": False, "serving": True, "terminating": True}
    await api.delete("v1", "pods", api.namespace, "p", params={"gracePeriodSeconds": 0})
    [after] = await _until(api, "web", lambda slices: not _endpoints(slices))
    # The emptied slice stays as the Service's placeholder, under the same name.
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert (after["endpoints"], after["ports"]) == (None, None)


async def test_a_service_without_pods_has_one_empty_placeholder_slice(api: ContractClient) -> None:
    await api.create("v1", "services", api.namespace, service("web", WEB))
    [placeholder] = await _until(api, "web", lambda slices: len(slices) == 1)
    assert (placeholder["addressType"], placeholder["endpoints"], placeholder["ports"]) == ("IPv4", None, None)
    assert placeholder["metadata"]["labels"] == {"kubernetes.io/service-name": "web", **MANAGED_BY}


async def test_a_service_without_a_selector_gets_no_managed_slices(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("manual", None))
    await _start(api, "p", node_name, IP_A)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert await _slices(api, "manual") == []


async def test_deleting_the_service_deletes_its_slices(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    await api.delete("v1", "services", api.namespace, "web")
    await _until(api, "web", lambda slices: slices == [])


async def test_a_slice_deleted_by_someone_else_comes_back(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    [listed] = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    await api.delete(SLICES, "endpointslices", api.namespace, listed["metadata"]["name"])
    [restored] = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert restored["metadata"]["name"] != listed["metadata"]["name"]


async def test_slices_are_rewritten_only_when_their_endpoints_change(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "p", node_name, IP_A)
    [listed] = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    params = {"labelSelector": "kubernetes.io/service-name=web", "resourceVersion": listed["metadata"]["resourceVersion"]}
    async with api.watch(SLICES, "endpointslices", api.namespace, params=params) as events:
        # Neither an annotation nor a status message changes an endpoint; readiness does.
        await api.patch("v1", "pods", api.namespace, "p", {"metadata": {"annotations": {"note": "nothing"}}})
        await api.patch("v1", "pods", api.namespace, "p", {"status": {"message": "nothing either"}}, subresource="status")
        await api.patch("v1", "pods", api.namespace, "p", {"status": running_status(IP_A, ready=False)}, subresource="status")
        event = await events.next(timeout=10)
    assert event is not None and event["type"] == "MODIFIED"
    assert _conditions([event["object"]], "p") == {"ready": False, "serving": False, "terminating": False}
    assert event["object"]["metadata"]["generation"] == listed["metadata"]["generation"] + 1


async def test_a_pod_on_a_missing_node_is_left_out_until_the_node_exists(api: ContractClient) -> None:
    node_name, missing = await _node(api), await _node(api, create=False)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _start(api, "lost", missing, IP_B)
    await _start(api, "p", node_name, IP_A)
    slices = await _until(api, "web", lambda slices: "p" in _endpoints(slices))
    assert set(_endpoints(slices)) == {"p"}
    why = f"skipping Pod lost for Service {api.namespace}/web: Node {missing} Not Found"

    async def warned() -> bool:
        return any(why in warning["message"] for warning in await _warnings(api, "web"))

    assert await eventually(warned)
    await api.create("v1", "nodes", None, node(missing))  # the controller retries with backoff from 1 s
    await _until(api, "web", lambda slices: set(_endpoints(slices)) == {"lost", "p"})


async def test_a_loopback_pod_ip_never_reaches_a_slice(api: ContractClient) -> None:
    node_name = await _node(api)
    await api.create("v1", "services", api.namespace, service("web", WEB))
    await _until(api, "web", lambda slices: len(slices) == 1)
    await _start(api, "p", node_name, "127.0.0.1")
    # EndpointSlice validation refuses loopback addresses: the write fails, the Service is told.
    warnings = await eventually(lambda: _warnings(api, "web"))
    assert warnings and "may not be in the loopback range (127.0.0.0/8, ::1/128)" in warnings[0]["message"]
    assert warnings[0]["source"]["component"] == "endpoint-slice-controller"
    assert _endpoints(await _slices(api, "web")) == {}


async def _warnings(api: ContractClient, svc: str) -> list[dict[str, Any]]:
    params = {"fieldSelector": f"involvedObject.name={svc},reason=FailedToUpdateEndpointSlices"}
    events = (await api.list("v1", "events", api.namespace, params=params))["items"]
    return [event for event in events if event["type"] == "Warning"]
