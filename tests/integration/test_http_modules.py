"""http(s) modules: pinned by sha256, redirects followed (a few), size-limited, failures named."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.podspec import ModuleRef

from tests.integration.agent_helpers import module_bytes
from tests.integration.oci_helpers import cache

HELLO = module_bytes("hello")
PIN = hashlib.sha256(HELLO).hexdigest()


@pytest.fixture
async def web() -> AsyncIterator[str]:
    async def module(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=HELLO)

    async def hop(request: aiohttp.web.Request) -> aiohttp.web.Response:
        left = int(request.match_info["n"])
        raise aiohttp.web.HTTPFound("/module.wasm" if left == 0 else f"/hop/{left - 1}")

    async def streamed(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0asm" + bytes(1020))
        return response

    app = aiohttp.web.Application()
    app.router.add_get("/module.wasm", module)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/streamed.wasm", streamed)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_pinned_module_follows_a_few_redirects(web: str, tmp_path: Path) -> None:
    module = await cache(tmp_path).fetch(ModuleRef("http", f"{web}/hop/3", PIN), "default")
    assert module.path.read_bytes() == HELLO
    with pytest.raises(PullError, match="more than 5 redirects"):
        await cache(tmp_path / "other").fetch(ModuleRef("http", f"{web}/hop/9", PIN), "default")


async def test_an_unpinned_url_is_refused_unless_the_agent_allows_it(web: str, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="must be pinned with a sha256"):
        await cache(tmp_path).fetch(ModuleRef("http", f"{web}/module.wasm"), "default")
    module = await cache(tmp_path, allow_unpinned_urls=True).fetch(ModuleRef("http", f"{web}/module.wasm"), "default")
    assert module.digest == f"sha256:{PIN}"


@pytest.mark.parametrize(("path", "max_bytes", "problem"), [
    ("/module.wasm", 100, "too large: .* bytes, the module limit is 100"),
    ("/streamed.wasm", 10_000, "too large: over the 10000-byte module limit"),
    ("/nothing.wasm", 1 << 20, "not found: HTTP 404"),
])
async def test_http_failures_say_what_failed_and_leave_nothing(web: str, tmp_path: Path, path: str,
                                                               max_bytes: int, problem: str) -> None:
    with pytest.raises(PullError, match=problem):
        await cache(tmp_path, max_bytes=max_bytes).fetch(ModuleRef("http", f"{web}{path}", PIN), "default")
    assert list((tmp_path / "modules" / "sha256").iterdir()) == []


async def test_never_serves_a_pinned_url_only_from_the_cache(web: str, tmp_path: Path) -> None:
    modules = cache(tmp_path)
    with pytest.raises(PullError) as error:
        await modules.fetch(ModuleRef("http", f"{web}/module.wasm", PIN), "default", pull_policy="Never")
    assert error.value.reason == "ErrImageNeverPull"
    await modules.fetch(ModuleRef("http", f"{web}/module.wasm", PIN), "default")
    cached = await modules.fetch(ModuleRef("http", f"{web}/gone.wasm", PIN), "default", pull_policy="Never")
    assert cached.digest == f"sha256:{PIN}"
