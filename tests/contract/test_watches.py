"""Watches (behaviour 8): initial state, resuming, expiry, server-side timeouts, ordering."""

from __future__ import annotations

import asyncio
import time

from tests.contract.builders import configmap
from tests.contract.conftest import ContractClient


async def test_a_watch_without_a_resource_version_starts_with_the_current_objects(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("a", labels={"set": "x"}))
    await api.create("v1", "configmaps", api.namespace, configmap("b", labels={"set": "x"}))
    async with api.watch("v1", "configmaps", api.namespace, params={"labelSelector": "set=x"}) as events:
        initial = [await events.next(), await events.next()]
        await api.create("v1", "configmaps", api.namespace, configmap("c", labels={"set": "x"}))
        live = await events.next()
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in initial) == [("ADDED", "a"), ("ADDED", "b")]
    assert (live["type"], live["object"]["metadata"]["name"]) == ("ADDED", "c")


async def test_a_watch_from_a_resource_version_replays_what_came_after(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"n": "1"}})
    await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"n": "2"}})
    await api.delete("v1", "configmaps", api.namespace, "cm")
    since = created["metadata"]["resourceVersion"]
    async with api.watch("v1", "configmaps", api.namespace, params={"resourceVersion": since}) as events:
        replayed = [await events.next() for _ in range(3)]
    assert [e["type"] for e in replayed] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert [e["object"]["data"].get("n") for e in replayed] == ["1", "2", "2"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in replayed]
    assert versions == sorted(versions) and versions[0] > int(since)


async def test_a_watch_from_a_compacted_resource_version_gets_one_expired_error(api: ContractClient) -> None:
    async with api.watch("v1", "configmaps", api.namespace, params={"resourceVersion": "1"}) as events:
        assert events.response.status == 200
        error = await events.next()
        after = await events.next()
    assert error["type"] == "ERROR" and after is None
    status = error["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")


async def test_timeout_seconds_makes_the_server_close_the_stream(api: ContractClient) -> None:
    started = time.monotonic()
    async with api.watch("v1", "configmaps", api.namespace, params={"timeoutSeconds": 1, "labelSelector": "none=here"}) as events:
        end = await events.next(timeout=10)
    assert end is None and 0.9 <= time.monotonic() - started < 8


async def test_events_arrive_in_resource_version_order(api: ContractClient) -> None:
    async with api.watch("v1", "configmaps", api.namespace, params={"labelSelector": "burst=yes"}) as events:
        await asyncio.gather(
            *(api.create("v1", "configmaps", api.namespace, configmap(f"cm-{i}", labels={"burst": "yes"})) for i in range(10))
        )
        received = [await events.next() for _ in range(10)]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in received]
    assert versions == sorted(versions) and len(set(versions)) == 10


async def test_a_watch_of_one_name_sees_only_that_object(api: ContractClient) -> None:
    async with api.watch("v1", "configmaps", api.namespace, params={"fieldSelector": "metadata.name=mine"}) as events:
        await api.create("v1", "configmaps", api.namespace, configmap("other"))
        await api.create("v1", "configmaps", api.namespace, configmap("mine"))
        event = await events.next()
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "mine"


async def test_watch_1_is_a_watch_too(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", labels={"w": "1"}))
    params = {"watch": "1", "timeoutSeconds": 1, "labelSelector": "w=1"}
    status, text = await api.request("GET", f"/api/v1/namespaces/{api.namespace}/configmaps", params=params)
    assert status == 200 and isinstance(text, dict) and text["type"] == "ADDED"
