"""Kubernetes quantities as numbers."""

from __future__ import annotations

import pytest

from wasmlet.api.quantity import parse_quantity


@pytest.mark.parametrize(("text", "value"), [
    ("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1G", 1e9), ("500m", 0.5), ("2", 2.0), (3, 3.0),
    ("1.5Ki", 1536.0), ("1e3", 1000.0), ("1E", 1e18), ("100u", 1e-4), (".5", 0.5),
])
def test_quantities_in_every_notation(text: str | int, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "Mi", "12MB", "1.2.3", "abc", True])
def test_what_is_not_a_quantity(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)
