"""Placement (which node) and planning (how many, which Pods go), as pure functions."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from wasmlet.api.podtemplate import build_pod, template_hash
from wasmlet.api.workload import WasmWorkload, parse_workload
from wasmlet.operator import objects, planning
from wasmlet.operator.placement import place, rejection

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
WASM_TAINTS = [{"key": "kubernetes.io/arch", "value": "wasm32-wasi", "effect": e} for e in ("NoSchedule", "NoExecute")]


def node(name: str, *, ready: bool = True, runtimes: tuple[str, ...] = ("wasmer",),
         labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         pods: int | None = 110, unschedulable: bool = False, agent: bool = True,
         since: datetime.datetime | None = None) -> dict[str, Any]:
    all_labels = {"kubernetes.io/arch": "wasm32-wasi", **(labels or {})}
    if agent:
        all_labels["wasmlet.dev/agent"] = "true"
    all_labels.update({f"wasmlet.dev/runtime.{r}": "true" for r in runtimes})
    ready_condition = {"type": "Ready", "status": "True" if ready else "Unknown"}
    if since:
        ready_condition["lastTransitionTime"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"conditions": [ready_condition]}
    if pods is not None:
        status["allocatable"] = {"pods": str(pods)}
    return {"metadata": {"name": name, "labels": all_labels},
            "spec": {"taints": WASM_TAINTS + (taints or []), "unschedulable": unschedulable}, "status": status}


def workload(**spec: Any) -> WasmWorkload:
    spec.setdefault("module", {"image": "reg.local/app:1"})
    return parse_workload({"metadata": {"name": "app", "namespace": "ns", "uid": "u1"}, "spec": spec})


def pod_spec(w: WasmWorkload) -> dict[str, Any]:
    return dict(build_pod(w, name="", node_name=None)["spec"])


def pod(w: WasmWorkload, name: str, node_name: str, *, phase: str = "Running", ready: bool = True,
        hash: str | None = None, terminating: bool = False, created: int = 0) -> dict[str, Any]:
    body = build_pod(w, name=name, node_name=node_name)
    body["metadata"]["uid"] = f"uid-{name}"
    body["metadata"]["creationTimestamp"] = f"2025-01-01T10:{created:02d}:00Z"
    if hash is not None:
        body["metadata"]["labels"]["wasmlet.dev/template-hash"] = hash
    if terminating:
        body["metadata"]["deletionTimestamp"] = "2025-01-01T11:00:00Z"
    body["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return body


# -- placement -------------------------------------------------------------------------------


def test_replicas_spread_over_nodes_then_least_loaded() -> None:
    nodes = [node("a"), node("b"), node("c")]
    result = place(4, pod_spec(workload()), nodes, load={"a": 5, "b": 0, "c": 1}, replicas_on={})
    assert result.nodes == ("b", "c", "a", "b")
    assert result.unplaced == 0


def test_spreading_counts_the_workloads_existing_replicas() -> None:
    nodes = [node("a"), node("b")]
    result = place(1, pod_spec(workload()), nodes, load={"a": 1, "b": 9}, replicas_on={"a": 1})
    assert result.nodes == ("b",)


def test_without_spread_the_least_loaded_node_wins() -> None:
    nodes = [node("a", pods=10), node("b", pods=10)]
    result = place(2, pod_spec(workload()), nodes, load={"a": 1, "b": 5}, replicas_on={"a": 3}, spread=False)
    assert result.nodes == ("a", "a")


def test_load_is_relative_to_the_nodes_capacity() -> None:
    nodes = [node("small", pods=4), node("big", pods=100)]
    assert place(1, pod_spec(workload()), nodes, load={"small": 2, "big": 10}, replicas_on={}).nodes == ("big",)


def test_a_full_node_takes_no_more_replicas() -> None:
    nodes = [node("a", pods=2)]
    result = place(3, pod_spec(workload()), nodes, load={"a": 1}, replicas_on={})
    assert result.nodes == ("a",)
    assert result.unplaced == 2
    assert result.message == "0/1 nodes are available: 1 node(s) had too many pods."


@pytest.mark.parametrize(("candidate", "spec", "reason"), [
    (node("n", ready=False), {}, "node(s) were not ready"),
    (node("n", unschedulable=True), {}, "node(s) were unschedulable"),
    (node("n", agent=False), {}, "node(s) are not wasmlet agents"),
    (node("n"), {"runtime": "wasmtime"}, "node(s) did not offer runtime wasmtime"),
    (node("n", labels={"zone": "a"}), {"nodeSelector": {"zone": "b"}}, "node(s) didn't match Pod's node selector"),
    (node("n", taints=[{"key": "edge", "value": "x", "effect": "NoSchedule"}]), {},
     "node(s) had untolerated taint {edge: x}"),
])
def test_a_node_is_rejected_for_a_precise_reason(candidate: dict[str, Any], spec: dict[str, Any], reason: str) -> None:
    assert rejection(pod_spec(workload(**spec)), candidate, 0) == reason


@pytest.mark.parametrize("toleration", [
    {"key": "edge", "operator": "Exists"},
    {"key": "edge", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
    {"operator": "Exists"},
])
def test_tolerated_taints_and_soft_taints_do_not_reject(toleration: dict[str, str]) -> None:
    tainted = node("n", taints=[{"key": "edge", "value": "x", "effect": "NoSchedule"},
                                {"key": "busy", "value": "y", "effect": "PreferNoSchedule"}])
    assert rejection(pod_spec(workload(tolerations=[toleration])), tainted, 0) is None


def test_the_wasm_taints_are_always_tolerated_and_the_arch_always_selected() -> None:
    assert rejection(pod_spec(workload()), node("n"), 0) is None
    assert rejection(pod_spec(workload()), node("n", labels={"kubernetes.io/arch": "amd64"}), 0) is not None


def test_the_unschedulable_message_counts_reasons_like_the_scheduler() -> None:
    nodes = [node("a", ready=False), node("b", runtimes=("wasmtime",)), node("c", runtimes=("wasmtime",))]
    result = place(2, pod_spec(workload()), nodes, load={}, replicas_on={})
    assert result.nodes == () and result.unplaced == 2
    assert result.message == ("0/3 nodes are available: 2 node(s) did not offer runtime wasmer, "
                              "1 node(s) were not ready.")
    assert "no wasm nodes" in place(1, pod_spec(workload()), [], load={}, replicas_on={}).message


def test_a_node_without_allocatable_pods_has_no_limit() -> None:
    assert place(3, pod_spec(workload()), [node("a", pods=None)], load={"a": 500}, replicas_on={}).nodes == ("a",) * 3


# -- placement: ports -------------------------------------------------------------------------

PORTS_MESSAGE = "node(s) didn't have free ports for the requested pod ports"


def test_a_node_holding_the_port_is_rejected_with_the_schedulers_words() -> None:
    spec = pod_spec(workload(http={"port": 8080}))
    assert rejection(spec, node("n"), 0, ports_used={8080}) == PORTS_MESSAGE
    assert rejection(spec, node("n"), 0, ports_used={8081, 9090}) is None
    # A Pod without ports never conflicts, whatever the node's Pods hold.
    assert rejection(pod_spec(workload()), node("n"), 0, ports_used={8080}) is None


def test_replicas_that_need_a_port_take_one_node_each() -> None:
    result = place(3, pod_spec(workload(http={"port": 8080})), [node("a"), node("b")], load={}, replicas_on={},
                   spread=False)
    assert result.nodes == ("a", "b")
    assert result.unplaced == 1
    assert result.message == f"0/2 nodes are available: 2 {PORTS_MESSAGE}."


def test_ports_held_by_other_pods_keep_a_replica_off_their_node() -> None:
    spec = pod_spec(workload(http={"port": 8080}))
    result = place(1, spec, [node("a"), node("b")], load={"b": 10}, replicas_on={}, ports={"a": {8080, 9000}})
    assert result.nodes == ("b",)  # the less loaded node holds the port
    nowhere = place(1, spec, [node("a")], load={}, replicas_on={}, ports={"a": frozenset({8080})})
    assert (nowhere.nodes, nowhere.message) == ((), f"0/1 nodes are available: 1 {PORTS_MESSAGE}.")


def test_other_ports_and_protocols_do_not_conflict() -> None:
    udp = {"containers": [{"name": "dns", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}
    tcp = {"containers": [{"name": "web", "ports": [{"containerPort": 53}]}]}  # protocol defaults to TCP
    assert objects.pod_ports(udp) == frozenset()
    assert objects.pod_ports(tcp) == frozenset({53})
    assert place(1, pod_spec(workload(http={"port": 8080})), [node("a")], load={}, replicas_on={},
                 ports={"a": {8081}}).nodes == ("a",)


# -- planning: scale -------------------------------------------------------------------------


def nodes_by_name(*names: str) -> dict[str, dict[str, Any]]:
    return {name: node(name) for name in names}


def test_a_new_workload_needs_all_its_replicas() -> None:
    plan = planning.plan(workload(replicas=3), [], nodes_by_name("a"), NOW)
    assert (plan.create, plan.delete, plan.requeue_after) == (3, (), None)
    assert plan.template_hash == template_hash(workload(replicas=3))


def test_scale_up_creates_the_difference_and_reports_replicas_per_node() -> None:
    w = workload(replicas=3)
    plan = planning.plan(w, [pod(w, "p1", "a")], nodes_by_name("a", "b"), NOW)
    assert plan.create == 2
    assert plan.replicas_on == {"a": 1}


def test_scale_down_removes_unready_then_crowded_then_newest() -> None:
    w = workload(replicas=2)
    pods = [pod(w, "old-a", "a", created=1), pod(w, "new-a", "a", created=5),
            pod(w, "b1", "b", created=9), pod(w, "unready", "c", ready=False, created=0)]
    plan = planning.plan(w, pods, nodes_by_name("a", "b", "c"), NOW)
    assert plan.create == 0
    assert [d.name for d in plan.delete] == ["unready", "new-a"]
    assert all(d.reason == "scaled down" and not d.force for d in plan.delete)


def test_terminating_pods_are_not_replicas() -> None:
    w = workload(replicas=1)
    plan = planning.plan(w, [pod(w, "going", "a", terminating=True)], nodes_by_name("a"), NOW)
    assert (plan.create, plan.delete) == (1, ())


def test_a_finished_service_pod_is_deleted_and_replaced() -> None:
    w = workload(replicas=1)
    plan = planning.plan(w, [pod(w, "done", "a", phase="Succeeded", ready=False)], nodes_by_name("a"), NOW)
    assert plan.create == 1
    assert [(d.name, d.reason) for d in plan.delete] == [("done", "pod is Succeeded")]


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
def test_run_to_completion_pods_that_finished_are_not_replaced(policy: str) -> None:
    w = workload(replicas=3, restartPolicy=policy)
    pods = [pod(w, "ok", "a", phase="Succeeded", ready=False), pod(w, "bad", "a", phase="Failed", ready=False),
            pod(w, "running", "a")]
    plan = planning.plan(w, pods, nodes_by_name("a"), NOW)
    assert (plan.create, plan.delete) == (0, ())


def test_scaling_a_run_to_completion_workload_counts_finished_replicas() -> None:
    w = workload(replicas=4, restartPolicy="Never")
    plan = planning.plan(w, [pod(w, "ok", "a", phase="Succeeded", ready=False)], nodes_by_name("a"), NOW)
    assert plan.create == 3


# -- planning: lost nodes --------------------------------------------------------------------


def test_pods_of_a_deleted_node_are_force_deleted_and_replaced() -> None:
    w = workload(replicas=2)
    pods = [pod(w, "p1", "gone"), pod(w, "p2", "a"), pod(w, "p3", "gone", terminating=True)]
    plan = planning.plan(w, pods, nodes_by_name("a"), NOW)
    assert plan.create == 1
    assert {(d.name, d.force) for d in plan.delete} == {("p1", True), ("p3", True)}


def test_pods_of_a_long_not_ready_node_are_deleted_gracefully_and_replaced() -> None:
    w = workload(replicas=1)
    nodes = {"a": node("a", ready=False, since=NOW - datetime.timedelta(seconds=61)), "b": node("b")}
    plan = planning.plan(w, [pod(w, "p1", "a")], nodes, NOW)
    assert plan.create == 1
    assert [(d.name, d.force, d.reason) for d in plan.delete] == [("p1", False, "node a is lost")]


def test_a_recently_not_ready_node_is_waited_for_and_looked_at_again() -> None:
    w = workload(replicas=1)
    nodes = {"a": node("a", ready=False, since=NOW - datetime.timedelta(seconds=20))}
    plan = planning.plan(w, [pod(w, "p1", "a")], nodes, NOW)
    assert (plan.create, plan.delete) == (0, ())
    assert plan.requeue_after == pytest.approx(40)


def test_reschedule_null_keeps_replicas_of_not_ready_nodes_forever() -> None:
    w = workload(replicas=1, placement={"rescheduleAfterSeconds": None})
    nodes = {"a": node("a", ready=False, since=NOW - datetime.timedelta(days=3))}
    plan = planning.plan(w, [pod(w, "p1", "a")], nodes, NOW)
    assert (plan.create, plan.delete, plan.requeue_after) == (0, (), None)


# -- planning: updates -----------------------------------------------------------------------


def test_a_rolling_update_surges_first_and_keeps_availability() -> None:
    w = workload(replicas=4)  # maxSurge 25% → 1, maxUnavailable 25% → 1
    old = [pod(w, f"old{i}", "a", hash="previous", created=i) for i in range(4)]
    plan = planning.plan(w, old, nodes_by_name("a"), NOW)
    assert plan.create == 1
    assert len(plan.delete) == 1 and plan.delete[0].reason == "rolling update"


def test_a_rolling_update_retires_old_pods_as_new_ones_become_ready() -> None:
    w = workload(replicas=2, updateStrategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    old = [pod(w, "old1", "a", hash="previous"), pod(w, "old2", "a", hash="previous")]
    unready_new = pod(w, "new1", "a", ready=False)
    plan = planning.plan(w, [*old, unready_new], nodes_by_name("a"), NOW)
    assert (plan.create, plan.delete) == (0, ())  # surge used up, nothing may become unavailable
    ready_new = pod(w, "new1", "a")
    plan = planning.plan(w, [*old, ready_new], nodes_by_name("a"), NOW)
    assert plan.create == 0
    assert [d.name for d in plan.delete] == ["old1"]


def test_a_plan_names_the_ports_old_replicas_still_hold() -> None:
    """What the reconciler needs to tell a rolling update that cannot surge next to its old replicas."""
    before, after = workload(http={"port": 8080}), workload(http={"port": 8080, "maxConcurrency": 4})
    old = pod(before, "old", "a", hash="previous")
    assert planning.plan(after, [old], nodes_by_name("a"), NOW).old_ports == {8080}
    assert planning.plan(after, [pod(after, "new", "a")], nodes_by_name("a"), NOW).old_ports == frozenset()


def test_unready_old_pods_are_retired_first() -> None:
    w = workload(replicas=2, updateStrategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    old = [pod(w, "ready-old", "a", hash="previous"), pod(w, "broken-old", "a", hash="previous", ready=False)]
    plan = planning.plan(w, old, nodes_by_name("a"), NOW)
    assert [d.name for d in plan.delete] == ["broken-old"]


def test_recreate_deletes_every_old_pod_then_waits_for_them_to_go() -> None:
    w = workload(replicas=2, updateStrategy={"type": "Recreate"})
    old = [pod(w, "old1", "a", hash="previous"), pod(w, "old2", "a", hash="previous")]
    plan = planning.plan(w, old, nodes_by_name("a"), NOW)
    assert plan.create == 0 and {d.name for d in plan.delete} == {"old1", "old2"}
    terminating = [pod(w, "old1", "a", hash="previous", terminating=True)]
    assert planning.plan(w, terminating, nodes_by_name("a"), NOW).create == 0
    assert planning.plan(w, [], nodes_by_name("a"), NOW).create == 2


def test_run_to_completion_workloads_rerun_with_a_new_template() -> None:
    w = workload(replicas=1, restartPolicy="Never")
    plan = planning.plan(w, [pod(w, "done", "a", phase="Succeeded", hash="previous")], nodes_by_name("a"), NOW)
    assert plan.create == 1
    assert [d.name for d in plan.delete] == ["done"]


@pytest.mark.parametrize(("value", "total", "up", "expected"), [
    (2, 10, True, 2), ("25%", 4, True, 1), ("25%", 1, True, 1), ("25%", 1, False, 0), ("50%", 3, False, 1),
])
def test_int_or_percent_rounds_like_deployments(value: int | str, total: int, up: bool, expected: int) -> None:
    assert planning.resolve_int_or_percent(value, total, round_up=up) == expected


# -- placement: memory -----------------------------------------------------------------------


def with_memory(body: dict[str, Any], memory: str) -> dict[str, Any]:
    body["status"]["allocatable"]["memory"] = memory
    return body


def test_memory_requests_must_fit_the_nodes_allocatable_memory() -> None:
    spec = pod_spec(workload(resources={"requests": {"memory": "100Mi"}}))
    nodes = [with_memory(node("a"), "256Mi"), with_memory(node("b"), "1Gi")]
    result = place(4, spec, nodes, load={}, memory={"a": 2**20 * 100, "b": 2**20 * 950}, replicas_on={})
    assert result.nodes == ("a",)  # a: 100 + 100 ≤ 256; then neither has room
    assert result.unplaced == 3
    assert result.message == "0/2 nodes are available: 2 node(s) had insufficient memory."


def test_a_memory_limit_without_a_request_counts_as_the_request() -> None:
    spec = pod_spec(workload(resources={"limits": {"memory": "1Gi"}}))
    assert rejection(spec, with_memory(node("a"), "512Mi"), 0) == "node(s) had insufficient memory"
    assert rejection(spec, with_memory(node("a"), "2Gi"), 0, 2**30) is None


def test_without_a_memory_request_memory_is_not_checked() -> None:
    assert rejection(pod_spec(workload()), with_memory(node("a"), "1Mi"), 0, 2**40) is None


# -- planning: failures and disruptions ------------------------------------------------------


def failed(w: WasmWorkload, name: str, node_name: str = "a", *, reason: str | None = None) -> dict[str, Any]:
    body = pod(w, name, node_name, phase="Failed", ready=False)
    if reason:
        body["status"]["reason"] = reason
    return body


def test_a_failed_service_replica_is_replaced_unless_backing_off() -> None:
    w = workload(replicas=1)
    plan = planning.plan(w, [failed(w, "f1")], nodes_by_name("a"), NOW)
    assert plan.create == 1 and [(d.name, d.cause) for d in plan.delete] == [("f1", "failed")]
    assert [objects_name(p) for p in plan.failed] == ["f1"]

    later = NOW + datetime.timedelta(seconds=20)
    waiting = planning.plan(w, [failed(w, "f1")], nodes_by_name("a"), NOW, replace_failed_after=later)
    assert (waiting.create, waiting.delete) == (0, ())  # the Failed Pod stays, visible, until then
    assert waiting.requeue_after == pytest.approx(20)
    after = planning.plan(w, [failed(w, "f1")], nodes_by_name("a"), later, replace_failed_after=later)
    assert after.create == 1 and len(after.delete) == 1


@pytest.mark.parametrize("reason", ["Evicted", "Preempting", "OutOfpods", "NodeShutdown"])
def test_a_disrupted_replica_of_a_job_like_workload_runs_again(reason: str) -> None:
    w = workload(replicas=1, restartPolicy="Never")
    plan = planning.plan(w, [failed(w, "e1", reason=reason)], nodes_by_name("a"), NOW)
    assert plan.create == 1 and [d.name for d in plan.delete] == ["e1"]


def test_a_disruption_target_condition_also_marks_a_disruption() -> None:
    w = workload(replicas=1, restartPolicy="Never")
    body = failed(w, "e1")
    body["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"})
    assert planning.plan(w, [body], nodes_by_name("a"), NOW).create == 1


def test_a_module_failure_of_a_job_like_workload_is_final() -> None:
    w = workload(replicas=1, restartPolicy="Never")
    plan = planning.plan(w, [failed(w, "f1")], nodes_by_name("a"), NOW)
    assert (plan.create, plan.delete, plan.failed) == (0, (), ())


def test_deletions_say_their_cause() -> None:
    w = workload(replicas=1, updateStrategy={"type": "Recreate"})
    pods = [pod(w, "old", "a", hash="previous"), pod(w, "gone", "lost")]
    causes = {d.name: d.cause for d in planning.plan(w, pods, nodes_by_name("a"), NOW).delete}
    assert causes == {"gone": "lost-node", "old": "update"}


def objects_name(body: dict[str, Any]) -> str:
    return str(body["metadata"]["name"])
