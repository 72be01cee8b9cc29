"""The Python process sometimes dies with SIGABRT ("FATAL: exception not rethrown", exit 134)
at interpreter exit after the SDK has run modules, however they ended (first seen after kills).
os._exit() after an orderly shutdown (sandboxes and clients closed, output flushed) avoids it.

    timeout 600 .venv/bin/python bench/explore/exit_abort.py --runs 12

Each case runs in a fresh child process, `runs` times; we count exit codes.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys

CHILD = r"""
import asyncio, os, sys
sys.path.insert(0, {here!r})
from common import CACHE_ROOT, module
from wasmer_sdk import Wasmer, WasmerError
async def main(case):
    async with Wasmer(cache_root=CACHE_ROOT) as wasmer:
        name, args = {{"return 0": ("hello", []), "exit 3": ("exit", ["3"]), "trap": ("trap", []),
                      "kill": ("ticker", [])}}[case]
        pkg = await wasmer.packages.load(module(name))
        async with await wasmer.sandboxes.create(packages=[pkg]) as sandbox:
            for _ in range(3):
                try:
                    process = await sandbox.command(pkg, args).spawn()
                    if case == "kill":
                        await asyncio.sleep(0.2)
                        await process.kill()
                    await process.wait()
                except WasmerError:
                    pass
    print("closed", flush=True)
asyncio.run(main(sys.argv[1]))
if sys.argv[2] == "os._exit":
    import shutil
    shutil.rmtree(CACHE_ROOT, ignore_errors=True)  # os._exit skips atexit
    os._exit(0)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=12)
    options = parser.parse_args()
    from pathlib import Path

    code = CHILD.format(here=str(Path(__file__).resolve().parent))
    for ending in ("return", "os._exit"):
        for case in ("return 0", "exit 3", "trap", "kill"):
            codes: collections.Counter[int] = collections.Counter()
            for _ in range(options.runs):
                done = subprocess.run([sys.executable, "-c", code, case, ending], capture_output=True, timeout=60)
                codes[done.returncode] += 1
            print(f"module ends by {case:8s}, interpreter exits by {ending:8s}: exit codes {dict(codes)}", flush=True)


if __name__ == "__main__":
    main()
