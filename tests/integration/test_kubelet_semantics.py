"""Kubelet semantics on the test API with the real agent and real modules: per-container restarts
with their own counts, last states and log files; `--previous` per container; the phase through a
crash loop; PodInitializing; ErrImagePull before ImagePullBackOff; claims bound to hostPath volumes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

import yaml

from wasmlet.kube.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, PODS

from tests.integration.agent_helpers import (
    MODULES,
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_for_events,
    wasm_pod,
)
from tests.integration.test_kubelet_api import pod_log

NODE = "wasm-node-1"
IMAGE = "127.0.0.1:9/nowhere/module:v1"
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")


def statuses(pod: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (pod.get("status") or {}).get(key) or []}


def waiting(status: dict[str, Any]) -> str:
    return str(((status.get("state") or {}).get("waiting") or {}).get("reason", ""))


async def seed(api: Any, *names: str) -> None:
    await put_module_configmap(api, "default", "modules", {f"{n}.wasm": module_bytes(n) for n in names})


async def previous_run_lines(container_logs: Path) -> int:
    """Lines in the log of a container's previous run (complete: its next run has begun), checking
    that no older run kept its file. Restarts go on meanwhile, so a file pruned under us is retried."""
    async with asyncio.timeout(20):
        while True:
            runs = sorted(int(p.name.split(".")[0]) for p in container_logs.glob("*.log"))
            assert len(runs) <= 2 and runs[-1] >= 2, runs
            try:
                return len((container_logs / f"{runs[0]}.log").read_text().splitlines())
            except FileNotFoundError:
                await asyncio.sleep(0.01)


async def test_two_containers_crash_on_their_own_schedules_with_their_own_counts_and_logs(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path / "state"):
        await seed(api, "exit", "ticker")
        pod = wasm_pod("cats", NODE, "configmap://modules/exit.wasm", restart="Always", container={"args": ["1"]})
        pod["spec"]["containers"] = [
            {"name": "floofycat", "image": "configmap://modules/exit.wasm", "args": ["1"]},
            {"name": "neatcat", "image": "configmap://modules/ticker.wasm", "args": ["--interval-ms", "100",
                                                                                     "--count", "3"]}]
        await api.create(PODS, pod)

        def settled(p: dict[str, Any]) -> bool:
            st = statuses(p)
            return st.get("floofycat", {}).get("restartCount", 0) >= 3 and waiting(st["floofycat"]) == \
                "CrashLoopBackOff" and st.get("neatcat", {}).get("restartCount", 0) >= 2

        seen = await wait_for(api, PODS, "cats", "default", settled, timeout=60)
        # The kubelet's getPhase: a container waiting for its restart has run, so the Pod is Running.
        assert seen["status"]["phase"] == "Running"
        floofy, neat = statuses(seen)["floofycat"], statuses(seen)["neatcat"]
        assert floofy["lastState"]["terminated"]["exitCode"] == 1
        assert floofy["lastState"]["terminated"]["reason"] == "Error"
        assert floofy["state"]["waiting"]["message"].startswith("back-off ")
        assert "restarting failed container=floofycat pod=cats_default(" in floofy["state"]["waiting"]["message"]
        assert neat["lastState"]["terminated"]["exitCode"] == 0
        assert neat["lastState"]["terminated"]["reason"] == "Completed"

        # One log file per run of each container, named by its restartCount; only the current and the
        # previous run keep theirs (the kubelet's container GC); --previous per container.
        logs = next((tmp_path / "state" / "logs").glob("default_cats_*"))
        for name, lines in (("floofycat", 1), ("neatcat", 3)):
            assert await previous_run_lines(logs / name) == lines, name
        status, text = await pod_log(kube_api, "cats", container="floofycat", previous="true")
        assert (status, text.strip()) == (200, "exit: exiting with code 1")
        status, text = await pod_log(kube_api, "cats", container="neatcat", previous="true")
        assert status == 200 and len(text.splitlines()) == 3 and text.splitlines()[0].startswith("tick")


async def test_the_phase_stays_running_through_the_first_crash_loop(kube_api: Any, tmp_path: Path) -> None:
    phases: list[str] = []

    def record(p: dict[str, Any]) -> bool:
        phases.append((p.get("status") or {}).get("phase", ""))
        return statuses(p).get("main", {}).get("restartCount", 0) >= 3

    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path / "state"):
        await seed(api, "exit")
        await api.create(PODS, wasm_pod("crashy", NODE, "configmap://modules/exit.wasm", restart="Always",
                                        container={"args": ["3"]}))
        await wait_for(api, PODS, "crashy", "default", record, timeout=60)
    after_running = phases[phases.index("Running"):]
    assert "Pending" not in after_running, phases


async def test_containers_waiting_on_init_containers_show_pod_initializing(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path / "state"):
        await seed(api, "ticker")
        pod = wasm_pod("init", NODE, "configmap://modules/ticker.wasm", restart="Never",
                       container={"args": ["--interval-ms", "100", "--count", "2"]})
        pod["spec"]["initContainers"] = [{"name": "setup", "image": "configmap://modules/ticker.wasm",
                                          "args": ["--interval-ms", "100", "--count", "30"]}]
        await api.create(PODS, pod)
        seen = await wait_for(api, PODS, "init", "default", lambda p: "running" in (
            statuses(p, "initContainerStatuses").get("setup", {}).get("state") or {}))
        assert waiting(statuses(seen)["main"]) == "PodInitializing"
        assert seen["status"]["phase"] == "Pending"
        await wait_for(api, PODS, "init", "default", lambda p: (p.get("status") or {}).get("phase") == "Succeeded",
                       timeout=30)


async def test_a_failed_pull_shows_err_image_pull_then_image_pull_back_off_on_every_try(
        kube_api: Any, tmp_path: Path) -> None:
    reasons: list[str] = []  # a registry that refuses connections: every pull fails
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api, tmp_path / "state", restart_backoff_seconds=4.0):
        created = await api.create(PODS, wasm_pod("pull", NODE, IMAGE))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                async for event in api.watch(PODS, "default", field_selector="metadata.name=pull",
                                             resource_version=created["metadata"]["resourceVersion"]):
                    reason = waiting(statuses(event["object"]).get("main", {}))
                    if reason in PULL_REASONS and (not reasons or reasons[-1] != reason):
                        reasons.append(reason)
                    if len(reasons) >= 4:
                        break
        assert reasons[:4] == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"], reasons
        await wait_for_events(api, "pull", ("Failed", "Error: ErrImagePull"), ("Failed", "Error: ImagePullBackOff"),
                              ("BackOff", f'Back-off pulling image "{IMAGE}"'))


async def bind_claim(api: Any, claim: str, pv: str, volume: dict[str, Any]) -> None:
    """A PersistentVolume bound to a claim, as the PV controller leaves them."""
    made = await api.create(PERSISTENT_VOLUME_CLAIMS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}},
                 "storageClassName": "", "volumeName": pv}})
    await api.create(PERSISTENT_VOLUMES, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "claimRef": {"namespace": "default", "name": claim, "uid": made["metadata"]["uid"]}, **volume}})
    await api.patch(PERSISTENT_VOLUME_CLAIMS, claim, {"status": {"phase": "Bound"}}, "default", subresource="status")


def claim_pod(name: str, claim: str, args: list[str], read_only: bool = False) -> dict[str, Any]:
    return wasm_pod(name, NODE, "configmap://modules/files.wasm", runtime="wasmtime", container={
        "args": args, "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}])


async def test_a_claim_bound_to_a_host_path_volume_is_mounted_and_its_read_only_is_honoured(
        kube_api: Any, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "hello.txt").write_text("from a persistent volume\n")
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path / "state"):
        await seed(api, "files")
        await bind_claim(api, "data", "pv-data", {"hostPath": {"path": str(disk)}})
        await api.create(PODS, claim_pod("reader", "data", ["read", "/data/hello.txt"]))
        await api.create(PODS, claim_pod("writer", "data", ["write", "/data/new.txt", "kept"]))
        await api.create(PODS, claim_pod("ro", "data", ["write", "/data/no.txt", "x"], read_only=True))
        for name, phase in (("reader", "Succeeded"), ("writer", "Succeeded"), ("ro", "Failed")):
            await wait_for(api, PODS, name, "default", lambda p, ph=phase: (p.get("status") or {}).get("phase") == ph,
                           timeout=30)
        _, text = await pod_log(kube_api, "reader")
        assert text == "from a persistent volume\n"
        assert (disk / "new.txt").read_text() == "kept\n"
        assert not (disk / "no.txt").exists()


async def test_an_unbound_claim_or_a_volume_for_another_node_waits_with_the_kubelets_failed_mount(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path / "state"):
        await seed(api, "files")
        await api.create(PERSISTENT_VOLUME_CLAIMS, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pending", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}})
        await bind_claim(api, "elsewhere", "pv-elsewhere", {
            "local": {"path": str(tmp_path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["another-node"]}]}]}}})
        await api.create(PODS, claim_pod("unbound", "pending", ["list", "/data"]))
        await api.create(PODS, claim_pod("away", "elsewhere", ["list", "/data"]))
        expected = {"unbound": 'PVC default/pending has non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")',
                    "away": 'MountVolume.NodeAffinity check failed for volume "pv-elsewhere" : '
                            "no matching NodeSelectorTerms"}
        for name, message in expected.items():
            await wait_for_events(api, name, ("FailedMount", message), timeout=30)
            pod = await api.get(PODS, name, "default")
            assert pod["status"]["phase"] == "Pending"
            assert waiting(statuses(pod)["main"]) == "ContainerCreating"


async def test_a_static_pod_whose_file_comes_back_while_it_stops_runs_again(kube_api: Any, tmp_path: Path) -> None:
    """Removed and added again with the same UID (the same manifest) before its worker finished
    stopping: the Pod is not lost, it runs again with its restart counted."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    shutil.copy(MODULES / "ticker.wasm", manifests / "ticker.wasm")
    manifest = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "edge"},
        # A wasip1 module cannot see a stop request: it runs out its grace period, which keeps the
        # worker stopping while the file comes back.
        "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 5, "runtimeClassName": "wasmer",
                 "containers": [{"name": "main", "image": "file:ticker.wasm", "args": ["--interval-ms", "200"]}]}})
    (manifests / "edge.yaml").write_text(manifest)
    async with running_agent(kube_api, tmp_path / "state", manifests=manifests) as agent:
        assert agent.controller is not None and agent.static is not None
        controller = agent.controller

        def worker() -> Any:
            return controller.find("default", f"edge-{NODE}")

        async with asyncio.timeout(30):
            while worker() is None or "main" not in worker().instances:
                await asyncio.sleep(0.05)
        first = worker()
        (manifests / "edge.yaml").unlink()
        await agent.static.scan()
        assert first.stopping
        (manifests / "edge.yaml").write_text(manifest)
        await agent.static.scan()
        async with asyncio.timeout(60):
            while worker() is first or "main" not in worker().instances:
                await asyncio.sleep(0.05)
        record = worker().records["main"]
        assert record.restart_count == 1
        assert record.last_state["terminated"]["exitCode"] == 143
