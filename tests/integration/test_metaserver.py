"""The agent behind KubeEdge's MetaServer (the test API's MetaServer mode, tests/fixtures/metaserver.py).

Each behaviour measured on a real edgecore is pinned here with the agent's answer: a field
selector that never delivers, an empty LIST offline, 500 on writes offline, stale GETs, the
whole store replayed as ADDED on reconnect (deleted Pods included), and a deletion the cache
never hears of.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import PODS

from tests.fixtures.metaserver import MetaServer, metaserver
from tests.fixtures.pki import TestPki
from tests.integration.faults import AgentProcess, agent_process
from tests.integration.test_faults import NODE, seed, until
from tests.integration.test_faults import ticker as bare_ticker
from tests.integration.test_kubelet_api import SAR, _status_with_certificate


def ticker(name: str) -> dict[str, Any]:
    """A ticker Pod whose module ConfigMap is named by a volume, as a node identity must read it."""
    pod = bare_ticker(name)
    pod["spec"]["volumes"] = [{"name": "wasmlet-module", "configMap": {
        "name": "modules", "items": [{"key": "ticker.wasm", "path": "module.wasm"}]}}]
    return pod


@asynccontextmanager
async def edge(kube_api: Any, tmp_path: Path) -> AsyncIterator[tuple[KubeClient, MetaServer, AgentProcess]]:
    """The cloud's client, a MetaServer in front of the test API, and an agent behind it."""
    async with KubeClient(load_config(str(kube_api.kubeconfig))) as api, metaserver(kube_api) as cache:
        await seed(api)
        async with agent_process(cache.url, tmp_path / "state", WASMLET_METASERVER="true") as agent:
            yield api, cache, agent


def running(agent: AgentProcess, *names: str) -> Any:
    async def probe() -> bool:
        phases = await agent.pod_phases()
        return all(phases.get(name) == "Running" for name in names)
    return probe


def node_ready(kube_api: Any) -> str:
    node = kube_api.get("v1", "Node", None, NODE) or {}
    return next((c["status"] for c in (node.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), "")


def api_running(kube_api: Any, *names: str, restarts: int = 0) -> Any:
    """Each Pod Running in the API, its container running and restarted `restarts` times."""
    async def probe() -> bool:
        pods = {p["metadata"]["name"]: p["status"] for p in kube_api.list("v1", "Pod", "default")}
        firsts = {name: (pods.get(name, {}).get("containerStatuses") or [{}])[0] for name in names}
        return all(name in pods and pods[name].get("phase") == "Running" and "running" in first.get("state", {})
                   and first.get("restartCount") == restarts for name, first in firsts.items())
    return probe


async def test_pods_arrive_without_a_field_selector_and_only_this_nodes_run(kube_api: Any, tmp_path: Path) -> None:
    async with edge(kube_api, tmp_path) as (api, _cache, agent):
        await api.create(PODS, ticker("mine-1"))
        elsewhere = ticker("elsewhere")
        elsewhere["spec"]["nodeName"] = "another-node"
        await api.create(PODS, elsewhere)
        # Created after the agent's first LIST: only a watch can bring it.
        await until(running(agent, "mine-1"), 20, "the first Pod runs")
        await api.create(PODS, ticker("mine-2"))
        await until(running(agent, "mine-1", "mine-2"), 20, "a Pod created later arrives through the watch")
        assert "elsewhere" not in await agent.pod_phases()
        await api.delete(PODS, "mine-2", "default", grace_period_seconds=0)
        await until(lambda: _absent(agent, "mine-2"), 20, "a Pod deleted in the cloud stops")


async def _absent(agent: AgentProcess, name: str) -> bool:
    return name not in await agent.pod_phases()


async def test_an_outage_ends_no_pod_and_the_node_is_ready_within_seconds_of_the_reconnect(
        kube_api: Any, tmp_path: Path) -> None:
    async with edge(kube_api, tmp_path) as (api, cache, agent):
        for name in ("svc-1", "svc-2"):
            await api.create(PODS, ticker(name))
        await until(api_running(kube_api, "svc-1", "svc-2"), 20, "both Pods running in the API")

        cache.go_offline()
        await until(lambda: _logged(agent, "API link is down"), 20, "a failed Lease renewal (500) noticed")
        node = kube_api.get("v1", "Node", None, NODE)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        ready.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
        kube_api.put_status(node)  # what the node lifecycle controller does after 40 s without a Lease
        # A stale GET still answers 200; the LIST is empty; writes fail. Nothing of it stops a Pod.
        lists = cache.offline_lists
        await agent.kill()
        await agent.start()
        await until(running(agent, "svc-1", "svc-2"), 10, "both Pods run again after an offline restart")
        await until(lambda: _is(str(cache.offline_lists > lists), "True"), 10, "the restarted agent's LIST answered")
        assert await running(agent, "svc-1", "svc-2")()  # the empty list stopped nothing
        assert node_ready(kube_api) == "Unknown"

        cache.go_online()
        await until(lambda: _is(node_ready(kube_api), "True"), 15, "Node Ready=True after the reconnect")
        await until(api_running(kube_api, "svc-1", "svc-2", restarts=1), 15,
                    "Pod statuses true after the reconnect, the SIGKILL counted once (no Failed phase)")


async def _logged(agent: AgentProcess, text: str) -> bool:
    return text in agent.log()


async def _is(value: str, wanted: str) -> bool:
    return value == wanted


async def test_deletions_while_away_stop_pods_after_the_reconnect_and_replays_do_not_revive_them(
        kube_api: Any, tmp_path: Path) -> None:
    async with edge(kube_api, tmp_path) as (api, cache, agent):
        for name in ("keep", "graceful", "forced", "gone-before"):
            await api.create(PODS, ticker(name))
        await until(running(agent, "keep", "graceful", "forced", "gone-before"), 20, "four Pods running")
        cache.keep_deleted = True  # the cache hears DELETED events but keeps its copies, as a missed deletion
        await api.delete(PODS, "gone-before", "default", grace_period_seconds=0)
        await until(lambda: _absent(agent, "gone-before"), 20, "a Pod deleted while online stops")

        cache.go_offline()
        await api.delete(PODS, "graceful", "default")  # a deletionTimestamp, then the agent's final delete
        kube_api.remove("v1", "Pod", "default", "forced")  # gone at once; the cache never hears of it
        await agent.kill()
        await agent.start()
        await until(running(agent, "keep", "graceful", "forced"), 10, "the offline restart runs all three")
        assert "gone-before" not in await agent.pod_phases()

        cache.go_online()
        await until(lambda: _absent(agent, "graceful"), 30, "the gracefully deleted Pod stops after the reconnect")
        await until(lambda: _absent(agent, "forced"), 30, "the force-deleted Pod stops after the reconnect")
        await until(lambda: _is(str(kube_api.get("v1", "Pod", "default", "graceful")), "None"), 15,
                    "the graceful deletion completed by the agent")
        await until(lambda: _replayed(cache, "gone-before"), 15, "the cache replayed its stale copies as ADDED")
        await until(running(agent, "keep"), 10, "the Pod nobody deleted still runs")
        phases = await agent.pod_phases()
        assert set(phases) == {"keep"}, phases  # no stale copy was run again


async def _replayed(cache: MetaServer, name: str) -> bool:
    return name in cache.replayed


async def test_a_configmap_module_is_read_only_through_a_volume_reference(kube_api: Any, tmp_path: Path) -> None:
    async with edge(kube_api, tmp_path) as (api, _cache, agent):
        await api.create(PODS, ticker("referenced"))
        await api.create(PODS, bare_ticker("bare"))  # configmap://modules/ticker.wasm and no volume naming it
        await until(running(agent, "referenced"), 20, "the Pod that references its module's ConfigMap runs")

        async def refused() -> bool:
            state = ((await api.get(PODS, "bare", "default"))["status"].get("containerStatuses") or [{}])[0]
            waiting = (state.get("state") or {}).get("waiting") or {}
            return waiting.get("reason") == "CreateContainerConfigError" and \
                'is not referenced by a volume of this Pod' in waiting.get("message", "")
        await until(refused, 20, "the bare configmap:// module refused with the reason")


async def test_the_kubelet_apis_reviews_go_through_the_cache_and_fail_closed_while_the_cloud_is_away(
        kube_api: Any, cluster_pki: TestPki, tmp_path: Path) -> None:
    """The default authorization (webhook) behind MetaServer: the SubjectAccessReview is a write, so
    edgecore passes it to the cloud. Offline it cannot be asked: the caller gets a 500 (an answer
    not cached is never guessed), and once the cloud is back the same request is served."""
    async with KubeClient(load_config(str(kube_api.kubeconfig))) as api, metaserver(kube_api) as cache:
        await seed(api)
        async with agent_process(cache.url, tmp_path / "state", WASMLET_METASERVER="true",
                                 WASMLET_KUBELET_API_AUTH="webhook",
                                 WASMLET_CLIENT_CA_FILE=str(cluster_pki.ca_file)) as agent:
            await until(lambda: _is(node_ready(kube_api), "True"), 20, "the Node registered through the cache")
            pods = f"https://127.0.0.1:{agent.port}/pods"
            cert = (cluster_pki.client_cert, cluster_pki.client_key)
            cache.go_offline()
            assert await _status_with_certificate(pods, *cert) == 500
            assert len(kube_api.server[SAR]) == 0  # the review never reached the cloud
            cache.go_online()
            assert await _status_with_certificate(pods, *cert) == 200
            assert len(kube_api.server[SAR]) == 1
            cache.go_offline()
            assert await _status_with_certificate(pods, *cert) == 200  # the allowed answer is cached
