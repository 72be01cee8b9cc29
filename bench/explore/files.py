"""How a module gets a directory under wasmer-sdk: sandbox files, sandbox.fs, package files,
cwd, sharing between sandboxes. Uses the `files` and `echo` modules.

    timeout 120 .venv/bin/python bench/explore/files.py
"""

from __future__ import annotations

import asyncio

from common import CACHE_ROOT, module, rss_kib

from wasmer_sdk import PackageCommandDefinition, PackageDefinition, Sandbox, Wasmer, WasmerError


async def run(sandbox: Sandbox, pkg: object, *args: str, cwd: str | None = None) -> str:
    """Run `files ARGS` and return a one-line summary of exit code and output."""
    output = await sandbox.command(pkg, list(args), cwd=cwd).run(check=False)  # type: ignore[arg-type]
    text = (output.stdout.bytes + output.stderr.bytes).decode().strip().replace("\n", " | ")
    return f"exit {output.exit_code}: {text}"


async def attempt(label: str, action: object) -> None:
    """Await `action` and print its result or the WasmerError it raised."""
    try:
        print(f"  {label}: {await action}")  # type: ignore[misc]
    except WasmerError as error:
        print(f"  {label}: WasmerError {error.code}: {error}")


async def main() -> None:
    files = module("files")
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        pkg = await wasmer.packages.load(files)
        print("sandbox files= (relative and absolute keys):")
        for key in ("data/a.txt", "/workspace/b.txt", "/data/c.txt", "/etc/d.txt"):
            await attempt(f"files={{{key!r}: ...}}", wasmer.sandboxes.create(packages=[pkg], files={key: "x\n"}))
        sandbox = await wasmer.sandboxes.create(packages=[pkg], files={"data/a.txt": "from files=\n"})
        async with sandbox:
            print("what the module sees:")
            for args in (["list", "/"], ["list", "/workspace"], ["list", "/workspace/data"], ["read", "/workspace/data/a.txt"],
                         ["read", "data/a.txt"], ["list", "."], ["write", "/workspace/data/out.txt", "written by the module"],
                         ["write", "/tmp/t.txt", "tmp"], ["read", "/tmp/t.txt"], ["write", "/elsewhere.txt", "root"],
                         ["mkdir", "/newdir"], ["read", "/etc/passwd"], ["list", "/bin"], ["list", "/dev"]):
                print(f"  files {' '.join(args)} -> {await run(sandbox, pkg, *args)}")
            print("cwd= :")
            for cwd in ("/workspace/data", "/workspace", "/tmp", "/nonexistent"):
                await attempt(f"cwd={cwd} files read a.txt", run(sandbox, pkg, "read", "a.txt", cwd=cwd))
                await attempt(f"cwd={cwd} files list .", run(sandbox, pkg, "list", ".", cwd=cwd))
            echo = await sandbox.install_package(module("echo"))
            await attempt("echo env (cwd=/workspace/data)", sandbox.command(echo, cwd="/workspace/data").run())
            print("sandbox.fs from the host:")
            await attempt("fs.read_text('/workspace/data/out.txt')", sandbox.fs.read_text("/workspace/data/out.txt"))
            await attempt("fs.read_text('data/out.txt')", sandbox.fs.read_text("data/out.txt"))
            await attempt("fs.read_text('/tmp/t.txt')", sandbox.fs.read_text("/tmp/t.txt"))
            await attempt("fs.read_text('/elsewhere.txt')", sandbox.fs.read_text("/elsewhere.txt"))
            await attempt("fs.write('/workspace/new/x.txt') (no parent)", sandbox.fs.write("/workspace/new/x.txt", "x"))
            await attempt("fs.mkdir('/workspace/new')", sandbox.fs.mkdir("/workspace/new"))
            await attempt("fs.write('/workspace/new/x.txt')", sandbox.fs.write("/workspace/new/x.txt", "from fs.write\n"))
            await attempt("fs.write('/data/x.txt')", sandbox.fs.write("/data/x.txt", "x"))
            await attempt("fs.mkdir('/data', recursive=True)", sandbox.fs.mkdir("/data", recursive=True))
            await attempt("fs.read_dir('/workspace')", sandbox.fs.read_dir("/workspace"))
            await attempt("fs.read_dir('/')", sandbox.fs.read_dir("/"))
            await attempt("fs.stat('/workspace/new/x.txt')", sandbox.fs.stat("/workspace/new/x.txt"))
            print(f"  files read /workspace/new/x.txt -> {await run(sandbox, pkg, 'read', '/workspace/new/x.txt')}")
            await attempt("fs.write, module appends, fs reads", sandbox.fs.write("/workspace/log.txt", "one\n"))
            print(f"  files append -> {await run(sandbox, pkg, 'append', '/workspace/log.txt', 'two')}")
            await attempt("fs.read_text('/workspace/log.txt')", sandbox.fs.read_text("/workspace/log.txt"))
        print("package files= (absolute guest paths):")
        definition = PackageDefinition(
            modules={"files": files}, commands={"files": PackageCommandDefinition(module="files")},
            files={"/config/app.txt": "from package files\n", "/workspace/pkg.txt": "pkg in workspace\n"},
        )
        await attempt("files key 'relative.txt'", wasmer.packages.create(PackageDefinition(
            modules={"files": files}, commands={"files": PackageCommandDefinition(module="files")}, files={"relative.txt": "x"})))
        packaged = await wasmer.packages.create(definition)
        async with await wasmer.sandboxes.create(packages=[packaged]) as sandbox:
            for args in (["list", "/"], ["read", "/config/app.txt"], ["list", "/config"], ["read", "/workspace/pkg.txt"],
                         ["write", "/config/app.txt", "changed"], ["read", "/config/app.txt"], ["write", "/config/new.txt", "new"]):
                print(f"  files {' '.join(args)} -> {await run(sandbox, packaged, *args)}")
            print(f"  second run: files read /config/app.txt -> {await run(sandbox, packaged, 'read', '/config/app.txt')}")
            await attempt("fs.read_text('/config/app.txt')", sandbox.fs.read_text("/config/app.txt"))
            await attempt("fs.read_dir('/')", sandbox.fs.read_dir("/"))
        print("two sandboxes: does a write in one show in the other?")
        async with await wasmer.sandboxes.create(packages=[pkg]) as first, await wasmer.sandboxes.create(packages=[pkg]) as second:
            print(f"  first: files write /workspace/shared.txt -> {await run(first, pkg, 'write', '/workspace/shared.txt', 'hi')}")
            print(f"  second: files read /workspace/shared.txt -> {await run(second, pkg, 'read', '/workspace/shared.txt')}")
            print(f"  first: files write /tmp/shared.txt -> {await run(first, pkg, 'write', '/tmp/shared.txt', 'hi')}")
            print(f"  second: files read /tmp/shared.txt -> {await run(second, pkg, 'read', '/tmp/shared.txt')}")


async def workspace_memory() -> None:
    """Is /workspace backed by memory or by disk? Write 100 MiB and watch RSS."""
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        before = rss_kib()
        async with await wasmer.sandboxes.create() as sandbox:
            await sandbox.fs.write("/workspace/big.bin", b"\1" * (100 << 20))
            print(f"fs.write of 100 MiB: RSS +{(rss_kib() - before) >> 10} MiB")
        print(f"after sandbox.close(): RSS +{(rss_kib() - before) >> 10} MiB")


if __name__ == "__main__":
    asyncio.run(main())
    asyncio.run(workspace_memory())
