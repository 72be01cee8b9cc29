"""A PodController wired to the FakeRuntime, file modules and a console reporter: no I/O but tmp files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmlet.nodeagent.modules import ModuleCache
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.pods import AgentEnv, PodController, PodWorker
from wasmlet.nodeagent.reporting import ConsoleReporter
from wasmlet.nodeagent.runtime import RunSpec
from wasmlet.nodeagent.runtime.fake import FakeRun, FakeRuntime

# The smallest valid wasm module: magic and version.
EMPTY_MODULE = b"\0asm\x01\0\0\0"


class Harness:
    def __init__(self, tmp: Path, script: Callable[[RunSpec], FakeRun], backoff: float = 0.01) -> None:
        (tmp / "m.wasm").write_bytes(EMPTY_MODULE)
        self.tmp = tmp
        self.runtime = FakeRuntime(script)
        self.objects = StaticObjects()
        self.reporter = ConsoleReporter(printer=lambda *event: self.events.append(event))
        self.events: list[tuple[Any, ...]] = []

        async def runtime(name: str) -> FakeRuntime:
            return self.runtime

        self.env = AgentEnv(
            node_name="node-1", node_ip="10.0.0.1", runtimes=("wasmer",), runtime=runtime,
            modules=ModuleCache(tmp / "modules", self.objects, 1 << 20), objects=self.objects,
            reporter=self.reporter, pods_dir=tmp / "pods", logs_dir=tmp / "logs", backoff_base=backoff,
            backoff_cap=backoff * 4,
        )
        self.controller = PodController(self.env)

    def pod(self, name: str = "p", restart: str = "Never", containers: list[dict[str, Any]] | None = None,
            **spec: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"restartPolicy": restart, "runtimeClassName": "wasmer",
                     "containers": containers or [{"name": "main", "image": f"file:{self.tmp}/m.wasm"}], **spec},
        }

    def sync(self, pod: dict[str, Any]) -> None:
        """Feed a Pod as a static Pod would come: its `file:` module is allowed."""
        self.controller.sync(pod, source="file")

    def worker(self, name: str = "p") -> PodWorker:
        return next(w for w in self.controller.workers() if w.plan.name == name)

    def status(self, name: str = "p") -> dict[str, Any]:
        return next((s for ref, s in self.reporter.latest.items() if ref.name == name), {})

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)

    def finished(self, name: str = "p") -> bool:
        return any(ref.name == name for ref in self.reporter.finished_pods)
