"""The test API's MetaServer mode answers as edgecore's MetaServer did on a real KubeEdge (v1.23-beta)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube import ApiUnavailable, KubeClient, load_config
from wasmlet.kube.resources import PODS

from tests.fixtures.metaserver import metaserver
from tests.integration.test_faults import NODE, seed, ticker


async def test_offline_lists_are_empty_gets_are_stale_and_writes_fail(kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(str(kube_api.kubeconfig))) as cloud, metaserver(kube_api) as cache, \
            KubeClient(load_config(cache.url)) as edge:
        await seed(cloud)
        await cloud.create(PODS, ticker("p1"))
        seen = await edge.get(PODS, "p1", "default")
        cache.go_offline()
        kube_api.remove("v1", "Pod", "default", "p1")
        assert (await edge.list(PODS, "default"))["items"] == []
        assert (await edge.get(PODS, "p1", "default"))["metadata"]["uid"] == seen["metadata"]["uid"]  # stale, 200
        with pytest.raises(ApiUnavailable):
            await edge.patch(PODS, "p1", {"metadata": {"labels": {"a": "b"}}}, "default")


async def test_field_selectors_on_pods_are_ignored_and_such_a_watch_never_delivers(
        kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(str(kube_api.kubeconfig))) as cloud, metaserver(kube_api) as cache, \
            KubeClient(load_config(cache.url)) as edge:
        await seed(cloud)
        other = ticker("other")
        other["spec"]["nodeName"] = "another-node"
        await cloud.create(PODS, other)
        listing = await edge.list(PODS, field_selector=f"spec.nodeName={NODE}")
        assert [p["metadata"]["name"] for p in listing["items"]] == ["other"]

        async def first_event() -> Any:
            async for event in edge.watch(PODS, field_selector=f"spec.nodeName={NODE}", timeout_seconds=3):
                return event
            return None

        watching = asyncio.create_task(first_event())
        await cloud.create(PODS, ticker("mine"))
        assert await watching is None  # the watch ended (timeoutSeconds) without one event


async def test_the_first_watch_after_a_reconnect_replays_every_copy_as_added(kube_api: Any, tmp_path: Path) -> None:
    async with KubeClient(load_config(str(kube_api.kubeconfig))) as cloud, metaserver(kube_api) as cache, \
            KubeClient(load_config(cache.url)) as edge:
        await seed(cloud)
        await cloud.create(PODS, ticker("p1"))
        await edge.list(PODS, "default")
        cache.keep_deleted = True
        cache.go_offline()
        kube_api.remove("v1", "Pod", "default", "p1")
        cache.go_online()
        async for event in edge.watch(PODS, timeout_seconds=2):
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "p1")  # deleted, replayed
            break
        else:
            raise AssertionError("no replay")
