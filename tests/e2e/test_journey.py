"""The whole user journey on a real cluster, with the chart's own identities and settings.

1. install the chart with Helm's engine: CRD, RuntimeClasses, ServiceAccounts and least-privilege
   RBAC (the Deployment and DaemonSet off: no images are built here);
2. run the operator and one agent as processes of this machine, each with a token of its chart
   ServiceAccount (so RBAC is exercised for real; the agent's only bootstraps its node identity,
   as the chart's does) and exactly the environment the chart's Deployment/DaemonSet would give it;
3. apply a WasmWorkload whose module is in a ConfigMap, wait for it to be Ready, scale it through
   the scale subresource, roll it to a new template, read its Pods' logs through the API server
   (what `kubectl logs` does), check `kubectl describe`'s events and `wasmlet status`;
4. delete it, stop the components, uninstall, and check what stays (the CRD) and what goes.

Needs a disposable cluster whose API server can reach this machine at WASMLET_E2E_NODE_IP
(default: the address of the default route) on WASMLET_E2E_KUBELET_PORT (default 10260), for
the logs; e.g. kind with `WASMLET_E2E_NODE_IP` set to the docker bridge's gateway address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import helm_python
import pytest
import yaml

from tests.deploy.chart import CHART, env_of, one, render
from tests.e2e.conftest import cluster_ca
from tests.fixtures.kubeclient import ApiError, KubeClient

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULE = ROOT / "examples" / "modules" / "ticker.wasm"
WW = "wasmlet.dev/v1alpha1"
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 120.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(1.0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Journey:
    """What one run created, so that it can take exactly that down again."""

    def __init__(self, kubeconfig: Path, run_id: str, work: Path) -> None:
        self.kubeconfig = kubeconfig
        self.run_id = run_id
        self.work = work
        self.system_ns = f"{run_id}-system"
        self.apps_ns = f"{run_id}-apps"
        self.release = run_id
        self.node = f"{run_id}-host-wasm"
        self.api = KubeClient.from_kubeconfig(kubeconfig)
        self.helm = helm_python.Config(kubeconfig_path=kubeconfig, namespace=self.system_ns)
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.installed_crd = False

    # -- install ---------------------------------------------------------------------------

    async def install(self) -> dict[str, Any]:
        """The chart with the components off; its CRDs and RuntimeClasses unless the cluster has them."""
        crds = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted((ROOT / "crds").glob("*.yaml"))]
        present = [name for name in crds
                   if not await self.absent("apiextensions.k8s.io/v1", "customresourcedefinitions", None, name)]
        assert not present or present == crds, f"some of wasmlet's CRDs exist already ({present}): use a fresh cluster"
        self.installed_crd = not present
        values = {"operator": {"enabled": False}, "agent": {"enabled": False},
                  "crds": {"enabled": self.installed_crd}, "runtimeClasses": {"enabled": await self.absent(
                      "node.k8s.io/v1", "runtimeclasses", None, "wasmer")}}
        with helm_python.Chart.load(CHART) as chart:
            await asyncio.to_thread(self.helm.install, chart, self.release, values, namespace=self.system_ns,
                                    create_namespace=True, timeout=120)
        return values

    async def token(self, service_account: str) -> str:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 3600}}
        answer = await self.api.create("v1", "serviceaccounts", self.system_ns, request, name=service_account,
                                       subresource="token")
        return str(answer["status"]["token"])

    def cluster_ca(self) -> Path | None:
        """The agent's client CA: the e2e kubeconfig's cluster CA."""
        return cluster_ca(self.kubeconfig, self.work)

    def kubeconfig_for(self, name: str, token: str) -> Path:
        """The e2e kubeconfig's cluster, with a ServiceAccount token as the only credential."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
        base = self.kubeconfig.parent
        ca = cluster["cluster"].get("certificate-authority")
        if ca and not os.path.isabs(ca):
            cluster["cluster"]["certificate-authority"] = str(base / ca)
        path = self.work / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name, "clusters": [cluster],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        }))
        return path

    # -- the components as processes -------------------------------------------------------

    async def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        base = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.work), "PYTHONUNBUFFERED": "1"}
        self.processes[name] = await asyncio.create_subprocess_exec(
            *argv, env={**base, **env}, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=self.work)
        log.close()

    def log_tail(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def stop(self, name: str) -> int | None:
        process = self.processes.pop(name, None)
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.terminate()
        try:
            return await asyncio.wait_for(process.wait(), timeout=60)
        except TimeoutError:
            process.kill()
            return await process.wait()

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.returncode is None, f"{name} exited {process.returncode}:\n{self.log_tail(name)}"

    # -- reading the cluster ---------------------------------------------------------------

    async def absent(self, api_version: str, plural: str, namespace: str | None, name: str) -> bool:
        try:
            await self.api.get(api_version, plural, namespace, name)
        except ApiError as error:
            if error.status == 404:
                return True
            raise
        return False

    async def workload(self) -> dict[str, Any]:
        return dict(await self.api.get(WW, "wasmworkloads", self.apps_ns, "ticker"))

    async def pods(self) -> list[dict[str, Any]]:
        listing = await self.api.list("v1", "pods", self.apps_ns, params={"labelSelector": "wasmlet.dev/workload=ticker"})
        return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]

    async def ready(self, replicas: int, template_hash: str | None = None) -> dict[str, Any] | None:
        self.alive()
        workload = await self.workload()
        status = workload.get("status") or {}
        if status.get("observedGeneration") != workload["metadata"]["generation"]:
            return None
        if status.get("readyReplicas", 0) != replicas or status.get("updatedReplicas", 0) != replicas:
            return None
        pods = await self.pods()
        if len(pods) != replicas:
            return None
        if template_hash and any(p["metadata"]["labels"].get("wasmlet.dev/template-hash") == template_hash
                                 for p in pods):
            return None
        return workload

    async def cleanup(self) -> None:
        for name in list(self.processes):
            await self.stop(name)
        for api_version, plural, namespace, name in (
            (WW, "wasmworkloads", self.apps_ns, "ticker"), ("v1", "nodes", None, self.node),
            ("v1", "namespaces", None, self.apps_ns),
        ):
            with contextlib.suppress(ApiError):
                await self.api.delete(api_version, plural, namespace, name)
        with contextlib.suppress(ApiError):  # the agent's node certificate requests (TLS bootstrap)
            for csr in (await self.api.list("certificates.k8s.io/v1", "certificatesigningrequests"))["items"]:
                if csr["metadata"]["name"].startswith(f"node-csr-{self.node}-"):
                    await self.api.delete("certificates.k8s.io/v1", "certificatesigningrequests", None,
                                          csr["metadata"]["name"])
        with contextlib.suppress(helm_python.HelmError):
            await asyncio.to_thread(self.helm.uninstall, self.release, ignore_not_found=True, timeout=120)
        with contextlib.suppress(ApiError):
            await self.api.delete("v1", "namespaces", None, self.system_ns)
        if self.installed_crd:
            for path in sorted((ROOT / "crds").glob("*.yaml")):
                with contextlib.suppress(ApiError):
                    await self.api.delete("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                                          yaml.safe_load(path.read_text())["metadata"]["name"])
        await self.api.close()
        self.helm.close()


@pytest.fixture()
async def journey(e2e_kubeconfig: Path, run_id: str, tmp_path: Path) -> AsyncIterator[Journey]:
    trip = Journey(e2e_kubeconfig, run_id, tmp_path)
    try:
        yield trip
    finally:
        await trip.cleanup()


def component_env(chart: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """The WASMLET_* environment the chart gives the Deployment/DaemonSet container; listening
    addresses move to free loopback ports (this machine may run other things on 8080/9090)."""
    container = one(chart, kind)["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str) and k.startswith("WASMLET_")}
    for key, value in env.items():
        if value.startswith("http://0.0.0.0:"):
            path = value.split("/", 3)[3] if value.count("/") >= 3 else ""
            env[key] = f"http://127.0.0.1:{free_port()}/{path}"
    return env


@pytest.mark.timeout(900)
async def test_a_platform_engineer_installs_runs_scales_rolls_reads_logs_and_uninstalls(journey: Journey) -> None:
    # 1. Install: CRD, RuntimeClasses, identities and their RBAC.
    await journey.install()
    assert not await journey.absent("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                                    "wasmworkloads.wasmlet.dev")
    assert not await journey.absent("node.k8s.io/v1", "runtimeclasses", None, "wasmer")
    chart = render({"operator": {"enabled": True}, "agent": {"enabled": True}}, release=journey.release,
                   namespace=journey.system_ns)
    operator_sa = one(chart, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    agent_sa = one(chart, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"]

    # 2. The operator and one agent, with their chart identities and settings.
    operator_kubeconfig = journey.kubeconfig_for("operator", await journey.token(operator_sa))
    agent_kubeconfig = journey.kubeconfig_for("agent", await journey.token(agent_sa))
    await journey.start("operator", [str(BIN / "wasmlet-operator"), "--kubeconfig", str(operator_kubeconfig)],
                        component_env(chart, "Deployment"))
    agent_env = component_env(chart, "DaemonSet")
    agent_env.update(
        WASMLET_NODE_NAME=journey.node,
        WASMLET_KUBELET_PORT=os.environ.get("WASMLET_E2E_KUBELET_PORT", agent_env["WASMLET_KUBELET_PORT"]),
        WASMLET_STATE_DIR=str(journey.work / "agent-state"),
        WASMLET_NODE_LABELS=f"wasmlet.dev/e2e={journey.run_id}",
        # The chart's TLS bootstrap: the ServiceAccount only requests the node's certificate; the agent
        # then runs as system:node:<node> under the Node authorizer and NodeRestriction.
        WASMLET_BOOTSTRAP_KUBECONFIG=str(agent_kubeconfig),
        WASMLET_KUBECONFIG=str(journey.work / "agent-state" / "pki" / "kubelet.kubeconfig"),
    )
    ca = journey.cluster_ca()
    if ca is not None:
        agent_env["WASMLET_CLIENT_CA_FILE"] = str(ca)
    else:
        agent_env.pop("WASMLET_CLIENT_CA_FILE", None)  # bearer tokens only
    if os.environ.get("WASMLET_E2E_NODE_IP"):
        agent_env["WASMLET_NODE_IP"] = os.environ["WASMLET_E2E_NODE_IP"]
    else:
        agent_env.pop("WASMLET_NODE_IP", None)  # the agent takes the default route's address
    await journey.start("agent", [str(BIN / "wasmlet-agent")], agent_env)

    async def node_ready() -> dict[str, Any] | None:
        journey.alive()
        with contextlib.suppress(ApiError):
            node = await journey.api.get("v1", "nodes", None, journey.node)
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions") or []}
            return node if conditions.get("Ready") == "True" else None
        return None

    node = await eventually(node_ready, f"node {journey.node} Ready")
    assert node["metadata"]["labels"]["wasmlet.dev/agent"] == "true"
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == int(agent_env["WASMLET_KUBELET_PORT"])

    # 3. A workload, as a user writes it.
    await journey.api.create("v1", "namespaces", None, {"metadata": {"name": journey.apps_ns}})
    await eventually(lambda: _not(journey.absent("v1", "serviceaccounts", journey.apps_ns, "default")),
                     "the namespace's default ServiceAccount")
    await journey.api.create("v1", "configmaps", journey.apps_ns, {
        "metadata": {"name": "ticker-module"},
        "binaryData": {"ticker.wasm": base64.b64encode(MODULE.read_bytes()).decode()}})
    await journey.api.create(WW, "wasmworkloads", journey.apps_ns, {
        "apiVersion": WW, "kind": "WasmWorkload", "metadata": {"name": "ticker"},
        "spec": {"replicas": 1, "module": {"configMap": {"name": "ticker-module", "key": "ticker.wasm"}},
                 "args": ["--interval-ms", "200"], "nodeSelector": {"wasmlet.dev/e2e": journey.run_id},
                 "terminationGracePeriodSeconds": 2}})
    workload = await eventually(lambda: journey.ready(1), "ticker 1/1")
    ready = next(c for c in workload["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "AllReplicasReady")
    assert workload["status"]["readyText"] == "1/1"

    # Scale, as `kubectl scale ww ticker --replicas=3` does: through the scale subresource.
    scale = await journey.api.get(WW, "wasmworkloads", journey.apps_ns, "ticker", subresource="scale")
    assert scale["status"]["selector"] == "wasmlet.dev/workload=ticker"
    await journey.api.patch(WW, "wasmworkloads", journey.apps_ns, "ticker", {"spec": {"replicas": 3}},
                            subresource="scale")
    workload = await eventually(lambda: journey.ready(3), "ticker 3/3")

    # Roll to a new template: new Pods replace the old ones.
    old_hash = workload["status"]["templateHash"]
    await journey.api.patch(WW, "wasmworkloads", journey.apps_ns, "ticker",
                            {"spec": {"args": ["--interval-ms", "100"]}})
    workload = await eventually(lambda: journey.ready(3, template_hash=old_hash), "ticker rolled to a new template")
    assert workload["status"]["templateHash"] != old_hash

    # `kubectl logs`: the API server fetches them from the agent's kubelet API.
    pod = (await journey.pods())[0]["metadata"]["name"]

    async def logs() -> str | None:
        status, body = await journey.api.request(
            "GET", f"/api/v1/namespaces/{journey.apps_ns}/pods/{pod}/log", params={"container": "main", "tailLines": 5})
        return body if status == 200 and isinstance(body, str) and "tick" in body else None

    assert "tick" in await eventually(logs, f"logs of {pod}", timeout=60)

    # `kubectl describe ww`: the operator's events; `wasmlet status`: the same picture.
    events = await journey.api.list("v1", "events", journey.apps_ns,
                                    params={"fieldSelector": "involvedObject.name=ticker"})
    assert "SuccessfulCreate" in {e["reason"] for e in events["items"]}
    status = await asyncio.create_subprocess_exec(
        str(BIN / "wasmlet"), "status", "--kubeconfig", str(journey.kubeconfig), "-n", journey.apps_ns,
        stdout=asyncio.subprocess.PIPE, env={"PATH": os.environ.get("PATH", ""), "HOME": str(journey.work)})
    table = (await status.communicate())[0].decode()
    assert status.returncode == 0 and "ticker" in table and "3/3" in table and journey.node in table

    # 4. Delete the workload: its Pods go with it (the agent stops them, garbage collection).
    await journey.api.delete(WW, "wasmworkloads", journey.apps_ns, "ticker")
    await eventually(lambda: _empty(journey.pods()), "ticker's Pods gone", timeout=180)

    # Stop the components (the agent marks its Node not ready), uninstall, and see what stays.
    assert await journey.stop("agent") == 0, journey.log_tail("agent")
    assert await journey.stop("operator") == 0, journey.log_tail("operator")
    node = await journey.api.get("v1", "nodes", None, journey.node)
    assert {c["type"]: c["reason"] for c in node["status"]["conditions"]}["Ready"] == "KubeletNotReady"
    await asyncio.to_thread(journey.helm.uninstall, journey.release, timeout=120)
    for role in (o for o in chart if o["kind"] == "ClusterRole"):
        assert await journey.absent("rbac.authorization.k8s.io/v1", "clusterroles", None, role["metadata"]["name"])
    if journey.installed_crd:  # helm.sh/resource-policy: keep
        assert not await journey.absent("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                                        "wasmworkloads.wasmlet.dev")
    assert await journey.absent("v1", "serviceaccounts", journey.system_ns, agent_sa)


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def _empty(listing: Awaitable[list[Any]]) -> bool:
    return not await listing
