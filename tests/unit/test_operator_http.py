"""The operator's side of HTTP workloads, as pure parts: the Service a workload asks for and what to
do about the one that exists, the ports the Pod cache counts per node, and how a Service problem
shows in status and Events."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from wasmlet.api.podtemplate import build_pod, template_hash
from wasmlet.api.workload import WasmWorkload, parse_workload
from wasmlet.operator.cache import PodCache, ServiceCache
from wasmlet.operator.events import notices
from wasmlet.operator.exposure import (
    ServiceChange,
    ServiceConflict,
    desired_service,
    is_controlled_by,
    service_change,
)  # fmt: skip
from wasmlet.operator.status import Problems, workload_status

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
OWNER = {"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmWorkload", "name": "web", "uid": "u1",
         "controller": True, "blockOwnerDeletion": True}


def workload(uid: str | None = "u1", **spec: Any) -> WasmWorkload:
    spec.setdefault("module", {"image": "reg.local/web:1"})
    meta = {"name": "web", "namespace": "apps", "generation": 2, **({"uid": uid} if uid else {})}
    return parse_workload({"metadata": meta, "spec": spec})


def served(port: int = 8080, *, service: bool = True, uid: str | None = "u1") -> WasmWorkload:
    return workload(uid, http={"port": port, "service": service})


def stored(service: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """The Service as the API returns it: with uid, resourceVersion and the defaults it adds."""
    body = {**service, "metadata": {**service["metadata"], "uid": "svc-1", "resourceVersion": "7", **metadata}}
    body["spec"] = {**service["spec"], "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"],
                    "sessionAffinity": "None", "ipFamilies": ["IPv4"], "internalTrafficPolicy": "Cluster"}
    return body


def user_service(**metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "apps", "uid": "theirs", **metadata},
            "spec": {"selector": {"app": "legacy"}, "ports": [{"port": 80}]}}


# -- the Service ------------------------------------------------------------------------------


def test_the_service_selects_the_pods_and_targets_their_http_port() -> None:
    assert desired_service(served(8080)) == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "apps", "ownerReferences": [OWNER],
                     "labels": {"wasmlet.dev/workload": "web", "app.kubernetes.io/managed-by": "wasmlet"}},
        "spec": {"type": "ClusterIP", "selector": {"wasmlet.dev/workload": "web"},
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP",
                            "appProtocol": "http"}]},
    }
    # The Service's selector picks the Pods, and its targetPort names their port.
    service = desired_service(served(8080))
    pod = build_pod(served(8080), name="web-x", node_name="n")
    assert service is not None and service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["containers"][0]["ports"][0]["name"] == "http"


@pytest.mark.parametrize("spec", [{}, {"http": {"port": 8080}}, {"http": {"port": 8080, "service": False}}])
def test_no_service_is_wanted_unless_asked_for(spec: dict[str, Any]) -> None:
    assert desired_service(workload(**spec)) is None


def test_a_missing_service_is_created() -> None:
    change = service_change(served(), None)
    assert isinstance(change, ServiceChange) and change.verb == "create"
    assert change.body == desired_service(served())


def test_a_service_as_wanted_needs_nothing() -> None:
    assert service_change(served(), stored(desired_service(served()))) is None  # type: ignore[arg-type]


def test_a_changed_port_patches_the_ports_only() -> None:
    existing = stored(desired_service(served(8080)))  # type: ignore[arg-type]
    change = service_change(served(9090), existing)
    assert isinstance(change, ServiceChange) and change.verb == "patch"
    assert change.body == {"spec": {"ports": [{"name": "http", "port": 9090, "targetPort": "http",
                                               "protocol": "TCP", "appProtocol": "http"}]}}


def test_what_others_changed_of_our_fields_is_set_back_and_the_rest_kept() -> None:
    existing = stored(desired_service(served()))  # type: ignore[arg-type]
    existing["metadata"]["labels"] = {"team": "a"}  # a label someone added, ours removed
    existing["spec"]["selector"] = {"wasmlet.dev/workload": "web", "extra": "x"}
    existing["spec"]["type"] = "NodePort"
    change = service_change(served(), existing)
    assert isinstance(change, ServiceChange) and change.verb == "patch"
    assert change.body == {
        "metadata": {"labels": {"wasmlet.dev/workload": "web", "app.kubernetes.io/managed-by": "wasmlet"}},
        "spec": {"type": "ClusterIP", "selector": {"extra": None, "wasmlet.dev/workload": "web"}},
    }


@pytest.mark.parametrize("spec", [{"http": {"port": 8080, "service": False}}, {}])
def test_our_service_is_deleted_when_no_longer_wanted(spec: dict[str, Any]) -> None:
    existing = stored(desired_service(served()))  # type: ignore[arg-type]
    change = service_change(workload(**spec), existing)
    assert isinstance(change, ServiceChange) and change.verb == "delete"
    assert change.body["metadata"]["uid"] == "svc-1"  # the precondition: only this very Service
    assert change.why == ("spec.http.service is false" if spec else "spec.http is not set")


@pytest.mark.parametrize("metadata", [
    {},
    {"ownerReferences": [{**OWNER, "controller": False}]},
    {"ownerReferences": [{**OWNER, "uid": "u0"}]},  # a deleted workload of the same name
    {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1",
                          "controller": True}]},
])
def test_someone_elses_service_is_never_touched(metadata: dict[str, Any]) -> None:
    theirs = user_service(**metadata)
    assert not is_controlled_by(theirs, served())
    conflict = service_change(served(), theirs)
    assert isinstance(conflict, ServiceConflict)
    assert conflict.message.startswith("service apps/web exists and is ")
    assert "left alone" in conflict.message and "spec.http.service" in conflict.message
    # Not wanted: nothing to do either, and above all no delete.
    assert service_change(served(service=False), theirs) is None
    assert service_change(workload(), theirs) is None


def test_the_conflict_names_the_owner() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy", "uid": "d1", "controller": True}
    conflict = service_change(served(), user_service(ownerReferences=[deployment]))
    assert isinstance(conflict, ServiceConflict) and "controlled by Deployment legacy" in conflict.message
    stale = service_change(served(), user_service(ownerReferences=[{**OWNER, "uid": "u0"}]))
    assert isinstance(stale, ServiceConflict) and "until garbage collection removes it" in stale.message


def test_a_service_being_deleted_is_waited_for() -> None:
    going = stored(desired_service(served()), deletionTimestamp="2025-01-01T11:00:00Z")  # type: ignore[arg-type]
    assert service_change(served(9090), going) is None
    assert service_change(served(service=False), going) is None


def test_without_a_uid_ownership_goes_by_name() -> None:
    mine = stored(desired_service(served()))  # type: ignore[arg-type]
    assert is_controlled_by(mine, served(uid=None))
    assert "ownerReferences" not in desired_service(served(uid=None))["metadata"]  # type: ignore[index]


# -- the caches -------------------------------------------------------------------------------


def pod(name: str, node: str | None, *, ports: list[dict[str, Any]] | None = None, workload_label: bool = True,
        phase: str = "Running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "apps", "uid": f"uid-{name}", "resourceVersion": "1"}
    if workload_label:
        meta["labels"] = {"wasmlet.dev/workload": "web"}
    container: dict[str, Any] = {"name": "main"}
    if ports is not None:
        container["ports"] = ports
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [container]}, "status": {"phase": phase}}


def test_the_pod_cache_counts_the_ports_each_node_holds() -> None:
    cache = PodCache()
    cache.replace([
        pod("a", "n1", ports=[{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        pod("hand-written", "n1", ports=[{"containerPort": 9000}], workload_label=False),
        pod("udp", "n2", ports=[{"containerPort": 53, "protocol": "UDP"}], workload_label=False),
        pod("done", "n2", ports=[{"containerPort": 8080}], phase="Succeeded"),
        pod("unbound", None, ports=[{"containerPort": 7000}]),
    ])
    assert cache.node_ports() == {"n1": frozenset({8080, 9000})}  # finished Pods hold no port, UDP is not claimed
    cache.delete(pod("a", "n1"))
    assert cache.node_ports() == {"n1": frozenset({9000})}


def test_slim_pods_of_other_workloads_keep_their_ports() -> None:
    cache = PodCache()
    cache.upsert(pod("foreign", "n1", ports=[{"containerPort": 9000}], workload_label=False))
    assert cache.get("apps", "foreign")["spec"]["containers"] == [  # type: ignore[index]
        {"resources": {}, "ports": [{"containerPort": 9000}]}]


def test_placed_pods_hold_their_ports_until_created() -> None:
    cache = PodCache()
    cache.reserve("n1", 0, {8080})
    cache.reserve("n1", 0, {8080})
    cache.reserve("n2", 0)
    assert cache.node_ports() == {"n1": frozenset({8080})}
    cache.unreserve("n1", 0, {8080})
    assert cache.node_ports() == {"n1": frozenset({8080})}  # the other placement still holds it
    cache.unreserve("n1", 0, {8080})
    cache.unreserve("n2", 0)
    assert cache.node_ports() == {}


def test_services_a_workload_does_not_control_are_kept_as_names() -> None:
    cache = ServiceCache()
    mine = stored(desired_service(served()))  # type: ignore[arg-type]
    cache.replace([mine, user_service(name="legacy", annotations={"big": "x" * 1000}, resourceVersion="3")])
    assert cache.get("apps", "web") == mine
    assert cache.get("apps", "legacy") == {"metadata": {"name": "legacy", "namespace": "apps", "uid": "theirs",
                                                        "resourceVersion": "3"}}


# -- status and events ------------------------------------------------------------------------


def test_a_service_problem_makes_ready_false_with_its_reason() -> None:
    w = served()
    problem = ("ServiceConflict", "service apps/web exists and is not controlled by this WasmWorkload; "
                                  "it is left alone")
    status = workload_status(w, [], template_hash(w), problems=Problems(service=problem), now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ServiceConflict", problem[1])
    # Replica counting goes on as usual (the Ready column counts replicas; the Reason column says why).
    assert status["readyText"] == "0/1"
    [warning] = notices(None, status)
    assert (warning.type, warning.reason, warning.message) == ("Warning", "ServiceConflict", problem[1])
    assert notices(status, status) == []  # said once, not on every pass
