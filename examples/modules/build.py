"""Build the example wasm modules next to their sources, byte-for-byte reproducibly.

`hello.c` becomes `hello.wasm` (C through zig's clang, `python -m ziglang cc`), `trap.wat`
becomes `trap.wasm` (through `wasmtime.wat2wasm`). The `.wasm` files are committed, so the
agent's tests and the quick start never need a compiler; `make modules` runs this script and
`tests/integration/test_example_modules.py` checks that the committed bytes equal a fresh build.

    python examples/modules/build.py              # rebuild in place
    python examples/modules/build.py --check      # build into a temp dir, fail on any drift
    python examples/modules/build.py --out DIR    # build into DIR

Only the standard library at import time, so that a test can import it cheaply.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent

# -Os -s: small and stripped (no names or debug info that could carry host paths).
# --no-entry is not used: every module is a WASI command that exports `_start`.
# 64 KiB of stack instead of zig's 1 MiB default keeps the initial memory (and RSS per
# instance) small; none of these programs recurses.
CFLAGS: tuple[str, ...] = (
    "-target", "wasm32-wasi",
    "-Os", "-s",
    "-fno-ident",
    "-Wall", "-Wextra", "-Werror",
    "-Wl,-z,stack-size=65536",
)

# Two zig processes at once: this machine class has two cores, and zig's cache is lock-safe.
PARALLEL_COMPILES = 2


def sources(directory: Path = SOURCE_DIR) -> list[Path]:
    """Every module source in `directory`, in a stable order."""
    return sorted([*directory.glob("*.c"), *directory.glob("*.wat")])


def module_names(directory: Path = SOURCE_DIR) -> list[str]:
    """The names of the modules (`hello`, `trap`, ...) that `directory` has sources for."""
    return [source.stem for source in sources(directory)]


@contextmanager
def zig_environment(cache_dir: Path | None) -> Iterator[dict[str, str]]:
    """The environment for zig: its caches in `cache_dir`, or in a fresh temporary directory.

    A private cache means a build never depends on (or pollutes) the user's ~/.cache/zig; the
    price is compiling wasi-libc once per fresh cache (about 15 s).
    """
    with tempfile.TemporaryDirectory(prefix="wasmlet-zig-") as scratch:
        root = cache_dir if cache_dir is not None else Path(scratch)
        env = dict(os.environ)
        env["ZIG_GLOBAL_CACHE_DIR"] = str(root / "global")
        env["ZIG_LOCAL_CACHE_DIR"] = str(root / "local")
        yield env


def compile_c(source: Path, output: Path, env: dict[str, str]) -> bytes:
    """Compile one C source to a wasm32-wasi command module and return its bytes."""
    command = [sys.executable, "-m", "ziglang", "cc", *CFLAGS, source.name, "-o", str(output)]
    # Run from the source directory and name the source relatively, so no absolute path
    # of this checkout can reach the compiler's output.
    result = subprocess.run(command, cwd=source.parent, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"compiling {source.name} failed:\n{result.stderr}")
    return output.read_bytes()


def compile_wat(source: Path, output: Path) -> bytes:
    """Assemble one WAT source and write the binary module to `output`."""
    import wasmtime  # imported late: only WAT sources need it

    binary = bytes(wasmtime.wat2wasm(source.read_text()))
    _write_if_changed(output, binary)
    return binary


def build(out_dir: Path = SOURCE_DIR, *, cache_dir: Path | None = None) -> dict[str, bytes]:
    """Build every module into `out_dir` (`NAME.wasm`) and return the bytes by module name.

    Files whose bytes did not change are not rewritten, so their mtimes stay put.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, bytes] = {}
    c_sources = [s for s in sources() if s.suffix == ".c"]
    with zig_environment(cache_dir) as env, tempfile.TemporaryDirectory() as staging:
        def one(source: Path) -> tuple[str, bytes]:
            return source.stem, compile_c(source, Path(staging) / f"{source.stem}.wasm", env)

        if c_sources:
            # The first compile builds wasi-libc into the cache; the rest then only reuse it.
            built.update([one(c_sources[0])])
            with concurrent.futures.ThreadPoolExecutor(PARALLEL_COMPILES) as pool:
                built.update(pool.map(one, c_sources[1:]))
    for name, binary in built.items():
        _write_if_changed(out_dir / f"{name}.wasm", binary)
    for source in sources():
        if source.suffix == ".wat":
            built[source.stem] = compile_wat(source, out_dir / f"{source.stem}.wasm")
    return dict(sorted(built.items()))


def drift(fresh: dict[str, bytes], directory: Path = SOURCE_DIR) -> list[str]:
    """The modules whose committed `.wasm` in `directory` differs from (or lacks) a fresh build."""
    stale = []
    for name, binary in fresh.items():
        committed = directory / f"{name}.wasm"
        if not committed.exists() or committed.read_bytes() != binary:
            stale.append(name)
    return stale


def _write_if_changed(path: Path, binary: bytes) -> None:
    if path.exists() and path.read_bytes() == binary:
        return
    partial = path.with_suffix(".wasm.tmp")
    partial.write_bytes(binary)
    partial.replace(path)  # atomic: a reader never sees half a module


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: next to the sources)")
    parser.add_argument("--check", action="store_true", help="build into a temp dir and compare with the committed files")
    parser.add_argument("--cache-dir", type=Path, default=None, help="zig cache directory (default: a fresh temp dir)")
    options = parser.parse_args(argv)
    if options.check:
        with tempfile.TemporaryDirectory(prefix="wasmlet-modules-") as out:
            stale = drift(build(Path(out), cache_dir=options.cache_dir))
        if stale:
            print(f"stale or missing .wasm (run `make modules`): {', '.join(stale)}", file=sys.stderr)
            return 1
        print("all modules match their sources")
        return 0
    fresh = build(options.out or SOURCE_DIR, cache_dir=options.cache_dir)
    for name, binary in fresh.items():
        print(f"{name}.wasm  {len(binary):6d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
