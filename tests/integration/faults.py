"""Real processes and a cuttable link for the fault-injection tests.

`Link` is a TCP proxy between the agent and the test API: `cut()` closes every connection and
stops listening (the API server is "stopped": connections are refused), `restore()` listens
again on the same port. `AgentProcess` is `wasmlet-agent` as a child process that can be
SIGKILLed and started again on the same state directory; with no API URL and a manifest folder
it runs standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

# An HTTP/1.1 request line: how the link counts the agent's requests. Not anchored to a line start:
# on a kept-alive connection a request follows the previous one's body directly.
REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE) /[^ \r\n]* HTTP/1\.1\r\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Link:
    """A TCP proxy to `target` (host, port) on a fixed local port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests: list[bytes] = []  # request lines the agent sent through the link, in order

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink, outgoing in ((reader, up_writer, True), (up_reader, writer, False)):
            pipe = asyncio.create_task(self._pipe(source, sink, outgoing))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, outgoing: bool) -> None:
        tail = b""  # the end of the previous read, for a request line split across two reads
        try:
            while chunk := await source.read(65536):
                if outgoing:
                    data = tail + chunk
                    self.requests += [m.group().strip() for m in REQUEST_LINE.finditer(data) if m.end() > len(tail)]
                    tail = data[-4096:]
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(sink)
            sink.close()



def metric_value(text: str, series: str) -> float:
    """One series of a Prometheus text page, e.g. `wasmlet_pods` or `x_total{runtime="wasmer"}`; 0 if absent."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0

@contextlib.asynccontextmanager
async def link_to(url: str) -> AsyncIterator[Link]:
    host, _, port = url.removeprefix("http://").partition(":")
    link = Link((host, int(port)))
    await link.restore()
    try:
        yield link
    finally:
        await link.cut()


class AgentProcess:
    """`wasmlet-agent` in a child process, on a fixed kubelet port and state directory: against
    `api_url`, or standalone on `manifests` when there is no API."""

    def __init__(self, api_url: str | None, state_dir: Path, node_name: str = "wasm-node-1",
                 manifests: Path | None = None, **env: str) -> None:
        self.api_url = api_url
        self.state_dir = state_dir
        self.node_name = node_name
        self.manifests = manifests
        self.port = free_port()
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}-agent.log"

    async def start(self) -> None:
        args = ["--node-name", self.node_name, "--node-ip", "127.0.0.1", "--kubelet-port", str(self.port),
                "--state-dir", str(self.state_dir)]
        args += ["--kubeconfig", self.api_url] if self.api_url else []
        args += ["--manifests", str(self.manifests)] if self.manifests else []
        # These tests read /pods and /metrics directly; authentication has its own tests.
        env = {**os.environ, "WASMLET_LEASE_RENEW_SECONDS": "1", "WASMLET_KUBELET_API_AUTH": "none", **self.env}
        if not self.api_url:  # standalone: no cluster found in the environment either
            env = {k: v for k, v in env.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wasmlet.nodeagent.main", *args, stdout=log, stderr=log, env=env)
        log.close()
        async with asyncio.timeout(20):
            while not await self.healthy():
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(f"https://127.0.0.1:{self.port}{path}", ssl=False) as resp:
            return await (resp.json() if path == "/pods" else resp.text())

    async def healthy(self) -> bool:
        try:
            return await self.get("/healthz") == "ok"
        except aiohttp.ClientError:
            return False

    async def pod_phases(self) -> dict[str, str]:
        """Each Pod's phase as the agent sees it; "Running" only once its first container runs."""
        phases = {}
        for pod in (await self.get("/pods"))["items"]:
            status = pod.get("status") or {}
            phase = status.get("phase", "")
            first = (status.get("containerStatuses") or [{}])[0]
            if phase == "Running" and "running" not in (first.get("state") or {}):
                phase = "Running (container not started)"
            phases[pod["metadata"]["name"]] = phase
        return phases

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.asynccontextmanager
async def agent_process(api_url: str | None, state_dir: Path, manifests: Path | None = None,
                        **env: str) -> AsyncIterator[AgentProcess]:
    agent = AgentProcess(api_url, state_dir, manifests=manifests, **env)
    await agent.start()
    try:
        yield agent
    except BaseException:
        print(f"--- the agent's log (last 8000 characters) ---\n{agent.log()[-8000:]}")  # shown on failure
        raise
    finally:
        await agent.stop()
