"""The CGI response a module writes, read the way docs/http.md specifies; node port claims."""

from __future__ import annotations

import pytest

from wasmlet.nodeagent.ports import NodePorts
from wasmlet.nodeagent.wagi import BadResponse, parse_cgi


def test_headers_an_empty_line_and_the_body_byte_for_byte() -> None:
    response = parse_cgi(b"Content-Type: text/plain\r\nX-Thing:  spaced  \n\r\nbody\n\n\x00tail")
    assert response.status == 200
    assert response.headers == [("Content-Type", "text/plain"), ("X-Thing", "spaced")]
    assert response.body == b"body\n\n\x00tail"


@pytest.mark.parametrize(("headers", "status"), [
    (b"Status: 404 Not Found\nContent-Type: text/plain\n", 404),
    (b"status: 201\n", 201),
    (b"Location: /elsewhere\n", 302),
    (b"Location: /elsewhere\nStatus: 307 Temporary Redirect\n", 307),
])
def test_the_status_comes_from_status_or_location(headers: bytes, status: int) -> None:
    assert parse_cgi(headers + b"\n").status == status


def test_hop_by_hop_headers_and_content_length_are_the_servers() -> None:
    response = parse_cgi(b"Content-Type: a/b\nConnection: close\nTransfer-Encoding: chunked\nContent-Length: 99\n"
                         b"Set-Cookie: a=1\nSet-Cookie: b=2\n\nxy")
    assert response.headers == [("Content-Type", "a/b"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


@pytest.mark.parametrize(("output", "complaint"), [
    (b"", "wrote nothing"),
    (b"just a body without headers", "no header block"),
    (b"Content-Type: text/plain\nno blank line follows\n", "malformed header line 'no blank line follows'"),
    (b"\nbody after an empty header block", "header block is empty"),
    (b"\x00\x01\xff garbage\n\n", "malformed header line"),
    (b"Status: abc\n\nbody", "bad Status header 'abc'"),
    (b"Status: 600\n\n", "bad Status header '600'"),
    (b"Bad Name: x\n\n", "malformed header line"),
    (b"X-Evil: a\x01b\n\n", "malformed header line"),
])
def test_what_is_not_a_cgi_response_says_why(output: bytes, complaint: str) -> None:
    with pytest.raises(BadResponse, match=complaint.replace("(", r"\(")):
        parse_cgi(output)


def test_a_port_is_claimed_by_one_pod_at_a_time_all_or_nothing() -> None:
    ports = NodePorts()
    assert ports.claim("uid-a", "default/a", [8080, 9090]) is None
    assert ports.claim("uid-b", "default/b", [7070, 9090]) == (9090, "default/a")
    assert ports.claim("uid-b", "default/b", [7070]) is None  # 7070 was not taken by the refused claim before
    assert ports.claim("uid-a", "default/a", [8080, 9090]) is None  # claiming again is idempotent
    ports.release("uid-a")
    assert ports.claim("uid-c", "default/c", [8080, 9090]) is None
    ports.release("uid-b")
    ports.release("uid-c")
    assert len(ports) == 0


def test_ports_below_the_floor_and_the_agents_own_are_refused_with_a_reason() -> None:
    ports = NodePorts(min_port=1024)
    ports.reserve(10250, "kubelet API: logs, /pods, /metrics")
    assert ports.refusal([8080, 9090], "n1") is None
    low = ports.refusal([8080, 80], "n1")
    assert low is not None and (low.port, low.reason) == (80, "PortNotAllowed")
    assert "below the lowest port node n1 gives Pods (1024, setting min_host_port)" in low.message
    own = ports.refusal([10250], "n1")
    assert own is not None and own.reason == "PortNotAllowed"
    assert own.message.startswith("port 10250/TCP is the node agent's own (kubelet API: logs, /pods, /metrics)")
    assert NodePorts(min_port=1).refusal([22], "n1") is None
