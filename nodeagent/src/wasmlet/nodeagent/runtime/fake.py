"""FakeRuntime: a scripted backend for controller tests (no wasm engine, instant, deterministic).

A script maps each RunSpec to a `FakeRun`: what the "module" writes, and whether it exits (with
which code, after how long) or runs until stopped. Every start is recorded in `starts`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmlet.nodeagent.errors import ModuleError
from wasmlet.nodeagent.runtime import EXIT_TERMINATED, ExitStatus, OutputSink, RunSpec


@dataclass(frozen=True)
class FakeRun:
    output: bytes = b""
    exit_code: int | None = 0  # None: run until stopped
    after: float = 0.0
    fail_start: str | None = None  # raise ModuleError with this message at start


class FakeInstance:
    def __init__(self, run: FakeRun, output: OutputSink) -> None:
        if run.output:
            output("stdout", run.output)
        self._run = run
        self._stopped = asyncio.Event()
        self._result: asyncio.Task[ExitStatus] = asyncio.create_task(self._live())

    async def _live(self) -> ExitStatus:
        if self._run.exit_code is None:
            await self._stopped.wait()
            return ExitStatus(EXIT_TERMINATED, "Error", "stopped by the agent")
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=self._run.after)
            return ExitStatus(EXIT_TERMINATED, "Error", "stopped by the agent")
        except TimeoutError:
            return ExitStatus.from_code(self._run.exit_code)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._result)

    async def stop(self, grace_seconds: float) -> ExitStatus:
        self._stopped.set()
        return await self.wait()


class FakeRuntime:
    name = "wasmer"
    version = "fake/1"

    def __init__(self, script: Callable[[RunSpec], FakeRun]) -> None:
        self._script = script
        self.starts: list[RunSpec] = []
        self.released: list[str] = []
        self.instances: list[FakeInstance] = []

    def check(self, spec: RunSpec) -> None:
        return None

    async def prepare(self, module_path: Path, digest: str) -> None:
        return None

    async def start(self, spec: RunSpec, output: OutputSink) -> FakeInstance:
        run = self._script(spec)
        if run.fail_start:
            raise ModuleError(run.fail_start, reason="StartError")
        self.starts.append(spec)
        instance = FakeInstance(run, output)
        self.instances.append(instance)
        return instance

    async def release(self, pod_uid: str) -> None:
        self.released.append(pod_uid)

    async def close(self) -> None:
        for instance in self.instances:
            await instance.stop(0)
