"""PodWorker (one Pod's lifecycle) and PodController (which Pods run on this node).

The controller is fed desired Pods by a source (API watch or manifest folder) and never asks
where they came from. It starts one worker per Pod UID, stops workers whose Pods are deleted,
and is resync-safe: a Pod that is already terminal is adopted as it is, never run again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from wasmlet.api.http import HttpHandler
from wasmlet.nodeagent.backoff import RestartBackoff
from wasmlet.nodeagent.claims import ClaimSource, NoClaims
from wasmlet.nodeagent.errors import AgentError, ModuleError, PodConfigError, UnsupportedPod
from wasmlet.nodeagent.lifecycle import FINAL, HANDLERS, State, check_transition, exit_for_deadline
from wasmlet.nodeagent.logs import ContainerLog, pod_log_dir
from wasmlet.nodeagent.metrics import AgentMetrics
from wasmlet.nodeagent.modules import Module, ModuleCache
from wasmlet.nodeagent.objects import ObjectStore
from wasmlet.nodeagent.podspec import PodPlan, parse_pod
from wasmlet.nodeagent.podstore import PodStore
from wasmlet.nodeagent.ports import NodePorts
from wasmlet.nodeagent.probes import ContainerProber, ContainerProbes, new_probe_session
from wasmlet.nodeagent.restarts import (
    AGENT_STOPPED,
    RestartSchedule,
    crash_loop_message,
    restore_records,
    should_restart,
)
from wasmlet.nodeagent.runtime import EXIT_TERMINATED, ExitStatus, Instance, RunSpec, Runtime
from wasmlet.nodeagent.status import ContainerRecord, conditions, now, pod_phase
from wasmlet.nodeagent.storage import EVICTION_MONITORING_SECONDS, size_limits, watch_size_limits
from wasmlet.nodeagent.wagi import HandlerInstance

T = TypeVar("T")
log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


class Reporter(Protocol):
    """Where a worker's truth goes: the API server, or the console in standalone mode."""

    def update(self, ref: PodRef, status: Obj) -> None: ...

    def event(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None: ...

    async def finished(self, ref: PodRef, deleting: bool) -> None:
        """The worker ended; when the Pod was being deleted, remove it (grace 0, UID precondition)."""

    def gone(self, ref: PodRef) -> None:
        """The API no longer has the Pod: nothing more is written for it."""


@dataclass
class AgentEnv:
    """What every worker shares: built once by the composition root."""

    node_name: str
    node_ip: str
    runtimes: tuple[str, ...]
    runtime: Callable[[str], Awaitable[Runtime]]
    modules: ModuleCache
    objects: ObjectStore
    reporter: Reporter
    pods_dir: Path
    logs_dir: Path
    claims: ClaimSource = field(default_factory=NoClaims)
    node_labels: dict[str, str] = field(default_factory=dict)  # what a PersistentVolume's node affinity sees
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 3
    max_pods: int = 110
    eviction_seconds: float = EVICTION_MONITORING_SECONDS
    admitted: set[str] = field(default_factory=set)  # uids of the Pods admitted that have not ended
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    metrics: AgentMetrics = field(default_factory=AgentMetrics)
    ports: NodePorts = field(default_factory=NodePorts)
    server_software: str = "wasmlet"
    # ConfigMap modules only through a volume reference (an API that is KubeEdge's MetaServer).
    modules_by_reference: bool = False
    _probe_session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def probe_session(self) -> aiohttp.ClientSession:
        """The HTTP session of every probe on the node, opened with the first probe."""
        if self._probe_session is None:
            self._probe_session = new_probe_session()
        return self._probe_session

    async def close(self) -> None:
        if self._probe_session is not None:
            await self._probe_session.close()


class PodWorker:
    """Drives one Pod through the lifecycle states and reports every change."""

    def __init__(self, plan: PodPlan, env: AgentEnv, source_dir: Path | None = None) -> None:
        self.plan = plan
        self.env = env
        self.source_dir = source_dir
        self.ref = PodRef(plan.namespace, plan.name, plan.uid)
        self.state = State.ADMITTING
        # Until a container exists the kubelet shows PodInitializing in a Pod with init containers.
        self.default_waiting = "PodInitializing" if plan.init_containers else "ContainerCreating"
        self.records = {c.name: ContainerRecord(c.name, c.module.ref, c.init, {"waiting": {"reason": self.default_waiting}})
                        for c in plan.init_containers + plan.containers}
        self.containers = {c.name: c for c in plan.init_containers + plan.containers}
        self.probes: dict[str, ContainerProbes] = {}  # read at admission
        self._probers: dict[str, ContainerProber] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.modules: dict[str, Module] = {}
        self.specs: dict[str, RunSpec] = {}
        self.volume_paths: dict[str, Path] = {}
        self.instances: dict[str, Instance] = {}
        self.pull_backoff = RestartBackoff(env.backoff_base, env.backoff_cap, first_immediate=False)
        self.restarts = RestartSchedule(env.backoff_base, env.backoff_cap)
        self.ran_for: dict[str, float] = {}
        self._resume: set[str] = set()  # containers the agent's own stop ended: they run again
        self.resumable = False  # stopped, but the Pod is not over (agent shutdown, a removal)
        self._phase_before_stop = ""
        self.backoff_container: str | None = None
        self.pod_dir = env.pods_dir / plan.uid
        self.stop_grace: float | None = None
        self.stop_reason: ExitStatus | None = None
        self.deleting = False
        self._reason = ""
        self._message = ""
        self._start_time = now()
        self._started_at: dict[str, float] = {}
        self._logs: dict[str, ContainerLog] = {}
        self._exits: asyncio.Queue[tuple[str, ExitStatus]] = asyncio.Queue()
        self._watchers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._conditions: list[Obj] = []
        self.last_status: Obj = {}

    def restore(self, status: Obj) -> None:
        """Continue from the status a previous agent process left in the local store (or from a
        worker of the same Pod that was stopped without ending it). A Pod that had ended stays
        ended; its containers are judged by `restore_records`."""
        self._start_time = status.get("startTime") or self._start_time
        self._resume = restore_records(self.records, status)
        self._phase_before_stop = status.get("phase") or ""
        if status.get("phase") in ("Succeeded", "Failed"):
            self._reason, self._message = status.get("reason") or "", status.get("message") or ""
            self.state = State.FAILED if status.get("phase") == "Failed" else State.TERMINATED

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        if self.state in FINAL:  # restored as ended: nothing to run, and nothing new to tell
            self.last_status = self.build_status()
            return
        deadline = asyncio.create_task(self._deadline()) if self.plan.active_deadline_seconds else None
        limits = size_limits(self.plan.volumes)
        storage = asyncio.create_task(watch_size_limits(limits, lambda: self.volume_paths, self.evict,
                                                        self.env.eviction_seconds)) if limits else None
        self.report()
        try:
            while self.state not in FINAL:
                following = await self._step()
                check_transition(self.state, following)
                log.debug("pod %s: %s → %s", self.plan.key, self.state.value, following.value)
                self.state = following
        finally:
            for watcher in (deadline, storage):
                if watcher:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
            await self._cleanup()
            self.env.admitted.discard(self.plan.uid)
        self.report()
        await self.env.reporter.finished(self.ref, self.deleting)

    async def _step(self) -> State:
        if self._stopping.is_set() and self.state is not State.TERMINATING:
            return State.TERMINATING
        try:
            return await HANDLERS[self.state](self)
        except UnsupportedPod as exc:
            return self.fail(exc.reason, exc.message)
        except AgentError as exc:
            log.warning("pod %s: %s", self.plan.key, exc)
            return self.fail(exc.reason, exc.message)

    def request_stop(self, grace: float | None, reason: ExitStatus | None = None, deleting: bool = False,
                     resumable: bool = False) -> None:
        """Stop the Pod: its containers get `grace` seconds (the Pod's own grace when None).

        `resumable`: the agent stops the Pod but the Pod is not over (the agent shuts down, or the
        Pod left the desired set and may come back): its phase stays what it was, and the
        containers it ends are marked so that they run again when the Pod is resumed.
        """
        if self.stop_grace is None or (grace is not None and grace < self.stop_grace):
            self.stop_grace = grace
        if resumable and not self.stopping:
            self.resumable = True
            self._phase_before_stop = self.last_status.get("phase") or self._phase_before_stop
            reason = ExitStatus(EXIT_TERMINATED, "Error", AGENT_STOPPED)
        self.resumable = self.resumable and not (deleting or self.deleting)
        self.stop_reason = self.stop_reason or reason
        self.deleting = self.deleting or deleting
        self._stopping.set()

    def evict(self, message: str) -> None:
        """Evicted as the kubelet's eviction manager evicts: reason Evicted, containers killed at once."""
        self._reason, self._message = "Evicted", message
        self.event("Warning", "Evicted", message)
        self.request_stop(0)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- helpers the state handlers use ------------------------------------------------------

    def fail(self, reason: str, message: str) -> State:
        self._reason, self._message = reason, message
        self.event("Warning", reason, message)
        return State.FAILED

    def event(self, type_: str, reason: str, message: str, container: str | None = None) -> None:
        self.env.reporter.event(self.ref, type_, reason, message, container)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the Pod is being stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0))
        except TimeoutError:
            pass

    def should_start(self, name: str) -> bool:
        if name in self.instances or self.stopping or name in self.restarts.due:
            return False
        term = self.records[name].terminated
        return term is None or name in self._resume or should_restart(self.plan.restart_policy, term["exitCode"])

    def clear_waiting(self, record: ContainerRecord) -> None:
        """A container whose error is resolved waits as one not yet created (not for a restart)."""
        if "waiting" in record.state and record.state["waiting"].get("reason") != "CrashLoopBackOff":
            record.set_waiting(self.default_waiting)

    def container_ended(self, name: str) -> None:
        """A main container ended: schedule its restart if the restartPolicy wants one (doBackOff)."""
        term = self.records[name].terminated
        if term is None or self.stopping or not should_restart(self.plan.restart_policy, term["exitCode"]):
            return
        delay = self.restarts.schedule(name, self.ran_for.get(name, 0.0), time.monotonic())
        if delay > 0:
            self.crash_looping(name, delay)

    def crash_looping(self, name: str, delay: float) -> None:
        """The container waits `delay` seconds before its next start: CrashLoopBackOff."""
        p = self.plan
        self.records[name].set_waiting("CrashLoopBackOff", crash_loop_message(delay, name, p.name, p.namespace, p.uid))
        self.event("Warning", "BackOff",
                   f"Back-off restarting failed container {name} in pod {p.name}_{p.namespace}({p.uid})", name)

    async def restart(self, name: str) -> None:
        """Start `name` again after its wait; a container stopped meanwhile stays as it is."""
        if not self.stopping and name not in self.instances:
            await self.start_or_record(name)

    async def start_or_record(self, name: str) -> None:
        """Start a main container; one that cannot start ends as StartError (and may be restarted)."""
        try:
            await self.start(name)
        except PodConfigError as exc:  # a volume path through a link: CreateContainerConfigError, retried
            if self.stopping:
                return
            self.records[name].set_waiting(exc.reason, exc.message)
            self.event("Warning", "Failed", f"Error: {exc.message}", name)
            self.restarts.schedule(name, 0.0, time.monotonic())
        except ModuleError as exc:
            if self.stopping:
                return
            self.records[name].set_terminated(128, "StartError", exc.message)
            self.event("Warning", "Failed", f"Error: {exc.message}", name)
            self.container_ended(name)

    async def start(self, name: str) -> None:
        spec = self.specs[name]
        record = self.records[name]
        counted = record.terminated is not None or "terminated" in record.last_state
        if counted:
            record.restart_count += 1  # a new run: the kubelet counts it when the container is created
        self._resume.discard(name)
        runtime = await self.env.runtime(self.plan.runtime)
        logs_dir = pod_log_dir(self.env.logs_dir, self.plan.namespace, self.plan.name, self.plan.uid)
        container_log = ContainerLog(logs_dir / name / f"{record.restart_count}.log",
                                     self.env.log_max_bytes, self.env.log_max_files)
        self.event("Normal", "Created", f"Created container {name}", name)
        began = time.perf_counter()
        try:
            handler = self.containers[name].http
            if handler is None:
                instance = await self._unless_stopped(runtime.start(spec, container_log.write))
            else:
                instance = await self._serve(handler, runtime, spec, container_log)
        except BaseException as exc:
            container_log.close()
            if counted and isinstance(exc, PodConfigError):  # never created, so not a run to count
                record.restart_count -= 1
            raise
        metrics = self.env.metrics
        if counted:
            metrics.restarts.inc()
        metrics.start_seconds.labels(runtime.name).observe(time.perf_counter() - began)
        metrics.starts.labels(runtime.name).inc()
        metrics.running.labels(runtime.name).inc()
        self._logs[name] = container_log
        self.instances[name] = instance
        self._started_at[name] = time.monotonic()
        record.set_running(now())
        self.event("Normal", "Started", f"Started container {name}", name)
        self._probe(name)
        watcher = asyncio.create_task(self._watch(name, instance))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _serve(self, handler: HttpHandler, runtime: Runtime, spec: RunSpec,
                     container_log: ContainerLog) -> Instance:
        """An HTTP handler container: serve its port, one instance per request (wagi)."""
        labels = (self.plan.namespace, self.plan.name, spec.container)
        instance = HandlerInstance(handler=handler, runtime=runtime, spec=spec, host=self.env.node_ip,
                                   log_sink=container_log.write, metrics=self.env.metrics.http, labels=labels,
                                   server_software=self.env.server_software)
        await instance.open()
        self.env.metrics.http.track(labels)
        return instance

    def _probe(self, name: str) -> None:
        """Start the container's probes; until they pass it is not started / not ready."""
        probes = self.probes.get(name)
        if probes is None or not (probes.startup or probes.liveness or probes.readiness):
            return
        metrics = self.env.metrics.probes
        prober = ContainerProber(probes, pod_ip=self.env.node_ip, session=self.env.probe_session(),
                                 listener=_ProbeListener(self, name),
                                 on_result=lambda kind, ok: metrics.labels(kind.capitalize(),
                                                                           "successful" if ok else "failed").inc())
        record = self.records[name]
        record.startup_passed, record.ready = prober.started, prober.ready
        self._probers[name] = prober
        prober.start()

    def probe_changed(self, name: str) -> None:
        prober, record = self._probers.get(name), self.records[name]
        if prober is not None and record.running:
            record.startup_passed, record.ready = prober.started, prober.ready
            self.report()

    def unhealthy(self, name: str, message: str) -> None:
        """A liveness or startup probe failed for good: kill the container, as the kubelet does."""
        instance = self.instances.get(name)
        if instance is None or self.stopping:
            return
        restarts = self.plan.restart_policy != "Never"
        self.event("Normal", "Killing", message + (", will be restarted" if restarts else ""), name)
        probes = self.probes[name]
        grace = next((p.termination_grace_period_seconds for p in (probes.liveness, probes.startup)
                      if p is not None and p.termination_grace_period_seconds is not None), self.plan.grace_seconds)
        task = asyncio.create_task(self._kill(name, instance, grace, message))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _kill(self, name: str, instance: Instance, grace: float, message: str) -> None:
        status = await instance.stop(grace)
        if status.exit_code == 0:  # a handler drains and "exits" 0; it was killed all the same
            status = ExitStatus(EXIT_TERMINATED, "Error", message)
        self._record_exit(name, status)

    async def until_stopped(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None when the Pod is stopped first (`work` is then cancelled): a
        deleted Pod does not wait for a download or a runtime slot it no longer needs."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.stopping and (current is None or not current.cancelling()):
                return None
            raise

    async def _unless_stopped(self, starting: Awaitable[Instance]) -> Instance:
        """Start, but give up when the Pod is stopped meanwhile (a start may queue for a runtime slot)."""
        instance = await self.until_stopped(starting)
        if instance is None:
            raise ModuleError("the Pod was stopped before its container started", reason="Stopped")
        return instance

    async def next_exit(self, timeout: float | None = None) -> tuple[str | None, ExitStatus | None]:
        """Wait for a container to end (recording it), for `timeout`, or for a stop request."""
        getter = asyncio.ensure_future(self._exits.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        done, pending = await asyncio.wait({getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if getter not in done:
            return None, None
        name, status = getter.result()
        self._record_exit(name, status)
        return name, status

    async def run_to_end(self, name: str) -> ExitStatus:
        await self.start(name)
        self.report()
        while True:
            finished, status = await self.next_exit()
            if finished == name and status is not None:
                self.report()
                return status
            if self.stopping:
                return await self._stop_one(name, self.stop_grace or 0)

    async def stop_all(self, grace: float, reason: ExitStatus | None) -> None:
        await asyncio.gather(*(self._stop_one(n, grace, reason) for n in list(self.instances)))
        # Containers that never started end as they are; waiting ones are reported terminated.

    async def _stop_one(self, name: str, grace: float, reason: ExitStatus | None = None) -> ExitStatus:
        instance = self.instances.get(name)
        if instance is None:
            return reason or ExitStatus(0, "Completed")
        status = await instance.stop(grace)
        if reason is not None:
            status = reason
        self._record_exit(name, status)
        return status

    def _record_exit(self, name: str, status: ExitStatus) -> None:
        if name not in self.instances:
            return
        self.instances.pop(name)
        self.env.metrics.running.labels(self.plan.runtime).dec()
        prober = self._probers.pop(name, None)
        if prober is not None:
            task = asyncio.create_task(prober.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.ran_for[name] = time.monotonic() - self._started_at.pop(name, time.monotonic())
        self.records[name].set_terminated(status.exit_code, status.reason, status.message)
        container_log = self._logs.pop(name, None)
        if container_log:
            container_log.close()
        if status.exit_code != 0:
            log.info("pod %s container %s exited %d (%s)", self.plan.key, name, status.exit_code, status.reason)

    async def _watch(self, name: str, instance: Instance) -> None:
        status = await instance.wait()
        await self._exits.put((name, status))

    async def _deadline(self) -> None:
        assert self.plan.active_deadline_seconds is not None
        await asyncio.sleep(self.plan.active_deadline_seconds)
        self._reason = "DeadlineExceeded"
        self._message = "Pod was active on the node longer than the specified deadline"
        self.event("Normal", "DeadlineExceeded", self._message)
        self.request_stop(self.plan.grace_seconds, exit_for_deadline())

    async def _cleanup(self) -> None:
        if self.instances:
            await self.stop_all(0, None)
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, *self._closing, return_exceptions=True)
        for container_log in self._logs.values():
            container_log.close()
        self.env.modules.release(self.plan.uid)  # its modules may be evicted from the cache again
        self.env.ports.release(self.plan.uid)
        self.env.metrics.http.forget(self.plan.namespace, self.plan.name)
        if self.plan.runtime in self.env.runtimes and self.modules:
            runtime = await self.env.runtime(self.plan.runtime)
            await runtime.release(self.plan.uid)

    # -- status ------------------------------------------------------------------------------

    def field_values(self) -> Obj:
        return {"metadata.name": self.plan.name, "metadata.namespace": self.plan.namespace,
                "metadata.uid": self.plan.uid, "spec.nodeName": self.env.node_name,
                "spec.serviceAccountName": "default", "status.hostIP": self.env.node_ip,
                "status.podIP": self.env.node_ip, "labels": self.plan.labels}

    def phase(self) -> str:
        if self.state is State.FAILED or self._reason in ("DeadlineExceeded", "Evicted"):
            return "Failed"
        for_good = self.stopping and not self.resumable
        if (self._resume or self.resumable) and not for_good and \
                self._phase_before_stop not in ("", "Succeeded", "Failed"):
            return self._phase_before_stop  # the agent stopped it; the Pod goes on when it is resumed
        init = [self.records[c.name] for c in self.plan.init_containers]
        main = [self.records[c.name] for c in self.plan.containers]
        # A Pod stopped for good (deleted, past its deadline) restarts nothing any more.
        terminal = self.state is State.TERMINATED and self.stopping
        return pod_phase(self.plan.restart_policy, init, main, terminal)

    def report(self) -> None:
        self.last_status = self.build_status()
        self.env.reporter.update(self.ref, self.last_status)

    def build_status(self) -> Obj:
        phase = self.phase()
        init_done = all((r.terminated or {}).get("exitCode") == 0 for r in self.records.values() if r.init)
        main = [self.records[c.name] for c in self.plan.containers]
        ready = phase == "Running" and all(r.ready for r in main)
        not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        self._conditions = conditions(self._conditions, {
            "PodReadyToStartContainers": (self.state not in (State.ADMITTING, State.PULLING, State.PULL_BACKOFF)
                                          and phase not in ("Succeeded", "Failed"), ""),
            "Initialized": (init_done, "" if init_done else "ContainersNotInitialized"),
            "ContainersReady": (ready, "" if ready else not_ready),
            "Ready": (ready, "" if ready else not_ready),
            "PodScheduled": (True, ""),
        })
        status: Obj = {
            "phase": phase,
            "conditions": self._conditions,
            "hostIP": self.env.node_ip,
            "hostIPs": [{"ip": self.env.node_ip}],
            # The node's network is the Pod's (as for hostNetwork Pods): its ports are served there.
            "podIP": self.env.node_ip,
            "podIPs": [{"ip": self.env.node_ip}],
            "startTime": self._start_time,
            "containerStatuses": [r.to_status() for r in main],
            "initContainerStatuses": [self.records[c.name].to_status() for c in self.plan.init_containers],
            "reason": self._reason or None,
            "message": self._message or None,
        }
        return status


class _ProbeListener:
    """What one container's probes tell its worker."""

    def __init__(self, worker: PodWorker, container: str) -> None:
        self._worker = worker
        self._container = container

    def readiness_changed(self, ready: bool) -> None:
        self._worker.probe_changed(self._container)

    def started(self) -> None:
        self._worker.probe_changed(self._container)

    def failed(self, kind: str, message: str) -> None:
        self._worker.unhealthy(self._container, message)

    def event(self, type_: str, reason: str, message: str) -> None:
        self._worker.event(type_, reason, message, self._container)


@dataclass
class _Slot:
    worker: PodWorker
    task: asyncio.Task[None]
    pod: Obj = field(default_factory=dict)
    removed: bool = False
    deleted: bool = False
    source: str = "api"
    source_dir: Path | None = None
    readded: bool = False  # back in the desired set while its worker still stops: run it again


class PodController:
    """Keeps one worker per Pod that should run on this node.

    A worker stays known after its Pod finished, until the Pod leaves the desired set, so its
    status and logs can still be served (`kubectl logs` on a completed Pod).
    """

    def __init__(self, env: AgentEnv, store: PodStore | None = None) -> None:
        self.env = env
        self._store = store
        self._slots: dict[str, _Slot] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closing = False  # the agent shuts down: no worker is started again

    async def replace(self, pods: list[Obj], source_dirs: dict[str, Path] | None = None, source: str = "api") -> None:
        """The complete desired set of one source ("api" or "file"): start what is new, stop what is gone."""
        wanted = {p["metadata"]["uid"]: p for p in pods}
        for uid, slot in list(self._slots.items()):
            if uid not in wanted and slot.source == source:
                self.remove(uid)
        for uid, pod in wanted.items():
            self.sync(pod, (source_dirs or {}).get(uid), source)

    def sync(self, pod: Obj, source_dir: Path | None = None, source: str = "api") -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        slot = self._slots.get(uid)
        if slot is None:
            slot = self._start(pod, source_dir, source)
            if slot is None:
                return
        elif slot.removed and not meta.get("deletionTimestamp"):
            # Removed, and back with the same UID before its worker finished stopping: once it has
            # stopped, a new worker resumes the Pod (never lose it to a list that briefly omitted it).
            slot.removed, slot.readded = False, True
        slot.pod = pod
        if meta.get("deletionTimestamp"):
            if slot.task.done():
                if not slot.deleted:
                    slot.deleted = True
                    self._finish(slot.worker.ref, deleting=True)
                return
            grace = meta.get("deletionGracePeriodSeconds")
            if grace == 0 and not meta.get("finalizers"):
                # The API server removes such a Pod in the same request that marked it (its
                # DELETED event is right behind): a status written now would only find a 404.
                slot.worker.env.reporter.gone(slot.worker.ref)
            slot.worker.request_stop(float(grace) if grace is not None else None, deleting=True)
            slot.deleted = True

    def remove(self, uid: str) -> None:
        """The Pod is gone from the desired set: stop it within its grace period, then forget it."""
        slot = self._slots.get(uid)
        if slot is None:
            return
        slot.removed, slot.readded = True, False
        if slot.task.done():
            self._forget(uid)
        else:
            slot.worker.request_stop(None, resumable=True)

    async def stop_all(self, grace_cap: float | None = None) -> None:
        """Agent shutdown: stop every Pod within its grace period, at most `grace_cap` seconds
        (the kubelet's shutdownGracePeriod), and wait for them. A kubelet restart ends no Pod:
        their phases stay, and what this stop ended runs again at the next start."""
        self._closing = True
        for slot in self._slots.values():
            own = slot.worker.plan.grace_seconds
            grace = None if grace_cap is None or own <= grace_cap else grace_cap
            slot.worker.request_stop(grace, resumable=True)
        await asyncio.gather(*(s.task for s in self._slots.values()), *self._cleanups, return_exceptions=True)

    def desired(self, source: str = "api") -> list[Obj]:
        """The Pods of one source that this node is to run (not those already removed)."""
        return [s.pod for s in self._slots.values() if s.source == source and not s.removed]

    def workers(self) -> list[PodWorker]:
        return [s.worker for s in self._slots.values()]

    def pods(self) -> list[Obj]:
        """The Pods this node runs, each with the status the agent last reported."""
        return [{**s.pod, "status": s.worker.last_status or s.pod.get("status") or {}} for s in self._slots.values()]

    def find(self, namespace: str, name: str) -> PodWorker | None:
        """The newest worker of the Pod named `namespace/name`."""
        found = [s.worker for s in self._slots.values()
                 if s.worker.plan.namespace == namespace and s.worker.plan.name == name]
        return found[-1] if found else None

    def _start(self, pod: Obj, source_dir: Path | None, source: str, resumed: Obj | None = None) -> _Slot | None:
        meta = pod["metadata"]
        try:
            # Only a manifest on the node itself may name a node file as its module.
            plan = parse_pod(pod, allow_file_modules=source == "file")
        except UnsupportedPod as exc:
            self._fail_unparseable(pod, exc)
            return None
        worker = PodWorker(plan, self.env, source_dir)
        # Resync safety: what this node last knew of the Pod, else what the API says if it ended.
        prior = resumed or (self._store.status(plan.uid) if self._store else None)
        if prior is None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            prior = pod["status"]
        if prior:
            worker.restore(prior)
        task = asyncio.create_task(self._run(worker), name=f"pod {plan.key}")
        slot = _Slot(worker, task, pod, source=source, source_dir=source_dir)
        self._slots[meta["uid"]] = slot
        self._count_running()
        return slot

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod %s: worker crashed; the Pod is left as last reported", worker.plan.key)
        finally:
            slot = self._slots.get(worker.plan.uid)
            if slot is not None and slot.worker is worker and slot.removed:
                self._forget(worker.plan.uid)
            elif slot is not None and slot.worker is worker and slot.readded and not slot.deleted \
                    and not self._closing:
                del self._slots[worker.plan.uid]
                self._start(slot.pod, slot.source_dir, slot.source, resumed=worker.last_status)
            self._count_running(ending=worker)

    def _count_running(self, ending: PodWorker | None = None) -> None:
        running = [s for s in self._slots.values() if not s.task.done() and s.worker is not ending]
        self.env.metrics.pods.set(len(running))

    def _forget(self, uid: str) -> None:
        """The Pod is gone for good: drop its worker, volumes and logs (the kubelet's pod cleanup),
        and the ConfigMaps and Secrets no other Pod references."""
        slot = self._slots.pop(uid)
        plan = slot.worker.plan
        if self._store is not None:
            self._store.delete_pod(uid)
        self.env.objects.prune([s.pod for s in self._slots.values()])
        # Off the loop: walking a Pod's folders was a tenth of the loop's work under churn.
        folders = (self.env.pods_dir / uid, pod_log_dir(self.env.logs_dir, plan.namespace, plan.name, uid))
        task = asyncio.create_task(asyncio.to_thread(_remove_folders, folders))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _finish(self, ref: PodRef, deleting: bool) -> None:
        task = asyncio.create_task(self.env.reporter.finished(ref, deleting))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _fail_unparseable(self, pod: Obj, exc: UnsupportedPod) -> None:
        meta = pod["metadata"]
        ref = PodRef(meta.get("namespace") or "default", meta.get("name", ""), meta["uid"])
        self.env.reporter.event(ref, "Warning", exc.reason, exc.message, None)
        self.env.reporter.update(ref, {"phase": "Failed", "reason": exc.reason, "message": exc.message,
                                       "hostIP": self.env.node_ip, "startTime": now()})


def _remove_folders(folders: tuple[Path, ...]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
