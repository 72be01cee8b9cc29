"""The symlink escape of a volume, tried as a tenant would, through the real agent and real modules.

A container plants a symbolic link in a volume (an init container before the next container
starts, or a container flipping a directory into a link and back while others start) that leads
out of the volume to a host directory holding a canary. The next container's subPath or workingDir
names the link. The attack fails when the agent refuses the path (CreateContainerConfigError) or
opens the real directory, and never when a module reads or writes the canary's directory. The
plans are drawn from fixed seeds, so a failure replays.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import wasmtime

from wasmlet.kube import KubeClient
from wasmlet.kube.resources import PODS
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.logs import pod_log_dir, read_lines

from tests.integration.agent_helpers import (
    api_client,
    module_bytes,
    put_module_configmap,
    running_agent,
    wait_for,
    wait_for_events,
    wasm_pod,
)

NODE = "wasm-node-1"
SECRET = "HOST-SECRET"
SEEDS = range(6)


def canary(tmp_path: Path) -> Path:
    """A host directory no Pod may reach; `marker` holds the secret."""
    directory = tmp_path / "host-canary"
    directory.mkdir()
    (directory / "marker").write_text(SECRET + "\n")
    return directory


def up_to(target: Path, rng: random.Random) -> str:
    """A relative link target that climbs out of any volume to `target` (`..` stops at `/`)."""
    return "../" * rng.randint(8, 16) + str(target).lstrip("/")


def all_log_text(agent: Agent, pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    root = pod_log_dir(agent.settings.state_dir / "logs", meta["namespace"], meta["name"], meta["uid"])
    texts = []
    for path in sorted(root.glob("*/*.log*")) if root.exists() else []:  # every run of every container
        texts.extend(text for _, _, text in read_lines(path))
    return "\n".join(texts)


def statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def waiting_reason(pod: dict[str, Any], name: str) -> tuple[str, str]:
    for status in statuses(pod):
        if status["name"] == name:
            waiting = (status.get("state") or {}).get("waiting") or {}
            return waiting.get("reason", ""), waiting.get("message", "")
    return "", ""


def assert_untouched(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == ["marker"]
    assert (directory / "marker").read_text() == SECRET + "\n"


async def put_modules(api: KubeClient) -> None:
    await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in ("files", "hostile")})


def planted_pod(name: str, rng: random.Random, target: str, runtime: str, mount_root: str) -> tuple[dict[str, Any], str]:
    """A Pod whose init container plants a link at a random depth and whose main container then
    reaches through it by subPath or workingDir, reading or writing; returns it and the link's path."""
    depth = rng.randint(0, 2)
    parents = "/".join(rng.choice(["a", "b", "c"]) for _ in range(depth))
    rel = f"{parents}/rel" if parents else "rel"
    below = rng.choice(["", "/inner"])  # the path the container wants may continue past the link
    levels = parents.split("/") if parents else []
    init = [{"name": f"mkdir-{index}", "image": "configmap://modules/files.wasm",
             "args": ["mkdir", f"{mount_root}/{'/'.join(levels[:index + 1])}"],
             "volumeMounts": [{"name": "data", "mountPath": mount_root}]} for index in range(len(levels))]
    init.append({"name": "plant", "image": "configmap://modules/hostile.wasm",
                 "args": ["link", target, f"{mount_root}/{rel}"],
                 "volumeMounts": [{"name": "data", "mountPath": mount_root}]})
    action = rng.choice([["read", "marker"], ["write", "pwned", "x"]])
    main: dict[str, Any]
    if runtime == "wasmtime" and rng.random() < 0.5:
        main = {"args": [action[0], *action[1:]], "workingDir": f"{mount_root}/{rel}{below}",
                "volumeMounts": [{"name": "data", "mountPath": mount_root}]}
    else:
        main = {"args": [action[0], f"/x/{action[1]}", *action[2:]],
                "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": f"{rel}{below}"}]}
    pod = wasm_pod(name, NODE, "configmap://modules/files.wasm", runtime=runtime, container=main,
                   initContainers=init, volumes=[{"name": "data", "emptyDir": {}}])
    return pod, rel


async def test_a_link_planted_by_an_init_container_is_never_followed_on_wasmtime(kube_api: Any, tmp_path: Path) -> None:
    secret_dir = canary(tmp_path)
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state") as agent:
        await put_modules(api)
        plans = {}
        for seed in SEEDS:
            rng = random.Random(seed)
            pod, rel = planted_pod(f"planted-{seed}", rng, up_to(secret_dir, rng), "wasmtime", "/data")
            plans[pod["metadata"]["name"]] = (pod, rel)
            await api.create(PODS, pod)
        for name, (pod, rel) in plans.items():
            seen = await wait_for(api, PODS, name, "default",
                                  lambda p: waiting_reason(p, "main")[0] == "CreateContainerConfigError", timeout=60)
            reason, message = waiting_reason(seen, "main")
            kind = "workingDir" if "workingDir" in pod["spec"]["containers"][0] else 'subPath for volumeMount "data"'
            assert message.startswith(f'failed to prepare {kind}')
            assert f'of container "main": {rel!r} is a symbolic link' in message, message
            assert seen["status"]["phase"] == "Pending"
            assert SECRET not in all_log_text(agent, seen)
            await wait_for_events(api, name, ("Failed", f"Error: {message}"))
    assert_untouched(secret_dir)


async def test_a_link_planted_by_an_init_container_reaches_nothing_on_wasmer(kube_api: Any, tmp_path: Path) -> None:
    """Wasmer's volumes under /workspace live in the Pod's sandbox, not on the host: a link planted
    there leads nowhere on the host, and host directories it reads are walked link-free."""
    secret_dir = canary(tmp_path)
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state") as agent:
        await put_modules(api)
        for seed in SEEDS:
            rng = random.Random(seed)
            pod, _ = planted_pod(f"planted-{seed}", rng, up_to(secret_dir, rng), "wasmer", "/workspace/data")
            await api.create(PODS, pod)
        for seed in SEEDS:
            seen = await wait_for(api, PODS, f"planted-{seed}", "default",
                                  lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed")
                                  or waiting_reason(p, "main")[0] == "CreateContainerConfigError", timeout=60)
            assert SECRET not in all_log_text(agent, seen)
    assert_untouched(secret_dir)


def reader_pod(name: str, rng: random.Random, volume: dict[str, Any], runtime: str) -> dict[str, Any]:
    read_only = runtime == "wasmer" or rng.random() < 0.5
    if runtime == "wasmtime" and rng.random() < 0.5:
        container = {"args": ["read", "marker"], "workingDir": "/h/sub",
                     "volumeMounts": [{"name": "h", "mountPath": "/h", "readOnly": read_only}]}
    else:
        container = {"args": ["read", "/x/marker"],
                     "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "sub", "readOnly": read_only}]}
    return wasm_pod(name, NODE, "configmap://modules/files.wasm", runtime=runtime, container=container,
                    volumes=[{"name": "h", **volume}])


def flipper_pod(name: str, host: Path, target: str) -> dict[str, Any]:
    return wasm_pod(name, NODE, "configmap://modules/hostile.wasm", runtime="wasmtime", restart="Always",
                    container={"args": ["flip", "/h/sub", target, "0"],
                               "volumeMounts": [{"name": "h", "mountPath": "/h"}]},
                    volumes=[{"name": "h", "hostPath": {"path": str(host)}}], terminationGracePeriodSeconds=0)


def ended(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def test_a_link_flipped_in_by_a_running_container_is_never_followed_on_wasmtime(
        kube_api: Any, tmp_path: Path) -> None:
    secret_dir = canary(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    rng = random.Random(15)
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api.kubeconfig, tmp_path / "state") as agent:
        await put_modules(api)
        await api.create(PODS, flipper_pod("flipper", shared, up_to(secret_dir, rng)))
        await wait_for(api, PODS, "flipper", "default", lambda p: p.get("status", {}).get("phase") == "Running")
        names = [f"reader-{index}" for index in range(12)]
        for name in names:
            await api.create(PODS, reader_pod(name, rng, {"hostPath": {"path": str(shared)}}, "wasmtime"))
        for name in names:
            pod = await wait_for(api, PODS, name, "default", ended, timeout=90)
            text = all_log_text(agent, pod)
            assert SECRET not in text
            # The real directory was opened: its marker, or (opened as the flipper swapped an empty
            # directory the agent made for a writable subPath) nothing.
            assert text in ("inside", "files: cannot read marker: No such file or directory",
                            "files: cannot read /x/marker: No such file or directory"), text
        await api.delete(PODS, "flipper", "default")
    assert_untouched(secret_dir)


async def test_a_link_flipped_into_a_volume_wasmer_reads_is_never_followed(kube_api: Any, tmp_path: Path) -> None:
    """Wasmer copies a read-only volume's files in at every start: a wasmtime Pod flips the volume's
    directory into a link and back on the host while the wasmer Pod keeps restarting."""
    secret_dir = canary(tmp_path)
    rng = random.Random(23)
    state = tmp_path / "state"
    async with api_client(kube_api.kubeconfig) as api, \
            running_agent(kube_api.kubeconfig, state, restart_backoff_seconds=0.05) as agent:
        await put_modules(api)
        reader = reader_pod("reader", rng, {"emptyDir": {}}, "wasmer")
        reader["spec"]["restartPolicy"] = "Always"
        created = await api.create(PODS, reader)
        volume = state / "pods" / created["metadata"]["uid"] / "volumes" / "h"
        seen = await wait_for(api, PODS, "reader", "default",
                              lambda p: waiting_reason(p, "main")[0] == "CreateContainerConfigError")
        assert "'sub' does not exist" in waiting_reason(seen, "main")[1]
        await api.create(PODS, flipper_pod("flipper", volume, up_to(secret_dir, rng)))
        # Starts refused while the path is missing or a link, runs when it is the directory: wait
        # until one run has read the real marker (the retries back off, so this may take a while).
        seen = await wait_for(api, PODS, "reader", "default", lambda p: "inside" in all_log_text(agent, p),
                              timeout=100)
        assert SECRET not in all_log_text(agent, seen)
        await api.delete(PODS, "flipper", "default")
        await api.delete(PODS, "reader", "default")
    assert_untouched(secret_dir)


def test_wasmtime_holds_the_preopened_directory_not_its_path(tmp_path: Path) -> None:
    """What handing wasmtime `/proc/self/fd/N` relies on: wasmtime opens the directory when it is
    preopened, so after our descriptor is closed and the path is swapped for a link out of the
    volume, the module still sees the directory that was opened."""
    secret_dir = canary(tmp_path)
    volume = tmp_path / "volume"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub" / "marker").write_text("inside\n")
    fd = os.open(volume / "sub", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["files", "read", "/x/marker"]
    wasi.stdout_file = str(tmp_path / "stdout")
    wasi.preopen_dir(f"/proc/self/fd/{fd}", "/x", False)
    os.close(fd)
    (volume / "sub").rename(volume / "moved")
    (volume / "sub").symlink_to(secret_dir)
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, wasmtime.Module(engine, module_bytes("files")))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
    except wasmtime.ExitTrap as exited:
        assert exited.code == 0
    assert (tmp_path / "stdout").read_text() == "inside\n"
