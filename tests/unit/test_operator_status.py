"""WasmWorkload status from its Pods: counts, conditions, and quiet reconciles."""

from __future__ import annotations

import datetime
from typing import Any

from wasmlet.api.podtemplate import build_pod, template_hash
from wasmlet.api.workload import InvalidWorkload, WasmWorkload, parse_workload
from wasmlet.operator.status import Problems, invalid_status, status_patch, workload_status

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def workload(**spec: Any) -> WasmWorkload:
    spec.setdefault("module", {"image": "reg.local/app:1"})
    return parse_workload({"metadata": {"name": "app", "namespace": "ns", "uid": "u1", "generation": 4},
                           "spec": spec})


def pod(w: WasmWorkload, name: str, *, phase: str = "Running", ready: bool = True, hash: str | None = None,
        waiting: str | None = None, image_id: str | None = None, terminating: bool = False) -> dict[str, Any]:
    body = build_pod(w, name=name, node_name="n")
    if hash:
        body["metadata"]["labels"]["wasmlet.dev/template-hash"] = hash
    if terminating:
        body["metadata"]["deletionTimestamp"] = "2025-01-01T11:00:00Z"
    container: dict[str, Any] = {"name": "main", "state": {"running": {}}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": f"{waiting} for main"}}
    if image_id:
        container["imageID"] = image_id
    body["status"] = {"phase": phase, "containerStatuses": [container],
                      "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return body


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_all_replicas_ready_is_ready() -> None:
    w = workload(replicas=2)
    status = workload_status(w, [pod(w, "a"), pod(w, "b")], template_hash(w), now=NOW)
    assert status["replicas"] == status["readyReplicas"] == status["updatedReplicas"] == 2
    assert status["availableReplicas"] == 2
    assert (status["succeeded"], status["failed"]) == (0, 0)
    assert status["selector"] == "wasmlet.dev/workload=app"
    assert status["readyText"] == "2/2"
    assert status["module"] == "reg.local/app:1"
    assert status["observedGeneration"] == 4
    assert status["templateHash"] == template_hash(w)
    assert conditions(status) == {"Ready": ("True", "AllReplicasReady"), "Progressing": ("True", "ReplicasUpToDate"),
                                  "Degraded": ("False", "AsExpected")}
    for condition in status["conditions"]:
        assert condition["observedGeneration"] == 4
        assert condition["lastTransitionTime"] == "2025-01-01T12:00:00Z"
        assert condition["message"]


def test_missing_replicas_are_not_ready_and_progressing() -> None:
    w = workload(replicas=3)
    status = workload_status(w, [pod(w, "a"), pod(w, "b", ready=False)], template_hash(w), now=NOW)
    assert status["readyText"] == "1/3"
    assert conditions(status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions(status)["Progressing"] == ("True", "Scaling")


def test_terminating_and_finished_pods_are_not_replicas() -> None:
    w = workload(replicas=1)
    status = workload_status(w, [pod(w, "a"), pod(w, "b", terminating=True)], template_hash(w), now=NOW)
    assert status["replicas"] == 1


def test_unschedulable_and_failed_creates_are_the_ready_reason() -> None:
    w = workload(replicas=2)
    message = "0/1 nodes are available: 1 node(s) were not ready."
    status = workload_status(w, [], template_hash(w), problems=Problems(unschedulable=message), now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Unschedulable", message)
    assert conditions(status)["Progressing"] == ("False", "Unschedulable")
    failed = workload_status(w, [], template_hash(w), problems=Problems(create_error="forbidden: no sa"), now=NOW)
    assert conditions(failed)["Ready"] == ("False", "FailedCreate")


def test_a_rolling_update_is_progressing() -> None:
    w = workload(replicas=2)
    status = workload_status(w, [pod(w, "new"), pod(w, "old", hash="previous")], template_hash(w), now=NOW)
    assert status["updatedReplicas"] == 1 and status["replicas"] == 2
    assert conditions(status)["Progressing"] == ("True", "RollingUpdate")


def test_crash_looping_replicas_make_the_workload_degraded() -> None:
    w = workload(replicas=1)
    status = workload_status(w, [pod(w, "a", ready=False, waiting="CrashLoopBackOff")], template_hash(w), now=NOW)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CrashLoopBackOff")
    assert degraded["message"] == "pod a: CrashLoopBackOff for main"


def test_a_run_to_completion_workload_completes() -> None:
    w = workload(replicas=2, restartPolicy="Never")
    pods = [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b", phase="Succeeded", ready=False)]
    status = workload_status(w, pods, template_hash(w), now=NOW)
    assert (status["replicas"], status["succeeded"], status["failed"]) == (0, 2, 0)
    assert conditions(status)["Ready"] == ("True", "Complete")
    assert conditions(status)["Progressing"] == ("True", "ReplicasUpToDate")


def test_a_run_to_completion_workload_with_failures_is_not_ready() -> None:
    w = workload(replicas=2, restartPolicy="Never")
    pods = [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b", phase="Failed", ready=False)]
    status = workload_status(w, pods, template_hash(w), now=NOW)
    assert (status["succeeded"], status["failed"]) == (1, 1)
    assert conditions(status)["Ready"] == ("False", "ReplicasFailed")
    assert conditions(status)["Degraded"] == ("True", "ReplicasFailed")


def test_a_running_job_like_workload_is_ready_while_its_replicas_are() -> None:
    w = workload(replicas=2, restartPolicy="OnFailure")
    pods = [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b")]
    assert conditions(workload_status(w, pods, template_hash(w), now=NOW))["Ready"] == ("True", "AllReplicasReady")


def test_scaled_to_zero_is_ready() -> None:
    w = workload(replicas=0)
    status = workload_status(w, [], template_hash(w), now=NOW)
    assert conditions(status)["Ready"] == ("True", "ScaledToZero")
    assert status["readyText"] == "0/0"


def test_the_module_digest_comes_from_the_spec_or_the_agents_report() -> None:
    sha = "cd" * 32
    w = workload(module={"url": "https://m/a.wasm", "sha256": sha})
    assert workload_status(w, [], template_hash(w), now=NOW)["moduleDigest"] == f"sha256:{sha}"
    w = workload()
    pods = [pod(w, "a", image_id=f"reg.local/app@sha256:{sha}")]
    assert workload_status(w, pods, template_hash(w), now=NOW)["moduleDigest"] == f"sha256:{sha}"
    assert workload_status(w, [pod(w, "a")], template_hash(w), now=NOW)["moduleDigest"] is None


def test_transition_times_move_only_when_a_status_flips() -> None:
    w = workload(replicas=1)
    first = workload_status(w, [pod(w, "a", ready=False)], template_hash(w), now=NOW)
    same = workload_status(w, [pod(w, "a", ready=False)], template_hash(w), previous=first, now=LATER)
    assert same == first
    assert status_patch(same, first) is None
    flipped = workload_status(w, [pod(w, "a")], template_hash(w), previous=first, now=LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {"Ready": "2025-01-01T12:05:00Z", "Progressing": "2025-01-01T12:00:00Z",
                     "Degraded": "2025-01-01T12:00:00Z"}


def test_the_status_patch_holds_only_what_changed() -> None:
    w = workload(replicas=1)
    before = workload_status(w, [pod(w, "a", ready=False)], template_hash(w), now=NOW)
    after = workload_status(w, [pod(w, "a")], template_hash(w), previous=before, now=LATER)
    patch = status_patch(after, before)
    assert patch is not None
    assert set(patch) == {"readyReplicas", "availableReplicas", "readyText", "conditions"}
    # A value the operator no longer knows is removed by the merge patch (null).
    assert status_patch({"moduleDigest": None}, {"moduleDigest": "sha256:x"}) == {"moduleDigest": None}


def test_an_invalid_spec_is_reported_with_the_field_and_keeps_the_counts() -> None:
    body = {"metadata": {"name": "app", "namespace": "ns", "generation": 7},
            "status": {"replicas": 2, "conditions": [
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "",
                 "lastTransitionTime": "2024-12-01T00:00:00Z"}]}}
    error = InvalidWorkload("spec.module.sha256", "is required with url")
    status = invalid_status(body, error, now=NOW)
    assert set(status) == {"observedGeneration", "selector", "conditions"}
    assert status["observedGeneration"] == 7
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "invalid spec: spec.module.sha256: is required with url"
    assert ready["observedGeneration"] == 7
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded"}


def test_a_stuck_container_is_the_ready_reason_too() -> None:
    w = workload(replicas=1)
    status = workload_status(w, [pod(w, "a", ready=False, waiting="CreateContainerConfigError")], template_hash(w),
                             now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CreateContainerConfigError")
    assert ready["message"] == "0/1 replicas ready; pod a: CreateContainerConfigError for main"


def test_job_like_workloads_get_job_style_outcome_conditions() -> None:
    w = workload(replicas=2, restartPolicy="OnFailure")
    running = workload_status(w, [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b")], template_hash(w), now=NOW)
    assert set(conditions(running)) == {"Ready", "Progressing", "Degraded"}  # no outcome yet
    done = workload_status(w, [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b", phase="Succeeded", ready=False)],
                           template_hash(w), now=NOW)
    assert conditions(done)["Complete"] == ("True", "ReplicasSucceeded")
    failed = workload_status(w, [pod(w, "a", phase="Succeeded", ready=False), pod(w, "b", phase="Failed", ready=False)],
                             template_hash(w), now=NOW)
    assert conditions(failed)["Failed"] == ("True", "ReplicasFailed") and "Complete" not in conditions(failed)
    service = workload(replicas=1)
    assert "Complete" not in conditions(workload_status(service, [], template_hash(service), now=NOW))


def test_a_failed_service_replica_is_named_in_degraded() -> None:
    w = workload(replicas=1)
    failed = pod(w, "a", phase="Failed", ready=False)
    failed["status"].update(reason="DeadlineExceeded", message="too long")
    status = workload_status(w, [failed], template_hash(w), now=NOW)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["reason"], degraded["message"]) == ("ReplicasFailed",
                                                         "1 replica(s) failed; pod a: DeadlineExceeded: too long")
    remembered = workload_status(w, [pod(w, "b", ready=False)], template_hash(w),
                                 problems=Problems(failing="replicas keep failing; last: pod a: Error"), now=NOW)
    assert conditions(remembered)["Degraded"] == ("True", "ReplicasFailed")


def test_the_unschedulable_message_is_the_ready_message() -> None:
    w = workload(replicas=3)
    message = "2 of 3 replica(s) cannot be placed: 0/1 nodes are available: 1 node(s) had too many pods."
    status = workload_status(w, [pod(w, "a")], template_hash(w), problems=Problems(unschedulable=message), now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("Unschedulable", message)
