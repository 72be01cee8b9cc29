"""Build the example WASI 0.2 components from real toolchains.

- C through the preview1 adapter: the core modules of examples/modules (zig's clang) become
  command components with `jco new MODULE.wasm --wasi-command` (jco ships the official
  `wasi_snapshot_preview1.command.wasm` adapter). Byte-for-byte reproducible: the `.wasm` files
  here are committed and `--check` compares them with a fresh build.
- Python through componentize-py: `hello-py/app.py` in the world `hello-py/wit/world.wit`
  (WASI 0.2's WIT files come with jco). Not committed and not compared by bytes: the output is
  ~18 MB and differs from run to run (componentize-py snapshots an initialised interpreter heap,
  and that snapshot is not deterministic). What is stable, its imports and exports, is
  committed in `hello-py.world` and `--check` compares that.

    python examples/components/build.py             # adapt the modules in place, hello-py into build/
    python examples/components/build.py --check     # build into a temp dir, fail on any drift

The tools: `make component-tools` installs the jco version pinned in package.json (package-lock.json)
under .venv/tools/npm; componentize-py is pinned in pyproject.toml. Only the standard library
at import time (and wasmlet's own binary reader for the world), so a test can import it cheaply.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
REPO = SOURCE_DIR.parents[1]
MODULES = REPO / "examples" / "modules"
# The core modules that become components: argv/env, exit codes, volumes, stops, memory, a service.
ADAPTED = ("echo", "exit", "files", "grow", "loop", "ticker")
WASI_VERSION = "0.2.12"  # the WIT jco ships; wasmtime links any 0.2.x import
WASI_PACKAGES = ("cli", "clocks", "filesystem", "io", "random", "sockets")
PYTHON_APP = SOURCE_DIR / "hello-py"
PYTHON_WORLD = SOURCE_DIR / "hello-py.world"


# examples/modules/build.py's atomic writer (examples/ is not a package: loaded by path).
_write_if_changed = runpy.run_path(str(MODULES / "build.py"))["_write_if_changed"]


def jco() -> Path:
    """The jco command: $WASMLET_JCO, else the one `make component-tools` installed."""
    path = Path(os.environ.get("WASMLET_JCO") or REPO / ".venv" / "tools" / "npm" / "node_modules" / ".bin" / "jco")
    if not path.exists():
        raise RuntimeError(f"jco not found at {path}: run `make component-tools`")
    return path


def adapt(name: str, out_dir: Path) -> bytes:
    """examples/modules/NAME.wasm as a command component, written to `out_dir`/NAME.wasm."""
    with tempfile.TemporaryDirectory(prefix="wasmlet-jco-") as staging:
        output = Path(staging) / f"{name}.wasm"
        _run([str(jco()), "new", str(MODULES / f"{name}.wasm"), "--wasi-command", "-o", str(output)], REPO)
        binary = output.read_bytes()
    _write_if_changed(out_dir / f"{name}.wasm", binary)
    return binary


def build_python(output: Path) -> Path:
    """componentize-py `hello-py/app.py` into `output` (a WASI 0.2 command component)."""
    builtin = jco().resolve().parents[1] / "lib" / "wit" / "builtin" / WASI_VERSION
    componentize = Path(sys.executable).parent / "componentize-py"
    with tempfile.TemporaryDirectory(prefix="wasmlet-componentize-") as staging:
        work = Path(staging)
        shutil.copy(PYTHON_APP / "app.py", work / "app.py")
        shutil.copytree(PYTHON_APP / "wit", work / "wit")
        for package in WASI_PACKAGES:
            (work / "wit" / "deps" / package).mkdir(parents=True)
            shutil.copy(builtin / f"wasi-{package}" / "package.wit", work / "wit" / "deps" / package / "package.wit")
        # Relative names only, run from the staging directory: no checkout path reaches the output.
        _run([str(componentize), "-d", "wit", "-w", "command", "componentize", "app", "-o", "app.wasm"], work)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "app.wasm", output)
    return output


def world_text(component: bytes) -> str:
    """A component's imports and exports, one per line (`import NAME` / `export NAME`)."""
    sys.path.insert(0, str(REPO / "nodeagent" / "src"))
    from wasmlet.nodeagent.wasmbinary import world  # noqa: PLC0415 - only the world needs it

    found = world(component)
    return "".join([*(f"import {name}\n" for name in found.imports), *(f"export {name}\n" for name in found.exports)])


def build(out_dir: Path = SOURCE_DIR) -> dict[str, bytes]:
    """Adapt every module in `ADAPTED` into `out_dir`; the bytes by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: adapt(name, out_dir) for name in ADAPTED}


def drift(fresh: dict[str, bytes], python: Path | None, directory: Path = SOURCE_DIR) -> list[str]:
    """What differs from the committed files: adapted components by bytes, hello-py by its world."""
    stale = [name for name, binary in fresh.items()
             if not (directory / f"{name}.wasm").exists() or (directory / f"{name}.wasm").read_bytes() != binary]
    if python is not None and world_text(python.read_bytes()) != PYTHON_WORLD.read_text():
        stale.append("hello-py (its imports or exports)")
    return stale


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{result.stdout}{result.stderr}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="build into a temp dir and compare with the committed files")
    options = parser.parse_args(argv)
    if options.check:
        with tempfile.TemporaryDirectory(prefix="wasmlet-components-") as out:
            stale = drift(build(Path(out)), build_python(Path(out) / "hello-py.wasm"))
        if stale:
            print(f"stale or missing (run `make modules`): {', '.join(stale)}", file=sys.stderr)
            return 1
        print("all components match their sources")
        return 0
    for name, binary in build().items():
        print(f"{name}.wasm  {len(binary):6d} bytes")
    python = build_python(SOURCE_DIR / "build" / "hello-py.wasm")
    PYTHON_WORLD.write_text(world_text(python.read_bytes()))
    print(f"build/hello-py.wasm  {python.stat().st_size} bytes (not committed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
