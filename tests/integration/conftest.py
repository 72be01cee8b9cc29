"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["wasmer", "wasmtime"])
def runtime(request: pytest.FixtureRequest) -> str:
    """Each runtime backend the agent offers, by RuntimeClass name: Pod tests run on both."""
    return str(request.param)
