"""Keep the wasm runtime's own trap print off the user's terminal.

wasmer's native library writes every trap to the process's stderr (`RuntimeError: unreachable`
and `    at <unnamed> (<module>[1]:0x69)` backtrace lines) besides returning it as an error. The
agent reports that error in the Pod's status already (`wasm trap: …`), so in `wasmlet run` the
print is a duplicate that looks like a crash of wasmlet itself. Native code cannot be told where
to write, so file descriptor 2 becomes a pipe whose lines are forwarded to the real stderr, but
for those. Python's own stderr (warnings, errors of ours) keeps writing to the real one directly.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import TextIO

# The trap line and the backtrace lines that follow it, as wasmer prints them.
TRAP_PRINT = re.compile(rb"^(RuntimeError: .*|    at .*\(<module>\[\d+\]:0x[0-9a-f]+\))$")


class NativeStderrFilter:
    """While active, native writes to fd 2 pass through a filter that drops `TRAP_PRINT` lines."""

    def __init__(self) -> None:
        self._real: int | None = None
        self._thread: threading.Thread | None = None
        self._python_stderr: TextIO | None = None

    def __enter__(self) -> NativeStderrFilter:
        sys.stderr.flush()
        self._real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._python_stderr = sys.stderr
        sys.stderr = open(os.dup(self._real), "w", buffering=1, encoding="utf-8",  # noqa: SIM115 - closed on exit
                          errors="backslashreplace")
        self._thread = threading.Thread(target=self._forward, args=(read_end, self._real), daemon=True,
                                        name="stderr filter")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Put the real stderr back and forward what is left in the pipe (idempotent)."""
        if self._real is None:
            return
        sys.stderr.flush()
        os.dup2(self._real, 2)  # closes the pipe's only write end: the forwarder sees end of file
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._python_stderr is not None:
            sys.stderr.close()
            sys.stderr = self._python_stderr
        if self._thread is None or not self._thread.is_alive():
            os.close(self._real)  # else a native copy of the pipe outlives us: the forwarder keeps it
        self._real = None

    @staticmethod
    def _forward(read_end: int, real: int) -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not TRAP_PRINT.match(line))
                if kept:
                    os.write(real, kept)
        if pending and not TRAP_PRINT.match(pending):
            os.write(real, pending)
