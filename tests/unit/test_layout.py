"""The package layout keeps the standard library's `operator` module importable."""

from __future__ import annotations

import operator
import subprocess
import sys


def test_operator_is_still_the_standard_library() -> None:
    assert operator.__file__ is not None
    assert "site-packages" not in operator.__file__
    assert hasattr(operator, "itemgetter")


def test_import_asyncio_from_the_repository_root_works() -> None:
    # Running from the checkout root is where a top-level `operator/__init__.py` would shadow it.
    out = subprocess.run(
        [sys.executable, "-c", "import asyncio, operator; print(operator.__name__, hasattr(operator, 'add'))"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == ["operator", "True"]
