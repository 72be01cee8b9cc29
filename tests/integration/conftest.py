"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["wasmer", "wasmtime"])
def runtime(request: pytest.FixtureRequest) -> str:
    """Each runtime backend the agent offers, by RuntimeClass name: Pod tests run on both."""
    return str(request.param)


@pytest.fixture(scope="session")
def python_component(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/components/hello-py built by componentize-py (~10 s, once per session)."""
    from tests.integration.component_helpers import load_build_script

    return Path(load_build_script().build_python(tmp_path_factory.mktemp("hello-py") / "hello-py.wasm"))
