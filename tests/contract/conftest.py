"""Contract tests: the API behaviours our code relies on, pinned against the test API and,
when `WASMLET_E2E_KUBECONFIG` names a disposable real cluster, against that cluster too.

The `api` fixture yields a `ContractClient` (the raw test client plus a throwaway namespace).
On a real cluster it creates that namespace and deletes it afterwards, plus any cluster-scoped
object a test registered with `api.owns(...)`; it touches nothing else. Tests of what only the
emulator can be told to do live in `test_emulator_only.py`, which is collected only against the
emulator (never skipped: a skip would read as a gap).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.contract.builders import widget_crd
from tests.fixtures.kubeapi import KubeAPI
from tests.fixtures.kubeclient import ApiError, KubeClient

E2E_KUBECONFIG = os.environ.get("WASMLET_E2E_KUBECONFIG")
collect_ignore = ["test_emulator_only.py"] if E2E_KUBECONFIG else []
# A real cluster acts within a few seconds; the emulator within a few hundred milliseconds.
SETTLE_TIMEOUT = 20.0 if E2E_KUBECONFIG else 3.0


class ContractClient(KubeClient):
    """The raw client, bound to a throwaway namespace, with cleanup of cluster-scoped objects."""

    namespace: str
    emulator: KubeAPI | None  # the emulator's handle, or None on a real cluster
    _owned: list[tuple[str, str, str]]

    def unique(self, prefix: str) -> str:
        """A name no other test run uses: `prefix-` and 6 random hex digits."""
        return f"{prefix}-{secrets.token_hex(3)}"

    def owns(self, api_version: str, plural: str, name: str) -> None:
        """Delete this cluster-scoped object after the test."""
        self._owned.append((api_version, plural, name))

    async def cleanup(self) -> None:
        """Delete what the test registered, newest first; ignore what is gone already."""
        for api_version, plural, name in reversed(self._owned):
            try:
                await self.delete(api_version, plural, None, name, params={"gracePeriodSeconds": 0})
            except ApiError as error:
                if error.status != 404:
                    raise


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = SETTLE_TIMEOUT) -> Any:
    """Poll `check` until it returns a truthy value (its last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def absent(api: KubeClient, api_version: str, plural: str, namespace: str | None, name: str) -> bool:
    """Whether the object is gone (404)."""
    try:
        await api.get(api_version, plural, namespace, name)
    except ApiError as error:
        if error.status == 404:
            return True
        raise
    return False


@pytest.fixture()
def _backend(request: pytest.FixtureRequest) -> tuple[str, KubeAPI | None]:
    # Synchronous on purpose: it resolves the async `kube_api` fixture only when no real
    # cluster is configured, so a real-cluster run never starts the emulator.
    if E2E_KUBECONFIG:
        return E2E_KUBECONFIG, None
    kube_api: KubeAPI = request.getfixturevalue("kube_api")
    return str(kube_api.kubeconfig), kube_api


@pytest.fixture()
async def api(_backend: tuple[str, KubeAPI | None]) -> AsyncIterator[ContractClient]:
    """The API under contract, with a fresh namespace (ready for Pods) as `api.namespace`."""
    kubeconfig, emulator = _backend
    client = ContractClient.from_kubeconfig(kubeconfig)
    assert isinstance(client, ContractClient)
    client.emulator, client._owned = emulator, []
    client.namespace = client.unique("contract")
    try:
        if emulator is not None:
            emulator.seed_namespace(client.namespace)
        else:
            await client.create("v1", "namespaces", None, {"metadata": {"name": client.namespace}})
            await eventually(lambda: _has_default_account(client), timeout=60)
        yield client
    finally:
        try:
            await client.cleanup()
            if emulator is None:
                await client.delete("v1", "namespaces", None, client.namespace)
        finally:
            await client.close()


async def _has_default_account(client: ContractClient) -> bool:
    return not await absent(client, "v1", "serviceaccounts", client.namespace, "default")


@pytest.fixture()
async def widgets(api: ContractClient) -> str:
    """A throwaway Widget CRD in a unique group, served and discoverable; yields its apiVersion."""
    group = f"{api.unique('c')}.contract.wasmlet.dev"
    await api.create("apiextensions.k8s.io/v1", "customresourcedefinitions", None, widget_crd(group))
    api.owns("apiextensions.k8s.io/v1", "customresourcedefinitions", f"widgets.{group}")

    async def served() -> bool:
        status, body = await api.request("GET", f"/apis/{group}/v1")
        return status == 200 and any(r["name"] == "widgets" for r in body.get("resources", []))

    assert await eventually(served, timeout=60), "the CRD never became served"
    return f"{group}/v1"
