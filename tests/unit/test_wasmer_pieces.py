"""The pure pieces of the wasmer worker model: the Pod's memory cap and the agent↔worker framing."""

from __future__ import annotations

import asyncio
import struct

import pytest

from wasmlet.nodeagent.runtime.wasmer_memory import node_victim, pod_cap
from wasmlet.nodeagent.runtime.wasmer_protocol import (
    MAX_PAYLOAD_BYTES,
    ProtocolError,
    encode,
    pack_files,
    read_message,
    unpack_files,
    unpack_output,
)

MIB = 1024 * 1024


def test_a_pods_cap_is_the_sum_of_its_containers_limits_within_the_nodes_cap() -> None:
    assert pod_cap([16 * MIB, 32 * MIB], node_cap=1024 * MIB) == 48 * MIB
    assert pod_cap([800 * MIB, 800 * MIB], node_cap=1024 * MIB) == 1024 * MIB


def test_a_container_without_a_limit_leaves_its_pod_at_the_nodes_cap() -> None:
    assert pod_cap([16 * MIB, None], node_cap=512 * MIB) == 512 * MIB
    assert pod_cap([], node_cap=512 * MIB) == 512 * MIB


def test_past_the_nodes_cap_the_pod_using_most_is_the_one_to_end() -> None:
    assert node_victim({"a": 100 * MIB, "b": 300 * MIB, "c": 50 * MIB}, node_cap=400 * MIB) == "b"
    assert node_victim({"a": 100 * MIB, "b": 300 * MIB}, node_cap=400 * MIB) is None
    assert node_victim({}, node_cap=0) is None


def stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_round_trip_with_their_payloads_and_end_cleanly() -> None:
    files, payload = pack_files({"/config/a.txt": b"alpha", "/config/b/c.txt": b""})
    reader = stream(encode({"op": "start", "files": files}, payload + b"stdin") + encode({"op": "stop"}))
    first = await read_message(reader)
    assert first is not None
    message, body = first
    unpacked, end = unpack_files(message["files"], body)
    assert unpacked == {"/config/a.txt": b"alpha", "/config/b/c.txt": b""}
    assert body[end:] == b"stdin"
    assert await read_message(reader) == ({"op": "stop"}, b"")
    assert await read_message(reader) is None


async def test_a_truncated_oversized_or_non_json_message_is_a_protocol_error() -> None:
    whole = encode({"op": "stop"})
    with pytest.raises(ProtocolError, match="inside a message"):
        await read_message(stream(whole[:-2]))
    with pytest.raises(ProtocolError, match="over the protocol's bounds"):
        await read_message(stream(struct.pack(">II", 2, MAX_PAYLOAD_BYTES + 1)))
    with pytest.raises(ProtocolError, match="not JSON"):
        await read_message(stream(struct.pack(">II", 3, 0) + b"{{{"))
    with pytest.raises(ProtocolError, match="not a JSON object"):
        await read_message(stream(struct.pack(">II", 2, 0) + b"[]"))


def test_a_file_index_longer_than_its_payload_is_refused() -> None:
    with pytest.raises(ProtocolError, match="past the payload"):
        unpack_files([["/a", 10]], b"short")


def test_a_captured_runs_output_comes_back_by_stream_and_a_bad_index_is_refused() -> None:
    assert unpack_output([["stdout", 3], ["stderr", 2]], b"abcde") == [("stdout", b"abc"), ("stderr", b"de")]
    assert unpack_output([], b"") == []
    for index in ([["stdout", 6]], [["stdin", 1]], [["stdout", -1]], [["stdout", "3"]], ["stdout"], [["stdout", 1, 2]]):
        with pytest.raises(ProtocolError):
            unpack_output(index, b"abcde")
