"""The example components are what their toolchains build: the adapted C components byte for
byte (jco's preview1 adapter is deterministic), the Python one by its world (componentize-py's
output differs from build to build: it snapshots an initialised interpreter heap)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.component_helpers import COMPONENTS, load_build_script

build = load_build_script()


def test_the_committed_components_are_a_fresh_reproducible_build(tmp_path: Path) -> None:
    fresh = build.build(tmp_path)
    assert sorted(fresh) == sorted(build.ADAPTED)
    assert build.drift(fresh, None) == [], "run `make modules` and commit the .wasm files"
    again = build.build(tmp_path / "again")
    assert again == fresh


def test_the_python_components_world_is_the_committed_one(python_component: Path) -> None:
    assert build.drift({}, python_component) == [], "run `make modules` and commit hello-py.world"
    world = (COMPONENTS / "hello-py.world").read_text().splitlines()
    assert "export wasi:cli/run@0.2.12" in world and "import wasi:filesystem/preopens@0.2.12" in world


def test_the_python_component_is_not_committed_but_its_sources_are() -> None:
    assert not (COMPONENTS / "hello-py.wasm").exists()
    assert (COMPONENTS / "hello-py" / "app.py").is_file() and (COMPONENTS / "hello-py" / "wit" / "world.wit").is_file()
    assert not (COMPONENTS / "hello-py" / "wit" / "deps").exists()  # WASI's WIT comes with jco at build time
