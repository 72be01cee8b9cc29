"""Kubeconfig forms against the HTTPS test API, for our client and for kopf's connection alike:
`tls-server-name`, `proxy-url`, a rotating `tokenFile`, several `KUBECONFIG` files with `--context`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from wasmlet.kube import ApiUnavailable, KubeClient, load_config
from wasmlet.kube.credentials import Credentials
from wasmlet.kube.resources import NAMESPACES
from wasmlet.operator.kopflogin import connection_info

from tests.fixtures.kubeapi import KubeAPI, write_kubeconfig


def with_cluster(kube_api: KubeAPI, path: Path, **fields: Any) -> Path:
    """The test API's kubeconfig with extra cluster fields."""
    doc = yaml.safe_load(kube_api.kubeconfig.read_text())
    doc["clusters"][0]["cluster"].update(fields)
    path.write_text(yaml.safe_dump(doc))
    return path


async def kopf_reaches(config_path: Path) -> bool:
    """Whether kopf's own session, built from our ConnectionInfo, reaches the API."""
    credentials = Credentials(load_config(config_path))
    info = connection_info(credentials, await credentials.login())
    connector = aiohttp.TCPConnector(ssl=info.as_ssl_context())
    async with aiohttp.ClientSession(connector=connector, headers=info.as_http_headers()) as session:
        try:
            async with session.get(f"{info.server}/api/v1/namespaces", proxy=info.proxy_url) as response:
                return response.status == 200
        except aiohttp.ClientConnectorCertificateError:
            return False


async def client_reaches(config_path: Path) -> bool:
    async with KubeClient(load_config(config_path)) as api:
        try:
            await api.list(NAMESPACES)
        except ApiUnavailable as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in exc.message, exc.message
            return False
    return True


async def test_tls_server_name_is_the_name_the_servers_certificate_is_checked_against(
        kube_api: KubeAPI, tmp_path: Path) -> None:
    right = with_cluster(kube_api, tmp_path / "right", **{"tls-server-name": "kubernetes.default.svc"})
    wrong = with_cluster(kube_api, tmp_path / "wrong", **{"tls-server-name": "not-the-api.example"})
    assert await client_reaches(right) and await kopf_reaches(right)
    assert not await client_reaches(wrong) and not await kopf_reaches(wrong)


@contextlib.asynccontextmanager
async def connect_proxy(seen: list[bytes]) -> AsyncIterator[str]:
    """A minimal HTTP proxy that serves CONNECT (what clients send for an https:// server)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        writers = [writer]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head.split(b"\r\n")[0])
            host, _, port = head.split()[1].decode().rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writers.append(upstream_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            for each in writers:
                each.close()
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    await each.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_proxy_url_carries_our_requests_and_kopfs_through_the_proxy(kube_api: KubeAPI, tmp_path: Path) -> None:
    seen: list[bytes] = []
    async with connect_proxy(seen) as proxy:
        config = with_cluster(kube_api, tmp_path / "proxied", **{"proxy-url": proxy})
        assert await client_reaches(config)
        assert await kopf_reaches(config)
    target = kube_api.url.removeprefix("https://").encode()
    assert seen and all(line == b"CONNECT " + target + b" HTTP/1.1" for line in seen)


@pytest.mark.kmock(tokens={"first": {"username": "a"}, "second": {"username": "a"}})
async def test_a_rotated_token_file_is_read_again(kube_api: KubeAPI, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    config = write_kubeconfig(tmp_path / "config", kube_api.url, pki=kube_api.pki, user={"tokenFile": "token"})
    async with KubeClient(load_config(config)) as api:
        await api.list(NAMESPACES)
        kube_api.server.tokens.pop("first")  # revoked, rotated
        token.write_text("second\n")
        await api.list(NAMESPACES)
    assert list(kube_api.server)[-1].headers["Authorization"] == "Bearer second"


async def test_several_kubeconfig_files_and_a_context_lead_to_the_right_cluster(
        kube_api: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = write_kubeconfig(tmp_path / "first", "https://127.0.0.1:1", name="elsewhere")
    monkeypatch.setenv("KUBECONFIG", f"{elsewhere}:{tmp_path / 'missing'}:{kube_api.kubeconfig}")
    assert load_config().server == "https://127.0.0.1:1"  # the first file's current context
    async with KubeClient(load_config(context="wasmlet-test-api")) as api:
        assert (await api.get(NAMESPACES, "default"))["metadata"]["name"] == "default"
