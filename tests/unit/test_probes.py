"""Probes with the kubelet's semantics (docs/http.md, "Probes"): parsing, one attempt against real
local servers, and the probe loops of one container instance."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wasmlet.nodeagent.errors import UnsupportedPod
from wasmlet.nodeagent.probes import (
    USER_AGENT,
    ContainerProber,
    ContainerProbes,
    HttpGet,
    Probe,
    TcpSocket,
    new_probe_session,
    parse_probes,
    probe_once,
)
from wasmlet.nodeagent.tls import server_context

LOCAL = "127.0.0.1"
FAST = 0.02  # seconds between probes in the loop tests


# -- parsing ----------------------------------------------------------------------------------------

def container(**probes: Any) -> dict[str, Any]:
    return {"name": "main", "image": "x/y:1", **probes}


def parse_one(probe: Any, kind: str = "readiness", ports: dict[str, int] | None = None) -> Probe | None:
    probe_or_none: Probe | None = getattr(parse_probes(container(**{f"{kind}Probe": probe}), ports or {}), kind)
    return probe_or_none


def test_a_container_without_probes_has_none() -> None:
    assert parse_probes(container(), {}) == ContainerProbes(container="main")


def test_unset_fields_take_the_kubelet_defaults() -> None:
    probe = parse_one({"httpGet": {"port": 8080}}, "liveness")
    assert probe == Probe("liveness", HttpGet(None, 8080, "/", "HTTP", ()), initial_delay=0, period=10, timeout=1,
                          success_threshold=1, failure_threshold=3, termination_grace_period_seconds=None)


def test_zero_means_the_default_as_the_api_server_defaults_it() -> None:
    probe = parse_one({"tcpSocket": {"port": 9}, "periodSeconds": 0, "timeoutSeconds": 0, "successThreshold": 0,
                       "failureThreshold": 0, "initialDelaySeconds": 0})
    assert probe is not None
    assert (probe.period, probe.timeout, probe.success_threshold, probe.failure_threshold) == (10, 1, 1, 3)


def test_every_field_is_read() -> None:
    probe = parse_one({"httpGet": {"host": "10.0.0.7", "port": "web", "path": "/healthz", "scheme": "HTTPS",
                                   "httpHeaders": [{"name": "Host", "value": "app.local"},
                                                   {"name": "X-Probe", "value": "1"}]},
                       "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 7,
                       "terminationGracePeriodSeconds": 4}, "liveness", {"web": 8443})
    assert probe == Probe("liveness", HttpGet("10.0.0.7", 8443, "/healthz", "HTTPS",
                                              (("Host", "app.local"), ("X-Probe", "1"))),
                          5, 2, 3, 1, 7, 4)


def test_all_three_probes_are_read_and_named_ports_resolve_for_tcp_too() -> None:
    probes = parse_probes(container(startupProbe={"tcpSocket": {"port": "admin"}},
                                    livenessProbe={"httpGet": {"port": "8080"}},
                                    readinessProbe={"httpGet": {"port": 8080}, "successThreshold": 3}),
                          {"admin": 9000})
    assert probes.startup is not None and probes.startup.action == TcpSocket(None, 9000)
    # Digits in a string are a number: the kubelet's fallback when no port has that name.
    assert probes.liveness is not None and probes.liveness.action == HttpGet(None, 8080)
    assert probes.readiness is not None and probes.readiness.success_threshold == 3
    assert probes.container == "main"


def test_a_named_port_the_container_does_not_declare_is_an_invalid_probe() -> None:
    with pytest.raises(UnsupportedPod) as caught:
        parse_one({"httpGet": {"port": "http"}}, "liveness", {"metrics": 9090})
    assert caught.value.reason == "InvalidProbe"
    assert caught.value.message == ('container "main": livenessProbe.httpGet.port: '
                                    'the container has no port named "http"')


@pytest.mark.parametrize(("handler", "message"), [
    ("exec", ('container "main": livenessProbe.exec cannot run in a wasm Pod: there is no process to exec into; '
              "use httpGet or tcpSocket")),
    ("grpc", ('container "main": livenessProbe.grpc cannot run in a wasm Pod: the agent has no gRPC health client; '
              "use httpGet or tcpSocket")),
])
def test_exec_and_grpc_probes_are_unsupported_with_the_reason(handler: str, message: str) -> None:
    with pytest.raises(UnsupportedPod) as caught:
        parse_one({handler: {"command": ["true"]} if handler == "exec" else {"port": 9}}, "liveness")
    assert (caught.value.reason, caught.value.message) == ("UnsupportedProbe", message)


@pytest.mark.parametrize(("kind", "probe", "message"), [
    ("readiness", {}, "readinessProbe must specify a handler type: httpGet or tcpSocket"),
    ("readiness", "yes", "readinessProbe must be an object"),
    ("readiness", {"httpGet": {"port": 1}, "tcpSocket": {"port": 1}}, "may not specify more than 1 handler type"),
    ("readiness", {"httpGet": "/healthz"}, "readinessProbe.httpGet must be an object"),
    ("readiness", {"tcpSocket": {"port": 1}, "periodSeconds": "ten"},
     "readinessProbe.periodSeconds must be an integer ≥ 0, got 'ten'"),
    ("readiness", {"tcpSocket": {"port": 1}, "periodSeconds": -1}, "readinessProbe.periodSeconds must be an integer"),
    ("readiness", {"tcpSocket": {"port": 1}, "initialDelaySeconds": -5}, "initialDelaySeconds must be an integer"),
    ("readiness", {"tcpSocket": {"port": 1}, "timeoutSeconds": 1.5}, "timeoutSeconds must be an integer"),
    ("readiness", {"tcpSocket": {"port": 1}, "failureThreshold": True}, "failureThreshold must be an integer"),
    ("readiness", {"tcpSocket": {"port": 1}, "successThreshold": "2"}, "successThreshold must be an integer"),
    ("liveness", {"tcpSocket": {"port": 1}, "successThreshold": 2}, "livenessProbe.successThreshold must be 1"),
    ("startup", {"tcpSocket": {"port": 1}, "successThreshold": 3}, "startupProbe.successThreshold must be 1"),
    ("liveness", {"tcpSocket": {"port": 1}, "terminationGracePeriodSeconds": 0},
     "terminationGracePeriodSeconds must be an integer ≥ 1"),
    ("readiness", {"tcpSocket": {"port": 1}, "terminationGracePeriodSeconds": 5},
     "terminationGracePeriodSeconds must not be set for readinessProbes"),
    ("readiness", {"tcpSocket": {"port": 0}}, "readinessProbe.tcpSocket.port must be a port number from 1 to 65535"),
    ("readiness", {"tcpSocket": {"port": 70000}}, "tcpSocket.port must be a port number"),
    ("readiness", {"tcpSocket": {}}, "tcpSocket.port must be a port number"),
    ("readiness", {"tcpSocket": {"port": 1, "host": 5}}, "readinessProbe.tcpSocket.host must be a string"),
    ("readiness", {"httpGet": {"port": 1, "scheme": "FTP"}}, "httpGet.scheme must be HTTP or HTTPS"),
    ("readiness", {"httpGet": {"port": 1, "path": 7}}, "httpGet.path must be a string"),
    ("readiness", {"httpGet": {"port": 1, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}},
     "httpGet.httpHeaders[0] must have a header name"),
    ("readiness", {"httpGet": {"port": 1, "httpHeaders": [{"name": "X-A", "value": 1}]}},
     "httpGet.httpHeaders[0] must have a header name"),
])
def test_invalid_fields_are_refused_naming_the_container_and_field(kind: str, probe: Any, message: str) -> None:
    with pytest.raises(UnsupportedPod) as caught:
        parse_one(probe, kind)
    assert caught.value.reason == "InvalidProbe"
    assert caught.value.message.startswith('container "main": ')
    assert message in caught.value.message


# -- real local servers -----------------------------------------------------------------------------

class Endpoint:
    """An HTTP server on 127.0.0.1 whose answers each test scripts, per path.

    `answers[path]` is a list of statuses: each request takes the first, the last one repeats.
    `/hang` answers only when the test ends; `/redirect` sends a 302 to `/target`."""

    def __init__(self) -> None:
        self.answers: dict[str, list[int]] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[web.Request] = []
        self.release = asyncio.Event()
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.requests.append(request)
        if request.path == "/hang":
            await self.release.wait()
        if request.path == "/redirect":
            raise web.HTTPFound("/target")
        script = self.answers.get(request.path, [200])
        status = script.pop(0) if len(script) > 1 else script[0]
        return web.Response(status=status, text="x" * 20_000)  # longer than the 10 KiB the prober reads

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{LOCAL}:{self.port}{path}"


async def serve(endpoint: Endpoint, ssl_context: Any = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", endpoint.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, LOCAL, 0, ssl_context=ssl_context)
    await site.start()
    endpoint.port = runner.addresses[0][1]
    return runner


@pytest.fixture
async def server() -> AsyncIterator[Endpoint]:
    endpoint = Endpoint()
    runner = await serve(endpoint)
    yield endpoint
    endpoint.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_probe_session() as probe_session:
        yield probe_session


def closed_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


# -- one attempt ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "expected"), [
    (200, (True, "")),
    (204, (True, "")),
    (399, (True, "")),
    (404, (False, "HTTP probe failed with statuscode: 404")),
    (500, (False, "HTTP probe failed with statuscode: 500")),
])
async def test_http_succeeds_from_200_to_399(server: Endpoint, session: aiohttp.ClientSession, status: int,
                                             expected: tuple[bool, str]) -> None:
    server.answers["/healthz"] = [status]
    assert await probe_once(HttpGet(None, server.port, "/healthz"), 1, LOCAL, session) == expected


async def test_a_redirect_is_a_success_and_is_not_followed(server: Endpoint, session: aiohttp.ClientSession) -> None:
    server.answers["/target"] = [500]
    assert await probe_once(HttpGet(None, server.port, "/redirect"), 1, LOCAL, session) == (True, "")
    assert server.hits["/target"] == 0


async def test_the_request_carries_the_kubelet_headers_and_the_probe_headers(
        server: Endpoint, session: aiohttp.ClientSession) -> None:
    action = HttpGet(None, server.port, "healthz?deep=1", headers=(("Host", "app.example"), ("X-Probe", "a"),
                                                                    ("X-Probe", "b")))
    assert await probe_once(action, 1, LOCAL, session) == (True, "")
    request = server.requests[-1]
    assert request.path_qs == "/healthz?deep=1"
    assert request.host == "app.example"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Accept"] == "*/*"
    assert request.headers.getall("X-Probe") == ["a", "b"]
    assert "Accept-Encoding" not in request.headers
    assert "Cookie" not in request.headers


async def test_probe_headers_override_or_remove_the_defaults(server: Endpoint, session: aiohttp.ClientSession) -> None:
    action = HttpGet(None, server.port, "/", headers=(("User-Agent", "mine/1"), ("Accept", "")))
    await probe_once(action, 1, LOCAL, session)
    request = server.requests[-1]
    assert request.headers["User-Agent"] == "mine/1"
    assert "Accept" not in request.headers


async def test_the_host_field_replaces_the_pod_ip(server: Endpoint, session: aiohttp.ClientSession) -> None:
    assert await probe_once(HttpGet(LOCAL, server.port), 1, "192.0.2.1", session) == (True, "")
    assert await probe_once(TcpSocket(LOCAL, server.port), 1, "192.0.2.1", session) == (True, "")


async def test_a_slow_answer_fails_with_the_go_client_timeout(server: Endpoint, session: aiohttp.ClientSession) -> None:
    success, message = await probe_once(HttpGet(None, server.port, "/hang"), 0.1, LOCAL, session)
    assert not success
    assert message == (f'Get "{server.url("/hang")}": context deadline exceeded '
                       "(Client.Timeout exceeded while awaiting headers)")


async def test_a_refused_connection_reads_as_the_kubelets_dial_error(session: aiohttp.ClientSession) -> None:
    port = closed_port()
    assert await probe_once(HttpGet(None, port, "/healthz"), 1, LOCAL, session) == (
        False, f'Get "http://{LOCAL}:{port}/healthz": dial tcp {LOCAL}:{port}: connect: connection refused')


async def test_https_is_not_verified_as_the_kubelet(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    endpoint = Endpoint()
    runner = await serve(endpoint, server_context(None, None, tmp_path, "localhost", LOCAL))
    try:
        assert await probe_once(HttpGet(None, endpoint.port, "/", "HTTPS"), 5, LOCAL, session) == (True, "")
    finally:
        await runner.cleanup()


async def test_https_against_plain_http_says_so(server: Endpoint, session: aiohttp.ClientSession) -> None:
    assert await probe_once(HttpGet(None, server.port, "/", "HTTPS"), 1, LOCAL, session) == (
        False, f'Get "{server.url("/", "https")}": http: server gave HTTP response to HTTPS client')


async def test_tcp_succeeds_when_a_connection_opens(server: Endpoint, session: aiohttp.ClientSession) -> None:
    assert await probe_once(TcpSocket(None, server.port), 1, LOCAL, session) == (True, "")


async def test_tcp_fails_on_a_closed_port_with_the_kubelets_wording(session: aiohttp.ClientSession) -> None:
    port = closed_port()
    assert await probe_once(TcpSocket(None, port), 1, LOCAL, session) == (
        False, f"dial tcp {LOCAL}:{port}: connect: connection refused")


# -- the loops --------------------------------------------------------------------------------------

class Recorder:
    """The Pod worker's side: records every call, with how many requests the server had seen then."""

    def __init__(self, server: Endpoint | None = None) -> None:
        self.server = server
        self.calls: list[tuple[Any, ...]] = []
        self.events: list[tuple[str, str, str]] = []

    def _seen(self) -> int:
        return sum(self.server.hits.values()) if self.server else 0

    def readiness_changed(self, ready: bool) -> None:
        self.calls.append(("ready", ready, self._seen()))

    def started(self) -> None:
        self.calls.append(("started", self._seen()))

    def failed(self, kind: str, message: str) -> None:
        self.calls.append(("failed", kind, message, self._seen()))

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition (never a fixed sleep standing in for one)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def http_probe(kind: str, server: Endpoint, path: str, **fields: Any) -> Probe:
    fields.setdefault("period", FAST)
    return Probe(kind, HttpGet(None, server.port, path), **fields)


async def test_readiness_follows_its_thresholds_and_reports_only_changes(
        server: Endpoint, session: aiohttp.ClientSession) -> None:
    server.answers["/ready"] = [200, 500, 200, 200, 200, 500, 200, 500, 500, 500, 200]
    listener = Recorder(server)
    prober = ContainerProber(ContainerProbes(readiness=http_probe("readiness", server, "/ready", success_threshold=2,
                                                                  failure_threshold=2), container="main"),
                             pod_ip=LOCAL, session=session, listener=listener)
    prober.start()
    try:
        assert prober.started and not prober.ready
        await until(lambda: server.hits["/ready"] >= 14)
    finally:
        await prober.close()
    # ready after the 2nd success in a row (request 4); not ready after the 2nd failure in a row (9);
    # ready again after request 12 (11 and 12 are the last status, repeated).
    assert listener.calls[:3] == [("ready", True, 4), ("ready", False, 9), ("ready", True, 12)]
    assert len(listener.calls) == 3
    assert prober.ready
    assert listener.events[0] == ("Warning", "Unhealthy",
                                  "Readiness probe failed: HTTP probe failed with statuscode: 500")
    assert len(listener.events) == 5


async def test_liveness_fails_after_failure_threshold_then_stops_probing(
        server: Endpoint, session: aiohttp.ClientSession) -> None:
    server.answers["/live"] = [500]
    listener = Recorder()
    results: list[tuple[str, bool]] = []
    probes = ContainerProbes(liveness=http_probe("liveness", server, "/live", failure_threshold=3),
                             readiness=http_probe("readiness", server, "/ready"), container="main")
    prober = ContainerProber(probes, pod_ip=LOCAL, session=session, listener=listener,
                             on_result=lambda kind, ok: results.append((kind, ok)))
    prober.start()
    try:
        await until(lambda: any(call[0] == "failed" for call in listener.calls))
        stopped_at = server.hits["/live"]
        # The readiness probe keeps going meanwhile: ten more of its periods without another liveness probe.
        ready_then = server.hits["/ready"]
        await until(lambda: server.hits["/ready"] >= ready_then + 10)
    finally:
        await prober.close()
    assert stopped_at == 3 and server.hits["/live"] == 3
    assert ("failed", "liveness", "Container main failed liveness probe", 0) in listener.calls
    unhealthy = ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")
    assert listener.events == [unhealthy] * 3
    assert results.count(("liveness", False)) == 3 and ("readiness", True) in results


async def test_the_startup_probe_gates_liveness_and_readiness(server: Endpoint, session: aiohttp.ClientSession) -> None:
    server.answers["/startup"] = [500]
    listener = Recorder(server)
    probes = ContainerProbes(startup=http_probe("startup", server, "/startup", failure_threshold=1000),
                             liveness=http_probe("liveness", server, "/live"),
                             readiness=http_probe("readiness", server, "/ready"), container="main")
    prober = ContainerProber(probes, pod_ip=LOCAL, session=session, listener=listener)
    prober.start()
    try:
        await until(lambda: server.hits["/startup"] >= 5)
        assert server.hits["/live"] == server.hits["/ready"] == 0
        assert not prober.started and not prober.ready
        server.answers["/startup"] = [200]
        await until(lambda: prober.ready)
        startup_done = server.hits["/startup"]
        await until(lambda: server.hits["/live"] >= 5)
    finally:
        await prober.close()
    assert prober.started
    assert [call[0] for call in listener.calls] == ["started", "ready"]
    assert server.hits["/startup"] == startup_done  # no startup probe once it succeeded
    assert listener.events[0][2] == "Startup probe failed: HTTP probe failed with statuscode: 500"


async def test_a_startup_probe_that_keeps_failing_fails_the_container(
        session: aiohttp.ClientSession) -> None:
    port = closed_port()
    listener = Recorder()
    probes = ContainerProbes(startup=Probe("startup", TcpSocket(None, port), period=FAST, failure_threshold=2),
                             readiness=Probe("readiness", TcpSocket(None, port), period=FAST), container="main")
    prober = ContainerProber(probes, pod_ip=LOCAL, session=session, listener=listener)
    prober.start()
    try:
        await until(lambda: bool(listener.calls))
    finally:
        await prober.close()
    assert listener.calls == [("failed", "startup", "Container main failed startup probe", 0)]
    assert listener.events == [("Warning", "Unhealthy",
                                f"Startup probe failed: dial tcp {LOCAL}:{port}: connect: connection refused")] * 2
    assert not prober.started and not prober.ready


async def test_without_a_readiness_probe_the_container_is_ready_once_started(
        server: Endpoint, session: aiohttp.ClientSession) -> None:
    listener = Recorder()
    prober = ContainerProber(ContainerProbes(startup=http_probe("startup", server, "/startup"), container="main"),
                             pod_ip=LOCAL, session=session, listener=listener)
    prober.start()
    try:
        assert not prober.ready
        await until(lambda: prober.ready)
    finally:
        await prober.close()
    assert listener.calls == [("started", 0), ("ready", True, 0)]


async def test_without_probes_the_container_is_started_and_ready_at_once(session: aiohttp.ClientSession) -> None:
    listener = Recorder()
    prober = ContainerProber(ContainerProbes(container="main"), pod_ip=LOCAL, session=session, listener=listener)
    prober.start()
    assert prober.started and prober.ready
    await prober.close()
    assert listener.calls == []


async def test_the_initial_delay_is_honoured(server: Endpoint, session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    prober = ContainerProber(ContainerProbes(readiness=http_probe("readiness", server, "/ready", initial_delay=0.3,
                                                                  period=60)),
                             pod_ip=LOCAL, session=session, listener=Recorder())
    began = loop.time()
    prober.start()
    try:
        await until(lambda: prober.ready)
        first_probe_after = loop.time() - began
    finally:
        await prober.close()
    assert first_probe_after >= 0.3
    assert server.hits["/ready"] == 1


async def test_close_cancels_a_probe_in_flight_and_leaves_no_task(
        server: Endpoint, session: aiohttp.ClientSession) -> None:
    prober = ContainerProber(ContainerProbes(liveness=http_probe("liveness", server, "/hang", timeout=60)),
                             pod_ip=LOCAL, session=session, listener=Recorder())
    prober.start()
    await until(lambda: server.hits["/hang"] == 1)
    await prober.close()
    await prober.close()  # idempotent
    # The autouse guard in tests/conftest.py fails this test if a probe task were left behind.


async def test_errors_in_probing_or_in_the_listener_never_stop_the_loop(server: Endpoint) -> None:
    class Grumpy(Recorder):
        def event(self, type_: str, reason: str, message: str) -> None:
            super().event(type_, reason, message)
            raise RuntimeError("the reporter is down")

    listener = Grumpy()
    broken = new_probe_session()
    await broken.close()  # a closed session makes every attempt raise, which probe_once does not expect
    prober = ContainerProber(ContainerProbes(readiness=http_probe("readiness", server, "/ready")),
                             pod_ip=LOCAL, session=broken, listener=listener)
    prober.start()
    try:
        await until(lambda: len(listener.events) >= 3)
    finally:
        await prober.close()
    assert listener.events[0] == ("Warning", "Unhealthy", "Readiness probe errored: Session is closed")


async def test_a_prober_starts_only_once(session: aiohttp.ClientSession) -> None:
    prober = ContainerProber(ContainerProbes(readiness=Probe("readiness", TcpSocket(None, 1), period=60)),
                             pod_ip=LOCAL, session=session, listener=Recorder())
    prober.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            prober.start()
    finally:
        await prober.close()
