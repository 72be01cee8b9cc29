"""Does Wasmer(cache_root=...) keep compiled raw modules on disk, and does a new process gain?

    timeout 300 .venv/bin/python bench/explore/cache.py

Runs each measurement in a fresh Python process (so no in-memory cache helps) against the
same cache directory: first with an empty cache, then again, then with the default cache_root.
A synthetic module with many functions makes compile time visible next to `hello`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
from wasmer_sdk import Wasmer
async def main(cache, path):
    data = Path(path).read_bytes()
    t0 = time.perf_counter()
    async with Wasmer(cache_root=cache) as wasmer:
        t1 = time.perf_counter()
        pkg = await wasmer.packages.load(data)
        t2 = time.perf_counter()
        async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
            t3 = time.perf_counter()
            await sandbox.command(pkg).run(check=False)
            t4 = time.perf_counter()
            await sandbox.command(pkg).run(check=False)
            t5 = time.perf_counter()
    print(json.dumps({"client": t1 - t0, "load": t2 - t1, "sandbox": t3 - t2, "first_run": t4 - t3, "second_run": t5 - t4}))
asyncio.run(main(sys.argv[1] if sys.argv[1] != "-" else None, sys.argv[2]))
"""


def synthetic_module(functions: int = 3000) -> bytes:
    """A valid WASI command with many small functions: compile time grows with code size."""
    import wasmtime

    bodies = "\n".join(
        f"(func $f{i} (param i64) (result i64) local.get 0 i64.const {i} i64.mul i64.const 7 i64.rotl"
        f" i64.const {i * 31 + 1} i64.xor)" for i in range(functions))
    calls = " ".join(f"(call $f{i})" for i in range(functions))
    text = f"""(module (memory (export "memory") 1) {bodies}
      (func (export "_start") (drop (i64.const 1) {calls})))"""
    return bytes(wasmtime.wat2wasm(text))


def measure(cache: str, module: Path, cwd: str) -> dict[str, float]:
    """One load+run in a new Python process; the timings in milliseconds."""
    out = subprocess.run([sys.executable, "-c", CHILD, cache, str(module)], capture_output=True, text=True,
                         check=True, timeout=120, cwd=cwd)
    return {key: round(value * 1000, 1) for key, value in json.loads(out.stdout).items()}


def tree(root: Path) -> list[str]:
    """Files under `root` with sizes, relative."""
    return [f"{p.relative_to(root)} ({p.stat().st_size} B)" for p in sorted(root.rglob("*")) if p.is_file()]


def main() -> None:
    here = Path(__file__).resolve().parents[2] / "examples" / "modules"
    with tempfile.TemporaryDirectory() as scratch:
        big = Path(scratch) / "synthetic.wasm"
        big.write_bytes(synthetic_module())
        print(f"synthetic module: {big.stat().st_size} B")
        for module in (here / "hello.wasm", here / "files.wasm", big):
            cache = Path(scratch) / f"cache-{module.stem}"
            first = measure(str(cache), module, scratch)
            second = measure(str(cache), module, scratch)
            print(f"{module.name}: empty cache {first}")
            print(f"{module.name}: warm cache  {second}")
            print(f"  cache dir: {tree(cache)[:6]}{' ...' if len(tree(cache)) > 6 else ''}")
        default_cwd = Path(scratch) / "cwd"
        default_cwd.mkdir()
        measure("-", here / "hello.wasm", str(default_cwd))
        print(f"Wasmer() with no cache_root, run in {default_cwd.name}/: creates {sorted(os.listdir(default_cwd))} "
              f"({len(tree(default_cwd))} files)")


if __name__ == "__main__":
    main()
