"""The first end-to-end slice: a WasmWorkload applied to the API becomes Pods that the operator
places and the agent runs with Wasmer, and their outcome flows back into the workload's status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from wasmlet.api import keys
from wasmlet.kube import KubeClient
from wasmlet.kube.resources import CRDS, NAMESPACES, PODS, WASM_WORKLOADS
from wasmlet.nodeagent.logs import pod_log_dir, read_lines

from tests.integration.agent_helpers import api_client, module_bytes, put_module_configmap, running_agent, wait_for
from tests.integration.test_operator import CRD_PATH, NS, running_operator

NODE = "wasm-node-1"


def workload(name: str, key: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND, "metadata": {"name": name, "namespace": NS},
            "spec": {"module": {"configMap": {"name": "modules", "key": key}}, **spec}}


def condition(body: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


async def pods_of(api: KubeClient, name: str) -> list[dict[str, Any]]:
    listing = await api.list(PODS, NS, label_selector=f"{keys.LABEL_WORKLOAD}={name}")
    return list(listing["items"])


async def test_a_workload_runs_to_completion_and_a_service_keeps_running(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api:
        await api.create(CRDS, yaml.safe_load(CRD_PATH.read_text()))
        await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await wait_for(api, NAMESPACES, NS, None, lambda ns: True)
        await asyncio.sleep(0.5)  # the controller manager creates the namespace's default ServiceAccount
        await put_module_configmap(api, NS, "modules", {"hello.wasm": module_bytes("hello"),
                                                        "ticker.wasm": module_bytes("ticker")})
        # The agent stops before the operator: an embedded kopf cancels, when it stops, every task
        # created in its event loop after it started (in production they are separate processes).
        async with running_operator(kube_api), running_agent(kube_api.kubeconfig, tmp_path, NODE) as agent:
            await api.create(WASM_WORKLOADS, workload("hello", "hello.wasm", replicas=2, restartPolicy="Never"), NS)
            await api.create(WASM_WORKLOADS, workload("ticker", "ticker.wasm", args=["--interval-ms", "100"],
                                                 terminationGracePeriodSeconds=1), NS)

            hello = await wait_for(api, WASM_WORKLOADS, "hello", NS,
                                   lambda w: (w.get("status") or {}).get("succeeded") == 2, timeout=30)
            assert condition(hello, "Ready")["reason"] == "Complete"
            ticker = await wait_for(api, WASM_WORKLOADS, "ticker", NS,
                                    lambda w: condition(w, "Ready").get("status") == "True", timeout=30)
            assert ticker["status"]["readyReplicas"] == 1
            assert ticker["status"]["readyText"] == "1/1"

            hello_pods = await pods_of(api, "hello")
            assert len(hello_pods) == 2
            for pod in hello_pods:
                assert pod["spec"]["nodeName"] == NODE
                assert pod["status"]["phase"] == "Succeeded"
                assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
                meta = pod["metadata"]
                logs = pod_log_dir(agent.settings.state_dir / "logs", NS, meta["name"], meta["uid"])
                lines = [text for _, _, text in read_lines(logs / "main" / "0.log")]
                assert "Hello from wasmlet!" in lines
            (ticker_pod,) = await pods_of(api, "ticker")
            assert ticker_pod["status"]["phase"] == "Running"
            assert "running" in ticker_pod["status"]["containerStatuses"][0]["state"]
