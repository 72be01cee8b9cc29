"""HTTP handler containers: the agent serves the container's port and runs the module once per
request, WAGI style (the convention is docs/http.md).

A handler container is an `Instance` like any other: it "runs" while its port is served, a stop
closes the port and lets requests in flight finish within the grace period, and a restart (a
liveness failure) opens the port again. Each request gets its own short-lived instance from the
Pod's runtime, with the request in its environment and its body on stdin; the module's stdout is
a CGI response. Anything that goes wrong with one request (a trap, a timeout, garbage on stdout)
becomes that request's 5xx and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from wasmlet.api.http import HttpHandler
from wasmlet.nodeagent.errors import ModuleError, UnsupportedPod
from wasmlet.nodeagent.metrics import HttpMetrics
from wasmlet.nodeagent.runtime import EXIT_KILLED, EXIT_TRAP, ExitStatus, Instance, OutputSink, RunSpec, Runtime

log = logging.getLogger(__name__)

# Headers that never become variables: the two CGI already passes as CONTENT_*, and `Proxy`,
# whose HTTP_PROXY would be read as the module's outbound proxy by most HTTP libraries
# (httpoxy, CVE-2016-5385): any client could send the module's requests through its own host.
SKIPPED_HEADERS = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_PROXY"})

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# How long a stopping handler waits for the instances of abandoned requests to end.
REAP_SECONDS = 2.0
# Headers that describe one connection, not the response: the agent's own server sets them.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade", "content-length"})
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
STATUS_VALUE = re.compile(r"([1-5][0-9][0-9])(?: .*)?")


class PortInUse(UnsupportedPod):
    reason = "PortInUse"


class BadResponse(Exception):
    """The module's stdout is not a CGI response; the message says what is wrong with it."""


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_cgi(output: bytes) -> CgiResponse:
    """Split a CGI response into status, headers and body; raise BadResponse saying what is wrong."""
    headers: list[tuple[str, str]] = []
    position = 0
    while True:
        end = output.find(b"\n", position)
        if end < 0:
            if not output:
                raise BadResponse("the module wrote nothing to stdout")
            raise BadResponse("no header block: the headers must end with an empty line")
        line = output[position:end].removesuffix(b"\r")
        position = end + 1
        if not line:
            break
        match = HEADER_LINE.fullmatch(line)
        if match is None:
            raise BadResponse(f"malformed header line {_excerpt(line)} (expected 'Name: value')")
        headers.append((match[1].decode("ascii"), match[2].decode("latin-1")))
    if not headers:
        raise BadResponse("the header block is empty (a CGI response needs at least Content-Type)")
    status = 302 if any(name.lower() == "location" for name, _ in headers) else 200
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "status":
            code = STATUS_VALUE.fullmatch(value)
            if code is None:
                raise BadResponse(f"bad Status header {value!r} (expected a code from 100 to 599)")
            status = int(code[1])
        elif lowered not in HOP_BY_HOP:
            kept.append((name, value))
    return CgiResponse(status, kept, output[position:])


def cgi_environment(request: web.BaseRequest, handler: HttpHandler, content_length: int,
                    server_software: str) -> dict[str, str]:
    """The request as environment variables (RFC 3875 names and WAGI's X_* additions)."""
    script_name = handler.path.rstrip("/")
    raw_path = request.rel_url.raw_path
    host = request.host
    server_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    peer = request.transport.get_extra_info("peername") if request.transport else None
    remote_addr, remote_port = (str(peer[0]), str(peer[1])) if peer else ("", "")
    query = request.rel_url.raw_query_string
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": server_software,
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(handler.port),
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": request.path[len(script_name):],
        "X_RAW_PATH_INFO": raw_path[len(script_name):],
        "QUERY_STRING": query,
        "X_MATCHED_ROUTE": handler.path,
        "X_FULL_URL": f"http://{host}{raw_path}" + (f"?{query}" if query else ""),
        "REMOTE_ADDR": remote_addr,
        "REMOTE_HOST": remote_addr,
        "REMOTE_PORT": remote_port,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(content_length),
    }
    for name in request.headers:
        variable = "HTTP_" + name.upper().replace("-", "_")
        if variable in SKIPPED_HEADERS or variable in env:
            continue
        env[variable] = ", ".join(request.headers.getall(name))
    return env


class _Refusal(Exception):
    """The agent answers for the module: `status`, the X-Wasmlet-Error `code`, a one-line reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.message + "\n",
                            headers={"X-Wasmlet-Error": self.code})


class _Output:
    """One request's output: stdout kept (up to the limit), stderr to the container's log."""

    def __init__(self, log_sink: OutputSink) -> None:
        self.stdout = bytearray()
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None  # stops the instance: no one reads more
        self._log_sink = log_sink

    def write(self, stream: str, data: bytes) -> None:
        if stream != "stdout":
            self._log_sink(stream, data)
        elif len(self.stdout) + len(data) > MAX_RESPONSE_BYTES:
            if not self.overflowed and self.on_overflow is not None:
                self.on_overflow()
            self.overflowed = True
        else:
            self.stdout += data


class HandlerInstance:
    """A container that is an HTTP handler, as an `Instance`: running while its port is served."""

    def __init__(self, *, handler: HttpHandler, runtime: Runtime, spec: RunSpec, host: str, log_sink: OutputSink,
                 metrics: HttpMetrics, labels: tuple[str, str, str], server_software: str) -> None:
        self.handler = handler
        self._runtime = runtime
        self._spec = spec
        self._host = host
        self._log = log_sink
        self._metrics = metrics
        self._labels = labels
        self._software = server_software
        self._slots = asyncio.Semaphore(handler.max_concurrency)
        self._in_flight = metrics.in_flight.labels(*labels)
        # lingering_time=0: a refused body is not read on for 10 s after the answer (aiohttp's
        # lingering close outlives even the server's shutdown); the connection is closed instead.
        self._server = web.Server(self._handle, access_log=None, handler_cancellation=False, lingering_time=0)
        self._listener: asyncio.Server | None = None
        self._stopping = False
        self._reaping: set[asyncio.Future[ExitStatus]] = set()
        self._ended: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

    async def open(self) -> None:
        """Listen on the node's address at the handler's port; raise PortInUse when it is taken."""
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(self._server, self._host, self.handler.port,
                                                      reuse_address=True, backlog=1024)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {self.handler.port}/TCP on {self._host} is in use by another process "
                                f"on the node") from None
            raise PortInUse(f"cannot listen on {self._host}:{self.handler.port}: {exc.strerror or exc}") from None

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._ended)

    async def stop(self, grace_seconds: float) -> ExitStatus:
        """Close the port; requests in flight get `grace_seconds` to finish, then are cut off."""
        if not self._stopping:
            self._stopping = True
            if self._listener is not None:
                self._listener.close()
            await self._server.shutdown(max(grace_seconds, 0.0))
            if self._reaping:  # a wasmer instance spinning without system calls never ends (docs/http.md)
                await asyncio.wait(self._reaping, timeout=REAP_SECONDS)
            if not self._ended.done():
                self._ended.set_result(ExitStatus(0, "Completed", "stopped serving"))
        return await self.wait()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        began = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.handler.request_timeout_seconds
        try:
            response = await self._answer(request, deadline)
            reason = ""
        except _Refusal as refusal:
            response, reason = refusal.response(), refusal.code
        if self._stopping or reason in ("body-timeout", "body-too-large"):
            response.force_close()  # stopping, or a body left unread: the connection cannot serve another
        response.headers.setdefault("Server", self._software)
        seconds = time.perf_counter() - began
        self._metrics.observe(self._labels, response.status, reason, seconds)
        self._access_log(request, response, seconds)
        return response

    async def _answer(self, request: web.BaseRequest, deadline: float) -> web.Response:
        if self._stopping:
            raise _Refusal(503, "stopping", "the Pod is stopping")
        if not self.handler.serves(request.path):
            raise _Refusal(404, "not-found", f"not found: {request.path} is outside {self.handler.path}")
        body = b""
        if request.body_exists:  # most requests have none: no timer to arm for them
            try:
                async with asyncio.timeout_at(deadline):  # a client sending its body slowly holds no place for ever
                    body = await self._body(request)
            except TimeoutError:
                raise _Refusal(408, "body-timeout", f"the request body did not arrive within "
                               f"{self.handler.request_timeout_seconds}s") from None
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise _Refusal(503, "busy", f"all {self.handler.max_concurrency} instances stayed busy for "
                               f"{self.handler.request_timeout_seconds}s") from None
        else:
            await self._slots.acquire()  # free: taken at once
        in_flight = self._in_flight
        in_flight.inc()
        try:
            return await self._run(request, body, deadline)
        finally:
            in_flight.dec()
            self._slots.release()

    async def _body(self, request: web.BaseRequest) -> bytes:
        limit = self.handler.max_body_bytes
        too_large = _Refusal(413, "body-too-large", f"the request body is over the limit of {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _run(self, request: web.BaseRequest, body: bytes, deadline: float) -> web.Response:
        env = {**self._spec.env, **cgi_environment(request, self.handler, len(body), self._software)}
        output = _Output(self._log)
        spec = dataclasses.replace(self._spec, env=env, stdin=body, capture_limit=MAX_RESPONSE_BYTES)
        try:
            instance = await self._runtime.start(spec, output.write)
        except ModuleError as exc:
            raise _Refusal(502, "start-failed", f"the module could not start: {exc.message}") from None
        output.on_overflow = lambda: self._reap(instance)
        try:
            status = await self._outcome(instance, output, deadline)
        except BaseException:
            self._reap(instance)  # given up on (timeout, too much output, the Pod stopping): stop it
            raise
        if status.exit_code in (EXIT_TRAP, EXIT_KILLED) or status.reason == "OOMKilled":
            raise _Refusal(502, "trap", f"the module failed: {_first_line(status.message) or status.reason}")
        try:
            cgi = parse_cgi(bytes(output.stdout))
        except BadResponse as exc:
            raise _Refusal(502, "bad-response", f"bad response from the module: {exc}") from None
        if status.exit_code != 0:
            log.debug("%s: the module exited %d after a complete response", self._spec.container, status.exit_code)
        return web.Response(status=cgi.status, headers=cgi.headers, body=cgi.body)

    async def _outcome(self, instance: Instance, output: _Output, deadline: float) -> ExitStatus:
        """The instance's end (an overflowing response stops it at once), within the deadline.

        Awaited in the request's own task, without helper tasks: this runs for every request."""
        try:
            async with asyncio.timeout_at(deadline):
                status = await instance.wait()
        except TimeoutError:
            raise _Refusal(504, "timeout", f"the request took longer than "
                           f"{self.handler.request_timeout_seconds}s") from None
        if output.overflowed:
            raise _Refusal(502, "response-too-large", f"the response passed {MAX_RESPONSE_BYTES} bytes")
        return status

    def _reap(self, instance: Instance) -> None:
        """Stop an instance nobody waits for any more, without holding up the response."""
        task = asyncio.ensure_future(instance.stop(0))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    def _access_log(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        """One line per request in the container's log: the common log format, then the duration."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        size = response.content_length or "-"
        line = (f'{peer[0] if peer else "-"} - - [{when}] "{request.method} {request.raw_path} '
                f'HTTP/{request.version.major}.{request.version.minor}" {response.status} {size} '
                f"{seconds * 1000:.1f}ms\n")
        self._log("stdout", line.encode("utf-8", "replace"))


def _excerpt(data: bytes, limit: int = 40) -> str:
    text = repr(data[:limit])[2:-1]
    return f"'{text}…'" if len(data) > limit else f"'{text}'"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""

