"""Kubelet behaviours of the agent with real modules over the test API: init containers, env and
volumes from ConfigMaps and Secrets, crash-loop backoff, configuration errors, resync safety."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube.resources import CONFIGMAPS, EVENTS, PODS, SECRETS

from tests.integration.agent_helpers import (
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


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


def waiting_reason(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return (statuses[0].get("state") or {}).get("waiting", {}).get("reason", "")


async def seed(api: Any, **modules: str) -> None:
    await put_module_configmap(api, "default", "modules", {f"{m}.wasm": module_bytes(m) for m in modules.values()})
    await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "settings", "namespace": "default"},
                                  "data": {"greeting": "hi", "motd.txt": "from a configmap\n"}})
    await api.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                               "metadata": {"name": "creds", "namespace": "default"},
                               "data": {"token": base64.b64encode(b"s3cret").decode()}})


async def test_env_comes_from_values_configmaps_secrets_and_the_downward_api(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="echo")
        env = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
               {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
               {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
               {"name": "BOTH", "value": "$(GREETING)-$(NODE)"}]
        await api.create(PODS, wasm_pod("env", NODE, "configmap://modules/echo.wasm", container={
            "env": env, "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}]}))
        await wait_for(api, PODS, "env", "default", lambda p: phase(p) == "Succeeded")
        _, text = await pod_log(kube_api, "env")
        lines = set(text.splitlines())
        assert {"GREETING=hi", "TOKEN=s3cret", f"NODE={NODE}", f"BOTH=hi-{NODE}", "CM_greeting=hi"} <= lines


async def test_init_containers_run_first_and_share_an_empty_dir_with_the_main_container(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="files")
        image = "configmap://modules/files.wasm"
        pod = wasm_pod("init", NODE, image, container={
            "args": ["read", "/workspace/shared/note.txt"],
            "volumeMounts": [{"name": "shared", "mountPath": "/workspace/shared"}]},
            volumes=[{"name": "shared", "emptyDir": {}}],
            initContainers=[{"name": "writer", "image": image,
                             "args": ["write", "/workspace/shared/note.txt", "from init"],
                             "volumeMounts": [{"name": "shared", "mountPath": "/workspace/shared"}]}])
        await api.create(PODS, pod)
        done = await wait_for(api, PODS, "init", "default", lambda p: phase(p) == "Succeeded")
        init_status = done["status"]["initContainerStatuses"][0]
        assert init_status["state"]["terminated"]["reason"] == "Completed"
        assert {c["type"]: c["status"] for c in done["status"]["conditions"]}["Initialized"] == "True"
        _, text = await pod_log(kube_api, "init", container="main")
        assert text.strip() == "from init"


async def test_configmap_and_secret_volumes_are_files_with_items_and_modes(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="files")
        volumes = [{"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "motd.txt", "path": "etc/motd"}]}},
                   {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}}]
        mounts = [{"name": "cfg", "mountPath": "/config", "readOnly": True},
                  {"name": "sec", "mountPath": "/secrets", "readOnly": True}]
        for name, args in (("read-cfg", ["read", "/config/etc/motd"]), ("read-sec", ["read", "/secrets/token"])):
            await api.create(PODS, wasm_pod(name, NODE, "configmap://modules/files.wasm",
                                            container={"args": args, "volumeMounts": mounts}, volumes=volumes))
        for name, expected in (("read-cfg", "from a configmap"), ("read-sec", "s3cret")):
            pod = await wait_for(api, PODS, name, "default", lambda p: phase(p) in ("Succeeded", "Failed"))
            assert phase(pod) == "Succeeded", pod["status"]
            _, text = await pod_log(kube_api, name)
            assert text.strip() == expected
        uid = pod["metadata"]["uid"]
        token = tmp_path / "pods" / uid / "volumes" / "sec" / "token"
        assert oct(token.stat().st_mode & 0o777) == "0o400"


@pytest.mark.parametrize("runtime", ["wasmer", "wasmtime"])
async def test_configmap_and_secret_volumes_are_read_only_whatever_the_mount_says(
        kube_api: Any, tmp_path: Path, runtime: str) -> None:
    """As the kubelet mounts them; on wasmer (writable volumes only under /workspace) such a mount
    is therefore accepted anywhere."""
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="files")
        volumes = [{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "sec", "secret": {"secretName": "creds"}}]
        mounts = [{"name": "cfg", "mountPath": "/config"}, {"name": "sec", "mountPath": "/secrets"},  # no readOnly
                  {"name": "sec", "mountPath": "/workspace/secrets", "readOnly": True}]
        for name, args in (("read", ["read", "/secrets/token"]), ("read-ws", ["read", "/workspace/secrets/token"]),
                           ("write", ["write", "/config/greeting", "changed"])):
            await api.create(PODS, wasm_pod(name, NODE, "configmap://modules/files.wasm", runtime=runtime,
                                            container={"args": args, "volumeMounts": mounts}, volumes=volumes))
        for name in ("read", "read-ws"):
            pod = await wait_for(api, PODS, name, "default", lambda p: phase(p) in ("Succeeded", "Failed"))
            assert phase(pod) == "Succeeded", pod["status"]
            assert (await pod_log(kube_api, name))[1].strip() == "s3cret"
        pod = await wait_for(api, PODS, "write", "default", lambda p: phase(p) in ("Succeeded", "Failed"))
        _, text = await pod_log(kube_api, "write")
        if runtime == "wasmtime":
            assert phase(pod) == "Failed", pod["status"]
            assert "files: cannot write /config/greeting" in text
        else:  # wasmer-sdk has no read-only files: the write lands in the run's private overlay
            assert phase(pod) == "Succeeded", pod["status"]
        greeting = tmp_path / "pods" / pod["metadata"]["uid"] / "volumes" / "cfg" / "greeting"
        assert greeting.read_text() == "hi"


async def test_a_crashing_container_restarts_with_backoff_and_reports_crash_loop(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="exit")
        await api.create(PODS, wasm_pod("crash", NODE, "configmap://modules/exit.wasm", restart="Always",
                                        container={"args": ["2"]}))
        pod = await wait_for(api, PODS, "crash", "default", lambda p: waiting_reason(p) == "CrashLoopBackOff")
        status = pod["status"]["containerStatuses"][0]
        assert status["lastState"]["terminated"]["exitCode"] == 2
        assert "back-off" in status["state"]["waiting"]["message"]
        pod = await wait_for(api, PODS, "crash", "default",
                             lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 2)
        assert phase(pod) == "Running"  # restartPolicy Always: the kubelet keeps the Pod Running
        await wait_for_events(api, "crash", ("BackOff", None))


async def test_a_missing_configmap_key_is_create_container_config_error_until_it_appears(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="echo")
        env = [{"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "value"}}}]
        await api.create(PODS, wasm_pod("late", NODE, "configmap://modules/echo.wasm", container={"env": env}))
        pod = await wait_for(api, PODS, "late", "default",
                             lambda p: waiting_reason(p) == "CreateContainerConfigError")
        assert 'configmap "late" not found' in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        await api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "late", "namespace": "default"}, "data": {"value": "ok"}})
        await wait_for(api, PODS, "late", "default", lambda p: phase(p) == "Succeeded", timeout=30)


async def test_an_unsupported_volume_fails_the_pod_with_the_field_named(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        pod = wasm_pod("nfs", NODE, "configmap://modules/echo.wasm",
                       volumes=[{"name": "data", "nfs": {"server": "nfs.local", "path": "/"}}])
        await api.create(PODS, pod)
        pod = await wait_for(api, PODS, "nfs", "default", lambda p: phase(p) == "Failed")
        assert pod["status"]["reason"] == "UnsupportedVolume"
        assert "'nfs'" in pod["status"]["message"]


async def test_after_an_agent_restart_a_succeeded_pod_is_not_run_again(kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api:
        async with running_agent(kube_api, tmp_path):
            await seed(api, m="hello")
            await api.create(PODS, wasm_pod("once", NODE, "configmap://modules/hello.wasm"))
            first = await wait_for(api, PODS, "once", "default", lambda p: phase(p) == "Succeeded")
        async with running_agent(kube_api, tmp_path) as agent:
            await wait_for(api, PODS, "once", "default", lambda p: True)
            again = await api.get(PODS, "once", "default")
            assert again["status"]["containerStatuses"] == first["status"]["containerStatuses"]
            assert agent.metrics.starts.labels("wasmer")._value.get() == 0


async def test_wasmer_refuses_a_working_dir_it_cannot_honour_and_names_the_runtime_that_can(
        kube_api: Any, tmp_path: Path) -> None:
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="echo")
        await api.create(PODS, wasm_pod("cwd", NODE, "configmap://modules/echo.wasm",
                                        container={"workingDir": "/data"}))
        pod = await wait_for(api, PODS, "cwd", "default", lambda p: phase(p) == "Failed")
        assert pod["status"]["reason"] == "UnsupportedField"
        assert "workingDir" in pod["status"]["message"] and "wasmtime" in pod["status"]["message"]


async def test_secret_contents_never_reach_the_log_events_or_status(
        kube_api: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the agent's most talkative setting (--verbose)
    token, password = "tok-9f1c2e7a-not-for-logs", "pw-4b8d0e3f-not-for-logs"
    auth = base64.b64encode(f"robot:{password}".encode()).decode()
    docker_config = json.dumps({"auths": {"127.0.0.1:1": {"auth": auth}}})
    async with api_client(kube_api.kubeconfig) as api, running_agent(kube_api, tmp_path):
        await seed(api, m="hello")
        await api.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                   "metadata": {"name": "private", "namespace": "default"},
                                   "data": {"token": base64.b64encode(token.encode()).decode()}})
        await api.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                                   "metadata": {"name": "pull", "namespace": "default"},
                                   "data": {".dockerconfigjson": base64.b64encode(docker_config.encode()).decode()}})
        env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "private", "key": "token"}}}]
        await api.create(PODS, wasm_pod("uses", NODE, "configmap://modules/hello.wasm", container={
            "env": env, "volumeMounts": [{"name": "s", "mountPath": "/s"}]},
            volumes=[{"name": "s", "secret": {"secretName": "private"}}]))
        wrong_key = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "private", "key": "nope"}}}]
        await api.create(PODS, wasm_pod("wrong-key", NODE, "configmap://modules/hello.wasm",
                                        container={"env": wrong_key}))
        await api.create(PODS, wasm_pod("private-image", NODE, "127.0.0.1:1/team/app:v1",
                                        imagePullSecrets=[{"name": "pull"}]))

        await wait_for(api, PODS, "uses", "default", lambda p: phase(p) == "Succeeded")
        pod = await wait_for(api, PODS, "wrong-key", "default", lambda p: waiting_reason(p) == "CreateContainerConfigError")
        assert "nope" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        await wait_for(api, PODS, "private-image", "default",
                       lambda p: waiting_reason(p) in ("ErrImagePull", "ImagePullBackOff"))
        events = await api.list(EVENTS, "default")
        pods = await api.list(PODS, "default")

    assert "default/private-image: Pulling → PullBackOff" in caplog.text  # the debug log was on
    for secret in (token, password, auth, base64.b64encode(token.encode()).decode()):
        assert secret not in caplog.text
        assert secret not in json.dumps(events)
        assert secret not in json.dumps([p["status"] for p in pods["items"]])
    assert oct((tmp_path / "agent.db").stat().st_mode & 0o777) == "0o600"  # the store holds Secrets
