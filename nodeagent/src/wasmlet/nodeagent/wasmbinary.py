"""What a wasm binary is, read from its bytes alone (no engine, no I/O).

A binary starts with the magic `\\0asm` and a 4-byte version: `01 00 00 00` for a core module
(WASI 0.1, `wasip1`), `0d 00 01 00` for a component (version 0x0d, layer 1: WASI 0.2,
`wasip2`). A component's world — the interfaces it imports and exports, such as
`wasi:cli/run@0.2.3` — is read from its top-level import and export sections, so that
`wasmlet push` can describe it in the OCI config and the agent can name what a host lacks,
without compiling it (a componentize-py component takes seconds to compile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAGIC = b"\0asm"
MODULE_VERSION = b"\x01\0\0\0"
COMPONENT_VERSION = b"\x0d\0\x01\0"
Kind = Literal["module", "component"]
# The OCI config's `os` for each kind (the CNCF wasm artifact layout).
OCI_OS: dict[Kind, str] = {"module": "wasip1", "component": "wasip2"}

_IMPORT_SECTION, _EXPORT_SECTION = 10, 11


class BinaryError(ValueError):
    """The bytes are not a wasm binary, or its world cannot be read; the message says where."""


@dataclass(frozen=True)
class World:
    """A component's top-level import and export names, in the order the binary lists them."""

    imports: tuple[str, ...]
    exports: tuple[str, ...]


def kind_of(header: bytes) -> Kind | None:
    """`module`, `component`, or None for the first 8 bytes of a binary."""
    if header[:4] != MAGIC:
        return None
    version = header[4:8]
    return "module" if version == MODULE_VERSION else "component" if version == COMPONENT_VERSION else None


def describe(header: bytes) -> str:
    """A phrase for an error: what the 8 bytes say the binary is."""
    kind = kind_of(header)
    if kind is not None:
        return f"a wasm {kind}"
    if header[:4] == MAGIC:
        return f"a wasm binary of unknown version {header[4:8].hex(' ')}"
    return "not a wasm binary"


def world(data: bytes) -> World:
    """The imports and exports of the component `data`, or BinaryError."""
    if kind_of(data[:8]) != "component":
        raise BinaryError(f"{describe(data[:8])}, not a component")
    imports: list[str] = []
    exports: list[str] = []
    reader = _Reader(data, 8)
    while not reader.done:
        section = reader.byte()
        size = reader.u32()
        body = _Reader(data[reader.pos:reader.pos + size], 0)
        if len(body.data) != size:
            raise BinaryError(f"section {section} at byte {reader.pos} runs past the end")
        reader.pos += size
        if section == _IMPORT_SECTION:
            for _ in range(body.u32()):
                imports.append(body.name())
                body.skip_externdesc()
        elif section == _EXPORT_SECTION:
            for _ in range(body.u32()):
                exports.append(body.name())
                body.skip_sortidx()
                if body.byte() == 1:
                    body.skip_externdesc()
    return World(tuple(imports), tuple(exports))


class _Reader:
    """A cursor over the binary: LEB128 integers, names and the pieces of import/export entries."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.done:
            raise BinaryError(f"unexpected end of the binary at byte {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u32(self) -> int:
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            shift += 7
            if not value & 0x80:
                return result
            if shift > 35:
                raise BinaryError(f"an integer at byte {self.pos} is too long")

    def name(self) -> str:
        """An import/export name (`0x00 name`, or `0x01 name version-suffix`)."""
        form = self.byte()
        if form not in (0, 1):
            raise BinaryError(f"unknown name form {form:#x} at byte {self.pos - 1}")
        text = self.string()
        if form == 1:
            self.string()  # a version suffix: not part of the name
        return text

    def string(self) -> str:
        size = self.u32()
        raw = self.data[self.pos:self.pos + size]
        self.pos += size
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise BinaryError(f"a name at byte {self.pos - size} is not UTF-8") from exc

    def skip_sortidx(self) -> None:
        if self.byte() == 0:  # a core sort has a second byte
            self.byte()
        self.u32()

    def skip_externdesc(self) -> None:
        tag = self.byte()
        if tag == 0:  # a core module: 0x11 and a type index
            self.byte()
            self.u32()
        elif tag in (1, 4, 5):  # func, component, instance: a type index
            self.u32()
        elif tag in (2, 3):  # a value or type bound: its form, then an index or type (s33 / u32)
            form = self.byte()
            if form == 0 or (tag == 2 and form == 1):
                self.u32()
        else:
            raise BinaryError(f"unknown extern kind {tag:#x} at byte {self.pos - 1}")
