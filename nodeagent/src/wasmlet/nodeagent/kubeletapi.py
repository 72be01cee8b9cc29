"""The kubelet API on HTTPS (`:10250` by default): what `kubectl logs` and monitoring reach.

- `/containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`, `sinceSeconds`,
  `sinceTime`, `timestamps`, `previous`, `limitBytes` — served from the CRI log files.
- `/pods` (a PodList of what this node runs), `/healthz`, `/metrics` (Prometheus).
The API server proxies `kubectl logs` here (docs/contract.md: Node InternalIP and
`daemonEndpoints.kubeletEndpoint.Port`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wasmlet.nodeagent.logs import LogTail, pod_log_dir, read_lines, render, run_files, select_lines
from wasmlet.nodeagent.metrics import AgentMetrics
from wasmlet.nodeagent.pods import PodController, PodWorker

FOLLOW_POLL_SECONDS = 0.1


class KubeletApi:
    """Routes of the kubelet API over one PodController."""

    def __init__(self, controller: PodController, metrics: AgentMetrics, logs_dir: Path,
                 healthy: Callable[[], bool] = lambda: True, middlewares: tuple[Any, ...] = ()) -> None:
        self._controller = controller
        self._metrics = metrics
        self._logs_dir = logs_dir
        self._healthy = healthy
        self.app = web.Application(middlewares=list(middlewares))
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok") if self._healthy() else web.Response(status=503, text="unhealthy")

    async def pods(self, request: web.Request) -> web.Response:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self._controller.pods()}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        worker = self._controller.find(namespace, pod)
        if worker is None:
            raise web.HTTPNotFound(text=f'pod "{pod}" not found in namespace "{namespace}"')
        record = worker.records.get(container)
        if record is None:
            raise web.HTTPBadRequest(text=f"container {container} is not valid for pod {pod}")
        query = request.query
        previous = _flag(query.get("previous"))
        restart = record.restart_count - 1 if previous else record.restart_count
        if previous and restart < 0:
            raise web.HTTPBadRequest(text=f'previous terminated container "{container}" in pod "{pod}" not found')
        folder = pod_log_dir(self._logs_dir, namespace, pod, worker.plan.uid) / container
        files = run_files(folder, restart)
        if not files[-1].exists():
            waiting = record.state.get("waiting") or {}
            raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is waiting to start: '
                                          f'{waiting.get("reason", "ContainerCreating")}')
        tail = LogTail(files[-1])  # opened before reading, so no line falls between the two
        lines = [line for path in files for line in read_lines(path)]
        lines = select_lines(lines, tail=_int(query.get("tailLines")), since=_since(query))
        timestamps = _flag(query.get("timestamps"))
        limit = _int(query.get("limitBytes"))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = await _write(response, [render(line, timestamps) for line in lines], limit, 0)
        if _flag(query.get("follow")) and not previous and (limit is None or sent < limit):
            await _follow(response, worker, container, tail, timestamps, limit, sent)
        await response.write_eof()
        return response


async def _follow(response: web.StreamResponse, worker: PodWorker, container: str, tail: LogTail,
                  timestamps: bool, limit: int | None, sent: int) -> None:
    """Stream lines as they are written, until this run of the container ends and is drained."""
    restart = worker.records[container].restart_count
    while True:
        alive = container in worker.instances and worker.records[container].restart_count == restart
        fresh = tail.read_new()
        sent = await _write(response, [render(line, timestamps) for line in fresh], limit, sent)
        if not alive or (limit is not None and sent >= limit):
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


async def _write(response: web.StreamResponse, chunks: list[bytes], limit: int | None, sent: int) -> int:
    for chunk in chunks:
        if limit is not None:
            chunk = chunk[: max(limit - sent, 0)]
            if not chunk:
                break
        await response.write(chunk)
        sent += len(chunk)
    return sent


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "")


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"not an integer: {value!r}") from None


def _since(query: Mapping[str, str]) -> str | None:
    """The lower bound as the CRI log's timestamp format, from sinceSeconds or sinceTime."""
    get = query.get
    if get("sinceSeconds") is not None:
        seconds = _int(get("sinceSeconds")) or 0
        moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    elif get("sinceTime") is not None:
        try:
            moment = dt.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise web.HTTPBadRequest(text=f"sinceTime {get('sinceTime')!r} is not RFC 3339") from None
    else:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def serve(api: KubeletApi, host: str, port: int, context: ssl.SSLContext | None) -> web.AppRunner:
    """Start serving; the bound port is `runner.addresses[0][1]` (port 0 picks a free one)."""
    runner = web.AppRunner(api.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    return runner
