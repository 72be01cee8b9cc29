"""An HTTP WasmWorkload end to end: the operator places its Pods and owns its Service, the agent
serves the port on the node's IP, the EndpointSlice controller lists the Pods' IP as a ready
endpoint, and a request to that endpoint runs the module."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from wasmlet.api import keys
from wasmlet.kube import KubeClient
from wasmlet.kube.resources import CRDS, EVENTS, NAMESPACES, SERVICES, WASM_WORKLOADS, Resource

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    node_address,
    put_module_configmap,
    running_agent,
    wait_for,
)
from tests.integration.faults import free_port
from tests.integration.test_operator import CRD_PATH, NS, running_operator

NODE = "wasm-node-1"
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", kind="EndpointSlice")


async def endpoints(api: KubeClient, service: str) -> list[dict[str, Any]]:
    listing = await api.list(ENDPOINT_SLICES, NS, label_selector=f"kubernetes.io/service-name={service}")
    return [e for s in listing["items"] for e in s.get("endpoints") or []]


async def test_an_http_workload_is_reachable_through_its_service_endpoints(kube_api: Any, tmp_path: Path) -> None:
    port, address = free_port(), node_address()
    async with api_client(kube_api.kubeconfig) as api:
        await api.create(CRDS, yaml.safe_load(CRD_PATH.read_text()))
        await api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await wait_for(api, NAMESPACES, NS, None, lambda ns: True)
        await asyncio.sleep(0.5)  # the controller manager creates the namespace's default ServiceAccount
        await put_module_configmap(api, NS, "modules", {"http-hello.wasm": module_bytes("http-hello")})
        async with running_operator(kube_api), running_agent(kube_api.kubeconfig, tmp_path, NODE, node_ip=address):
            await api.create(WASM_WORKLOADS, {
                "apiVersion": keys.API_VERSION, "kind": keys.WORKLOAD_KIND,
                "metadata": {"name": "hello-http", "namespace": NS},
                "spec": {"module": {"configMap": {"name": "modules", "key": "http-hello.wasm"}}, "runtime": "wasmtime",
                         "replicas": 1, "http": {"port": port, "service": True}}}, NS)
            await wait_for(api, WASM_WORKLOADS, "hello-http", NS,
                           lambda w: (w.get("status") or {}).get("readyReplicas") == 1, timeout=30)
            service = await api.get(SERVICES, "hello-http", NS)
            assert service["spec"]["ports"][0]["port"] == port and service["spec"]["ports"][0]["targetPort"] == "http"

            if address == "127.0.0.1":  # no routable address here: a real cluster would refuse the endpoint too
                async with asyncio.timeout(20):
                    while not any(e["reason"] == "FailedToUpdateEndpointSlices" for e in (await api.list(
                            EVENTS, NS, field_selector="involvedObject.name=hello-http"))["items"]):
                        await asyncio.sleep(0.1)
                target = f"http://127.0.0.1:{port}/"
            else:
                async with asyncio.timeout(20):
                    while not [e for e in await endpoints(api, "hello-http") if e["conditions"]["ready"]]:
                        await asyncio.sleep(0.1)
                (endpoint,) = await endpoints(api, "hello-http")
                assert endpoint["addresses"] == [address] and endpoint["nodeName"] == NODE
                target = f"http://{endpoint['addresses'][0]}:{port}/"
            async with aiohttp.ClientSession() as session, session.get(target) as response:
                assert response.status == 200 and await response.text() == "hello from wasm\n"
