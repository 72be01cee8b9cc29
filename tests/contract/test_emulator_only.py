"""What only the test API can be told to do, and its own conveniences.

Collected only against the emulator (see conftest): history size, bookmark interval, the
service-account delay, starting without RuntimeClasses, fault injection through kmock's DSL,
the kubelet log proxy, token reviews, and the `kube_api` helpers.
"""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import kmock
import pytest
import yaml

from tests.contract.builders import configmap, node, pod
from tests.contract.conftest import ContractClient, absent
from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeclient import ApiError, KubeClient


def _emulator(api: ContractClient) -> KubeAPI:
    assert api.emulator is not None
    return api.emulator


@pytest.mark.kmock(history_size=3)
async def test_a_watch_from_before_the_history_window_gets_410_with_the_oldest_version(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    for value in range(4):
        await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"n": str(value)}})
    since = created["metadata"]["resourceVersion"]
    async with api.watch("v1", "configmaps", api.namespace, params={"resourceVersion": since}) as events:
        error = await events.next()
    compacted = _emulator(api).server.store.compacted
    assert error["object"]["message"] == f"too old resource version: {since} ({compacted})"
    assert int(since) < compacted


@pytest.mark.kmock(bookmark_interval=0.05)
async def test_bookmarks_come_at_the_configured_interval_with_only_a_resource_version(api: ContractClient) -> None:
    params = {"allowWatchBookmarks": "true", "labelSelector": "none=here"}
    async with api.watch("v1", "pods", api.namespace, params=params) as events:
        bookmarks = [await events.next(timeout=1), await events.next(timeout=1)]
    assert [b["type"] for b in bookmarks] == ["BOOKMARK", "BOOKMARK"]
    assert bookmarks[0]["object"] == {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"resourceVersion": bookmarks[0]["object"]["metadata"]["resourceVersion"]},
    }  # fmt: skip


async def test_send_initial_events_ends_with_an_annotated_bookmark(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", labels={"x": "y"}))
    params = {"allowWatchBookmarks": "true", "sendInitialEvents": "true", "labelSelector": "x=y"}
    async with api.watch("v1", "configmaps", api.namespace, params=params) as events:
        added, bookmark = await events.next(), await events.next()
    assert added["type"] == "ADDED" and bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_the_default_service_account_appears_shortly_after_its_namespace(api: ContractClient) -> None:
    namespace = api.unique("fresh")
    await api.create("v1", "namespaces", None, {"metadata": {"name": namespace}})
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", namespace, pod("early"))
    await asyncio.sleep(_emulator(api).server.service_account_delay + 0.1)
    created = await api.create("v1", "pods", namespace, pod("later"))
    assert error.value.status == 403
    assert error.value.message.endswith(f'error looking up service account {namespace}/default: serviceaccount "default" not found')
    assert created["spec"]["serviceAccountName"] == "default"


@pytest.mark.kmock(runtime_classes=())
async def test_without_runtime_classes_a_wasmer_pod_is_rejected(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", api.namespace, pod("p", runtimeClassName="wasmer"))
    assert error.value.message == 'pods "p" is forbidden: pod rejected: RuntimeClass "wasmer" not found'


async def test_a_fresh_cluster_has_system_namespaces_and_wasm_runtime_classes(api: ContractClient) -> None:
    namespaces = {item["metadata"]["name"] for item in (await api.list("v1", "namespaces"))["items"]}
    classes = {item["metadata"]["name"]: item for item in (await api.list("node.k8s.io/v1", "runtimeclasses"))["items"]}
    assert {"default", "kube-system", "kube-node-lease", "kube-public"} <= namespaces
    assert classes["wasmer"]["handler"] == "wasmer"
    assert classes["wasmtime"]["scheduling"] == {"nodeSelector": {"wasmlet.dev/runtime.wasmtime": "true"}}
    assert await api.get("v1", "serviceaccounts", "kube-node-lease", "default")


async def test_config_maps_carry_a_generation_too(api: ContractClient) -> None:
    # A deviation: real ConfigMaps have no generation; the emulator gives every object one.
    await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    changed = await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"k": "v"}})
    assert changed["metadata"]["generation"] == 2


async def test_the_server_reports_kubernetes_1_34(api: ContractClient) -> None:
    _, version = await api.request("GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "34")


async def test_user_reactions_take_priority_over_the_emulator(api: ContractClient) -> None:
    server = _emulator(api).server
    path = f"/api/v1/namespaces/{api.namespace}/configmaps"
    server[f"get {path}"][:1] << 500
    server[f"post {path}"] << (lambda: asyncio.sleep(0.2))
    failed, _ = await api.request("GET", path)
    served, _ = await api.request("GET", path)
    started = time.monotonic()
    created = await api.create("v1", "configmaps", api.namespace, configmap("slow"))
    assert (failed, served) == (500, 200)
    assert time.monotonic() - started >= 0.2 and created["metadata"]["name"] == "slow"
    assert len(server[f"get {path}"]) == 2


async def test_dry_run_persists_nothing(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"), params={"dryRun": "All"})
    assert created["metadata"]["uid"] and await absent(api, "v1", "configmaps", api.namespace, "cm")


@pytest.mark.kmock(kubelet_scheme="http")
async def test_pod_logs_are_proxied_to_the_nodes_kubelet(api: ContractClient) -> None:
    async with kmock.RawHandler() as kubelet, kmock.Server(kubelet) as kubelet_server:
        kubelet[f"get /containerLogs/{api.namespace}/p/main"] << b"hello\nworld\n"
        daemon = {"kubeletEndpoint": {"Port": kubelet_server.port}}
        await api.create("v1", "nodes", None, node("n1", addresses=[{"type": "InternalIP", "address": "127.0.0.1"}],
                                                   daemonEndpoints=daemon))
        await api.create("v1", "pods", api.namespace, pod("p", node="n1"))
        status, text = await api.request("GET", f"/api/v1/namespaces/{api.namespace}/pods/p/log", params={"tailLines": 2})
        assert (status, text) == (200, "hello\nworld\n")
        assert list(kubelet)[0].params == {"tailLines": "2"}


@pytest.mark.kmock(tokens={"s3cret": {"username": "system:node:n1", "groups": ["system:nodes"]}})
async def test_token_reviews_answer_from_the_configured_tokens(api: ContractClient) -> None:
    def review(token: str) -> dict[str, object]:
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}

    known = await api.create("authentication.k8s.io/v1", "tokenreviews", None, review("s3cret"))
    unknown = await api.create("authentication.k8s.io/v1", "tokenreviews", None, review("guess"))
    assert known["status"]["authenticated"] and known["status"]["user"]["username"] == "system:node:n1"
    assert unknown["status"]["authenticated"] is False


async def test_the_kubeconfig_carries_the_cluster_ca_and_a_client_certificate_as_data(api: ContractClient) -> None:
    emulator = _emulator(api)
    assert emulator.pki is not None
    config = yaml.safe_load(emulator.kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    assert cluster["server"] == emulator.url and emulator.url.startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["certificate-authority-data"]) == emulator.pki.ca_file.read_bytes()
    assert base64.b64decode(user["client-certificate-data"]) == emulator.pki.admin_cert.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == emulator.pki.admin_key.read_bytes()
    assert config["current-context"] == config["contexts"][0]["name"]


@pytest.mark.kmock(tokens={"known": {"username": "someone"}})
async def test_a_request_without_valid_credentials_is_401_but_health_is_public(api: ContractClient) -> None:
    emulator = _emulator(api)
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer guess"}):
            async with session.get(f"{emulator.url}/api/v1/namespaces", headers=headers,
                                   ssl=emulator.ssl_context(admin=False)) as response:
                assert (response.status, (await response.json())["reason"]) == (401, "Unauthorized")
        async with session.get(f"{emulator.url}/api/v1/namespaces", headers={"Authorization": "Bearer known"},
                               ssl=emulator.ssl_context(admin=False)) as response:
            assert response.status == 200
        async with session.get(f"{emulator.url}/healthz", ssl=emulator.ssl_context(admin=False)) as response:
            assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.kmock(tokens={"abc": {"username": "a"}, "from-file": {"username": "b"}})
async def test_the_client_sends_the_kubeconfig_bearer_token(api: ContractClient) -> None:
    emulator = _emulator(api)
    config = yaml.safe_load(emulator.kubeconfig.read_text())
    seen = []
    for user in ({"token": "abc"}, {"tokenFile": "token.txt"}):
        emulator.kubeconfig.with_name("token.txt").write_text("from-file\n")
        config["users"][0]["user"] = user
        path = emulator.kubeconfig.with_name("token-kubeconfig")
        path.write_text(yaml.safe_dump(config))
        async with KubeClient.from_kubeconfig(path) as client:
            await client.get("v1", "namespaces", None, "default")
        seen.append(list(emulator.server)[-1].headers["Authorization"])
    assert seen == ["Bearer abc", "Bearer from-file"]


async def test_the_helpers_seed_and_read_objects_without_http(api: ContractClient) -> None:
    emulator = _emulator(api)
    seeded = emulator.put({**pod("p"), "metadata": {"name": "p", "namespace": api.namespace}, "status": {"phase": "Running"}})
    fetched = await api.get("v1", "pods", api.namespace, "p")
    assert seeded["status"]["phase"] == fetched["status"]["phase"] == "Running"
    assert [p["metadata"]["name"] for p in emulator.list("v1", "Pod", api.namespace, fields="status.phase=Running")] == ["p"]
    emulator.delete("v1", "Pod", api.namespace, "p")
    marked = await emulator.wait_for("v1", "Pod", api.namespace, "p", lambda obj: bool(obj and obj["metadata"].get("deletionTimestamp")))
    emulator.remove("v1", "pods", api.namespace, "p")
    assert marked is not None and emulator.get("v1", "po", api.namespace, "p") is None
