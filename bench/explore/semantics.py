"""Smaller wasmer-sdk behaviours the runtime backend depends on: argv[0], env merging, Command
reuse, packages across clients, closing a sandbox or client under a running process, which part
of a long output `output_bytes` keeps, and stdin.

    timeout 120 .venv/bin/python bench/explore/semantics.py
"""

from __future__ import annotations

import asyncio

from common import CACHE_ROOT, module

from wasmer_sdk import PackageCommandDefinition, PackageDefinition, ReadableBytes, Wasmer, WasmerError


async def attempt(label: str, action: object) -> object:
    """Await `action`; print and return its result, or print the WasmerError it raised."""
    try:
        result = await action  # type: ignore[misc]
        print(f"  {label}: {result}")
        return result
    except WasmerError as error:
        print(f"  {label}: WasmerError {error.code}: {error}")
    except TimeoutError:
        print(f"  {label}: no answer within its timeout")
    return None


async def main() -> None:
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        echo = await wasmer.packages.load(module("echo"))
        named = await wasmer.packages.create(PackageDefinition(
            modules={"m": module("echo")}, commands={"my-container": PackageCommandDefinition(module="m")}))
        async with await wasmer.sandboxes.create(packages=[echo, named], env={"A": "sandbox", "B": "sandbox"}) as sandbox:
            print("argv[0] and env:")
            out = await sandbox.command(echo, ["x"], env={"B": "command", "C": "command"}).run()
            print("  load(bytes):", out.stdout.text().splitlines())
            out = await sandbox.command(named, ["x"]).run()
            print("  create(commands={'my-container': ...}):", out.stdout.text().splitlines())
            out = await sandbox.command("my-container", ["x"]).run()
            print("  command('my-container') by name:", out.stdout.text().splitlines()[0])
            command = sandbox.command(echo, ["again"])
            first, second = await command.run(), await command.run()
            print("  one Command run twice, same output:", first.stdout == second.stdout)
            both = await asyncio.gather(command.run(), command.run())
            print("  one Command run twice concurrently:", [o.exit_code for o in both])
            out = await sandbox.command(echo, ["x"], env={"EMPTY": "", "U": "ünï"}).run()
            print("  empty and non-ASCII values:", [line for line in out.stdout.text().splitlines() if "=" in line and "[" not in line])
            await attempt("env key with '='", sandbox.command(echo, env={"A=B": "x"}).run())
        print("packages across clients:")
        async with Wasmer(cache_root=CACHE_ROOT) as other:
            await attempt("client B sandbox with client A's package", other.sandboxes.create(packages=[echo]))
            async with await other.sandboxes.create() as foreign:
                await attempt("client B install_package(client A's package)", foreign.install_package(echo))
        print("closing under a running process:")
        ticker = await wasmer.packages.load(module("ticker"))
        sandbox = await wasmer.sandboxes.create(packages=[ticker])
        process = await sandbox.command(ticker, ["--interval-ms", "100"]).spawn()
        await asyncio.sleep(0.3)
        await sandbox.close()
        await attempt("wait() after sandbox.close()", asyncio.wait_for(process.wait(), 5))
        await attempt("spawn in a closed sandbox", sandbox.command(ticker).spawn())
        print("output_bytes keeps the head or the tail:")
        async with await wasmer.sandboxes.create(packages=[ticker]) as sandbox:
            out = await sandbox.command(ticker, ["--interval-ms", "0", "--count", "1000"]).run(output_bytes=64)
            print(f"  output_bytes=64 of ~8.9 KB: {out.stdout.bytes!r} truncated={out.stdout.truncated}")
            print("stdin:")
            files = await sandbox.install_package(module("files"))
            process = await sandbox.command(files, ["read", "/dev/stdin"]).spawn()
            print(f"  default spawn: stdin={process.stdin}, module reads {(await process.wait()).stdout.bytes!r}")
            process = await sandbox.command(files, ["read", "/dev/stdin"]).spawn(stdin="pipe")
            assert process.stdin is not None
            await process.stdin.write("piped in\n")
            await process.stdin.close()
            print(f"  spawn(stdin='pipe'): module reads {(await process.wait()).stdout.bytes!r}")
            output = await sandbox.command(files, ["read", "/dev/stdin"]).run(stdin="via run\n")
            print(f"  run(stdin=...): module reads {output.stdout.bytes!r}")
    print("client closed under a running process:")
    wasmer = Wasmer(cache_root=CACHE_ROOT)
    ticker = await wasmer.packages.load(module("ticker"))
    sandbox = await wasmer.sandboxes.create(packages=[ticker])
    process = await sandbox.command(ticker, ["--interval-ms", "100"]).spawn()
    await asyncio.sleep(0.3)
    await wasmer.close()
    await attempt("wait() after wasmer.close()", asyncio.wait_for(process.wait(), 3))
    assert process.stdout is not None
    await attempt("stdout still flowing after wasmer.close()", asyncio.wait_for(_two_chunks(process.stdout), 3))
    await attempt("kill() after wasmer.close()", process.kill())
    await attempt("wait() after that kill", asyncio.wait_for(process.wait(), 3))
    await attempt("sandbox.close() after wasmer.close()", asyncio.wait_for(sandbox.close(), 3))
    await attempt("sandboxes.create after wasmer.close()", wasmer.sandboxes.create())


async def _two_chunks(stream: ReadableBytes) -> list[bytes]:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 2:
            break
    return chunks


if __name__ == "__main__":
    asyncio.run(main())
