"""The per-Pod lifecycle as an explicit state machine (in the manner of Krustlet's).

One small handler per state; each returns the next state, and `TRANSITIONS` declares which
moves are legal, so an impossible move fails loudly in tests instead of silently in production.

    Admitting → Pulling ⇄ PullBackOff
    Pulling → Volumes → Initializing → Starting → Running ⇄ CrashLoopBackOff
    any → Terminating → Terminated;  any → Failed (permanent)

Backoffs are states, not sleeps hidden in handlers; cleanup happens in one place (`_cleanup`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from wasmlet.nodeagent.errors import ModuleError, PodConfigError, PullError, UnsupportedPod
from wasmlet.nodeagent.probes import parse_probes
from wasmlet.nodeagent.runtime import EXIT_KILLED, ExitStatus, RunSpec
from wasmlet.nodeagent.volumes import mounts_for, prepare_volumes, resolve_env

if TYPE_CHECKING:
    from wasmlet.nodeagent.pods import PodWorker

log = logging.getLogger(__name__)


class State(enum.Enum):
    ADMITTING = "Admitting"
    PULLING = "Pulling"
    PULL_BACKOFF = "PullBackOff"
    VOLUMES = "Volumes"
    INITIALIZING = "Initializing"
    STARTING = "Starting"
    RUNNING = "Running"
    CRASH_BACKOFF = "CrashLoopBackOff"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.ADMITTING: frozenset({S.PULLING, S.FAILED, S.TERMINATING}),
    S.PULLING: frozenset({S.VOLUMES, S.PULL_BACKOFF, S.FAILED, S.TERMINATING}),
    S.PULL_BACKOFF: frozenset({S.PULLING, S.TERMINATING, S.FAILED}),
    S.VOLUMES: frozenset({S.INITIALIZING, S.PULL_BACKOFF, S.FAILED, S.TERMINATING}),
    S.INITIALIZING: frozenset({S.STARTING, S.CRASH_BACKOFF, S.PULL_BACKOFF, S.TERMINATED, S.FAILED, S.TERMINATING}),
    S.STARTING: frozenset({S.RUNNING, S.PULL_BACKOFF, S.FAILED, S.TERMINATING}),
    S.RUNNING: frozenset({S.CRASH_BACKOFF, S.TERMINATED, S.TERMINATING, S.FAILED}),
    S.CRASH_BACKOFF: frozenset({S.STARTING, S.INITIALIZING, S.RUNNING, S.TERMINATING, S.FAILED}),
    S.TERMINATING: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
    S.FAILED: frozenset(),
}
FINAL = frozenset({S.TERMINATED, S.FAILED})


def check_transition(current: State, following: State) -> None:
    if following not in TRANSITIONS[current]:
        raise RuntimeError(f"illegal Pod state transition {current.value} → {following.value}")


Handler = Callable[["PodWorker"], Awaitable[State]]


async def admitting(w: PodWorker) -> State:
    runtime_name = w.plan.runtime
    if runtime_name not in w.env.runtimes:
        offered = ", ".join(w.env.runtimes)
        return w.fail("UnknownRuntimeClass", f"runtimeClassName {runtime_name!r} is not offered by node "
                      f"{w.env.node_name} (it offers: {offered})")
    used = len(w.env.admitted - {w.plan.uid})
    if used >= w.env.max_pods:  # the kubelet's admission: lifecycle.InsufficientResourceError
        return w.fail("OutOfpods", f"Node didn't have enough resource: pods, requested: 1, used: {used}, "
                      f"capacity: {w.env.max_pods}")
    for container in w.plan.containers:  # raises UnsupportedPod: the Pod fails naming the probe
        named_ports = {p.name: p.port for p in container.ports if p.name}
        w.probes[container.name] = parse_probes({"name": container.name, **container.probes}, named_ports)
    conflict = w.env.ports.claim(w.plan.uid, w.plan.key, w.plan.tcp_ports)
    if conflict is not None:
        port, holder = conflict
        return w.fail("PortInUse", f"port {port}/TCP is already used by Pod {holder} on node {w.env.node_name} "
                      "(a wasm Pod's ports are its node's)")
    w.env.admitted.add(w.plan.uid)
    return S.PULLING


async def pulling(w: PodWorker) -> State:
    for container in w.plan.init_containers + w.plan.containers:
        record = w.records[container.name]
        if record.image_id:
            continue
        w.event("Normal", "Pulling", f'Pulling module "{container.module.ref}"', container.name)
        started = time.monotonic()
        try:
            module = await w.env.modules.fetch(container.module, w.plan.namespace, w.source_dir, holder=w.plan.uid,
                                               pull_secrets=w.plan.image_pull_secrets,
                                               pull_policy=container.image_pull_policy)
            runtime = await w.env.runtime(w.plan.runtime)
            await runtime.prepare(module.path, module.digest)
        except (PullError, ModuleError) as exc:
            w.env.metrics.pulls.labels("error").inc()
            record.set_waiting(exc.reason if isinstance(exc, PullError) else "ErrImagePull", exc.message)
            w.event("Warning", "Failed", f"Failed to pull module {container.module.ref!r}: {exc.message}",
                    container.name)
            return S.PULL_BACKOFF
        except PodConfigError as exc:
            record.set_waiting(exc.reason, exc.message)
            w.event("Warning", "Failed", f"Error: {exc.message}", container.name)
            return S.PULL_BACKOFF
        w.env.metrics.pulls.labels("ok").inc()
        w.modules[container.name] = module
        record.image_id = module.image_id or module.digest
        w.event("Normal", "Pulled", f'Successfully pulled module "{container.module.ref}" in '
                f"{time.monotonic() - started:.3f}s ({module.size} bytes, {module.digest[:19]})", container.name)
    w.pull_backoff.delay = 0.0
    return S.VOLUMES


async def pull_backoff(w: PodWorker) -> State:
    delay = w.pull_backoff.next_delay(0.0)
    for record in w.records.values():
        waiting = record.state.get("waiting") or {}
        if waiting.get("reason") == "ErrImagePull":
            record.set_waiting("ImagePullBackOff", f"Back-off pulling module: {waiting.get('message', '')}")
            w.event("Normal", "BackOff", f'Back-off pulling module "{record.image}"', record.name)
    w.report()
    await w.sleep(delay)
    return S.PULLING


async def volumes(w: PodWorker) -> State:
    try:
        w.volume_paths = await prepare_volumes(w.plan, w.pod_dir / "volumes", w.env.objects, w.field_values())
        runtime = await w.env.runtime(w.plan.runtime)
        for container in w.plan.init_containers + w.plan.containers:
            w.specs[container.name] = RunSpec(
                pod_uid=w.plan.uid,
                container=container.name,
                module_path=w.modules[container.name].path,
                module_digest=w.modules[container.name].digest,
                argv=container.argv,
                env=await resolve_env(container, w.plan, w.env.objects, w.field_values()),
                mounts=mounts_for(container, w.volume_paths, w.plan.volumes),
                working_dir=container.working_dir,
                memory_limit_bytes=container.memory_limit_bytes,
                network=w.plan.network,
                cpu_limit=container.cpu_limit,
            )
            runtime.check(w.specs[container.name])
    except PodConfigError as exc:
        for record in w.records.values():
            record.set_waiting("CreateContainerConfigError", exc.message)
        w.event("Warning", "Failed", f"Error: {exc.message}")
        return S.PULL_BACKOFF
    except UnsupportedPod as exc:
        return w.fail(exc.reason, exc.message)
    return S.INITIALIZING


async def initializing(w: PodWorker) -> State:
    for container in w.plan.init_containers:
        record = w.records[container.name]
        term = record.terminated
        if term is not None and term["exitCode"] == 0:
            continue
        try:
            status = await w.run_to_end(container.name)
        except PodConfigError as exc:
            return _config_error(w, container.name, exc)
        if w.stopping:
            return S.TERMINATING
        if status.exit_code != 0:
            if w.plan.restart_policy == "Never":
                return w.fail("InitContainerFailed", f"init container {container.name!r} failed: {status.reason}")
            w.backoff_container = container.name
            return S.CRASH_BACKOFF
    return S.STARTING


async def starting(w: PodWorker) -> State:
    for container in w.plan.containers:
        if container.name in w.instances or not w.should_start(container.name):
            continue
        try:
            await w.start(container.name)
        except PodConfigError as exc:
            return _config_error(w, container.name, exc)
        except ModuleError as exc:
            if w.stopping:
                break
            w.records[container.name].set_terminated(1, "StartError", exc.message)
            w.event("Warning", "Failed", f"Error: {exc.message}", container.name)
    return S.RUNNING


async def running(w: PodWorker) -> State:
    w.report()
    while True:
        if w.stopping:
            return S.TERMINATING
        if not w.instances:
            if any(w.should_start(c.name) for c in w.plan.containers):
                w.backoff_container = _first_to_restart(w)
                return S.CRASH_BACKOFF
            return S.TERMINATED
        name, _ = await w.next_exit()
        if name is not None:
            w.report()


async def crash_backoff(w: PodWorker) -> State:
    name = w.backoff_container or ""
    record = w.records[name]
    delay = w.restart_backoff[name].next_delay(w.ran_for.get(name, 0.0))
    message = f"back-off {delay:g}s restarting failed container={name} pod={w.plan.name}_{w.plan.namespace}({w.plan.uid})"
    record.set_waiting("CrashLoopBackOff", message)
    w.event("Warning", "BackOff", "Back-off restarting failed container", name)
    w.report()
    deadline = time.monotonic() + delay
    while (remaining := deadline - time.monotonic()) > 0:
        if w.stopping:
            return S.TERMINATING
        if w.instances:
            finished, _ = await w.next_exit(timeout=remaining)
            if finished:
                w.report()
        else:
            await w.sleep(remaining)
    record.restart_count += 1
    w.env.metrics.restarts.inc()
    w.backoff_container = None
    return S.INITIALIZING if record.init else S.STARTING


async def terminating(w: PodWorker) -> State:
    grace = w.stop_grace if w.stop_grace is not None else w.plan.grace_seconds
    for name in list(w.instances):
        w.event("Normal", "Killing", f"Stopping container {name}", name)
    await w.stop_all(grace, w.stop_reason)
    return S.TERMINATED


HANDLERS: dict[State, Handler] = {
    S.ADMITTING: admitting,
    S.PULLING: pulling,
    S.PULL_BACKOFF: pull_backoff,
    S.VOLUMES: volumes,
    S.INITIALIZING: initializing,
    S.STARTING: starting,
    S.RUNNING: running,
    S.CRASH_BACKOFF: crash_backoff,
    S.TERMINATING: terminating,
}


def _config_error(w: PodWorker, name: str, exc: PodConfigError) -> State:
    """A container that could not be set up as it started (a volume path through a link): it waits
    with CreateContainerConfigError and is retried after a back-off, as the kubelet retries it."""
    w.records[name].set_waiting(exc.reason, exc.message)
    w.event("Warning", "Failed", f"Error: {exc.message}", name)
    return S.PULL_BACKOFF


def _first_to_restart(w: PodWorker) -> str:
    return next(c.name for c in w.plan.containers if w.should_start(c.name))


def exit_for_deadline() -> ExitStatus:
    return ExitStatus(EXIT_KILLED, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")


