"""Container log files in the kubelet's layout and the CRI log format.

`<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, each line
`<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>` — the format `kubectl logs` is served
from on a real node, so `timestamps`, `sinceSeconds` and `previous` can be answered from it.
Files are size-capped and rotated (`.1`, `.2`, …) like the kubelet's containerLogMaxSize/Files,
and only the current and the previous run of a container keep their files: on disk a container
holds at most 2 x containerLogMaxFiles x containerLogMaxSize, however often it restarts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path


def pod_log_dir(root: Path, namespace: str, name: str, uid: str) -> Path:
    return root / f"{namespace}_{name}_{uid}"


class ContainerLog:
    """Appends one container run's output; line-buffered per stream so lines are never interleaved."""

    def __init__(self, path: Path, max_bytes: int, max_files: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.stem.isdigit():
            prune_runs(path.parent, int(path.stem))
        self.path = path
        self._max_bytes = max_bytes
        self._max_files = max_files
        # Unbuffered: every write is whole lines, flushed at once, and a buffer costs 8 KiB per container.
        self._file = path.open("ab", buffering=0)
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buffered = self._pending[stream] + data
        *lines, rest = buffered.split(b"\n")
        for line in lines:
            self._emit(stream, b"F", line)
        # A line longer than 16 KiB is written in parts, tagged P like the CRI does.
        while len(rest) > 16384:
            self._emit(stream, b"P", rest[:16384])
            rest = rest[16384:]
        self._pending[stream] = rest

    def close(self) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self._emit(stream, b"F", rest)
        self._pending = {"stdout": b"", "stderr": b""}
        self._file.close()

    def _emit(self, stream: str, tag: bytes, line: bytes) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        self._file.write(b"%s %s %s %s\n" % (stamp, stream.encode(), tag, line))
        if self._file.tell() >= self._max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self._max_files - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                newer.replace(older)
        self._file = self.path.open("ab", buffering=0)


def prune_runs(container_dir: Path, current: int) -> None:
    """Delete the log files of every run before the previous one, as the kubelet's container
    garbage collector keeps one dead container per container (MaxPerPodContainer): `kubectl logs
    --previous` still works, and a crash loop keeps at most two runs of capped files, not one per
    restart."""
    for path in container_dir.glob("*.log*"):
        run = path.name.split(".", 1)[0]
        if run.isdigit() and int(run) < current - 1:
            path.unlink(missing_ok=True)


def read_lines(path: Path) -> Iterator[tuple[str, str, str]]:
    """Yield (timestamp, stream, text) from a CRI log file, joining partial (P) lines."""
    if not path.exists():
        return
    partial: dict[str, str] = {}
    with path.open("rb") as handle:
        for raw in handle:
            parts = raw.rstrip(b"\n").split(b" ", 3)
            if len(parts) < 4:
                continue
            stamp, stream, tag, text = (p.decode("utf-8", "replace") for p in parts)
            if tag == "P":
                partial[stream] = partial.get(stream, "") + text
                continue
            yield stamp, stream, partial.pop(stream, "") + text


def run_files(container_dir: Path, restart: int) -> list[Path]:
    """The files of one container run, oldest first: rotated `N.log.K` … `N.log.1`, then `N.log`."""
    current = container_dir / f"{restart}.log"
    rotated = sorted(container_dir.glob(f"{restart}.log.*"), key=lambda p: -int(p.suffix[1:]))
    return [*rotated, current]


def select_lines(lines: list[tuple[str, str, str]], *, tail: int | None, since: str | None) -> list[tuple[str, str, str]]:
    """Apply `sinceSeconds`/`sinceTime` (as an RFC 3339 lower bound) and `tailLines`, as the kubelet does."""
    if since is not None:
        lines = [line for line in lines if line[0] >= since]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


def render(line: tuple[str, str, str], timestamps: bool) -> bytes:
    stamp, _, text = line
    return f"{stamp} {text}\n".encode() if timestamps else f"{text}\n".encode()


class LogTail:
    """Reads the lines appended to a log file since the last call; survives rotation."""

    def __init__(self, path: Path, start_at_end: bool = True) -> None:
        self.path = path
        self._inode = path.stat().st_ino if path.exists() else None
        self._offset = path.stat().st_size if start_at_end and path.exists() else 0
        self._partial = b""

    def read_new(self) -> list[tuple[str, str, str]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:  # rotated: start the new file
            self._inode, self._offset, self._partial = stat.st_ino, 0, b""
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        out = []
        for raw in complete:
            parts = raw.split(b" ", 3)
            if len(parts) == 4:
                stamp, stream, _tag, text = (p.decode("utf-8", "replace") for p in parts)
                out.append((stamp, stream, text))
        return out
