"""The real agent and operator processes authenticated by an exec credential plugin.

The plugin is a small script that prints an `ExecCredential` with a new token on each run
(`exec-1`, `exec-2`, ...) that expires after a few seconds. The test API accepts only the
tokens it lists (no client certificate in this kubeconfig), so a process that kept an expired
or revoked token would be refused: it must run the plugin again on expiry and on a 401.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from wasmlet.kube import KubeClient, load_config
from wasmlet.kube.resources import WASM_WORKLOADS

from tests.fixtures.kubeapi import KubeAPI, write_kubeconfig
from tests.integration.faults import agent_process
from tests.integration.operator_helpers import (
    NS,
    eventually,
    install_crds,
    pods_count,
    wasm_node,
    workload,
)

NODE = "wasm-node-1"
TOKEN_SECONDS = 3  # how long each token the plugin prints is valid
USER = {"username": "exec-user", "groups": ["system:masters"]}

PLUGIN = f"""#!{sys.executable}
import datetime, json, os, pathlib
runs = pathlib.Path(os.environ["RUNS_FILE"])
count = int(runs.read_text() or 0) + 1 if runs.exists() else 1
runs.write_text(str(count))
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={TOKEN_SECONDS})
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": f"exec-{{count}}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def exec_kubeconfig(kube_api: KubeAPI, folder: Path, command: str = "./token-plugin") -> tuple[Path, Path]:
    """A kubeconfig (CA as data, an exec user) and the file where the plugin counts its runs."""
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "token-plugin"
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    runs = folder / "runs"
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": command,
                     "interactiveMode": "Never", "env": [{"name": "RUNS_FILE", "value": str(runs)}]}}
    kube_api.server.tokens.update({f"exec-{n}": USER for n in range(1, 1000)})
    return write_kubeconfig(folder / "kubeconfig", kube_api.url, pki=kube_api.pki, user=user), runs


def runs(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def revoke_issued(kube_api: KubeAPI, runs_file: Path) -> int:
    """Revoke every token the plugin has printed so far (the next request with one gets 401)."""
    issued = runs(runs_file)
    for n in range(1, issued + 1):
        kube_api.server.tokens.pop(f"exec-{n}", None)
    return issued


def tokens_seen(kube_api: KubeAPI, since: int, user_agent: str) -> set[str]:
    return {request.headers.get("Authorization", "") for request in list(kube_api.server)[since:]
            if request.headers.get("User-Agent", "").startswith(user_agent)}


def renew_time(kube_api: KubeAPI) -> Any:
    lease = kube_api.get("coordination.k8s.io/v1", "Lease", "kube-node-lease", NODE)
    return lease and lease["spec"].get("renewTime")


async def test_the_agent_refreshes_an_expiring_exec_token_and_runs_the_plugin_again_on_401(
        kube_api: KubeAPI, tmp_path: Path) -> None:
    kubeconfig, runs_file = exec_kubeconfig(kube_api, tmp_path / "exec")
    async with agent_process(str(kubeconfig), tmp_path / "state"):
        await kube_api.wait_for("v1", "Node", None, NODE, timeout=30)
        await eventually(lambda: _at_least(runs_file, 3), timeout=60, what="the plugin run again as tokens expire")
        revoked = revoke_issued(kube_api, runs_file)
        since = len(list(kube_api.server))
        before = renew_time(kube_api)
        await eventually(lambda: _renewed_after(kube_api, before), timeout=60, what="the Lease renewed after revocation")
        accepted = {f"Bearer exec-{n}" for n in range(revoked + 1, 1000)}
        assert tokens_seen(kube_api, since, "wasmlet-agent") & accepted


async def test_the_operator_and_kopf_log_in_with_the_exec_plugin_and_again_after_a_401(
        kube_api: KubeAPI, tmp_path: Path) -> None:
    kubeconfig, runs_file = exec_kubeconfig(kube_api, tmp_path / "exec")
    kube_api.seed_namespace(NS)
    kube_api.put(wasm_node("wasm-1"))
    async with KubeClient(load_config(kube_api.kubeconfig)) as api:
        await install_crds(api)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wasmlet.operator.main", "--kubeconfig", str(kubeconfig), "--namespace", NS,
            # Short watches: kopf reconnects every 2 s, so it sends requests after the revocation.
            "--standalone", "--watch-timeout-seconds", "2", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            await api.create(WASM_WORKLOADS, workload("first"), NS)
            await eventually(lambda: pods_count(api, "first", 1), timeout=30, what="a pod of the first workload")
            revoked = revoke_issued(kube_api, runs_file)
            since = len(list(kube_api.server))
            await api.create(WASM_WORKLOADS, workload("second"), NS)
            await eventually(lambda: pods_count(api, "second", 1), timeout=60, what="a pod after revocation")
            await eventually(lambda: _kopf_used_a_fresh_token(kube_api, since, revoked), timeout=60,
                             what="kopf logged in again with a fresh token")
        finally:
            if process.returncode is None:
                process.terminate()
            output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()


@pytest.mark.parametrize(("command", "message"), [
    ("wasmlet-no-such-plugin", "exec: executable wasmlet-no-such-plugin not found"),
    (sys.executable, "decoding stdout"),  # python reading an empty stdin prints nothing
])
async def test_the_operator_stops_at_once_when_its_exec_plugin_cannot_give_a_credential(
        kube_api: KubeAPI, tmp_path: Path, command: str, message: str) -> None:
    kubeconfig, _ = exec_kubeconfig(kube_api, tmp_path / "exec", command=command)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wasmlet.operator.main", "--kubeconfig", str(kubeconfig), "--standalone",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert message in output.decode()


async def _at_least(runs_file: Path, count: int) -> bool:
    return runs(runs_file) >= count


async def _renewed_after(kube_api: KubeAPI, before: Any) -> bool:
    return renew_time(kube_api) not in (None, before)


async def _kopf_used_a_fresh_token(kube_api: KubeAPI, since: int, revoked: int) -> bool:
    fresh = {f"Bearer exec-{n}" for n in range(revoked + 1, 1000)}
    return bool(tokens_seen(kube_api, since, "kopf/") & fresh)
