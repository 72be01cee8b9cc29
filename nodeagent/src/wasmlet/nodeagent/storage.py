"""emptyDir `sizeLimit`, enforced as the kubelet's eviction manager does it.

Every `interval` seconds (the kubelet's evictionMonitoringPeriod, 10 s) the disk usage of each
emptyDir volume that declares a sizeLimit is measured; once one is over, the Pod is evicted with
the kubelet's message (`Usage of EmptyDir volume "data" exceeds the limit "1Mi". `). Usage is
counted as `du` counts it (allocated blocks, each inode once, links never followed), in a thread:
a volume of many files must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmlet.api.quantity import parse_quantity

log = logging.getLogger(__name__)

Obj = dict[str, Any]
EVICTION_MONITORING_SECONDS = 10.0  # the kubelet's evictionMonitoringPeriod
# The kubelet's message for a Pod evicted for its emptyDir (pkg/kubelet/eviction, emptyDirMessageFmt).
EMPTY_DIR_MESSAGE = 'Usage of EmptyDir volume "{name}" exceeds the limit "{limit}". '


def size_limits(volumes: list[Obj]) -> dict[str, tuple[int, str]]:
    """{volume name: (limit in bytes, the limit as written)} for emptyDirs with a positive sizeLimit."""
    limits = {}
    for volume in volumes:
        written = (volume.get("emptyDir") or {}).get("sizeLimit") if isinstance(volume, dict) else None
        if written is None:
            continue
        try:
            limit = int(parse_quantity(written))
        except ValueError:
            continue  # the API server refuses such a Pod; a static one keeps no limit it cannot read
        if limit > 0:
            limits[str(volume["name"])] = (limit, str(written))
    return limits


def usage_bytes(root: Path) -> int:
    """Bytes allocated under `root` (st_blocks, as `du`), counting each inode once; 0 if it is gone."""
    total, seen, pending = 0, set(), [str(root)]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # removed meanwhile, or not a directory any more
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
    return total


async def watch_size_limits(limits: dict[str, tuple[int, str]], paths: Callable[[], dict[str, Path]],
                            evict: Callable[[str], None], interval: float = EVICTION_MONITORING_SECONDS) -> None:
    """Measure every `interval` seconds; call `evict(message)` once for the first volume over its limit."""
    while True:
        await asyncio.sleep(interval)
        known = paths()
        for name, (limit, written) in limits.items():
            path = known.get(name)
            if path is None:
                continue
            used = await asyncio.to_thread(usage_bytes, path)
            if used > limit:
                log.info("emptyDir %s uses %d bytes, over its sizeLimit %s", path, used, written)
                evict(EMPTY_DIR_MESSAGE.format(name=name, limit=written))
                return
