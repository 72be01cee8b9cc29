"""The messages between the agent and a wasmer worker process, over the worker's stdin and stdout.

A message is a JSON header and a binary payload (volume files, a module's stdin or output), framed
as two big-endian lengths and the two parts. No I/O policy here beyond framing: both sides read
with an `asyncio.StreamReader`. The agent trusts the worker's code but not what a module makes it
say, so every length is bounded before anything is read.

Agent → worker: `start` (one container; payload = files, then stdin), `stop` (`id`, `grace`),
`prepare` (compile a module into the shared compiled cache), `recycle` (reset for the next Pod).
Worker → agent: `ready` (once, with the worker's own memory baseline), `started`/`failed` (a start),
`out` (`id`, `stream`; payload = output bytes), `exit` (`id`, `code`, `reason`, `message`, and
`out`: [[stream, size], …] for the output of a captured run, which is the payload), `prepared`
(`error` or null), `recycled` (`error` or null).
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

_LENGTHS = struct.Struct(">II")
MAX_HEADER_BYTES = 4 * 1024 * 1024  # env and argv of one container, with room to spare
# Volume files are capped at 64 MiB per Pod, a request body far lower: anything past this is a bug.
MAX_PAYLOAD_BYTES = 160 * 1024 * 1024

Message = dict[str, Any]


class ProtocolError(Exception):
    """The other side sent something that is not a message of this protocol."""


def encode(message: Message, payload: bytes = b"") -> bytes:
    """One framed message."""
    header = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTHS.pack(len(header), len(payload)) + header + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[Message, bytes] | None:
    """The next message and its payload, or None at a clean end of the stream."""
    try:
        lengths = await reader.readexactly(_LENGTHS.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a message") from exc
        return None
    header_len, payload_len = _LENGTHS.unpack(lengths)
    if header_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"message of {header_len}+{payload_len} bytes is over the protocol's bounds")
    try:
        header = json.loads(await reader.readexactly(header_len))
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("stream ended inside a message") from exc
    except ValueError as exc:
        raise ProtocolError(f"message header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a JSON object")
    return header, payload


def pack_files(files: dict[str, bytes]) -> tuple[list[list[Any]], bytes]:
    """Files as ([[guest path, size], …], their bytes concatenated), for a start message."""
    index = [[path, len(data)] for path, data in files.items()]
    return index, b"".join(files.values())


def unpack_files(index: list[Any], payload: bytes, offset: int = 0) -> tuple[dict[str, bytes], int]:
    """The inverse of `pack_files`, reading from `offset`; returns the files and the end offset."""
    files: dict[str, bytes] = {}
    for entry in index:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int) and entry[1] >= 0):
            raise ProtocolError(f"bad index entry {entry!r}: not [name, size]")
        path, size = entry
        files[str(path)] = payload[offset:offset + size]
        offset += size
    if offset > len(payload):
        raise ProtocolError("file index runs past the payload")
    return files, offset


def unpack_output(index: list[Any], payload: bytes) -> list[tuple[str, bytes]]:
    """A captured run's output, sent with its exit as `pack_files` packs files: by stream."""
    output, _ = unpack_files(index, payload)
    if not output.keys() <= {"stdout", "stderr"}:
        raise ProtocolError(f"bad output index {index!r}: streams are stdout and stderr")
    return list(output.items())
