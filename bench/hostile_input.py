"""What the defences against hostile Pods cost: `$(VAR)` expansion of a hostile value, and opening
a volume path beneath its volume (openat2, or the O_NOFOLLOW walk) instead of a plain open.

    .venv/bin/python bench/hostile_input.py --runs 5

Prints medians over `--runs` runs; results go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import machine  # type: ignore[import-not-found]

from wasmlet.nodeagent.runtime.beneath import _walk, open_dir_beneath, open_root
from wasmlet.nodeagent.volumes import _expand


def seconds(action: Callable[[], object], repeat: int = 1) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - began) / repeat


def expansion(runs: int) -> None:
    env = {"A": "x"}
    for shape in ("$(", "$$", "$(A)", "$x"):
        for size in (400_000, 4_000_000):
            value = shape * (size // len(shape))
            times = [seconds(lambda value=value: _expand(value, env)) for _ in range(runs)]
            print(f"expand {size / 1e6:g} MB of {shape!r}: {statistics.median(times) * 1e3:.1f} ms")


def opening(runs: int, repeat: int = 20_000) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "a" / "b" / "c").mkdir(parents=True)
        root_fd = open_root(root, follow=False)
        try:
            ways: dict[str, Callable[[], int]] = {
                "plain os.open of the joined path": lambda: os.open(root / "a/b/c", os.O_RDONLY | os.O_DIRECTORY),
                "openat2 beneath the volume": lambda: open_dir_beneath(root_fd, "a/b/c"),
                "O_NOFOLLOW walk (no openat2)": lambda: _walk(root_fd, ("a", "b", "c")),
            }
            for name, way in ways.items():
                times = [seconds(lambda way=way: os.close(way()), repeat) for _ in range(runs)]
                print(f"open a subPath 3 deep, {name}: {statistics.median(times) * 1e6:.1f} µs")
        finally:
            os.close(root_fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    expansion(args.runs)
    opening(args.runs)


if __name__ == "__main__":
    main()
