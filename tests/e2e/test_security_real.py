"""The attacks of docs/security.md against a real control plane: the agent registers as a node of
the cluster WASMLET_E2E_KUBECONFIG names, and the Pods come through the real API server (its
admission and defaulting: a projected service account volume, defaultMode 0644, RuntimeClasses).
The symlink escapes of tests/integration/test_volume_escape.py on wasmtime with fewer seeds, and
the caps and store recovery as the real API server records them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube import ApiError, KubeClient, NotFound
from wasmlet.kube.resources import EVENTS, NAMESPACES, NODES, PODS

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wasm_pod,
)
from tests.integration.test_volume_escape import (
    SECRET,
    all_log_text,
    assert_untouched,
    canary,
    ended,
    flipper_pod,
    planted_pod,
    reader_pod,
    up_to,
    waiting_reason,
)


@contextlib.asynccontextmanager
async def namespace(api: KubeClient, name: str) -> AsyncIterator[str]:
    await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            await api.delete(NAMESPACES, name)


def placed(pod: dict[str, Any], ns: str, node: str) -> dict[str, Any]:
    pod["metadata"]["namespace"] = ns
    pod["spec"]["nodeName"] = node
    return pod


async def create(api: KubeClient, pod: dict[str, Any]) -> None:
    """Create, waiting out the Forbidden a new namespace answers until its default ServiceAccount exists."""
    async with asyncio.timeout(60):
        while True:
            try:
                await api.create(PODS, pod)
                return
            except ApiError as exc:
                if exc.status != 403:
                    raise
            await asyncio.sleep(0.5)


@pytest.fixture
async def cluster(e2e_kubeconfig: Path) -> AsyncIterator[tuple[KubeClient, str, str]]:
    suffix = secrets.token_hex(3)
    node = f"sandbox-{suffix}"
    async with api_client(str(e2e_kubeconfig)) as api, namespace(api, f"sandbox-{suffix}") as ns:
        await put_module_configmap(api, ns, "modules", {f"{m}.wasm": module_bytes(m) for m in ("files", "hostile")})
        try:
            yield api, ns, node
        finally:
            with contextlib.suppress(NotFound):
                await api.delete(NODES, node)


async def test_a_link_planted_by_an_init_container_is_refused_on_a_real_cluster(
        cluster: tuple[KubeClient, str, str], e2e_kubeconfig: Path, tmp_path: Path) -> None:
    api, ns, node = cluster
    secret_dir = canary(tmp_path)
    async with running_agent(str(e2e_kubeconfig), tmp_path / "state", node_name=node) as agent:
        names = []
        for seed in range(3):
            rng = random.Random(seed)
            pod, rel = planted_pod(f"planted-{seed}", rng, up_to(secret_dir, rng), "wasmtime", "/data")
            await create(api, placed(pod, ns, node))
            names.append((pod["metadata"]["name"], rel))
        for name, rel in names:
            seen = await wait_for(api, PODS, name, ns,
                                  lambda p: waiting_reason(p, "main")[0] == "CreateContainerConfigError", timeout=120)
            message = waiting_reason(seen, "main")[1]
            assert f'of container "main": {rel!r} is a symbolic link' in message, message
            assert SECRET not in all_log_text(agent, seen)
    assert_untouched(secret_dir)


async def test_a_link_flipped_in_by_a_running_pod_is_never_followed_on_a_real_cluster(
        cluster: tuple[KubeClient, str, str], e2e_kubeconfig: Path, tmp_path: Path) -> None:
    api, ns, node = cluster
    secret_dir = canary(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    rng = random.Random(15)
    async with running_agent(str(e2e_kubeconfig), tmp_path / "state", node_name=node) as agent:
        await create(api, placed(flipper_pod("flipper", shared, up_to(secret_dir, rng)), ns, node))
        await wait_for(api, PODS, "flipper", ns, lambda p: p.get("status", {}).get("phase") == "Running", timeout=120)
        names = [f"reader-{index}" for index in range(6)]
        for name in names:
            await create(api, placed(reader_pod(name, rng, {"hostPath": {"path": str(shared)}}, "wasmtime"), ns, node))
        for name in names:
            pod = await wait_for(api, PODS, name, ns, ended, timeout=120)
            assert SECRET not in all_log_text(agent, pod)
        await api.delete(PODS, "flipper", ns)
    assert_untouched(secret_dir)


async def test_caps_and_store_recovery_hold_on_a_real_cluster(
        cluster: tuple[KubeClient, str, str], e2e_kubeconfig: Path, tmp_path: Path) -> None:
    """OutOfpods and Evicted statuses and a StoreRecovered Node Event, as the real API server takes them."""
    api, ns, node = cluster
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent.db").write_bytes(b"\x00not a database" * 64)
    async with running_agent(str(e2e_kubeconfig), state, node_name=node, max_pods=1,
                             eviction_monitoring_seconds=0.2):
        filler = placed(wasm_pod("filler", node, "configmap://modules/hostile.wasm", runtime="wasmtime",
                                 restart="Always", container={
                                     "args": ["fill", "/data/big", str(4 << 20)],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                 volumes=[{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]), ns, node)
        await create(api, filler)
        await wait_for(api, PODS, "filler", ns, lambda p: p.get("status", {}).get("phase") == "Running", timeout=120)
        await create(api, placed(wasm_pod("second", node, "configmap://modules/files.wasm"), ns, node))
        second = await wait_for(api, PODS, "second", ns, lambda p: p.get("status", {}).get("phase") == "Failed",
                                timeout=120)
        assert second["status"]["reason"] == "OutOfpods"
        evicted = await wait_for(api, PODS, "filler", ns, lambda p: p.get("status", {}).get("phase") == "Failed",
                                 timeout=120)
        assert (evicted["status"]["reason"], evicted["status"]["message"]) == (
            "Evicted", 'Usage of EmptyDir volume "data" exceeds the limit "1Mi". ')

        async def recovered() -> bool:
            events = await api.list(EVENTS, "default", field_selector=f"involvedObject.name={node}")
            return any(e["reason"] == "StoreRecovered" for e in events["items"])

        async with asyncio.timeout(60):
            while not await recovered():
                await asyncio.sleep(0.5)
