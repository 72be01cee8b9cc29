"""The per-Pod lifecycle as an explicit state machine (in the manner of Krustlet's).

One small handler per state; each returns the next state, and `TRANSITIONS` declares which
moves are legal, so an impossible move fails loudly in tests instead of silently in production.

    Admitting → Pulling ⇄ PullBackOff
    Pulling → Volumes → Initializing ⇄ CrashLoopBackOff (an init container's back-off)
    Initializing → Starting → Running
    any → Terminating → Terminated;  any → Failed (permanent)

Backoffs are states, not sleeps hidden in handlers, except where the kubelet keeps several
clocks at once: in Running every main container restarts on its own schedule (`restarts.py`)
while the others keep running. Cleanup happens in one place (`_cleanup`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from wasmlet.nodeagent.claims import claim_mounts, resolve_claims
from wasmlet.nodeagent.errors import ModuleError, PodConfigError, PullError, UnsupportedPod
from wasmlet.nodeagent.modules import check_module_reference
from wasmlet.nodeagent.probes import parse_probes
from wasmlet.nodeagent.runtime import EXIT_KILLED, ExitStatus, RunSpec
from wasmlet.nodeagent.volumes import mounts_for, prepare_volumes, resolve_env

if TYPE_CHECKING:
    from wasmlet.nodeagent.pods import PodWorker
    from wasmlet.nodeagent.podspec import ContainerPlan
    from wasmlet.nodeagent.store import Module

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
    S.RUNNING: frozenset({S.TERMINATED, S.TERMINATING, S.FAILED}),
    S.CRASH_BACKOFF: frozenset({S.INITIALIZING, S.TERMINATING, S.FAILED}),
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
    refused = w.env.ports.refusal(w.plan.tcp_ports, w.env.node_name)
    if refused is not None:
        return w.fail(refused.reason, refused.message)
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
        started = time.monotonic()
        try:
            if w.env.modules_by_reference and container.module.kind == "configmap":
                check_module_reference(container.module, w.plan.volumes)
            # `Pulling` only when a download begins: a module in the store gets one `Pulled` event.
            module = await w.until_stopped(_fetch_and_prepare(w, container))
            if module is None:  # deleted or stopped while it was pulled: nothing more to report
                return S.TERMINATING
        except (PullError, ModuleError) as exc:
            w.env.metrics.pulls.labels("error").inc()
            reason = exc.reason if isinstance(exc, PullError) else "ErrImagePull"
            record.set_waiting(reason, exc.message)
            w.event("Warning", "Failed", f"Failed to pull module {container.module.ref!r}: {exc.message}",
                    container.name)
            w.event("Warning", "Failed", f"Error: {reason}", container.name)
            w.report()  # the kubelet shows ErrImagePull first, on every failed try
            return S.PULL_BACKOFF
        except PodConfigError as exc:
            record.set_waiting(exc.reason, exc.message)
            w.event("Warning", "Failed", f"Error: {exc.message}", container.name)
            w.report()
            return S.PULL_BACKOFF
        w.env.metrics.pulls.labels("ok").inc()
        w.modules[container.name] = module
        record.image_id = module.image_id or module.digest
        w.clear_waiting(record)
        if module.cached:
            w.event("Normal", "Pulled", f'Container image "{container.module.ref}" already present on machine',
                    container.name)
        else:
            w.event("Normal", "Pulled", f'Successfully pulled module "{container.module.ref}" in '
                    f"{time.monotonic() - started:.3f}s ({module.size} bytes, {module.digest[:19]})", container.name)
    w.pull_backoff.delay = 0.0
    return S.VOLUMES


async def _fetch_and_prepare(w: PodWorker, container: ContainerPlan) -> Module:
    module = await w.env.modules.fetch(container.module, w.plan.namespace, w.source_dir, holder=w.plan.uid,
                                       pull_secrets=w.plan.image_pull_secrets,
                                       pull_policy=container.image_pull_policy,
                                       on_pull=_announce_pull(w, container.module.ref, container.name))
    runtime = await w.env.runtime(w.plan.runtime)
    await runtime.prepare(module.path, module.digest)
    return module


async def pull_backoff(w: PodWorker) -> State:
    """Wait out the pull back-off. A failed pull's ErrImagePull stays until the Pod's next sync
    (the kubelet syncs again soon after a failure); from then on the container shows
    ImagePullBackOff until the back-off is over and the pull is tried again."""
    delay = w.pull_backoff.next_delay(0.0)
    shown = min(delay / 2, w.pull_backoff.base)
    await w.sleep(shown)
    if w.stopping:
        return S.TERMINATING
    for record in w.records.values():
        waiting = record.state.get("waiting") or {}
        if waiting.get("reason") == "ErrImagePull":
            record.set_waiting("ImagePullBackOff",
                               f'Back-off pulling image "{record.image}": ErrImagePull: {waiting.get("message", "")}')
            w.event("Normal", "BackOff", f'Back-off pulling image "{record.image}"', record.name)
            w.event("Warning", "Failed", "Error: ImagePullBackOff", record.name)
    w.report()
    await w.sleep(delay - shown)
    return S.PULLING


async def volumes(w: PodWorker) -> State:
    try:
        claimed = await resolve_claims(w.plan.volumes, w.plan.namespace, w.env.claims, w.env.node_name,
                                       w.env.node_labels)
        w.volume_paths = await prepare_volumes(w.plan, w.pod_dir / "volumes", w.env.objects, w.field_values())
        w.volume_paths.update({name: claim.path for name, claim in claimed.items()})
        runtime = await w.env.runtime(w.plan.runtime)
        for container in w.plan.init_containers + w.plan.containers:
            mounts = mounts_for(container, w.volume_paths, w.plan.volumes)
            w.specs[container.name] = RunSpec(
                pod_uid=w.plan.uid,
                pod_namespace=w.plan.namespace,
                container=container.name,
                module_path=w.modules[container.name].path,
                module_digest=w.modules[container.name].digest,
                argv=container.argv,
                env=await resolve_env(container, w.plan, w.env.objects, w.field_values()),
                mounts=claim_mounts(mounts, container.volume_mounts, claimed),
                working_dir=container.working_dir,
                memory_limit_bytes=container.memory_limit_bytes,
                network=w.plan.network,
                cpu_limit=container.cpu_limit,
            )
            runtime.check(w.specs[container.name])
    except PodConfigError as exc:
        if exc.reason == "FailedMount":  # the kubelet: the containers wait as not created; an event says why
            w.event("Warning", "FailedMount", exc.message)
            return S.PULL_BACKOFF
        for record in w.records.values():
            record.set_waiting("CreateContainerConfigError", exc.message)
        w.event("Warning", "Failed", f"Error: {exc.message}")
        return S.PULL_BACKOFF
    except UnsupportedPod as exc:
        return w.fail(exc.reason, exc.message)
    for record in w.records.values():
        w.clear_waiting(record)
    return S.INITIALIZING


async def initializing(w: PodWorker) -> State:
    for container in w.plan.init_containers:
        record = w.records[container.name]
        term = record.terminated
        if term is not None and term["exitCode"] == 0:
            continue
        try:
            status = await w.run_to_end(container.name)  # a run after an earlier one is counted at its start
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
        if w.should_start(container.name):
            await w.start_or_record(container.name)
    return S.RUNNING


async def running(w: PodWorker) -> State:
    """Supervise the main containers: each one that ends is judged and restarted on its own
    schedule (computePodActions + doBackOff per container) while the others keep running."""
    w.report()
    while True:
        if w.stopping:
            return S.TERMINATING
        due = w.restarts.take_due(time.monotonic())
        for name in due:
            await w.restart(name)
        if due:
            w.report()
            continue
        if not w.instances and not w.restarts.waiting():
            return S.TERMINATED
        ended, _ = await w.next_exit(timeout=w.restarts.next_in(time.monotonic()))
        if ended is not None:
            w.container_ended(ended)
            w.report()


async def crash_backoff(w: PodWorker) -> State:
    """An init container failed: wait its back-off (none the first time), then run it again."""
    name = w.backoff_container or ""
    delay = w.restarts.schedule(name, w.ran_for.get(name, 0.0), time.monotonic())
    w.restarts.due.pop(name, None)  # the Pod itself waits here: nothing else may start meanwhile
    if delay > 0:
        w.crash_looping(name, delay)
        w.report()
        await w.sleep(delay)
    w.backoff_container = None
    return S.TERMINATING if w.stopping else S.INITIALIZING


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


def _announce_pull(w: PodWorker, module: str, container: str) -> Callable[[], None]:
    """The kubelet's `Pulling` event, for when a download begins (not for a module in the store)."""
    def pulling() -> None:
        w.event("Normal", "Pulling", f'Pulling module "{module}"', container)
    return pulling


def _config_error(w: PodWorker, name: str, exc: PodConfigError) -> State:
    """An init container that could not be set up as it started (a volume path through a link): it
    waits with CreateContainerConfigError and is retried after a back-off, as the kubelet retries it."""
    w.records[name].set_waiting(exc.reason, exc.message)
    w.event("Warning", "Failed", f"Error: {exc.message}", name)
    return S.PULL_BACKOFF


def exit_for_deadline() -> ExitStatus:
    return ExitStatus(EXIT_KILLED, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")


