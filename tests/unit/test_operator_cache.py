"""The operator's caches: newest version wins, its own writes count at once, deletions stick."""

from __future__ import annotations

from typing import Any

from wasmlet.operator.cache import ObjectCache, PodCache, newer_or_same


def obj(name: str, version: str, *, uid: str = "u1", namespace: str = "ns", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": version}, **extra}


def pod(name: str, version: str, *, uid: str | None = None, workload: str | None = "web", node: str | None = "n1",
        phase: str = "Running", memory: str | None = None, terminating: bool = False) -> dict[str, Any]:
    body = obj(name, version, uid=uid or f"uid-{name}")
    if workload:
        body["metadata"]["labels"] = {"wasmlet.dev/workload": workload}
    if terminating:
        body["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    container: dict[str, Any] = {"name": "main"}
    if memory:
        container["resources"] = {"requests": {"memory": memory}}
    body["spec"] = {"nodeName": node, "containers": [container]}
    body["status"] = {"phase": phase}
    return body


def test_resource_versions_compare_as_numbers_when_they_are() -> None:
    assert newer_or_same("10", "9") and newer_or_same("9", "9") and not newer_or_same("9", "10")
    assert newer_or_same("opaque", "10")  # not numbers: the newest arrival wins


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = ObjectCache()
    assert cache.upsert(obj("a", "5"))
    assert not cache.upsert(obj("a", "4"))  # a watch event for a write whose answer is cached already
    assert not cache.upsert(obj("a", "5"))
    assert cache.upsert(obj("a", "6", spec={"x": 1}))
    assert cache.get("ns", "a") == obj("a", "6", spec={"x": 1})


def test_a_deleted_object_does_not_come_back_from_a_late_event() -> None:
    cache = ObjectCache()
    cache.upsert(obj("a", "5"))
    assert cache.delete(obj("a", "7")) is not None
    assert not cache.upsert(obj("a", "6"))
    assert cache.get("ns", "a") is None
    assert cache.upsert(obj("a", "8", uid="u2"))  # a successor of the same name is another object


def test_a_listing_replaces_everything_and_marks_the_cache_synced() -> None:
    cache = ObjectCache()
    cache.upsert(obj("gone", "1"))
    assert not cache.synced
    cache.replace([obj("kept", "2")])
    assert cache.synced and [o["metadata"]["name"] for o in cache.values()] == ["kept"]


def test_managed_fields_are_not_kept() -> None:
    cache = ObjectCache()
    body = obj("a", "1")
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    cache.upsert(body)
    assert "managedFields" not in cache.get("ns", "a")["metadata"]  # type: ignore[index]
    assert "managedFields" in body["metadata"]  # the caller's object is left alone


def test_pods_are_indexed_by_workload_and_node_usage_counts_occupants() -> None:
    cache = PodCache()
    cache.replace([pod("w1", "1", memory="64Mi"), pod("w2", "2", node="n2"), pod("other", "3", workload=None,
                                                                               memory="1Gi"),
                   pod("done", "4", phase="Succeeded")])
    assert sorted(p["metadata"]["name"] for p in cache.workload_pods("ns", "web")) == ["done", "w1", "w2"]
    pods, memory = cache.node_usage()
    assert pods == {"n1": 2, "n2": 1}  # the Succeeded Pod frees its place
    assert memory["n1"] == 64 * 2**20 + 2**30
    cache.delete(pod("w1", "5"))
    assert cache.node_usage()[0]["n1"] == 1


def test_pods_of_other_workloads_are_kept_slim() -> None:
    cache = PodCache()
    cache.upsert({**pod("foreign", "1", workload=None, memory="1Gi"), "extra": "x"})
    kept = cache.get("ns", "foreign")
    assert kept is not None and "extra" not in kept
    assert kept["spec"]["containers"] == [{"resources": {"requests": {"memory": "1Gi"}}}]


def test_a_pod_we_deleted_stays_terminating_whatever_older_news_say() -> None:
    cache = PodCache()
    cache.upsert(pod("p", "5"))
    cache.mark_deleting("ns", "p", "uid-p")
    assert cache.get("ns", "p")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    cache.upsert(pod("p", "6"))  # the agent's status write from before our delete
    assert cache.get("ns", "p")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    cache.upsert(pod("p", "7", terminating=True))
    cache.delete(pod("p", "8"))
    assert cache.get("ns", "p") is None
    assert cache.workload_pods("ns", "web") == [] and cache.node_usage()[0] == {}


def test_marking_a_successor_of_the_same_name_does_nothing() -> None:
    cache = PodCache()
    cache.upsert(pod("p", "5", uid="new"))
    cache.mark_deleting("ns", "p", "old")
    assert "deletionTimestamp" not in cache.get("ns", "p")["metadata"]  # type: ignore[index]


def test_placed_pods_count_on_their_node_until_created() -> None:
    cache = PodCache()
    cache.reserve("n1", 2**20)
    cache.reserve("n1", 2**20)
    assert cache.node_usage() == ({"n1": 2}, {"n1": 2 * 2**20})
    cache.unreserve("n1", 2**20)
    cache.upsert(pod("created", "1", memory="1Mi"))
    assert cache.node_usage() == ({"n1": 2}, {"n1": 2 * 2**20})
    cache.unreserve("n1", 2**20)
    assert cache.node_usage() == ({"n1": 1}, {"n1": 2**20})
