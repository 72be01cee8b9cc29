"""What exit codes, traps and broken modules look like through wasmer-sdk.

    timeout 120 .venv/bin/python bench/explore/failures.py

Note the trap text is also printed on this process's stderr by the native library.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

from common import CACHE_ROOT, module

import wasmtime
from wasmer_sdk import PackageCommandDefinition, PackageDefinition, ProcessExitError, Wasmer, WasmerError


async def show(label: str, action: Awaitable[object]) -> None:
    """Print what `action` returned or which exception (type, code, message) it raised."""
    try:
        print(f"{label}\n    -> {await action}")
    except ProcessExitError as error:
        print(f"{label}\n    -> ProcessExitError code={error.code!r} message={str(error)!r} output={error.output}")
    except WasmerError as error:
        print(f"{label}\n    -> WasmerError code={error.code!r} message={str(error)!r}")


def definition(data: bytes) -> PackageDefinition:
    """A one-command package around `data`."""
    return PackageDefinition(modules={"m": data}, commands={"m": PackageCommandDefinition(module="m")})


async def main() -> None:
    hello = module("hello")
    broken = {
        "random bytes": random.Random(1).randbytes(1000),
        "empty": b"",
        "truncated hello": hello[: len(hello) // 2],
        "header only (no _start)": b"\0asm\1\0\0\0",
    }
    ill_typed = bytearray(wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start") (drop (i32.const 1))))'))
    ill_typed[ill_typed.rfind(bytes([0x41, 0x01, 0x1A])) + 2] = 0x6A  # drop -> i32.add: stack underflow
    imports = {
        "unknown env import": wasmtime.wat2wasm(
            '(module (import "env" "nope" (func)) (memory (export "memory") 1) (func (export "_start") call 0))'),
        "unknown WASI import": wasmtime.wat2wasm(
            '(module (import "wasi_snapshot_preview1" "no_such_call" (func)) (memory (export "memory") 1) '
            '(func (export "_start") call 0))'),
        "ill-typed function body": bytes(ill_typed),
    }
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        exit_pkg = await wasmer.packages.load(module("exit"))
        trap_pkg = await wasmer.packages.load(module("trap"))
        async with await wasmer.sandboxes.create(packages=[exit_pkg, trap_pkg]) as sandbox:
            await show("exit 3: run()", sandbox.command(exit_pkg, ["3"]).run())
            await show("exit 3: run(check=False)", sandbox.command(exit_pkg, ["3"]).run(check=False))
            process = await sandbox.command(exit_pkg, ["3"]).spawn()
            await show("exit 3: spawn().wait()", process.wait())
            await show("trap: run(check=False)", sandbox.command(trap_pkg).run(check=False))
            process = await sandbox.command(trap_pkg).spawn()
            assert process.stdout is not None
            print(f"trap: stdout before the trap, read from the pipe\n    -> {[line async for line in process.stdout.lines()]}")
            await show("trap: spawn().wait()", process.wait())
        for label, data in broken.items():
            await show(f"packages.load({label})", wasmer.packages.load(data))
        await show("packages.create(random bytes)", wasmer.packages.create(definition(broken["random bytes"])))
        for label, data in imports.items():
            pkg = await wasmer.packages.load(bytes(data))
            print(f"packages.load({label}) -> loaded {pkg.id[:20]}...")
            async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
                await show(f"{label}: spawn()", sandbox.command(pkg).spawn())


if __name__ == "__main__":
    asyncio.run(main())
