"""Startup, liveness and readiness probes with the kubelet's semantics (docs/http.md, "Probes").

`parse_probes` reads a container's probes the way the API server defaults and validates them;
anything a wasm Pod cannot honour raises `UnsupportedPod` naming the field. `ContainerProber`
runs them for one container instance: the startup probe first, then liveness and readiness,
each on its own period, reporting through a `ProbeListener` only when something changes.
`probe_once` is one probe attempt, with the kubelet's success rule and failure wording.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from wasmlet.nodeagent.errors import UnsupportedPod

log = logging.getLogger(__name__)

KINDS = ("startup", "liveness", "readiness")
# The kubelet's User-Agent is kube-probe/<major>.<minor> of its own version; ours is the minor the
# node reports in `kubeletVersion` (node.KUBELET_VERSION).
USER_AGENT = "kube-probe/1.34"
# The kubelet reads at most 10 KiB of a probe's response body, then closes the connection.
MAX_BODY = 10 * 1024
TIMEOUT_REASON = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
UNSUPPORTED_HANDLERS = {
    "exec": "there is no process to exec into; use httpGet or tcpSocket",
    "grpc": "the agent has no gRPC health client; use httpGet or tcpSocket",
}
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
# The API server's defaults (SetDefaults_Probe): 0 is indistinguishable from unset in its int32
# fields, so an explicit 0 means the default too. initialDelaySeconds has no default (0).
DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
            "failureThreshold": 3}


@dataclass(frozen=True)
class HttpGet:
    host: str | None  # None: the Pod's IP
    port: int
    path: str = "/"
    scheme: str = "HTTP"  # or HTTPS, never verified (as the kubelet)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TcpSocket:
    host: str | None  # None: the Pod's IP
    port: int


Action = HttpGet | TcpSocket


@dataclass(frozen=True)
class Probe:
    """One probe, defaults applied. Times are seconds (ints from the API; tests use fractions)."""

    kind: str  # startup, liveness or readiness
    action: Action
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None  # liveness/startup: overrides the Pod's

    @property
    def title(self) -> str:
        """How the kubelet names the probe in events: Startup, Liveness, Readiness."""
        return self.kind.capitalize()


@dataclass(frozen=True)
class ContainerProbes:
    startup: Probe | None = None
    liveness: Probe | None = None
    readiness: Probe | None = None
    container: str = ""


# -- parsing (pure) -------------------------------------------------------------------------------

def parse_probes(container: Mapping[str, Any], ports: Mapping[str, int]) -> ContainerProbes:
    """A container's three probes; `ports` maps its named ports to numbers. UnsupportedPod on error."""
    name = str(container.get("name") or "")
    found = {kind: _probe(kind, container.get(f"{kind}Probe"), f'container "{name}": {kind}Probe', ports)
             for kind in KINDS}
    return ContainerProbes(found["startup"], found["liveness"], found["readiness"], container=name)


def _probe(kind: str, spec: Any, where: str, ports: Mapping[str, int]) -> Probe | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _invalid(f"{where} must be an object")
    handlers = [h for h in HANDLERS if spec.get(h) is not None]
    if len(handlers) > 1:
        raise _invalid(f"{where}: may not specify more than 1 handler type (found {', '.join(handlers)})")
    if not handlers:
        raise _invalid(f"{where} must specify a handler type: httpGet or tcpSocket")
    handler = handlers[0]
    if handler in UNSUPPORTED_HANDLERS:
        raise UnsupportedPod(f"{where}.{handler} cannot run in a wasm Pod: {UNSUPPORTED_HANDLERS[handler]}",
                             reason="UnsupportedProbe")
    body = spec[handler]
    if not isinstance(body, dict):
        raise _invalid(f"{where}.{handler} must be an object")
    action = _http_get(body, f"{where}.httpGet", ports) if handler == "httpGet" \
        else TcpSocket(_host(body, f"{where}.tcpSocket"), _port(body.get("port"), f"{where}.tcpSocket.port", ports))
    numbers = {key: _seconds(spec.get(key), f"{where}.{key}", default) for key, default in DEFAULTS.items()}
    if kind != "readiness" and numbers["successThreshold"] != 1:
        raise _invalid(f"{where}.successThreshold must be 1")
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and kind == "readiness":
        raise _invalid(f"{where}.terminationGracePeriodSeconds must not be set for readinessProbes")
    if grace is not None and (not _is_int(grace) or grace < 1):
        raise _invalid(f"{where}.terminationGracePeriodSeconds must be an integer ≥ 1, got {grace!r}")
    return Probe(kind, action, numbers["initialDelaySeconds"], numbers["periodSeconds"], numbers["timeoutSeconds"],
                 numbers["successThreshold"], numbers["failureThreshold"], grace)


def _http_get(body: dict[str, Any], where: str, ports: Mapping[str, int]) -> HttpGet:
    scheme = body.get("scheme") or "HTTP"
    if scheme not in ("HTTP", "HTTPS"):
        raise _invalid(f"{where}.scheme must be HTTP or HTTPS, got {scheme!r}")
    path = body.get("path") or "/"
    if not isinstance(path, str):
        raise _invalid(f"{where}.path must be a string, got {path!r}")
    headers = []
    for index, header in enumerate(body.get("httpHeaders") or []):
        name = header.get("name") if isinstance(header, dict) else None
        value = header.get("value", "") if isinstance(header, dict) else None
        if not isinstance(name, str) or not name or not all(c.isalnum() or c == "-" for c in name) \
                or not isinstance(value, str):
            raise _invalid(f"{where}.httpHeaders[{index}] must have a header name (letters, digits, '-') "
                           f"and a string value, got {header!r}")
        headers.append((name, value))
    return HttpGet(_host(body, where), _port(body.get("port"), f"{where}.port", ports), path, scheme, tuple(headers))


def _host(body: dict[str, Any], where: str) -> str | None:
    host = body.get("host")
    if host is not None and not isinstance(host, str):
        raise _invalid(f"{where}.host must be a string, got {host!r}")
    return host or None


def _port(value: Any, where: str, ports: Mapping[str, int]) -> int:
    """A number, or a container port's name (the kubelet also accepts digits in a string)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        if value not in ports:
            raise _invalid(f'{where}: the container has no port named "{value}"')
        value = ports[value]
    elif isinstance(value, str):
        value = int(value)
    if not _is_int(value) or not 1 <= value <= 65535:
        raise _invalid(f"{where} must be a port number from 1 to 65535 or a port name, got {value!r}")
    return int(value)


def _seconds(value: Any, where: str, default: int) -> int:
    if value is None:
        return default
    if not _is_int(value) or value < 0:
        raise _invalid(f"{where} must be an integer ≥ 0, got {value!r}")
    return int(value) or default


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(message: str) -> UnsupportedPod:
    return UnsupportedPod(message, reason="InvalidProbe")


# -- one probe attempt ----------------------------------------------------------------------------

def new_probe_session() -> aiohttp.ClientSession:
    """The session `ContainerProber` wants: like the kubelet's transport, no connection reuse (a
    restarted container must not get a stale pooled socket), no cookies, no proxy. Call it in the loop."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


async def probe_once(action: Action, timeout: float, pod_ip: str,
                     session: aiohttp.ClientSession) -> tuple[bool, str]:
    """One attempt: (success, the kubelet's failure text, "" on success). Never raises but on cancel."""
    host = action.host or pod_ip
    if isinstance(action, HttpGet):
        return await _http(action, host, timeout, session)
    return await _tcp(host, action.port, timeout)


async def _http(action: HttpGet, host: str, timeout: float, session: aiohttp.ClientSession) -> tuple[bool, str]:
    path = action.path if action.path.startswith("/") or not action.path else "/" + action.path
    url = f"{action.scheme.lower()}://{_join(host, action.port)}{path}"
    # The kubelet's default headers, which httpHeaders override (an empty value removes them);
    # "Connection: close" is what Go sends with the kubelet's DisableKeepAlives.
    given = {k.lower() for k, _ in action.headers}
    defaults = [(k, v) for k, v in (("User-Agent", USER_AGENT), ("Accept", "*/*")) if k.lower() not in given]
    headers = [(k, v) for k, v in action.headers + tuple(defaults) if v or k.lower() not in ("user-agent", "accept")]
    headers.append(("Connection", "close"))
    try:
        async with session.get(url, headers=headers, allow_redirects=False, ssl=False,
                               skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.content.read(MAX_BODY)
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return False, f'Get "{url}": {_http_error(exc)}'
    if 200 <= status < 400:
        return True, ""  # redirects are not followed: a 3xx is a success, as a non-local one is for the kubelet
    return False, f"HTTP probe failed with statuscode: {status}"


def _http_error(exc: BaseException) -> str:
    """Go's net/http error text for what aiohttp raised."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT_REASON
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dial tcp: lookup {exc.host}: no such host"
    if isinstance(exc, aiohttp.ClientConnectorSSLError) and isinstance(exc.os_error, ssl.SSLError):
        reason = str(exc.os_error.reason or exc.os_error)
        if reason == "WRONG_VERSION_NUMBER":  # Go recognises a plain-HTTP answer to its TLS hello
            return "http: server gave HTTP response to HTTPS client"
        return f"tls: {reason.lower().replace('_', ' ')}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"dial tcp {_join(exc.host, exc.port or 0)}: connect: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "EOF"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return str(exc) or type(exc).__name__


async def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    address = _join(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {address}: i/o timeout"
    except socket.gaierror:
        return False, f"dial tcp: lookup {host}: no such host"
    except OSError as exc:
        return False, f"dial tcp {address}: connect: {_os_reason(exc)}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the connection opened: that was the probe
    return True, ""


def _join(host: str, port: int) -> str:
    """Go's net.JoinHostPort: brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _os_reason(exc: OSError) -> str:
    """Go spells errno texts in lower case ("connection refused"); Python capitalises them."""
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return text[:1].lower() + text[1:]


# -- running a container's probes -----------------------------------------------------------------

class ProbeListener(Protocol):
    """What the Pod worker does with probe results; called from the prober's tasks, never concurrently."""

    def readiness_changed(self, ready: bool) -> None:
        """`ContainerProber.ready` changed (never called for the value it had at `start()`)."""

    def started(self) -> None:
        """The startup probe succeeded (never called without one: `started` is then True at once)."""

    def failed(self, kind: str, message: str) -> None:
        """Liveness or startup failed failureThreshold times in a row: kill the container (event
        `Killing`, with `message` + ", will be restarted" when it will be) and close this prober."""

    def event(self, type_: str, reason: str, message: str) -> None:
        """An event on the container, e.g. Warning Unhealthy "Liveness probe failed: ..."."""


class ContainerProber:
    """Runs one container instance's probes: `start()` when it starts, `await close()` when it stops.

    The startup probe runs first; liveness and readiness begin once it succeeded (at once without
    one). Each probe starts `initial_delay` after `start()` (or when the startup probe lets it, if
    later) and repeats every `period`. Give it a session from `new_probe_session()`.
    """

    def __init__(self, probes: ContainerProbes, *, pod_ip: str, session: aiohttp.ClientSession,
                 listener: ProbeListener, on_result: Callable[[str, bool], None] | None = None) -> None:
        self.probes = probes
        self._pod_ip = pod_ip
        self._session = session
        self._listener = listener
        self._on_result = on_result
        self._started = asyncio.Event()
        if probes.startup is None:
            self._started.set()
        self._readiness = probes.readiness is None  # the readiness probe's own verdict
        self._began = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def started(self) -> bool:
        return self._started.is_set()

    @property
    def ready(self) -> bool:
        return self.started and self._readiness

    def start(self) -> None:
        """Begin probing (once; the container is running from now on)."""
        if self._tasks:
            raise RuntimeError(f"the probes of container {self.probes.container!r} are already running")
        loop = asyncio.get_running_loop()
        self._began = loop.time()
        for probe in (self.probes.startup, self.probes.liveness, self.probes.readiness):
            if probe is not None:
                self._tasks.append(loop.create_task(self._run(probe),
                                                    name=f"{probe.kind} probe of {self.probes.container}"))

    async def close(self) -> None:
        """Stop probing and wait until every probe task has ended. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, probe: Probe) -> None:
        loop = asyncio.get_running_loop()
        if probe.kind != "startup":
            await self._started.wait()
        due = max(self._began + probe.initial_delay, loop.time())
        streak = _Streak()
        while True:
            await asyncio.sleep(due - loop.time())
            if not await self._attempt(probe, streak):
                return
            # A probe slower than its period runs again at once, as the kubelet's ticker does.
            due = max(due + probe.period, loop.time())

    async def _attempt(self, probe: Probe, streak: _Streak) -> bool:
        """Probe once and act on the result; False when this probe is done."""
        try:
            success, output = await probe_once(probe.action, probe.timeout, self._pod_ip, self._session)
            message = f"{probe.title} probe failed: {output}"
        except Exception as exc:  # a bug here must not stop probing: it counts as a failure
            log.exception("%s probe of container %s errored", probe.kind, self.probes.container)
            success, message = False, f"{probe.title} probe errored: {exc}"
        if self._on_result is not None:
            self._call(self._on_result, probe.kind, success)
        if not success:
            self._call(self._listener.event, "Warning", "Unhealthy", message)
        threshold = probe.success_threshold if success else probe.failure_threshold
        if streak.add(success) < threshold:
            return True
        if probe.kind == "readiness":
            if success != self._readiness:
                self._readiness = success
                self._call(self._listener.readiness_changed, success)
            return True
        if not success:
            self._call(self._listener.failed, probe.kind,
                       f"Container {self.probes.container} failed {probe.kind} probe")
            return False
        if probe.kind == "startup":
            self._started.set()
            self._call(self._listener.started)
            if self.probes.readiness is None:
                self._call(self._listener.readiness_changed, True)
            return False
        return True

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("probe listener of container %s failed", self.probes.container)


class _Streak:
    """How many results in a row were the same (the kubelet's resultRun)."""

    def __init__(self) -> None:
        self.last: bool | None = None
        self.count = 0

    def add(self, result: bool) -> int:
        self.count = self.count + 1 if result == self.last else 1
        self.last = result
        return self.count
