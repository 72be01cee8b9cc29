"""How many WAGI requests a second wasmer-sdk itself serves on this machine, with no agent at all.

Each request is what the wasmer backend does for one HTTP request: a command of `http-hello`
with a CGI environment (23 variables) spawned in one sandbox, its output captured, waited for.
Run one at a time and 8 at once (the HTTP benchmark's 8 connections), three ways: stdin a pipe
closed at once, stdin closed, and `Command.run()` (spawn and wait in one call, which cannot tell a
start failure from a trap, so the backend does not use it). Printed: requests/s, CPU per request
(this process, every thread), p50 latency. Also the cost of building the command alone: the SDK
lowers the environment map in Python.

    timeout 300 .venv/bin/python bench/explore/wagi_ceiling.py [--requests 800]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import CACHE_ROOT, module

import wasmer_sdk as sdk

CGI_ENV = {
    "AUTH_TYPE": "", "CONTENT_LENGTH": "0", "CONTENT_TYPE": "", "GATEWAY_INTERFACE": "CGI/1.1",
    "PATH_INFO": "/", "PATH_TRANSLATED": "/", "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_HOST": "127.0.0.1", "REMOTE_USER": "", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "",
    "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "18080", "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "wasmlet", "HTTP_HOST": "127.0.0.1:18080", "X_FULL_URL": "http://127.0.0.1:18080/",
    "X_MATCHED_ROUTE": "/", "X_RAW_PATH_INFO": "/", "HOSTNAME": "hello", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
}
OUTPUT_BYTES = 64 * 1024 + 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(request: Callable[[], Awaitable[Any]], count: int, at_once: int) -> str:
    latencies: list[float] = []
    slots = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with slots:
            began = time.perf_counter()
            await request()
            latencies.append(time.perf_counter() - began)

    wall, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(one() for _ in range(count)))
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return (f"{count / wall:6.0f} req/s, {1000 * cpu / count:.2f} ms CPU per request, "
            f"p50 {1000 * statistics.median(latencies):.1f} ms")


async def main(count: int) -> None:
    client = sdk.Wasmer(cache_root=CACHE_ROOT)
    package = await client.packages.create(sdk.PackageDefinition(
        modules={"m": module("http-hello")}, commands={"main": sdk.PackageCommandDefinition(module="m")}))
    sandbox = await client.sandboxes.create(files={}, network="disabled")
    installed = await sandbox.install_package(package)

    async def spawn_pipe() -> None:
        process = await sandbox.command(installed, [], env=CGI_ENV).spawn(
            stdin="pipe", stdout="capture", stderr="capture", output_bytes=OUTPUT_BYTES)
        assert process.stdin is not None
        await process.stdin.close()
        await process.wait()

    async def spawn_closed() -> None:
        process = await sandbox.command(installed, [], env=CGI_ENV).spawn(
            stdin="closed", stdout="capture", stderr="capture", output_bytes=OUTPUT_BYTES)
        await process.wait()

    async def run() -> None:
        await sandbox.command(installed, [], env=CGI_ENV).run(output_bytes=OUTPUT_BYTES, check=False)

    cpu = cpu_seconds()
    for _ in range(count):
        sandbox.command(installed, [], env=CGI_ENV)
    print(f"building the command alone: {1000 * (cpu_seconds() - cpu) / count:.2f} ms CPU")
    await measure(spawn_closed, 100, 8)  # warm: the runtime's threads exist before the first figure
    for at_once in (1, 8):
        for name, request in (("spawn, stdin a pipe", spawn_pipe), ("spawn, stdin closed", spawn_closed),
                              ("run()", run)):
            print(f"{at_once} at once, {name:20s}: {await measure(request, count, at_once)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=800)
    asyncio.run(main(parser.parse_args().requests))
    os._exit(0)  # the SDK's threads may abort a normal interpreter exit (exit_abort.py)
