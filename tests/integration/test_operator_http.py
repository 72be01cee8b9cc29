"""HTTP workloads (`spec.http`, docs/http.md), the operator's side, against the test Kubernetes API
over HTTP: the Pods carry the port and the handler annotation, `service: true` gives a Service the
workload owns (and only ever touches its own), no two Pods that need one port share a node, and a
malformed `spec.http` is named field by field while the operator serves on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wasmlet.api import keys
from wasmlet.kube import KubeClient
from wasmlet.kube.resources import PODS, SERVICES, WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeapi import kube_api as kube_api  # the fixture, until tests/fixtures/plugin.py registers it
from tests.integration.operator_helpers import (
    NS,
    condition,
    events_of,
    eventually,
    free_port,
    health,
    live_pods,
    make_ready,
    pods_count,
    running_operator,
    wait_workload,
    wasm_node,
    workload,
)  # fmt: skip
from tests.integration.operator_helpers import api as api  # the fixture

PORTS_MESSAGE = "node(s) didn't have free ports for the requested pod ports"


def http_workload(name: str, port: int, **http: Any) -> dict[str, Any]:
    return workload(name, http={"port": port, **http})


async def service_of(kube_api: KubeAPI, name: str, predicate: Any = lambda svc: svc is not None,
                     *, timeout: float = 10.0) -> dict[str, Any] | None:
    """The Service `name` once `predicate(Service or None)` holds."""
    return await kube_api.wait_for("v1", "Service", NS, name, predicate, timeout=timeout)


def user_service(name: str) -> dict[str, Any]:
    """A Service someone wrote by hand, before the workload asked for one of that name."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"type": "ClusterIP", "selector": {"app": "legacy"}, "ports": [{"name": "web", "port": 80}]}}


async def test_the_pods_of_an_http_workload_carry_the_port_and_the_handler(kube_api: KubeAPI,
                                                                          api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, http_workload("hello", 8080, path="/api"), NS)
        [pod] = await eventually(lambda: pods_count(api, "hello", 1), what="the http pod")
        [container] = pod["spec"]["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]
        handler = json.loads(pod["metadata"]["annotations"][keys.http_annotation("main")])
        # The CRD's defaults fill in what the spec left out; the agent reads exactly this.
        assert handler == {"port": 8080, "path": "/api", "maxConcurrency": 32, "requestTimeoutSeconds": 10,
                           "maxBodyBytes": 1048576}
        body = await wait_workload(kube_api, "hello", lambda b: bool(b.get("status")))
        assert body["spec"]["http"]["service"] is False
        assert kube_api.get("v1", "Service", NS, "hello") is None  # no Service unless asked for



async def test_a_rolling_update_on_one_node_says_how_to_make_room_for_the_port(kube_api: KubeAPI,
                                                                             api: KubeClient) -> None:
    """The new replica cannot surge next to the old one, which holds the port (as for Deployments
    with a hostPort): the condition says so and how to fix it, and the DaemonSet-like strategy works."""
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, http_workload("hello", 8080), NS)
        [old] = await eventually(lambda: pods_count(api, "hello", 1), what="the http pod")
        await make_ready(api, old)

        # A new handler setting is a new Pod template; the default maxSurge (25%) wants a new Pod first.
        await api.patch(WASM_WORKLOADS, "hello", {"spec": {"http": {"maxConcurrency": 4}}}, NS)
        body = await wait_workload(kube_api, "hello",
                                   lambda b: condition(b, "Progressing").get("reason") == "Unschedulable")
        message = condition(body, "Progressing")["message"]
        assert message.startswith(f"1 of 1 replica(s) cannot be placed: 0/1 nodes are available: 1 {PORTS_MESSAGE}. ")
        assert "maxSurge: 0, maxUnavailable: 1" in message and "Recreate" in message
        assert [p["metadata"]["name"] for p in await live_pods(api, "hello")] == [old["metadata"]["name"]]

        await api.patch(WASM_WORKLOADS, "hello", {"spec": {"updateStrategy": {
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}}, NS)
        await kube_api.wait_for("v1", "Pod", NS, old["metadata"]["name"],
                                lambda p: p is None or bool(p["metadata"].get("deletionTimestamp")))
        # The old replica stops and frees the port (the agent's final delete); the new one takes it.
        await api.delete(PODS, old["metadata"]["name"], NS, grace_period_seconds=0)
        [new] = await eventually(lambda: pods_count(api, "hello", 1), what="a pod of the new template")
        assert new["metadata"]["name"] != old["metadata"]["name"] and new["spec"]["nodeName"] == "wasm-1"
        assert json.loads(new["metadata"]["annotations"]["wasmlet.dev/http.main"])["maxConcurrency"] == 4


async def test_a_service_is_created_owned_kept_in_line_and_deleted(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        created = await api.create(WASM_WORKLOADS, http_workload("web", 8080, service=True), NS)
        service = await service_of(kube_api, "web")
        assert service is not None
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"] == {keys.LABEL_WORKLOAD: "web"}
        assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP",
                                             "appProtocol": "http"}]
        assert service["metadata"]["labels"] == {keys.LABEL_WORKLOAD: "web", keys.LABEL_MANAGED_BY: "wasmlet"}
        assert service["metadata"]["ownerReferences"] == [{
            "apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND, "name": "web",
            "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
        [pod] = await eventually(lambda: pods_count(api, "web", 1), what="the pod behind the service")
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        await make_ready(api, pod)
        await wait_workload(kube_api, "web", lambda b: condition(b).get("reason") == "AllReplicasReady")

        # A new port: the Service follows.
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": {"port": 9090}}}, NS)
        service = await service_of(kube_api, "web", lambda s: s is not None and s["spec"]["ports"][0]["port"] == 9090)
        assert service is not None and service["spec"]["ports"][0]["targetPort"] == "http"

        # Someone edits or deletes it: it is set back, or made again.
        await api.patch(SERVICES, "web", {"spec": {"selector": {"app": "other"}}}, NS)
        selects_the_pods = {keys.LABEL_WORKLOAD: "web"}
        await service_of(kube_api, "web", lambda s: s is not None and s["spec"]["selector"] == selects_the_pods)
        uid = service["metadata"]["uid"]
        await api.delete(SERVICES, "web", NS)
        await service_of(kube_api, "web", lambda s: s is not None and s["metadata"]["uid"] != uid)

        # service: false → the Service goes; the Pods stay (the flag is not part of the Pod template).
        pods_before = {p["metadata"]["name"] for p in await live_pods(api, "web")}
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": {"service": False}}}, NS)
        await service_of(kube_api, "web", lambda s: s is None)
        assert {p["metadata"]["name"] for p in await live_pods(api, "web")} == pods_before
        reasons = [(reason, message) for _, reason, message in await events_of(api, "web")]
        assert ("SuccessfulCreate", "Created service: web (port 8080)") in reasons
        assert ("SuccessfulDelete", "Deleted service: web (spec.http.service is false)") in reasons
        assert any(r == "SuccessfulUpdate" and m.startswith("Updated service: web (port 9090") for r, m in reasons)

        # Asked for again, then the workload is deleted: garbage collection takes the Service along.
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": {"service": True}}}, NS)
        await service_of(kube_api, "web")
        await api.delete(WASM_WORKLOADS, "web", NS)
        await service_of(kube_api, "web", lambda s: s is None)


async def test_removing_http_removes_the_service_and_the_port(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, http_workload("web", 8080, service=True), NS)
        await service_of(kube_api, "web")
        await eventually(lambda: pods_count(api, "web", 1), what="the http pod")
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": None}}, NS)
        await service_of(kube_api, "web", lambda s: s is None)
        await eventually(lambda: _pods_without_ports(api, "web"), what="a pod without the port")


async def _pods_without_ports(api: KubeClient, name: str) -> bool:
    """A replica of the new template: neither the port nor the handler annotation."""
    return any("ports" not in p["spec"]["containers"][0]
               and keys.http_annotation("main") not in (p["metadata"].get("annotations") or {})
               for p in await live_pods(api, name))


async def test_a_service_the_user_owns_is_left_alone_and_named(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    theirs = kube_api.put(user_service("web"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, http_workload("web", 8080, service=True), NS)
        body = await wait_workload(kube_api, "web", lambda b: condition(b).get("reason") == "ServiceConflict")
        ready = condition(body)
        assert ready["status"] == "False"
        assert ready["message"] == (f"service {NS}/web exists and is not controlled by this WasmWorkload; "
                                    "it is left alone "
                                    "(delete or rename that Service, or set spec.http.service to false)")
        assert ("Warning", "ServiceConflict", ready["message"]) in await events_of(api, "web")
        # The replicas run all the same: only the Service is missing.
        [pod] = await eventually(lambda: pods_count(api, "web", 1), what="the pod")
        await make_ready(api, pod)
        body = await wait_workload(kube_api, "web", lambda b: b["status"].get("readyReplicas") == 1)
        assert condition(body)["reason"] == "ServiceConflict"
        assert kube_api.get("v1", "Service", NS, "web") == theirs  # not one byte changed

        # Not wanted any more: the user's Service is still not the operator's to delete.
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": {"service": False}}}, NS)
        body = await wait_workload(kube_api, "web", lambda b: condition(b).get("reason") == "AllReplicasReady")
        assert kube_api.get("v1", "Service", NS, "web") == theirs

        # Wanted again, and the user removes theirs: the name is free, the workload's Service comes.
        await api.patch(WASM_WORKLOADS, "web", {"spec": {"http": {"service": True}}}, NS)
        await wait_workload(kube_api, "web", lambda b: condition(b).get("reason") == "ServiceConflict")
        await api.delete(SERVICES, "web", NS)
        service = await service_of(kube_api, "web", lambda s: s is not None and s["metadata"].get("ownerReferences"))
        assert service is not None and service["spec"]["selector"] == {keys.LABEL_WORKLOAD: "web"}
        await wait_workload(kube_api, "web", lambda b: condition(b).get("reason") == "AllReplicasReady")


async def test_two_workloads_that_need_one_port_never_share_a_node(kube_api: KubeAPI, api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, http_workload("first", 8080), NS)
        [first] = await eventually(lambda: pods_count(api, "first", 1), what="the first workload's pod")
        assert first["spec"]["nodeName"] == "wasm-1"
        await api.create(WASM_WORKLOADS, http_workload("second", 8080), NS)
        await api.create(WASM_WORKLOADS, http_workload("other-port", 8081), NS)

        body = await wait_workload(kube_api, "second", lambda b: condition(b).get("reason") == "Unschedulable")
        assert condition(body)["message"] == (f"1 of 1 replica(s) cannot be placed: 0/1 nodes are available: "
                                              f"1 {PORTS_MESSAGE}.")
        assert condition(body, "Progressing")["reason"] == "Unschedulable"
        assert await live_pods(api, "second") == []
        [other] = await eventually(lambda: pods_count(api, "other-port", 1), what="a pod on another port")
        assert other["spec"]["nodeName"] == "wasm-1"  # another port shares the node

        # A second wasm node registers: it takes the replica that had nowhere to go.
        kube_api.put(wasm_node("wasm-2"))
        [second] = await eventually(lambda: pods_count(api, "second", 1), what="the second workload placed")
        assert second["spec"]["nodeName"] == "wasm-2"
        await wait_workload(kube_api, "second", lambda b: condition(b, "Progressing").get("reason") != "Unschedulable")


async def test_replicas_that_need_a_port_spread_one_per_node_and_wait_for_room(kube_api: KubeAPI,
                                                                              api: KubeClient) -> None:
    kube_api.seed_namespace(NS)
    for name in ("wasm-1", "wasm-2"):
        kube_api.put(wasm_node(name))
    # A Pod written by hand, bound to wasm-1, holds port 7000 there.
    kube_api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "by-hand", "namespace": NS},
                  "spec": {"nodeName": "wasm-1", "runtimeClassName": "wasmer",
                           "containers": [{"name": "main", "image": "registry.local/hand:1",
                                           "ports": [{"containerPort": 7000}]}]}})
    async with running_operator(kube_api):
        await api.create(WASM_WORKLOADS, workload("wide", replicas=3, http={"port": 7000}), NS)
        body = await wait_workload(kube_api, "wide", lambda b: condition(b).get("reason") == "Unschedulable")
        assert condition(body)["message"] == (f"2 of 3 replica(s) cannot be placed: 0/2 nodes are available: "
                                              f"2 {PORTS_MESSAGE}.")
        [pod] = await live_pods(api, "wide")
        assert pod["spec"]["nodeName"] == "wasm-2"

        # The hand-written Pod goes: its port is free, and the waiting workload takes it.
        await api.delete(PODS, "by-hand", NS, grace_period_seconds=0)
        pods = await eventually(lambda: pods_count(api, "wide", 2), what="a replica where the port was freed")
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["wasm-1", "wasm-2"]


@pytest.mark.parametrize(("http", "field", "words"), [
    ({"port": 0}, "spec.http.port", "must be between 1 and 65535, not 0"),
    ({"port": 8080, "path": "x"}, "spec.http.path", "must be a string starting with /"),
    ({"port": 8080, "maxConcurrency": "many"}, "spec.http.maxConcurrency", "must be an integer, not 'many'"),
])
async def test_a_malformed_http_spec_names_the_field_and_the_operator_serves_on(
        kube_api: KubeAPI, api: KubeClient, http: dict[str, Any], field: str, words: str) -> None:
    """A real API server's schema rejects these; the test API has no type checks, so this shows
    what the operator does with whatever gets past admission (a manifest from an older CRD, say)."""
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    async with running_operator(kube_api, liveness_endpoint=liveness):
        await api.create(WASM_WORKLOADS, workload("bad", http=http), NS)
        await api.create(WASM_WORKLOADS, http_workload("fine", 8080, service=True), NS)
        body = await wait_workload(kube_api, "bad", lambda b: condition(b).get("reason") == "InvalidSpec")
        message = condition(body)["message"]
        assert message == f"invalid spec: {field}: {words}"
        assert condition(body, "Progressing")["reason"] == "InvalidSpec"
        assert ("Warning", "InvalidSpec", message) in await events_of(api, "bad")
        assert await live_pods(api, "bad") == []

        # The operator is healthy and serves the other workload.
        await eventually(lambda: pods_count(api, "fine", 1), what="the healthy workload's pod")
        await service_of(kube_api, "fine")
        report = await eventually(lambda: health(liveness), what="the liveness report")
        assert report["wasmlet"]["active"] is True

        # Fixed, it runs (on another port: the healthy workload holds 8080 on the only node).
        await api.patch(WASM_WORKLOADS, "bad", {"spec": {"http": {"port": 9000, "path": "/", "maxConcurrency": 8}}},
                        NS)
        await eventually(lambda: pods_count(api, "bad", 1), what="a pod once spec.http is fixed")
