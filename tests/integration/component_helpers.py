"""The example components (examples/components): the committed adapted C components, and the
Python one, built once per test session by componentize-py (it is not committed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

COMPONENTS = Path(__file__).resolve().parents[2] / "examples" / "components"


def load_script(path: Path, name: str) -> ModuleType:
    """A build script of examples/, loaded by path (examples/ is not a package), as `make modules` runs it."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_build_script() -> ModuleType:
    """examples/components/build.py."""
    return load_script(COMPONENTS / "build.py", "wasmlet_components_build")


def component_path(name: str) -> Path:
    return COMPONENTS / f"{name}.wasm"
