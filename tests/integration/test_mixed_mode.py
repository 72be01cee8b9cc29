"""Mixed mode: static Pods from a manifest folder next to API Pods, mirrored to the API as the
kubelet mirrors its static Pods."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import yaml

from wasmlet.kube.resources import PODS

from tests.integration.agent_helpers import MODULES, api_client, running_agent, wait_for, wait_gone

NODE = "wasm-node-1"
MIRROR = f"edge-ticker-{NODE}"


def running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return "running" in (statuses[0].get("state") or {})


async def test_static_pods_run_next_to_api_pods_and_show_as_mirror_pods(kube_api: Any, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    shutil.copy(MODULES / "ticker.wasm", manifests / "ticker.wasm")
    (manifests / "ticker.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "edge-ticker", "labels": {"app": "edge"}},
        "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "runtimeClassName": "wasmer",
                 "containers": [{"name": "main", "image": "file:ticker.wasm", "args": ["--interval-ms", "100"]}]}}))
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api, tmp_path / "state", manifests=manifests) as agent:
        mirror = await wait_for(api, PODS, MIRROR, "default", running)
        meta = mirror["metadata"]
        assert meta["annotations"]["kubernetes.io/config.mirror"]
        assert meta["ownerReferences"][0]["kind"] == "Node"
        assert mirror["spec"]["nodeName"] == NODE
        # The mirror is only a view: deleted, it comes back, and the static Pod never stopped.
        await api.delete(PODS, MIRROR, "default", grace_period_seconds=0)
        again = await wait_for(api, PODS, MIRROR, "default",
                               lambda p: p["metadata"]["uid"] != meta["uid"] and running(p), timeout=30)
        assert again["status"]["containerStatuses"][0]["restartCount"] == 0
        assert agent.metrics.starts.labels("wasmer")._value.get() == 1  # the watch never ran the mirror
        # The file removed: the static Pod stops and its mirror goes.
        (manifests / "ticker.yaml").unlink()
        await wait_gone(api, MIRROR, timeout=30)
        # The mirror may go before the Pod's instance has stopped (both follow the same scan).
        async with asyncio.timeout(30):
            while any(w.plan.name == MIRROR for w in agent.controller.workers() if w.instances):
                await asyncio.sleep(0.05)
