"""A module's stdout and stderr as two pipes, read by the event loop as data arrives.

wasmtime opens the write ends itself (`WasiConfig.stdout_file` on `/proc/self/fd/N`, which
opens a new descriptor of the same pipe), so the bytes never pass through Python on the
module's side. The loop reads up to a pipe's worth at a time and hands it to the sink. When
every writer is closed (the store is), each pipe reports EOF and `drained()` returns.
"""

from __future__ import annotations

import asyncio
import logging
import os

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

    def write_paths(self) -> tuple[str, str]:
        """Paths wasmtime opens for the module's stdout and stderr."""
        return f"/proc/self/fd/{self._write[0]}", f"/proc/self/fd/{self._write[1]}"

    def close_write_ends(self) -> None:
        """Drop our copies of the write ends (thread-safe, idempotent)."""
        write, self._write = self._write, []
        for fd in write:
            os.close(fd)

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
