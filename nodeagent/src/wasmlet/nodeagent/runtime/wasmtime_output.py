"""A module's stdout and stderr as two pipes, read by the event loop as data arrives.

wasmtime opens the write ends itself (`WasiConfig.stdout_file` on `/proc/self/fd/N`, which
opens a new descriptor of the same pipe), so the bytes never pass through Python on the
module's side. The loop reads up to a pipe's worth at a time and hands it to the sink. When
every writer is closed (the store is), each pipe reports EOF and `drained()` returns.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from typing import Any

from wasmlet.nodeagent.runtime import OutputSink

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
# A Linux pipe holds 64 KiB: one read takes all that is buffered.
READ_BYTES = 65536


class OutputPipes:
    """Two pipes feeding `sink`; the sink is only ever called on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: OutputSink) -> None:
        self._loop = loop
        self._sink: OutputSink | None = sink
        self._read: dict[int, str] = {}
        self._write: list[int] = []
        self._eof = asyncio.Event()
        for stream in STREAMS:
            read_end, write_end = os.pipe()  # both close-on-exec (PEP 446)
            os.set_blocking(read_end, False)
            self._read[read_end] = stream
            self._write.append(write_end)
            loop.add_reader(read_end, self._readable, read_end)

    def configure(self, wasi: Any) -> None:
        """Point the module's stdout and stderr at the pipes (wasmtime opens them by path)."""
        wasi.stdout_file, wasi.stderr_file = f"/proc/self/fd/{self._write[0]}", f"/proc/self/fd/{self._write[1]}"

    def close_write_ends(self) -> None:
        """Drop our copies of the write ends (thread-safe, idempotent)."""
        write, self._write = self._write, []
        for fd in write:
            os.close(fd)

    def ended(self) -> None:
        """The module's thread is done with it: EOF comes once wasmtime's own write ends are closed."""
        self.close_write_ends()

    async def drained(self) -> None:
        """Every writer has closed and everything written has reached the sink."""
        await self._eof.wait()

    def close(self) -> None:
        """Stop reading at once: whatever the module writes later is dropped (EPIPE)."""
        self._sink = None
        for fd in list(self._read):
            self._close_read(fd)

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("reading module %s: %s", self._read.get(fd), exc)
            data = b""
        if not data:
            self._close_read(fd)
            return
        if self._sink is not None:
            try:
                self._sink(self._read[fd], data)
            except Exception:
                log.exception("the output sink failed; dropping the rest of this module's output")
                self._sink = None

    def _close_read(self, fd: int) -> None:
        if self._read.pop(fd, None) is None:
            return
        self._loop.remove_reader(fd)
        os.close(fd)
        if not self._read:
            self._eof.set()


class CapturedOutput:
    """A request instance's stdout and stderr kept in memory and handed to the sink when the
    module ends (`RunSpec.capture_limit`): no pipes, no event-loop readers, no files to open —
    per request that was a fifth of the event loop's work (docs/decisions.md). wasmtime calls
    the writers on its own threads; a write past `limit` bytes of a stream fails with EFBIG, and
    the first `limit + 1` bytes are kept so the receiver sees that the limit was passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: OutputSink, limit: int) -> None:
        self._loop = loop
        self._sink: OutputSink | None = sink
        self._limit = limit
        self._chunks: dict[str, list[bytes]] = {stream: [] for stream in STREAMS}
        self._sizes = dict.fromkeys(STREAMS, 0)
        self._lock = threading.Lock()
        self._delivered = asyncio.Event()

    def configure(self, wasi: Any) -> None:
        wasi.stdout_custom = lambda data: self._write("stdout", data)
        wasi.stderr_custom = lambda data: self._write("stderr", data)

    def close_write_ends(self) -> None:
        """Nothing to close: wasmtime writes through the callbacks."""

    def ended(self) -> None:
        """The module has ended (on its thread): hand what it wrote to the sink, on the loop."""
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    async def drained(self) -> None:
        await self._delivered.wait()

    def close(self) -> None:
        self._sink = None

    def _write(self, stream: str, data: bytes) -> int:
        with self._lock:
            room = self._limit + 1 - self._sizes[stream]
            if room <= 0:
                return -errno.EFBIG
            kept = data[:room]
            self._chunks[stream].append(kept)
            self._sizes[stream] += len(kept)
        return len(data)

    def _deliver(self) -> None:
        if self._delivered.is_set():
            return
        self._delivered.set()
        sink, self._sink = self._sink, None
        if sink is None:
            return
        for stream in STREAMS:
            with self._lock:
                data = b"".join(self._chunks[stream])
            if data:
                sink(stream, data)
